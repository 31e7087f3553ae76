/**
 * RL training with the RLOO estimator (SPEC §1): each step draws B prompts × G samples with
 * the training CoT kind, scores them, and applies one on-policy AdamW update. Runs are
 * reproducible from the seed, write a JSONL metrics log, validate greedily every few steps,
 * keep the best checkpoint by validation accuracy, and resume exactly from their last
 * checkpoint (same data order, same random keys, same optimiser state).
 */
import { existsSync, appendFileSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, rename, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import * as T from '@softgrad/tensor';
import {
  loadModel, paramsFromHost, paramsToHost, readCheckpointDir, saveModel, writeCheckpointDir,
  type ModelParams, type Tokenizer, type TransformerConfig,
} from '@softgrad/transformer';
import type { ProblemItem } from './datasets.js';
import { evaluateMode } from './evaluate.js';
import { writeFileAtomic } from './io.js';
import { DEFAULT_NOISE_SCALE, DEFAULT_TAU, trainingCotSettings, type CotKind, type EvalModeName, type NoiseConvention } from './modes.js';
import { adamwInit, adamwStep, cosineSchedule, type AdamWState } from './optim.js';
import { formatPrompt } from './prompt.js';
import { REWARD_CORRECT, reward } from './rewards.js';
import { rlooAdvantages, rlooValueAndGrad } from './estimator.js';
import { disposeRolloutBatch, rollout, type Rollout } from './rollout.js';

export interface RlSettings {
  kind: CotKind;
  tau?: number;
  noiseScale?: number;
  noiseConvention?: NoiseConvention;
  batchPrompts: number;
  samples: number;
  maxCot: number;
  maxAnswer?: number;
  lr: number;
  warmup: number;
  steps: number;
  weightDecay?: number;
  maxGradNorm?: number;
  seed: number;
  /** Validate every this many steps (0: only at the end). */
  evalEvery: number;
  /** Greedy mode used for validation (the paper picks checkpoints by greedy accuracy). */
  valMode?: EvalModeName;
  /** Checkpoint every this many steps (and at the end). */
  checkpointEvery: number;
}

export interface StepMetrics {
  step: number;
  reward: number;
  accuracy: number;
  loss: number;
  gradNorm: number;
  lr: number;
  cotLength: number;
  entropy: number;
  stopRate: number;
  sigma: number;
  tokensPerSecond: number;
  seconds: number;
  valAccuracy?: number;
}

export interface RlRunOptions {
  config: TransformerConfig;
  /** Starting parameters (ignored when resuming). */
  params: ModelParams;
  tokenizer: Tokenizer;
  train: readonly ProblemItem[];
  validation: readonly ProblemItem[];
  settings: RlSettings;
  /** Run directory: metrics.jsonl, checkpoint/, best/, run.json. */
  dir: string;
  resume?: boolean;
  /** Reward of one rollout (default: SPEC §1's 100 / 10 / 0 on the boxed answer). */
  reward?: (rollout: Rollout, problem: ProblemItem) => number;
  /** Files copied into every saved model directory (tokenizer.json, ...), so each is loadable on its own. */
  modelFiles?: readonly string[];
  onStep?: (m: StepMetrics) => void;
  onValidation?: (step: number, accuracy: number) => void;
}

export interface RlRunResult {
  params: ModelParams;
  history: StepMetrics[];
  validation: { step: number; accuracy: number }[];
  bestStep: number;
  bestAccuracy: number;
}

interface RunState {
  step: number;
  validation: { step: number; accuracy: number }[];
  bestStep: number;
  bestAccuracy: number;
  settings: RlSettings;
}

/** Prompt indices for a step: an epoch-wise permutation of the training set fixed by the seed. */
export function promptsForStep(seed: number, step: number, batch: number, n: number): number[] {
  const out: number[] = [];
  for (let j = 0; j < batch; j++) {
    const flat = step * batch + j;
    const epoch = Math.floor(flat / n);
    out.push(permutation(seed, epoch, n)[flat % n]!);
  }
  return out;
}

const permCache = new Map<string, number[]>();
function permutation(seed: number, epoch: number, n: number): number[] {
  const k = `${seed}:${epoch}:${n}`;
  let p = permCache.get(k);
  if (!p) {
    p = Array.from({ length: n }, (_, i) => i);
    let s = (T.threefry2x32(seed >>> 0, epoch >>> 0, 0, 3)[0] | 1) >>> 0;
    for (let i = n - 1; i > 0; i--) {
      s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
      const j = s % (i + 1);
      [p[i], p[j]] = [p[j]!, p[i]!];
    }
    if (permCache.size > 8) permCache.clear();
    permCache.set(k, p);
  }
  return p;
}

function optimizerToHost(state: AdamWState<ModelParams>): Promise<[Awaited<ReturnType<typeof paramsToHost>>, Awaited<ReturnType<typeof paramsToHost>>]> {
  return Promise.all([paramsToHost(state.m), paramsToHost(state.v)]);
}

async function saveModelWithFiles(dir: string, config: TransformerConfig, params: ModelParams, files: readonly string[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  await saveModel(dir, config, params);
  for (const f of files) await copyFile(f, join(dir, basename(f)));
}

async function saveCheckpoint(dir: string, config: TransformerConfig, params: ModelParams, opt: AdamWState<ModelParams>, state: RunState, files: readonly string[]): Promise<void> {
  const final = join(dir, 'checkpoint');
  const tmp = join(dir, `.checkpoint-${process.pid}-tmp`);
  await rm(tmp, { recursive: true, force: true });
  await saveModelWithFiles(tmp, config, params, files);
  const [m, v] = await optimizerToHost(opt);
  await writeCheckpointDir(join(tmp, 'adam-m'), m);
  await writeCheckpointDir(join(tmp, 'adam-v'), v);
  writeFileAtomic(join(tmp, 'state.json'), `${JSON.stringify({ ...state, optimizerStep: opt.step }, null, 1)}\n`);
  // Swap directories so that `checkpoint/` is always a complete checkpoint.
  const old = join(dir, `.checkpoint-${process.pid}-old`);
  await rm(old, { recursive: true, force: true });
  if (existsSync(final)) await rename(final, old);
  await rename(tmp, final);
  await rm(old, { recursive: true, force: true });
}

async function loadCheckpoint(dir: string, config: TransformerConfig, backend: T.Backend, dtype: T.DType): Promise<{ params: ModelParams; opt: AdamWState<ModelParams>; state: RunState }> {
  const ck = join(dir, 'checkpoint');
  if (!existsSync(join(ck, 'state.json'))) throw new Error(`${dir}: no checkpoint to resume from (missing ${join(ck, 'state.json')})`);
  const raw = JSON.parse(readFileSync(join(ck, 'state.json'), 'utf8')) as RunState & { optimizerStep: number };
  const { params } = await loadModel(ck, { backend, dtype });
  const m = paramsFromHost(config, await readCheckpointDir(join(ck, 'adam-m')), join(ck, 'adam-m'), { backend, dtype });
  const v = paramsFromHost(config, await readCheckpointDir(join(ck, 'adam-v')), join(ck, 'adam-v'), { backend, dtype });
  return { params, opt: { step: raw.optimizerStep, m, v }, state: raw };
}

function sameSettings(a: RlSettings, b: RlSettings): string[] {
  const diffs: string[] = [];
  for (const k of Object.keys(a) as (keyof RlSettings)[]) {
    if (k === 'steps') continue;
    if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) diffs.push(`${k}: ${JSON.stringify(b[k])} → ${JSON.stringify(a[k])}`);
  }
  return diffs;
}

export async function trainRl(opts: RlRunOptions): Promise<RlRunResult> {
  const { config, tokenizer, settings: s, dir } = opts;
  if (opts.train.length === 0) throw new Error('trainRl: the training set is empty');
  if (s.samples < 2) throw new Error(`trainRl: RLOO needs at least 2 samples per prompt, got ${s.samples}`);
  await mkdir(dir, { recursive: true });
  const backend = opts.params.embed.backend;
  const tau = s.tau ?? DEFAULT_TAU[s.kind];
  const cot = trainingCotSettings(s.kind, tau, s.noiseScale ?? DEFAULT_NOISE_SCALE, s.noiseConvention ?? 'norm');
  const valMode = s.valMode ?? 'hard-greedy';
  const metricsPath = join(dir, 'metrics.jsonl');

  let params: ModelParams;
  let opt: AdamWState<ModelParams>;
  let state: RunState;
  let ownsParams = false;
  if (opts.resume && existsSync(join(dir, 'checkpoint', 'state.json'))) {
    const loaded = await loadCheckpoint(dir, config, backend, opts.params.embed.dtype);
    const diffs = sameSettings(s, loaded.state.settings);
    if (diffs.length) throw new Error(`${dir}: cannot resume with different settings (${diffs.join('; ')})`);
    params = loaded.params;
    opt = loaded.opt;
    state = { ...loaded.state, settings: s };
    ownsParams = true;
    // Drop log lines written after the checkpoint, so the log matches the resumed run.
    if (existsSync(metricsPath)) {
      const kept = readFileSync(metricsPath, 'utf8').split('\n').filter((l) => l && (JSON.parse(l) as StepMetrics).step < state.step);
      writeFileAtomic(metricsPath, kept.map((l) => `${l}\n`).join(''));
    }
  } else {
    if (opts.resume) throw new Error(`${dir}: --resume given but there is no checkpoint in ${join(dir, 'checkpoint')}`);
    params = opts.params;
    opt = adamwInit(params);
    state = { step: 0, validation: [], bestStep: -1, bestAccuracy: -1, settings: s };
    writeFileAtomic(metricsPath, '');
  }
  writeFileAtomic(join(dir, 'run.json'), `${JSON.stringify({ settings: s, cot, valMode, model: config }, null, 1)}\n`);

  const history: StepMetrics[] = [];
  const validate = async (step: number): Promise<number> => {
    const res = await evaluateMode({
      config, params, tokenizer, problems: opts.validation, mode: valMode, samples: 1,
      maxCot: s.maxCot, maxAnswer: s.maxAnswer, seed: s.seed,
    });
    state.validation.push({ step, accuracy: res.passAt1 });
    opts.onValidation?.(step, res.passAt1);
    // Step 0 is the starting model: recorded for reference, never chosen as the trained one.
    if (step > 0 && res.passAt1 > state.bestAccuracy) {
      state.bestAccuracy = res.passAt1;
      state.bestStep = step;
      const tmp = join(dir, `.best-${process.pid}-tmp`);
      await rm(tmp, { recursive: true, force: true });
      await saveModelWithFiles(tmp, config, params, opts.modelFiles ?? []);
      await rm(join(dir, 'best'), { recursive: true, force: true });
      await rename(tmp, join(dir, 'best'));
    }
    return res.passAt1;
  };
  if (state.step === 0 && opts.validation.length > 0) await validate(0);

  while (state.step < s.steps) {
    const step = state.step;
    const t0 = performance.now();
    const idx = promptsForStep(s.seed, step, s.batchPrompts, opts.train.length);
    const problems = idx.map((i) => opts.train[i]!);
    const batch = await rollout({
      config, params, tokenizer, prompts: problems.map((p) => formatPrompt(p.question)), samples: s.samples,
      cot, maxCot: s.maxCot, maxAnswer: s.maxAnswer, answerSample: true, answerTau: 1,
      key: T.foldIn(T.key(s.seed), step),
    });
    const rewardOf = opts.reward ?? ((r: Rollout, p: ProblemItem) => reward(r.answerText, p.reference));
    const rewards = problems.map((p, b) => batch.rollouts.slice(b * s.samples, (b + 1) * s.samples).map((r) => rewardOf(r, p)));
    const adv = rlooAdvantages(rewards);
    let loss: T.Tensor;
    let grads: ModelParams;
    try {
      [loss, grads] = rlooValueAndGrad(config, params, batch, adv);
    } finally {
      disposeRolloutBatch(batch);
    }
    const lr = cosineSchedule(step, s.lr, s.warmup, s.steps);
    const res = await adamwStep(params, grads, opt, { lr: s.lr, weightDecay: s.weightDecay ?? 0, maxGradNorm: s.maxGradNorm }, lr);
    const lossValue = await loss.item();
    loss.dispose();
    T.treeDispose(grads);
    if (ownsParams) T.treeDispose(params);
    T.treeDispose(opt);
    params = res.params;
    opt = res.state;
    ownsParams = true;
    state.step = step + 1;
    const flat = rewards.flat();
    const ros = batch.rollouts;
    const ents = ros.flatMap((r) => r.entropies);
    const seconds = (performance.now() - t0) / 1000;
    const m: StepMetrics = {
      step,
      reward: flat.reduce((a, b) => a + b, 0) / flat.length,
      accuracy: flat.filter((r) => r === REWARD_CORRECT).length / flat.length,
      loss: lossValue,
      gradNorm: res.gradNorm,
      lr,
      cotLength: ros.reduce((a, r) => a + r.cotTokens.length, 0) / ros.length,
      entropy: ents.reduce((a, b) => a + b, 0) / Math.max(1, ents.length),
      stopRate: ros.filter((r) => r.stoppedEarly).length / ros.length,
      sigma: batch.sigma,
      tokensPerSecond: batch.tokensProcessed / seconds,
      seconds,
    };
    const last = state.step === s.steps;
    if (opts.validation.length > 0 && ((s.evalEvery > 0 && state.step % s.evalEvery === 0) || last)) {
      m.valAccuracy = await validate(state.step);
    }
    history.push(m);
    appendFileSync(metricsPath, `${JSON.stringify(m)}\n`);
    opts.onStep?.(m);
    if (last || (s.checkpointEvery > 0 && state.step % s.checkpointEvery === 0)) await saveCheckpoint(dir, config, params, opt, state, opts.modelFiles ?? []);
  }
  T.treeDispose(opt);
  return { params, history, validation: state.validation, bestStep: state.bestStep, bestAccuracy: state.bestAccuracy };
}
