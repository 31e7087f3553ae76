/**
 * Forward/training throughput of a ~10M-parameter Llama on one backend (CPU float32, or
 * WebGPU), beside an honest, cheap peer: the same forward's linear-layer matmuls (same
 * shapes, distinct weights per layer, transposed weights as in the model) run with tfjs
 * `tf.matMul` on the matching tfjs backend. The peer does *only* those matmuls — no
 * attention, norms, RoPE, SwiGLU, softmax or embedding — so "ours ÷ peer" above 1 does not
 * by itself mean that an equivalent tfjs model would be faster; it says how far our whole
 * forward is from tfjs's matmul floor. We also time our own matmuls-only run so the
 * non-matmul overhead of our forward is visible.
 */
import * as T from '@softgrad/tensor';
import {
  disposeCache, forward, initParams, parameterCount, parseConfig, type KVCache, type ModelParams, type TransformerConfig,
} from '@softgrad/transformer';
import type * as TfCore from '@tensorflow/tfjs-core';
import { fmt, timeTasks, type TimingOptions } from './bench-util.js';

export type BenchScale = 'full' | 'small';

export interface ModelShape {
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
}

export interface ScaleSettings {
  model: ModelShape;
  /** [batch, sequence] of each prefill case. */
  prefill: readonly (readonly [number, number])[];
  /** Context length already in the KV cache before the timed one-token step. */
  decodeContext: number;
  decodeBatches: readonly number[];
  /** [batch, sequence] of the training step (CPU only). */
  train: readonly [number, number];
  /** Timing budgets by the cost of one call: > 8 s, > 0.4 s, less. */
  verySlow: TimingOptions;
  slow: TimingOptions;
  fast: TimingOptions;
}

export const SCALES: Record<BenchScale, ScaleSettings> = {
  full: {
    model: { vocab: 8192, hidden: 256, layers: 8, heads: 8, kvHeads: 4, intermediate: 768 },
    prefill: [[1, 128], [8, 128]],
    decodeContext: 128,
    decodeBatches: [1, 8],
    train: [4, 64],
    verySlow: { timeMs: 0, iterations: 1 },
    slow: { timeMs: 0, iterations: 2 },
    fast: { timeMs: 1500, iterations: 5, warmup: 2 },
  },
  // For software WebGPU (lavapipe) and quick checks: a ~1.3M-parameter model, short sequences.
  small: {
    model: { vocab: 2048, hidden: 128, layers: 4, heads: 4, kvHeads: 2, intermediate: 384 },
    prefill: [[1, 32], [4, 32]],
    decodeContext: 32,
    decodeBatches: [1, 4],
    train: [2, 32],
    verySlow: { timeMs: 0, iterations: 1 },
    slow: { timeMs: 0, iterations: 3 },
    fast: { timeMs: 1000, iterations: 5, warmup: 2 },
  },
};

export function benchConfig(m: ModelShape): TransformerConfig {
  return parseConfig(
    {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      vocab_size: m.vocab,
      hidden_size: m.hidden,
      intermediate_size: m.intermediate,
      num_hidden_layers: m.layers,
      num_attention_heads: m.heads,
      num_key_value_heads: m.kvHeads,
      head_dim: m.hidden / m.heads,
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
      max_position_embeddings: 2048,
      tie_word_embeddings: false,
      attention_bias: false,
      torch_dtype: 'float32',
    },
    'transformer benchmark config',
  );
}

/** Parameter count from the config alone (cross-checked against the initialised tree). */
export function countParameters(c: TransformerConfig): number {
  const d = c.hidden_size;
  const q = c.num_attention_heads * c.head_dim;
  const kv = c.num_key_value_heads * c.head_dim;
  const perLayer = 2 * d + q * d + 2 * kv * d + d * q + 3 * c.intermediate_size * d;
  return c.vocab_size * d * (c.tie_word_embeddings ? 1 : 2) + d + c.num_hidden_layers * perLayer;
}

/** [out, in] of every linear layer applied in one forward pass, in order (the LM head last). */
export function linearShapes(c: TransformerConfig): [number, number][] {
  const d = c.hidden_size;
  const q = c.num_attention_heads * c.head_dim;
  const kv = c.num_key_value_heads * c.head_dim;
  const I = c.intermediate_size;
  const out: [number, number][] = [];
  for (let l = 0; l < c.num_hidden_layers; l++) out.push([q, d], [kv, d], [kv, d], [d, q], [I, d], [I, d], [d, I]);
  out.push([c.vocab_size, d]);
  return out;
}

/** 2·M·out·in summed over the linear layers: the forward's matmul FLOPs (attention excluded). */
export function linearFlops(c: TransformerConfig, rows: number): number {
  return linearShapes(c).reduce((a, [o, i]) => a + 2 * rows * o * i, 0);
}

function lcgFloats(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * scale;
  }
  return out;
}

function lcgIds(n: number, vocab: number, seed: number): Int32Array {
  let s = seed >>> 0;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s % vocab;
  }
  return out;
}

/**
 * The linear layers of one forward (or forward+backward) as bare matmuls, on either
 * engine: `matmul(a, b, transposeA, transposeB)` returns a handle, `read` forces completion
 * of the last one, `dispose` frees. Weights are distinct per layer, as in the model.
 */
interface MatmulEngine<H> {
  make(data: Float32Array, shape: [number, number]): H;
  matmul(a: H, b: H, transposeA: boolean, transposeB: boolean): H;
  read(h: H): Promise<unknown>;
  dispose(h: H): void;
}

export interface LinearWorkload {
  run(): Promise<void>;
  dispose(): void;
}

/**
 * With `backward`, also each linear's two backward matmuls: dX = dY·W ([M,out]·[out,in]) and
 * dW = dYᵀ·X ([out,M]·[M,in]) — what a training step's linear layers cost.
 */
function linearWorkload<H>(e: MatmulEngine<H>, c: TransformerConfig, rows: number, backward: boolean): LinearWorkload {
  const shapes = linearShapes(c);
  const weights = shapes.map(([o, i], k) => e.make(lcgFloats(o * i, 100 + k, 0.04), [o, i]));
  const inputs = new Map<number, H>();
  const grads = new Map<number, H>();
  for (const [o, i] of shapes) {
    if (!inputs.has(i)) inputs.set(i, e.make(lcgFloats(rows * i, 7 + i), [rows, i]));
    if (backward && !grads.has(o)) grads.set(o, e.make(lcgFloats(rows * o, 9 + o, 0.01), [rows, o]));
  }
  return {
    async run() {
      const outs: H[] = [];
      shapes.forEach(([o, i], k) => {
        outs.push(e.matmul(inputs.get(i)!, weights[k]!, false, true));
        if (backward) {
          outs.push(e.matmul(grads.get(o)!, weights[k]!, false, false));
          outs.push(e.matmul(grads.get(o)!, inputs.get(i)!, true, false));
        }
      });
      await e.read(outs[outs.length - 1]!);
      for (const h of outs) e.dispose(h);
    },
    dispose() {
      for (const h of [...weights, ...inputs.values(), ...grads.values()]) e.dispose(h);
    },
  };
}

export function oursLinearWorkload(c: TransformerConfig, backend: T.Backend, rows: number, backward: boolean): LinearWorkload {
  return linearWorkload<T.Tensor>(
    {
      make: (data, shape) => T.tensor(data, { shape, dtype: 'float32', backend }),
      matmul: (a, b, ta, tb) => T.matmul(a, b, { transposeA: ta, transposeB: tb }),
      read: (h) => h.data(),
      dispose: (h) => h.dispose(),
    },
    c, rows, backward,
  );
}

export function tfjsLinearWorkload(tf: typeof TfCore, c: TransformerConfig, rows: number, backward: boolean): LinearWorkload {
  return linearWorkload<TfCore.Tensor2D>(
    {
      make: (data, shape) => tf.tensor2d(data, shape),
      matmul: (a, b, ta, tb) => tf.matMul(a, b, ta, tb),
      read: (h) => h.data(),
      dispose: (h) => h.dispose(),
    },
    c, rows, backward,
  );
}

function lastPosition(logits: T.Tensor): T.Tensor {
  const [B, S, V] = logits.shape as [number, number, number];
  return T.reshape(T.slice(logits, [0, S - 1, 0], [B, 1, V]), [B, V]);
}

export interface Row {
  case: string;
  tokens: number;
  oursMs: number;
  oursMatmulMs: number;
  peerMs: number;
  /** Timed samples of ours, ours matmuls-only and the peer (after one warm-up call each). */
  samples: [number, number, number];
}

export interface TransformerBenchResult {
  config: TransformerConfig;
  parameters: number;
  rows: Row[];
}

export interface TransformerBenchOptions {
  scale: BenchScale;
  backend: T.Backend;
  tf: typeof TfCore;
  /** Run the training-step case (the CPU run does; WebGPU runs prefill and decode only). */
  train: boolean;
  /** Untimed calls before timing each task (default 1; use 2 where the first call compiles shaders). */
  warmupCalls?: number;
  log?: (line: string) => void;
}

export async function runTransformerBench(o: TransformerBenchOptions): Promise<TransformerBenchResult> {
  const s = SCALES[o.scale];
  const config = benchConfig(s.model);
  const { backend, tf } = o;
  const log = o.log ?? (() => {});
  const params: ModelParams = initParams(config, 0, { backend, dtype: 'float32' });
  const parameters = parameterCount(params);
  if (parameters !== countParameters(config)) throw new Error(`transformer bench: parameter count ${parameters} ≠ formula ${countParameters(config)}`);
  const rows: Row[] = [];
  const idsTensor = (B: number, S: number, seed: number) =>
    T.tensor(lcgIds(B * S, config.vocab_size, seed), { shape: [B, S], dtype: 'int32', backend });

  /**
   * Times ours (full), ours (matmuls only) and the peer (matmuls only), one after another.
   * Each gets untimed warm-up call(s); the last one's duration sets its sample budget, so that the
   * multi-second cases (the tfjs peer at 8×128 takes ~25 s a call here) stay affordable.
   */
  const measure = async (name: string, tokens: number, rowsM: number, backward: boolean, ours: () => Promise<void>) => {
    const oursMm = oursLinearWorkload(config, backend, rowsM, backward);
    const peer = tfjsLinearWorkload(tf, config, rowsM, backward);
    const time = async (fn: () => Promise<void>) => {
      // The budget comes from the last warm-up call (WebGPU's first call compiles pipelines).
      let once = 0;
      for (let w = 0; w < (o.warmupCalls ?? 1); w++) {
        const t0 = performance.now();
        await fn();
        once = performance.now() - t0;
      }
      const timing = once > 8000 ? s.verySlow : once > 400 ? s.slow : s.fast;
      const r = await timeTasks([['task', fn]], { ...timing, warmup: once > 400 ? 0 : timing.warmup });
      return r.get('task')!;
    };
    const a = await time(ours);
    const b = await time(() => oursMm.run());
    const c = await time(() => peer.run());
    oursMm.dispose();
    peer.dispose();
    const row: Row = { case: name, tokens, oursMs: a.medianMs, oursMatmulMs: b.medianMs, peerMs: c.medianMs, samples: [a.samples, b.samples, c.samples] };
    rows.push(row);
    log(`${name}: ours ${fmt(row.oursMs)} ms (${fmt((tokens / row.oursMs) * 1000)} tok/s), ours matmuls-only ${fmt(row.oursMatmulMs)} ms, tfjs matmuls-only ${fmt(row.peerMs)} ms; samples ${row.samples.join('/')}`);
  };

  // (a) prefill: logits for every position are computed; the last position's are read back.
  for (const [B, S] of s.prefill) {
    const ids = idsTensor(B, S, 11 * B + S);
    await measure(`prefill ${B}×${S}`, B * S, B * S, false, async () => {
      const z = T.scope(() => lastPosition(forward(config, params, { ids }).logits));
      await z.data();
      z.dispose();
    });
    ids.dispose();
  }

  // (b) decode: one token per row on top of a KV cache holding `decodeContext` positions.
  for (const B of s.decodeBatches) {
    const prompt = idsTensor(B, s.decodeContext, 5 + B);
    const pre = forward(config, params, { ids: prompt, useCache: true });
    pre.logits.dispose();
    pre.hidden.dispose();
    prompt.dispose();
    const cache: KVCache = pre.cache!;
    const next = idsTensor(B, 1, 3 + B);
    await measure(`decode ${B}×1 @ctx ${s.decodeContext}`, B, B, false, async () => {
      // The step's new cache (context + 1) is built and dropped with the scope, as a sampler
      // that keeps it would pay the same.
      const z = T.scope(() => lastPosition(forward(config, params, { ids: next, cache }).logits));
      await z.data();
      z.dispose();
    });
    next.dispose();
    disposeCache(cache);
  }

  // (c) training step: value and gradient of the next-token cross-entropy (no optimiser).
  if (o.train) {
    const [B, S] = s.train;
    const all = lcgIds(B * (S + 1), config.vocab_size, 77);
    const inData = new Int32Array(B * S);
    const labData = new Int32Array(B * S);
    for (let b = 0; b < B; b++) {
      inData.set(all.subarray(b * (S + 1), b * (S + 1) + S), b * S);
      labData.set(all.subarray(b * (S + 1) + 1, (b + 1) * (S + 1)), b * S);
    }
    const inputs = T.tensor(inData, { shape: [B, S], dtype: 'int32', backend });
    const labels = T.tensor(labData, { shape: [B, S], dtype: 'int32', backend });
    const vg = T.valueAndGrad((p: ModelParams) => T.crossEntropy(forward(config, p, { ids: inputs }).logits, labels));
    await measure(`train step ${B}×${S}`, B * S, B * S, true, async () => {
      const [loss, grads] = vg(params) as [T.Tensor, ModelParams];
      const leaves = T.treeLeaves(grads);
      await leaves[leaves.length - 1]!.data();
      await loss.item();
      loss.dispose();
      T.treeDispose(grads);
    });
    inputs.dispose();
    labels.dispose();
  }
  T.treeDispose(params);
  return { config, parameters, rows };
}
