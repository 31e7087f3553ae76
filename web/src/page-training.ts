/**
 * RL training in the page: the same step as `softgrad train` (docs/method.md: B prompts × G samples
 * with the chosen CoT kind, rewards, RLOO advantages, the surrogate's gradient, one AdamW
 * update on a cosine schedule), without run directories or checkpoints, reporting each step,
 * each validation and each CoT step of the first sample to the page as they happen.
 */
import * as T from '@softgrad/tensor';
import type { ModelParams, Tokenizer, TransformerConfig } from '@softgrad/transformer';
import {
  REWARD_CORRECT, adamwInit, adamwStep, builtinProblems, cosineSchedule, evaluateMode, formatPrompt, reward, rlooAdvantages,
  rlooValueAndGrad, disposeRolloutBatch, rollout, trainingCotSettings, type AdamWState, type CotKind, type CotStepTrace, type EvalModeName, type ProblemItem,
} from '@softgrad/softtokens/browser';

export interface PageTrainingSettings {
  kind: CotKind;
  /** CoT temperature τ. */
  tau: number;
  /** Noise scale γ (soft/fuzzy; σ = γ·r/√d). */
  noiseScale: number;
  lr: number;
  warmup: number;
  steps: number;
  /** B: prompts per step. */
  batchPrompts: number;
  /** G: samples per prompt (RLOO needs 2 or more). */
  samples: number;
  maxCot: number;
  maxAnswer: number;
  /** Validate every this many steps (and before the first and after the last). */
  evalEvery: number;
  /** Held-out validation problems (0: no validation). */
  valCount: number;
  seed: number;
}

export interface StepPoint {
  step: number;
  reward: number;
  accuracy: number;
  /** Mean next-token entropy (nats) over the CoT positions of the batch. */
  entropy: number;
  loss: number;
  gradNorm: number;
  lr: number;
  cotLength: number;
  stopRate: number;
  seconds: number;
  /** The step's first sample, the one whose CoT was traced. */
  sample: { cotText: string; answerText: string; reward: number; stoppedEarly: boolean };
}

export interface PageTrainingEvents {
  /** A new RL step starts; `question` is its first prompt, whose first sample is traced. */
  onStepStart(step: number, question: string): void;
  /** One CoT step of the step's rollout (tokens of every row, mixture weights of row 0). */
  onCotStep(step: number, trace: CotStepTrace): void;
  onStep(point: StepPoint): void;
  onValidation(step: number, accuracy: number): void;
}

export interface PageModel {
  config: TransformerConfig;
  params: ModelParams;
  tokenizer: Tokenizer;
}

export interface PageTrainingResult {
  stepsDone: number;
  stopped: boolean;
}

/** Validation problems are drawn like `softgrad train --val builtin:val`: training-distribution problems from another seed. */
const VALIDATION_SEED_OFFSET = 1 + 7919;

/** An epoch-wise shuffle of the training set fixed by the seed. */
function promptOrder(seed: number, n: number): (flat: number) => number {
  const perms = new Map<number, number[]>();
  return (flat) => {
    const epoch = Math.floor(flat / n);
    let p = perms.get(epoch);
    if (!p) {
      const rand = T.mulberry32((seed * 1_000_003 + epoch) >>> 0);
      p = Array.from({ length: n }, (_, i) => i);
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [p[i], p[j]] = [p[j]!, p[i]!];
      }
      perms.clear();
      perms.set(epoch, p);
    }
    return p[flat % n]!;
  };
}

export function checkSettings(s: PageTrainingSettings): void {
  const positive = (name: keyof PageTrainingSettings) => {
    const v = s[name];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer, got ${String(v)}`);
  };
  (['steps', 'batchPrompts', 'maxCot', 'maxAnswer'] as const).forEach(positive);
  if (!Number.isInteger(s.samples) || s.samples < 2) throw new Error(`G (samples per prompt) must be at least 2 for RLOO, got ${s.samples}`);
  if (!(s.tau > 0)) throw new Error(`τ must be > 0, got ${s.tau}`);
  if (!(s.noiseScale >= 0)) throw new Error(`γ must be ≥ 0, got ${s.noiseScale}`);
  if (!(s.lr >= 0)) throw new Error(`lr must be ≥ 0, got ${s.lr}`);
  if (!Number.isInteger(s.warmup) || s.warmup < 0) throw new Error(`warm-up must be a non-negative integer, got ${s.warmup}`);
  if (!Number.isInteger(s.evalEvery) || s.evalEvery < 0) throw new Error(`validate-every must be a non-negative integer, got ${s.evalEvery}`);
  if (!Number.isInteger(s.valCount) || s.valCount < 0) throw new Error(`validation count must be a non-negative integer, got ${s.valCount}`);
}

/**
 * Trains from `model.params`, which stay as they were (each update makes new tensors); every
 * tensor this creates is freed before it returns, so a page can run it again. Between steps it
 * asks `shouldStop`; a stop takes effect after the step under way.
 */
export async function trainInPage(
  model: PageModel,
  s: PageTrainingSettings,
  events: PageTrainingEvents,
  shouldStop: () => boolean,
): Promise<PageTrainingResult> {
  checkSettings(s);
  const { config, tokenizer } = model;
  const cot = trainingCotSettings(s.kind, s.tau, s.noiseScale, 'norm');
  const valMode = `${s.kind}-greedy` as EvalModeName;
  const train = builtinProblems('train', 1000, s.seed);
  const trainQuestions = new Set(train.map((p) => p.question));
  const validation: ProblemItem[] = s.valCount > 0
    ? builtinProblems('train', s.valCount + 50, s.seed + VALIDATION_SEED_OFFSET).filter((p) => !trainQuestions.has(p.question)).slice(0, s.valCount)
    : [];
  const order = promptOrder(s.seed, train.length);

  let params = model.params;
  let ownsParams = false;
  let opt: AdamWState<ModelParams> = adamwInit(params);
  const validate = async (step: number): Promise<void> => {
    if (validation.length === 0) return;
    const res = await evaluateMode({ config, params, tokenizer, problems: validation, mode: valMode, samples: 1, maxCot: s.maxCot, maxAnswer: s.maxAnswer, seed: s.seed });
    events.onValidation(step, res.passAt1);
  };

  let step = 0;
  try {
    await validate(0);
    for (; step < s.steps && !shouldStop(); step++) {
      const t0 = performance.now();
      const problems = Array.from({ length: s.batchPrompts }, (_, j) => train[order(step * s.batchPrompts + j)]!);
      events.onStepStart(step, problems[0]!.question);
      const batch = await rollout({
        config, params, tokenizer, prompts: problems.map((p) => formatPrompt(p.question)), samples: s.samples,
        cot, maxCot: s.maxCot, maxAnswer: s.maxAnswer, answerSample: true, answerTau: 1,
        key: T.foldIn(T.key(s.seed), step),
        cotTrace: { row: 0, topK: 5, onCotStep: (trace) => events.onCotStep(step, trace) },
      });
      const rewards = problems.map((p, b) => batch.rollouts.slice(b * s.samples, (b + 1) * s.samples).map((r) => reward(r.answerText, p.reference)));
      let loss: T.Tensor;
      let grads: ModelParams;
      try {
        [loss, grads] = rlooValueAndGrad(config, params, batch, rlooAdvantages(rewards));
      } finally {
        disposeRolloutBatch(batch);
      }
      const lr = cosineSchedule(step, s.lr, s.warmup, s.steps);
      const res = await adamwStep(params, grads, opt, { lr: s.lr, weightDecay: 0 }, lr);
      const lossValue = await loss.item();
      loss.dispose();
      T.treeDispose(grads);
      if (ownsParams) T.treeDispose(params);
      T.treeDispose(opt);
      params = res.params;
      opt = res.state;
      ownsParams = true;
      const flat = rewards.flat();
      const entropies = batch.rollouts.flatMap((r) => r.entropies);
      events.onStep({
        step,
        reward: flat.reduce((a, b) => a + b, 0) / flat.length,
        accuracy: flat.filter((r) => r === REWARD_CORRECT).length / flat.length,
        entropy: entropies.reduce((a, b) => a + b, 0) / Math.max(1, entropies.length),
        loss: lossValue,
        gradNorm: res.gradNorm,
        lr,
        cotLength: batch.rollouts.reduce((a, r) => a + r.cotTokens.length, 0) / batch.rollouts.length,
        stopRate: batch.rollouts.filter((r) => r.stoppedEarly).length / batch.rollouts.length,
        seconds: (performance.now() - t0) / 1000,
        sample: { cotText: batch.rollouts[0]!.cotText, answerText: batch.rollouts[0]!.answerText, reward: rewards[0]![0]!, stoppedEarly: batch.rollouts[0]!.stoppedEarly },
      });
      const done = step + 1;
      if (done === s.steps || (s.evalEvery > 0 && done % s.evalEvery === 0)) await validate(done);
      // On the CPU backend every await resolves as a microtask, so without this the tab would
      // never repaint the plots or see the Stop button until the run ends.
      await new Promise<void>((resolve) => setTimeout(resolve, 0));
    }
    return { stepsDone: step, stopped: step < s.steps };
  } finally {
    T.treeDispose(opt);
    if (ownsParams) T.treeDispose(params);
  }
}
