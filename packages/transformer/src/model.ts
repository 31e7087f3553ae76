/**
 * The Llama 3 / Qwen 2.5 decoder as pure functions of a parameter pytree.
 *
 * Linear weights keep Hugging Face's [out, in] layout and are applied with a transposed
 * matmul (no copies), so checkpoints map one to one. The forward pass takes token ids or
 * input embeddings (soft tokens are not tokens), supports left-padded batches through an
 * attention mask and per-row positions, and incremental decoding with a KV cache.
 */
import {
  add, concat, type DType, gather, key as prngKey, matmul, mul, neg, normal, ones, type PRNGKey, reshape, rmsNorm,
  scope, silu, slice, softmax, split, tensor, type Tensor, transpose, zeros, type Backend, fmtShape, getDefaultBackend,
  keep,
} from '@softgrad/tensor';
import { ropeInverseFrequencies, type TransformerConfig } from './config.js';

export interface LayerParams {
  inputNorm: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor;
  qBias?: Tensor;
  kBias?: Tensor;
  vBias?: Tensor;
  postNorm: Tensor;
  gate: Tensor;
  up: Tensor;
  down: Tensor;
}

export interface ModelParams {
  embed: Tensor;
  layers: LayerParams[];
  norm: Tensor;
  /** Absent when the output projection is tied to the embedding. */
  lmHead?: Tensor;
}

export interface InitOptions {
  dtype?: DType;
  backend?: Backend;
  /** Standard deviation of the normal initialiser (Hugging Face's initializer_range). */
  std?: number;
}

/** Random parameters: N(0, std²) matrices, unit norms, zero biases. */
export function initParams(config: TransformerConfig, key: PRNGKey | number, opts: InitOptions = {}): ModelParams {
  const dtype = opts.dtype ?? 'float32';
  const backend = opts.backend ?? getDefaultBackend();
  const std = opts.std ?? 0.02;
  let k = typeof key === 'number' ? prngKey(key) : key;
  const o = { dtype, backend };
  const mat = (rows: number, cols: number): Tensor => {
    const [next, sub] = split(k);
    k = next!;
    return scope(() => mul(normal(sub!, [rows, cols], o), std));
  };
  const d = config.hidden_size;
  const hd = config.head_dim;
  const nq = config.num_attention_heads * hd;
  const nkv = config.num_key_value_heads * hd;
  const layers: LayerParams[] = [];
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const layer: LayerParams = {
      inputNorm: ones([d], o),
      q: mat(nq, d),
      k: mat(nkv, d),
      v: mat(nkv, d),
      o: mat(d, nq),
      postNorm: ones([d], o),
      gate: mat(config.intermediate_size, d),
      up: mat(config.intermediate_size, d),
      down: mat(d, config.intermediate_size),
    };
    if (config.attention_bias) {
      layer.qBias = zeros([nq], o);
      layer.kBias = zeros([nkv], o);
      layer.vBias = zeros([nkv], o);
    }
    layers.push(layer);
  }
  const params: ModelParams = { embed: mat(config.vocab_size, d), layers, norm: ones([d], o) };
  if (!config.tie_word_embeddings) params.lmHead = mat(config.vocab_size, d);
  return params;
}

/** Key/value cache for incremental decoding: per layer [B, n_kv, T, head_dim]. */
export interface KVCache {
  keys: Tensor[];
  values: Tensor[];
  /** Which cached positions each row may attend to (false = padding). */
  mask: boolean[][];
  /** Next RoPE position of each row. */
  nextPosition: number[];
  length: number;
}

export interface ForwardInput {
  /** [B, S] int32 token ids. */
  ids?: Tensor;
  /** [B, S, hidden] input embeddings (instead of ids). */
  embeds?: Tensor;
  /**
   * [B][S] which new positions are real tokens (false = left padding). Default all true.
   * Padded positions attend to nothing real and are never attended to.
   */
  mask?: boolean[][];
  /** Continue from this cache (the returned cache includes the new positions). */
  cache?: KVCache;
  /** Return a cache (default: true when `cache` is given). */
  useCache?: boolean;
}

export interface ForwardOutput {
  /** [B, S, vocab] */
  logits: Tensor;
  /** [B, S, hidden] final hidden states (after the final norm). */
  hidden: Tensor;
  cache?: KVCache;
}

function linear(x: Tensor, w: Tensor, b?: Tensor): Tensor {
  const y = matmul(x, w, { transposeB: true });
  return b ? add(y, b) : y;
}

/** RoPE in Hugging Face's rotate-half layout; x: [B, H, S, hd], cos/sin: [B, 1, S, hd/2]. */
function applyRope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const hd = x.shape[3]!;
  const half = hd / 2;
  const x1 = slice(x, [0, 0, 0, 0], [-1, -1, -1, half]);
  const x2 = slice(x, [0, 0, 0, half], [-1, -1, -1, half]);
  return concat([add(mul(x1, cos), neg(mul(x2, sin))), add(mul(x2, cos), mul(x1, sin))], 3);
}

/** The embedding rows of token ids: [B, S] → [B, S, hidden]. */
export function embedTokens(params: ModelParams, ids: Tensor): Tensor {
  return gather(params.embed, ids, 0);
}

/** The output projection matrix [vocab, hidden] (the embedding when tied). */
export function outputMatrix(params: ModelParams): Tensor {
  return params.lmHead ?? params.embed;
}

/**
 * The full forward pass. With `cache`, the inputs are the next positions after the cached
 * ones. Returns logits for every input position.
 */
export function forward(config: TransformerConfig, params: ModelParams, input: ForwardInput): ForwardOutput {
  const { ids, embeds } = input;
  if ((ids ? 1 : 0) + (embeds ? 1 : 0) !== 1) throw new Error('forward: pass exactly one of ids or embeds');
  const d = config.hidden_size;
  if (ids) {
    if (ids.dtype !== 'int32' || ids.rank !== 2) throw new Error(`forward: ids must be int32 [batch, seq], got ${ids.dtype} ${fmtShape(ids.shape)}`);
  } else if (embeds!.rank !== 3 || embeds!.shape[2] !== d) {
    throw new Error(`forward: embeds must be [batch, seq, ${d}], got ${fmtShape(embeds!.shape)}`);
  } else if (embeds!.dtype !== params.embed.dtype) {
    throw new Error(`forward: embeds are ${embeds!.dtype} but the model is ${params.embed.dtype}`);
  }
  const [B, S] = (ids ?? embeds)!.shape as [number, number];
  const cache = input.cache;
  if (cache && cache.mask.length !== B) throw new Error(`forward: cache has ${cache.mask.length} rows, input has ${B}`);
  const past = cache?.length ?? 0;
  const mask = input.mask ?? Array.from({ length: B }, () => new Array<boolean>(S).fill(true));
  if (mask.length !== B || mask.some((r) => r.length !== S)) throw new Error(`forward: mask must be [${B}][${S}]`);
  const T = past + S;
  if (T > config.max_position_embeddings) {
    // Not an error in HF either, but RoPE scaling assumptions break; say so clearly.
    throw new Error(`forward: sequence length ${T} exceeds max_position_embeddings ${config.max_position_embeddings}`);
  }
  const useCache = input.useCache ?? !!cache;

  // Host-side bookkeeping: positions, the causal+padding mask, RoPE tables.
  const fullMask = mask.map((row, b) => [...(cache?.mask[b] ?? []), ...row]);
  const positions: number[][] = [];
  const nextPosition: number[] = [];
  for (let b = 0; b < B; b++) {
    let p = cache?.nextPosition[b] ?? 0;
    const row: number[] = [];
    for (let s = 0; s < S; s++) {
      row.push(p);
      if (mask[b]![s]) p++;
    }
    positions.push(row);
    nextPosition.push(p);
  }
  const dtype = params.embed.dtype;
  const backend = params.embed.backend;
  const hd = config.head_dim;
  const half = hd / 2;
  const invFreq = ropeInverseFrequencies(config);
  const cosData = new Float64Array(B * S * half);
  const sinData = new Float64Array(B * S * half);
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < S; s++) {
      for (let i = 0; i < half; i++) {
        const a = positions[b]![s]! * invFreq[i]!;
        cosData[(b * S + s) * half + i] = Math.cos(a);
        sinData[(b * S + s) * half + i] = Math.sin(a);
      }
    }
  }
  const biasData = new Float64Array(B * S * T);
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < S; s++) {
      for (let t = 0; t < T; t++) {
        const ok = t <= past + s && fullMask[b]![t]!;
        biasData[(b * S + s) * T + t] = ok ? 0 : -1e9;
      }
    }
  }
  const H = config.num_attention_heads;
  const KV = config.num_key_value_heads;
  const G = H / KV;
  const newKeys: Tensor[] = [];
  const newValues: Tensor[] = [];

  const out = scope(() => {
    const o = { dtype, backend };
    const cos = tensor(dtype === 'float64' ? cosData : Float32Array.from(cosData), { shape: [B, 1, S, half], ...o });
    const sin = tensor(dtype === 'float64' ? sinData : Float32Array.from(sinData), { shape: [B, 1, S, half], ...o });
    const bias = tensor(dtype === 'float64' ? biasData : Float32Array.from(biasData), { shape: [B, 1, 1, S, T], ...o });
    const scale = 1 / Math.sqrt(hd);
    let h = ids ? embedTokens(params, ids) : embeds!;
    params.layers.forEach((L, li) => {
      const x = rmsNorm(h, L.inputNorm, config.rms_norm_eps);
      const q = transpose(reshape(linear(x, L.q, L.qBias), [B, S, H, hd]), [0, 2, 1, 3]);
      const k = transpose(reshape(linear(x, L.k, L.kBias), [B, S, KV, hd]), [0, 2, 1, 3]);
      const v = transpose(reshape(linear(x, L.v, L.vBias), [B, S, KV, hd]), [0, 2, 1, 3]);
      const qr = applyRope(q, cos, sin);
      let kr = applyRope(k, cos, sin);
      let vv = v;
      if (cache && cache.length > 0) {
        kr = concat([cache.keys[li]!, kr], 2);
        vv = concat([cache.values[li]!, vv], 2);
      }
      if (useCache) {
        newKeys.push(kr);
        newValues.push(vv);
      }
      // Grouped-query attention without repeating K/V: the G query heads that share a KV
      // head are stacked along the rows of one matmul per (batch, KV head).
      const qg = reshape(qr, [B, KV, G * S, hd]);
      const raw = reshape(matmul(qg, kr, { transposeB: true }), [B, KV, G, S, T]);
      const scores = add(mul(raw, scale), bias);
      const probs = reshape(softmax(scores, -1), [B, KV, G * S, T]);
      const ctx = reshape(matmul(probs, vv), [B, H, S, hd]);
      const merged = reshape(transpose(ctx, [0, 2, 1, 3]), [B, S, H * hd]);
      h = add(h, linear(merged, L.o));
      const y = rmsNorm(h, L.postNorm, config.rms_norm_eps);
      const mlp = linear(mul(silu(linear(y, L.gate)), linear(y, L.up)), L.down);
      h = add(h, mlp);
    });
    const hidden = rmsNorm(h, params.norm, config.rms_norm_eps);
    const logits = matmul(hidden, outputMatrix(params), { transposeB: true });
    return { logits, hidden, keys: newKeys, values: newValues };
  });
  const result: ForwardOutput = { logits: out.logits, hidden: out.hidden };
  if (useCache) {
    result.cache = { keys: out.keys, values: out.values, mask: fullMask, nextPosition, length: T };
  }
  return result;
}

/** An empty cache for a batch of B rows. */
export function emptyCache(batch: number): KVCache {
  return { keys: [], values: [], mask: Array.from({ length: batch }, () => []), nextPosition: new Array(batch).fill(0), length: 0 };
}

export function disposeCache(cache: KVCache | undefined): void {
  if (!cache) return;
  for (const t of [...cache.keys, ...cache.values]) t.dispose();
}

/** Keep a cache's tensors out of any enclosing scope (the caller owns them). */
export function keepCache(cache: KVCache): KVCache {
  for (const t of [...cache.keys, ...cache.values]) keep(t);
  return cache;
}

/** Number of scalar parameters. */
export function parameterCount(params: ModelParams): number {
  let n = params.embed.size + params.norm.size + (params.lmHead?.size ?? 0);
  for (const L of params.layers) for (const t of Object.values(L)) n += (t as Tensor).size;
  return n;
}
