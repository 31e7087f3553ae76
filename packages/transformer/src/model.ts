/**
 * The Llama 3 / Qwen 2.5 decoder as pure functions of a parameter pytree.
 *
 * Linear weights keep Hugging Face's [out, in] layout and are applied with a transposed
 * matmul (no copies), so checkpoints map one to one. The forward pass takes token ids or
 * input embeddings (soft tokens are not tokens), supports left-padded batches through an
 * attention mask and per-row positions, and incremental decoding with a KV cache.
 */
import {
  add, arange, cast, concat, type DType, dynamicUpdateSlice, gather, greater, key as prngKey, lessEqual, logicalAnd, matmul,
  mul, normal, ones, type PRNGKey, reshape, rmsNorm, scope, silu, slice, softmax, split, sum, tensor, type Tensor, transpose,
  where, zeros, type Backend, fmtShape, getDefaultBackend, keep,
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

/**
 * RoPE in Hugging Face's rotate-half layout: x·cos + rotateHalf(x)·sin with x: [B, H, S, hd],
 * cos/sin: [B, 1, S, hd] (each half repeated). rotateHalf(x) = [−x₂, x₁] is the product with a
 * signed permutation matrix (exact: one ±1 per column), which keeps the whole rotation
 * elementwise-fusable instead of two slices and a concat (and their pads in the backward).
 */
function applyRope(x: Tensor, cos: Tensor, sin: Tensor, rotate: Tensor): Tensor {
  return add(mul(x, cos), mul(matmul(x, rotate), sin));
}

/** The [hd, hd] matrix R with x·R = rotateHalf(x) = [−x[half:], x[:half]]. */
function rotateHalfMatrix(hd: number, dtype: DType, backend: Backend): Tensor {
  const half = hd / 2;
  const r = new Float64Array(hd * hd);
  for (let j = 0; j < half; j++) {
    r[(j + half) * hd + j] = -1;
    r[j * hd + j + half] = 1;
  }
  return tensor(dtype === 'float64' ? r : Float32Array.from(r), { shape: [hd, hd], dtype, backend });
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
  const cosData = new Float64Array(B * S * hd);
  const sinData = new Float64Array(B * S * hd);
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < S; s++) {
      for (let i = 0; i < half; i++) {
        const a = positions[b]![s]! * invFreq[i]!;
        const at = (b * S + s) * hd + i;
        cosData[at] = cosData[at + half] = Math.cos(a);
        sinData[at] = sinData[at + half] = Math.sin(a);
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
    const cos = tensor(dtype === 'float64' ? cosData : Float32Array.from(cosData), { shape: [B, 1, S, hd], ...o });
    const sin = tensor(dtype === 'float64' ? sinData : Float32Array.from(sinData), { shape: [B, 1, S, hd], ...o });
    const rotate = rotateHalfMatrix(hd, dtype, backend);
    const bias = tensor(dtype === 'float64' ? biasData : Float32Array.from(biasData), { shape: [B, 1, 1, S, T], ...o });
    const scale = 1 / Math.sqrt(hd);
    let h = ids ? embedTokens(params, ids) : embeds!;
    params.layers.forEach((L, li) => {
      const x = rmsNorm(h, L.inputNorm, config.rms_norm_eps);
      const q = transpose(reshape(linear(x, L.q, L.qBias), [B, S, H, hd]), [0, 2, 1, 3]);
      const k = transpose(reshape(linear(x, L.k, L.kBias), [B, S, KV, hd]), [0, 2, 1, 3]);
      const v = transpose(reshape(linear(x, L.v, L.vBias), [B, S, KV, hd]), [0, 2, 1, 3]);
      const qr = applyRope(q, cos, sin, rotate);
      let kr = applyRope(k, cos, sin, rotate);
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

// ---------------------------------------------------------------------------------------
// Decoding with a preallocated cache (device-resident state, for jit)

/**
 * Everything decoding needs, on the device, preallocated to `capacity` positions: per layer
 * keys [N, n_kv, head_dim, capacity] (transposed, so that q·kᵀ reads them in place) and values
 * [N, n_kv, capacity, head_dim], which positions hold real tokens
 * (`valid`, [N, capacity], 1/0 in the model's dtype) and each row's next RoPE position
 * (`positions`, [N] int32). decodeStep writes into it at a position given as a tensor, so a
 * jitted step is traced once and, with the state donated, updates the cache in place.
 */
export interface DecodeState {
  keys: Tensor[];
  values: Tensor[];
  valid: Tensor;
  positions: Tensor;
}

export function createDecodeState(config: TransformerConfig, rows: number, capacity: number, opts: { dtype: DType; backend: Backend }): DecodeState {
  if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`createDecodeState: capacity must be a positive integer, got ${capacity}`);
  if (capacity > config.max_position_embeddings) {
    throw new Error(`createDecodeState: capacity ${capacity} exceeds max_position_embeddings ${config.max_position_embeddings}`);
  }
  const kShape = [rows, config.num_key_value_heads, config.head_dim, capacity];
  const vShape = [rows, config.num_key_value_heads, capacity, config.head_dim];
  return {
    keys: Array.from({ length: config.num_hidden_layers }, () => zeros(kShape, opts)),
    values: Array.from({ length: config.num_hidden_layers }, () => zeros(vShape, opts)),
    valid: zeros([rows, capacity], opts),
    positions: zeros([rows], { dtype: 'int32', backend: opts.backend }),
  };
}

/** cos and sin of every RoPE angle for positions [0, n): [n, head_dim] each (halves repeated). */
function ropeTables(config: TransformerConfig, n: number, dtype: DType, backend: Backend): { cos: Tensor; sin: Tensor } {
  const hd = config.head_dim;
  const half = hd / 2;
  const invFreq = ropeInverseFrequencies(config);
  const c = new Float64Array(n * hd);
  const sn = new Float64Array(n * hd);
  for (let p = 0; p < n; p++) {
    for (let i = 0; i < half; i++) {
      const a = p * invFreq[i]!;
      c[p * hd + i] = c[p * hd + i + half] = Math.cos(a);
      sn[p * hd + i] = sn[p * hd + i + half] = Math.sin(a);
    }
  }
  const f = (x: Float64Array) => (dtype === 'float64' ? x : Float32Array.from(x));
  return { cos: tensor(f(c), { shape: [n, hd], dtype, backend }), sin: tensor(f(sn), { shape: [n, hd], dtype, backend }) };
}

/**
 * The weights decoding uses, laid out for it once per rollout: every projection transposed to
 * [in, out] (so matmuls read it in place), and per layer the query, key and value projections
 * plus the rotate-half of the query and key ones stacked into one matrix. RoPE is then
 * q·cos + rotateHalf(q)·sin with both halves from one product: rotateHalf(x·Wᵀ) = x·(RWᵀ)
 * with R a signed permutation of each head's rows, exact.
 */
export interface DecodeParams {
  embed: Tensor;
  layers: {
    inputNorm: Tensor;
    /** [hidden, (2·heads + 3·kv_heads)·head_dim]: q, k, v, rotateHalf(q), rotateHalf(k). */
    qkvr: Tensor;
    qkvrBias?: Tensor;
    /** [heads·head_dim, hidden] */
    o: Tensor;
    postNorm: Tensor;
    /** [hidden, 2·intermediate]: gate, up. */
    gateUp: Tensor;
    /** [intermediate, hidden] */
    down: Tensor;
  }[];
  norm: Tensor;
  /** [hidden, vocab]: the output projection transposed. */
  head: Tensor;
}

/** rotateHalf applied to the rows of each head's block of a [heads·hd, ...] weight (or bias). */
function rotateRowsPerHead(w: Tensor, heads: number, hd: number): Tensor {
  const rest = w.shape.slice(1);
  const half = hd / 2;
  const blocks = reshape(w, [heads, 2, half, ...rest]);
  const first = slice(blocks, [0, 0], [heads, 1]);
  const second = slice(blocks, [0, 1], [heads, 1]);
  return reshape(concat([mul(second, -1), first], 1), w.shape);
}

export function prepareDecodeParams(config: TransformerConfig, params: ModelParams): DecodeParams {
  const H = config.num_attention_heads;
  const KV = config.num_key_value_heads;
  const hd = config.head_dim;
  return scope(() => ({
    embed: params.embed,
    layers: params.layers.map((L) => {
      const rows = [L.q, L.k, L.v, rotateRowsPerHead(L.q, H, hd), rotateRowsPerHead(L.k, KV, hd)];
      const layer: DecodeParams['layers'][number] = {
        inputNorm: L.inputNorm,
        qkvr: transpose(concat(rows, 0)),
        o: transpose(L.o),
        postNorm: L.postNorm,
        gateUp: transpose(concat([L.gate, L.up], 0)),
        down: transpose(L.down),
      };
      if (L.qBias && L.kBias && L.vBias) {
        layer.qkvrBias = concat([L.qBias, L.kBias, L.vBias, rotateRowsPerHead(L.qBias, H, hd), rotateRowsPerHead(L.kBias, KV, hd)], 0);
      }
      return layer;
    }),
    norm: params.norm,
    head: transpose(outputMatrix(params)),
  }));
}

/** Frees what prepareDecodeParams made; the model's own tensors it shares stay. */
export function disposeDecodeParams(dp: DecodeParams): void {
  dp.head.dispose();
  for (const L of dp.layers) for (const t of [L.qkvr, L.qkvrBias, L.o, L.gateUp, L.down]) t?.dispose();
}

/**
 * S new positions per row, written into the state at cache index `writeAt` (an int32 scalar
 * tensor, the same for every row). `newValid` [N, S] (1/0, the model's dtype) says which new
 * positions are real tokens: the others are padding, never attended to and not advancing the
 * row's RoPE position. Attention reads the first `attend` cache positions (static: pass the
 * filled length rounded up, so a jitted step retraces only when it crosses a bucket; default
 * the whole capacity). Returns the logits of each row's last new position [N, vocab] and the
 * new state. Pure and free of host reads, so it can be jitted; with the state donated the
 * cache is updated in place.
 */
export function decodeStep(
  config: TransformerConfig, dp: DecodeParams, state: DecodeState, embeds: Tensor, newValid: Tensor, writeAt: Tensor, attend?: number,
): { logits: Tensor; state: DecodeState } {
  const [N, S, d] = embeds.shape as [number, number, number];
  if (embeds.rank !== 3 || d !== config.hidden_size) throw new Error(`decodeStep: embeds must be [rows, new, ${config.hidden_size}], got ${fmtShape(embeds.shape)}`);
  const C = state.valid.shape[1]!;
  const A = attend ?? C;
  if (!Number.isInteger(A) || A < 1 || A > C) throw new Error(`decodeStep: attend must be an integer in [1, ${C}], got ${attend}`);
  if (state.valid.shape[0] !== N || newValid.shape[0] !== N || newValid.shape[1] !== S) {
    throw new Error(`decodeStep: state has ${state.valid.shape[0]} rows, newValid is ${fmtShape(newValid.shape)}, embeds ${fmtShape(embeds.shape)}`);
  }
  const dtype = dp.embed.dtype;
  const backend = dp.embed.backend;
  const H = config.num_attention_heads;
  const KV = config.num_key_value_heads;
  const G = H / KV;
  const hd = config.head_dim;
  const I = config.intermediate_size;
  const o = { dtype, backend };
  const keysOut: Tensor[] = [];
  const valuesOut: Tensor[] = [];
  const out = scope(() => {
    // RoPE positions of the new tokens: the row's next position plus the real tokens before each one.
    let pos = reshape(state.positions, [N, 1]);
    if (S > 1) {
      const before = new Float64Array(S * S);
      for (let i = 0; i < S; i++) for (let j = i + 1; j < S; j++) before[i * S + j] = 1;
      const u = tensor(dtype === 'float64' ? before : Float32Array.from(before), { shape: [S, S], ...o });
      pos = add(pos, cast(matmul(newValid, u), 'int32'));
    }
    const positions = add(state.positions, cast(sum(newValid, -1), 'int32'));
    const tables = ropeTables(config, C, dtype, backend);
    const cos = reshape(gather(tables.cos, pos, 0), [N, S, 1, hd]);
    const sin = reshape(gather(tables.sin, pos, 0), [N, S, 1, hd]);
    const valid = dynamicUpdateSlice(state.valid, newValid, writeAt, 1);
    // Query s may attend cache index j < A when j ≤ writeAt + s and j holds a real token.
    const j = reshape(arange(0, A, 1, { dtype: 'int32', backend }), [1, 1, 1, 1, A]);
    const limit = add(reshape(arange(0, S, 1, { dtype: 'int32', backend }), [1, 1, 1, S, 1]), writeAt);
    const seen = A === C ? valid : slice(valid, [0, 0], [N, A]);
    const ok = logicalAnd(lessEqual(j, limit), greater(reshape(seen, [N, 1, 1, 1, A]), 0.5));
    const bias = where(ok, zeros([], o), -1e9);
    const scale = 1 / Math.sqrt(hd);
    const cols = [H, KV, KV, H, KV].map((n) => n * hd);
    const at = cols.map((_, i) => cols.slice(0, i).reduce((a, b) => a + b, 0));
    let h = embeds;
    dp.layers.forEach((L, li) => {
      const x = rmsNorm(h, L.inputNorm, config.rms_norm_eps);
      let proj = matmul(x, L.qkvr);
      if (L.qkvrBias) proj = add(proj, L.qkvrBias);
      const part = (i: number, heads: number) => reshape(slice(proj, [0, 0, at[i]!], [N, S, cols[i]!]), [N, S, heads, hd]);
      // [N, S, heads, hd], rotated: x·cos + rotateHalf(x)·sin.
      const q = add(mul(part(0, H), cos), mul(part(3, H), sin));
      const k = add(mul(part(1, KV), cos), mul(part(4, KV), sin));
      const v = part(2, KV);
      const kc = dynamicUpdateSlice(state.keys[li]!, transpose(k, [0, 2, 3, 1]), writeAt, 3);
      const vc = dynamicUpdateSlice(state.values[li]!, transpose(v, [0, 2, 1, 3]), writeAt, 2);
      keysOut.push(kc);
      valuesOut.push(vc);
      const ks = A === C ? kc : slice(kc, [0, 0, 0, 0], [N, KV, hd, A]);
      const vs = A === C ? vc : slice(vc, [0, 0, 0, 0], [N, KV, A, hd]);
      let ctx: Tensor;
      if (S === 1) {
        // One query per row: products of G×hd by hd×A per (row, kv head) are too small for
        // matmul; as a broadcast multiply and a reduction they fuse into one kernel each.
        const qv = reshape(q, [N, KV, G, hd, 1]);
        const raw = sum(mul(qv, reshape(ks, [N, KV, 1, hd, A])), 3); // [N, KV, G, A]
        const probs = softmax(add(mul(raw, scale), reshape(bias, [N, 1, 1, A])), -1);
        ctx = sum(mul(reshape(probs, [N, KV, G, A, 1]), reshape(vs, [N, KV, 1, A, hd])), 3); // [N, KV, G, hd]
        ctx = reshape(ctx, [N, S, H * hd]);
      } else {
        const qg = reshape(transpose(q, [0, 2, 1, 3]), [N, KV, G * S, hd]);
        const raw = reshape(matmul(qg, ks), [N, KV, G, S, A]);
        const probs = reshape(softmax(add(mul(raw, scale), bias), -1), [N, KV, G * S, A]);
        const c4 = reshape(matmul(probs, vs), [N, H, S, hd]);
        ctx = reshape(transpose(c4, [0, 2, 1, 3]), [N, S, H * hd]);
      }
      h = add(h, matmul(ctx, L.o));
      const y = rmsNorm(h, L.postNorm, config.rms_norm_eps);
      const gu = matmul(y, L.gateUp);
      const gate = slice(gu, [0, 0, 0], [N, S, I]);
      const up = slice(gu, [0, 0, I], [N, S, I]);
      h = add(h, matmul(mul(silu(gate), up), L.down));
    });
    const last = reshape(rmsNorm(reshape(sliceLast(h), [N, d]), dp.norm, config.rms_norm_eps), [N, d]);
    const logits = matmul(last, dp.head);
    return { logits, valid, positions, keys: keysOut, values: valuesOut };
  });
  return { logits: out.logits, state: { keys: out.keys, values: out.values, valid: out.valid, positions: out.positions } };
}

/** [N, S, d] → [N, 1, d]: each row's last position. */
function sliceLast(h: Tensor): Tensor {
  const [N, S, d] = h.shape as [number, number, number];
  return S === 1 ? h : reshape(gather(h, tensor(Int32Array.of(S - 1), { dtype: 'int32', backend: h.backend }), 1), [N, 1, d]);
}

export function disposeDecodeState(state: DecodeState | undefined): void {
  if (!state) return;
  for (const t of [...state.keys, ...state.values, state.valid, state.positions]) t.dispose();
}

// ---------------------------------------------------------------------------------------
// Packed sequences (scoring many rows of different lengths)

/**
 * Rows of different lengths packed end to end: the token-wise work (projections, MLP, norms,
 * logits) runs over the packed tokens only. Attention runs per row on padded [rows, width]
 * blocks that tokens are gathered into and back out of; rows are grouped by length (longest
 * first, equal row counts) and each group padded only to its own longest row, since the cost
 * of a block grows with the square of its width. Indices are tensors, so a jitted loss over
 * packed rows is traced once per (tokens, group widths) shape.
 */
export interface PackedLayout {
  /** RoPE position of each packed token within its row, [T] int32. */
  positions: Tensor;
  /** The padded attention blocks. */
  groups: PackedGroup[];
  /** For each packed token: its slot in the groups' padded slots laid end to end, [T] int32. */
  toPacked: Tensor;
  /** At most this many query bands per group (PackLayoutOptions.attentionBands). */
  bands: number;
}

export interface PackedGroup {
  /** For each padded slot r·width + i: the packed index of the group's row r's token i (0 for empty slots), [rows·width] int32. */
  toPadded: Tensor;
  /** 1 where a padded slot holds a token, 0 elsewhere: [rows, width] in the model's dtype. */
  slotValid: Tensor;
}

export interface PackLayoutOptions {
  /** Round the token count up to a multiple of this (default 128), so shapes repeat across steps and jit traces rarely. */
  tokenBucket?: number;
  /** Round each group's width up to a multiple of this (default 16). */
  widthBucket?: number;
  /** Attention groups (default 4; fewer when there are fewer rows). */
  groups?: number;
  /**
   * Query bands per attention group at most (see forwardPacked). Default: 3 on the CPU backends,
   * where the masked blocks the bands skip are compute; 1 elsewhere, since each band is more
   * kernel launches: on WebGPU (lavapipe) two bands made a soft batch's value and gradient 15 %
   * slower, not faster.
   */
  attentionBands?: number;
}

/**
 * Rows that begin with the same tokens (the G samples of one prompt): `prefixOf[r]` names row
 * r's shared prefix (−1: none) and `prefixLengths[p]` its length. A shared prefix is packed
 * once and every row using it attends to that one copy; its tokens' results are the same for
 * every such row (causal attention sees only the prefix), so token-wise work on it runs once.
 */
export interface SharedPrefixes {
  prefixOf: readonly number[];
  prefixLengths: readonly number[];
}

/**
 * Tokens to pack first: `leading(r, i)` true puts row r's own token i (never a shared prefix
 * token) at the front, in row order, so that a loss can take their logits as one slice. The
 * other tokens follow in their usual order; the packed order changes nothing else.
 */
export type LeadingTokens = (row: number, i: number) => boolean;

/**
 * The layout of rows of these lengths packed in the order given (each shared prefix just
 * before the first row that uses it; `leading` tokens, if given, before everything). Returns it
 * with `tokenIndex(r, i)`, the packed position of row r's token i, the packed length (the
 * token count rounded up: positions past the rows are fill, belonging to no row) and the number
 * of leading tokens (packed at positions 0 to leadingTokens − 1).
 */
export function packLayout(
  lengths: readonly number[], place: { dtype: DType; backend: Backend }, options: PackLayoutOptions = {}, shared?: SharedPrefixes,
  leading?: LeadingTokens,
): { layout: PackedLayout; tokenIndex: (row: number, i: number) => number; tokens: number; leadingTokens: number } {
  const tokenBucket = options.tokenBucket ?? 128;
  const widthBucket = options.widthBucket ?? 16;
  const wanted = options.groups ?? 4;
  const bands = options.attentionBands ?? (place.backend.name === 'wasm' || place.backend.name === 'cpu' ? 3 : 1);
  for (const [name, v] of [['tokenBucket', tokenBucket], ['widthBucket', widthBucket], ['groups', wanted], ['attentionBands', bands]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`packLayout: ${name} must be a positive integer, got ${v}`);
  }
  if (lengths.length === 0) throw new Error('packLayout: no rows');
  lengths.forEach((n, r) => {
    if (!Number.isInteger(n) || n < 1) throw new Error(`packLayout: row ${r} has length ${n}; rows need at least one token`);
  });
  const R = lengths.length;
  const prefixOf = shared?.prefixOf ?? lengths.map(() => -1);
  const prefixLengths = shared?.prefixLengths ?? [];
  if (prefixOf.length !== R) throw new Error(`packLayout: prefixOf has ${prefixOf.length} entries for ${R} rows`);
  const shareLen = (r: number) => {
    const q = prefixOf[r]!;
    if (q < 0) return 0;
    const n = prefixLengths[q];
    if (n === undefined || !Number.isInteger(n) || n < 0) throw new Error(`packLayout: row ${r} uses prefix ${q}, which has no valid length`);
    if (n >= lengths[r]!) throw new Error(`packLayout: row ${r} (${lengths[r]} tokens) must be longer than its shared prefix ${q} (${n} tokens)`);
    return n;
  };
  // Packed order: each prefix once (before its first row), then every row's own tokens.
  const prefixStart = new Map<number, number>();
  const ownStart: number[] = [];
  const ownFrom: number[] = [];
  let total = 0;
  for (let r = 0; r < R; r++) {
    const q = prefixOf[r]!;
    const n = shareLen(r);
    if (q >= 0 && !prefixStart.has(q)) {
      prefixStart.set(q, total);
      total += n;
    }
    ownFrom.push(n);
    ownStart.push(total);
    total += lengths[r]! - n;
  }
  const naturalIndex = (r: number, i: number) => (i < ownFrom[r]! ? prefixStart.get(prefixOf[r]!)! + i : ownStart[r]! + i - ownFrom[r]!);
  const tokens = Math.ceil(total / tokenBucket) * tokenBucket;
  // The leading tokens first, then the rest (fill last): natural index → packed index.
  let leadingTokens = 0;
  let tokenIndex = naturalIndex;
  if (leading) {
    const isLeading = new Uint8Array(tokens);
    for (let r = 0; r < R; r++) {
      for (let i = ownFrom[r]!; i < lengths[r]!; i++) {
        if (leading(r, i)) {
          isLeading[naturalIndex(r, i)] = 1;
          leadingTokens++;
        }
      }
    }
    const packedOf = new Int32Array(tokens);
    let front = 0;
    let back = leadingTokens;
    for (let t = 0; t < tokens; t++) packedOf[t] = isLeading[t] ? front++ : back++;
    tokenIndex = (r, i) => packedOf[naturalIndex(r, i)]!;
  }
  const positions = new Int32Array(tokens);
  for (let r = 0; r < R; r++) for (let i = 0; i < lengths[r]!; i++) positions[tokenIndex(r, i)] = i;
  const order = lengths.map((_, r) => r).sort((a, b) => lengths[b]! - lengths[a]! || a - b);
  const perGroup = Math.ceil(R / Math.min(wanted, R));
  const toPacked = new Int32Array(tokens);
  const homed = new Uint8Array(tokens);
  const groups: PackedGroup[] = [];
  const f = (a: Float64Array, shape: number[]) => tensor(place.dtype === 'float64' ? a : Float32Array.from(a), { shape, dtype: place.dtype, backend: place.backend });
  let slotBase = 0;
  for (let g0 = 0; g0 < R; g0 += perGroup) {
    const rows = order.slice(g0, g0 + perGroup);
    const W = Math.ceil(lengths[rows[0]!]! / widthBucket) * widthBucket;
    const toPadded = new Int32Array(perGroup * W);
    const slotValid = new Float64Array(perGroup * W);
    rows.forEach((r, j) => {
      for (let i = 0; i < lengths[r]!; i++) {
        const t = tokenIndex(r, i);
        toPadded[j * W + i] = t;
        slotValid[j * W + i] = 1;
        // A shared token's result is read from the first row that holds it (all are equal).
        if (!homed[t]) {
          toPacked[t] = slotBase + j * W + i;
          homed[t] = 1;
        }
      }
    });
    groups.push({ toPadded: tensor(toPadded, { dtype: 'int32', backend: place.backend }), slotValid: f(slotValid, [perGroup, W]) });
    slotBase += perGroup * W;
  }
  return {
    layout: { positions: tensor(positions, { dtype: 'int32', backend: place.backend }), groups, toPacked: tensor(toPacked, { dtype: 'int32', backend: place.backend }), bands },
    tokenIndex,
    tokens,
    leadingTokens,
  };
}

/** Logits [T, vocab] of packed input embeddings [T, hidden]. */
export function forwardPacked(config: TransformerConfig, params: ModelParams, embeds: Tensor, layout: PackedLayout): Tensor {
  const [T, d] = embeds.shape as [number, number];
  if (embeds.rank !== 2 || d !== config.hidden_size) throw new Error(`forwardPacked: embeds must be [tokens, ${config.hidden_size}], got ${fmtShape(embeds.shape)}`);
  if (layout.groups.length === 0) throw new Error('forwardPacked: the layout has no attention groups');
  const dtype = params.embed.dtype;
  const backend = params.embed.backend;
  const H = config.num_attention_heads;
  const KV = config.num_key_value_heads;
  const G = H / KV;
  const hd = config.head_dim;
  return scope(() => {
    const maxW = Math.max(...layout.groups.map((g) => g.slotValid.shape[1]!));
    const tables = ropeTables(config, maxW, dtype, backend);
    const cos = reshape(gather(tables.cos, layout.positions, 0), [T, 1, hd]);
    const sin = reshape(gather(tables.sin, layout.positions, 0), [T, 1, hd]);
    const rotate = rotateHalfMatrix(hd, dtype, backend);
    const scale = 1 / Math.sqrt(hd);
    const blocks = layout.groups.map((g) => {
      const [R, W] = g.slotValid.shape as [number, number];
      // Query bands: band [q0, q1) attends to keys [0, q1) only (causality), so the masked
      // blocks above the diagonal are never computed: three bands of a wide group cost 2/3
      // of the full W×W scores, two bands 3/4. Scores that are computed are the same numbers.
      const bandCount = Math.max(1, Math.min(layout.bands, Math.floor(W / 48)));
      const edge = Math.ceil(W / bandCount / 8) * 8;
      const bands: { q0: number; q1: number; bias: Tensor }[] = [];
      for (let q0 = 0; q0 < W; q0 += edge) {
        const q1 = Math.min(W, q0 + edge);
        const causal = new Uint8Array((q1 - q0) * q1);
        for (let i = q0; i < q1; i++) for (let j = 0; j <= i; j++) causal[(i - q0) * q1 + j] = 1;
        const ok = logicalAnd(
          tensor(causal, { shape: [1, 1, 1, q1 - q0, q1], dtype: 'bool', backend }),
          greater(reshape(slice(g.slotValid, [0, 0], [R, q1]), [R, 1, 1, 1, q1]), 0.5),
        );
        bands.push({ q0, q1, bias: where(ok, zeros([], { dtype, backend }), -1e9) });
      }
      return { R, W, toPadded: g.toPadded, bands };
    });
    /** Attention of one group's rows: [R·W, heads·hd] in padded-slot order. */
    const attend = (q: Tensor, k: Tensor, v: Tensor, b: (typeof blocks)[number]) => {
      const { R, W } = b;
      const rows = (x: Tensor, heads: number) => reshape(gather(x, b.toPadded, 0), [R, W, heads, hd]);
      const q5 = reshape(transpose(rows(q, H), [0, 2, 1, 3]), [R, KV, G, W, hd]);
      // Keys as [R, KV, hd, W]: q·kᵀ then reads them in place (no transposed packing).
      const kt = transpose(rows(k, KV), [0, 2, 3, 1]);
      const vr = transpose(rows(v, KV), [0, 2, 1, 3]);
      const outs = b.bands.map(({ q0, q1, bias }) => {
        const n = q1 - q0;
        const qb = reshape(b.bands.length === 1 ? q5 : slice(q5, [0, 0, 0, q0, 0], [R, KV, G, n, hd]), [R, KV, G * n, hd]);
        const kb = q1 === W ? kt : slice(kt, [0, 0, 0, 0], [R, KV, hd, q1]);
        const vb = q1 === W ? vr : slice(vr, [0, 0, 0, 0], [R, KV, q1, hd]);
        const raw = reshape(matmul(qb, kb), [R, KV, G, n, q1]);
        const probs = reshape(softmax(add(mul(raw, scale), bias), -1), [R, KV, G * n, q1]);
        return reshape(matmul(probs, vb), [R, H, n, hd]);
      });
      const ctx = outs.length === 1 ? outs[0]! : concat(outs, 2);
      return reshape(transpose(ctx, [0, 2, 1, 3]), [R * W, H * hd]);
    };
    let h = embeds;
    for (const L of params.layers) {
      const x = rmsNorm(h, L.inputNorm, config.rms_norm_eps);
      const q = reshape(applyRope(reshape(linear(x, L.q, L.qBias), [T, H, hd]), cos, sin, rotate), [T, H * hd]);
      const k = reshape(applyRope(reshape(linear(x, L.k, L.kBias), [T, KV, hd]), cos, sin, rotate), [T, KV * hd]);
      const v = linear(x, L.v, L.vBias);
      const parts = blocks.map((b) => attend(q, k, v, b));
      const ctx = parts.length === 1 ? parts[0]! : concat(parts, 0);
      h = add(h, linear(gather(ctx, layout.toPacked, 0), L.o));
      const y = rmsNorm(h, L.postNorm, config.rms_norm_eps);
      h = add(h, linear(mul(silu(linear(y, L.gate)), linear(y, L.up)), L.down));
    }
    return matmul(rmsNorm(h, params.norm, config.rms_norm_eps), outputMatrix(params), { transposeB: true });
  });
}
