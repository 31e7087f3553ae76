/**
 * Supervised training of a base model on worked solutions in the prompt/answer format of
 * docs/method.md (prompt, then `steps The final answer is: \boxed{n}.` and EOS), with the loss on
 * the completion only. This is how the built-in base model is made.
 */
import * as T from '@softgrad/tensor';
import { forward, type ModelParams, type Tokenizer, type TransformerConfig } from '@softgrad/transformer';
import { adamwInit, adamwStep, cosineSchedule, type AdamWConfig, type AdamWState } from './optim.js';

export interface SupervisedExample {
  prompt: string;
  completion: string;
}

export interface EncodedExample {
  ids: number[];
  /** Index of the first completion token. */
  start: number;
}

export function encodeExample(tokenizer: Tokenizer, ex: SupervisedExample): EncodedExample {
  const p = tokenizer.encode(ex.prompt, { addSpecialTokens: true });
  const c = tokenizer.encode(ex.completion);
  if (tokenizer.eosId !== undefined) c.push(tokenizer.eosId);
  return { ids: [...p, ...c], start: p.length };
}

/**
 * Per-sequence sums of log p(token | prefix) over the completion tokens of a left-padded
 * batch, [R], plus the number of completion tokens.
 */
export function completionLogProbs(
  config: TransformerConfig,
  params: ModelParams,
  batch: readonly EncodedExample[],
  padId = 0,
): { logProbs: T.Tensor; tokens: number } {
  const N = Math.max(...batch.map((e) => e.ids.length));
  const R = batch.length;
  const ids = new Int32Array(R * N).fill(padId);
  const targets = new Int32Array(R * N);
  const weights = new Float64Array(R * N);
  const mask: boolean[][] = [];
  let tokens = 0;
  batch.forEach((e, r) => {
    if (e.start < 1 || e.start > e.ids.length) throw new Error(`completionLogProbs: example ${r} has completion start ${e.start} outside [1, ${e.ids.length}]`);
    const off = N - e.ids.length;
    ids.set(e.ids, r * N + off);
    mask.push(Array.from({ length: N }, (_, i) => i >= off));
    for (let i = e.start; i < e.ids.length; i++) {
      targets[r * N + off + i - 1] = e.ids[i]!;
      weights[r * N + off + i - 1] = 1;
      tokens++;
    }
  });
  const backend = params.embed.backend;
  const dtype = params.embed.dtype;
  const logProbs = T.scope(() => {
    const { logits } = forward(config, params, { ids: T.tensor(ids, { shape: [R, N], dtype: 'int32', backend }), mask });
    const lp = T.takeAlongLastAxis(T.logSoftmax(logits, -1), T.tensor(targets, { shape: [R, N], dtype: 'int32', backend }));
    const w = T.tensor(dtype === 'float64' ? weights : Float32Array.from(weights), { shape: [R, N], dtype, backend });
    return T.sum(T.mul(lp, w), -1);
  });
  return { logProbs, tokens };
}

/** Mean next-token cross-entropy over the completion tokens of a batch. */
export function completionLoss(config: TransformerConfig, params: ModelParams, batch: readonly EncodedExample[], padId = 0): T.Tensor {
  return T.scope(() => {
    const { logProbs, tokens } = completionLogProbs(config, params, batch, padId);
    return T.mul(T.sum(logProbs), -1 / Math.max(1, tokens));
  });
}

export interface SupervisedTrainOptions {
  steps: number;
  batchSize: number;
  lr: number;
  warmup?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  seed: number;
  onStep?: (info: { step: number; loss: number; lr: number; gradNorm: number; seconds: number }) => void;
}

/** Train on `examples` (shuffled each epoch from the seed); returns the new params (the input params are left alone). */
export async function trainSupervised(
  config: TransformerConfig,
  params: ModelParams,
  tokenizer: Tokenizer,
  examples: readonly SupervisedExample[],
  opts: SupervisedTrainOptions,
): Promise<ModelParams> {
  const encoded = examples.map((e) => encodeExample(tokenizer, e));
  const adam: AdamWConfig = { lr: opts.lr, weightDecay: opts.weightDecay ?? 0.01, maxGradNorm: opts.maxGradNorm ?? 1 };
  let state: AdamWState<ModelParams> = adamwInit(params);
  let current = params;
  let order: number[] = [];
  let rngState = opts.seed >>> 0 || 1;
  const rand = () => {
    // xorshift32: the data order only needs to be reproducible, not cryptographic.
    rngState ^= rngState << 13;
    rngState >>>= 0;
    rngState ^= rngState >>> 17;
    rngState ^= rngState << 5;
    rngState >>>= 0;
    return rngState / 2 ** 32;
  };
  const vg = T.valueAndGrad((p: ModelParams, batch: EncodedExample[]) => completionLoss(config, p, batch, tokenizer.padId ?? 0));
  const t0 = performance.now();
  for (let step = 0; step < opts.steps; step++) {
    if (order.length < opts.batchSize) {
      const perm = encoded.map((_, i) => i);
      for (let i = perm.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [perm[i], perm[j]] = [perm[j]!, perm[i]!];
      }
      order = order.concat(perm);
    }
    const batch = order.splice(0, opts.batchSize).map((i) => encoded[i]!);
    const [loss, grads] = vg(current, batch);
    const lr = cosineSchedule(step, opts.lr, opts.warmup ?? 0, opts.steps, 0.1);
    const res = await adamwStep(current, grads, state, adam, lr);
    const lossValue = await (loss as T.Tensor).item();
    (loss as T.Tensor).dispose();
    T.treeDispose(grads);
    if (current !== params) T.treeDispose(current);
    T.treeDispose(state);
    current = res.params;
    state = res.state;
    opts.onStep?.({ step, loss: lossValue, lr, gradNorm: res.gradNorm, seconds: (performance.now() - t0) / 1000 });
  }
  T.treeDispose(state);
  return current;
}
