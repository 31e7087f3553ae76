/**
 * RL training with the RLOO estimator (docs/method.md): each step draws B prompts × G samples
 * with the training CoT kind, scores them, and applies one on-policy AdamW update. Runs are
 * reproducible from the seed, write a JSONL metrics log, validate greedily every few steps,
 * keep the best model by validation accuracy (the starting model included), and resume
 * exactly from their last checkpoint (same data order, same random keys, same optimiser
 * state). What defines a run is recorded in run.json and a resume that differs is refused;
 * checkpoints are swapped in so that a crash at any instant leaves one to resume from
 * (docs/runs.md).
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdir } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import * as T from '@softgrad/tensor';
import {
  NODE_DIRECTORY_OPS, appendFileDurableSync, configToJson, loadParams, paramsToHost, paramsToNamed, parseJsonStrict,
  readConfig, recoverDirectory, removeStaleTemporaries, saveModel, splitLogLines, swapDirectory, swapNames,
  writeCheckpointDir, writeFileAtomicSync,
  type DirectoryOps, type ModelParams, type Tokenizer, type TransformerConfig,
} from '@softgrad/transformer';
import type { ProblemItem } from './datasets.js';
import { evaluateMode, yieldToEventLoop } from './evaluate.js';
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
  /**
   * Greedy mode used for validation and checkpoint choice; by default the trained kind's own
   * (`hard-greedy`, `soft-greedy` or `fuzzy-greedy`: no noise, greedy answer), as the paper
   * validates each kind (docs/method.md).
   */
  valMode?: EvalModeName;
  /** Checkpoint every this many steps (and at the end). */
  checkpointEvery: number;
}

export interface StepMetrics {
  /** Updates done after this step (1 for the first); the same numbering as the console, state.json and validation. */
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
  /** Reward of one rollout (default: the paper's 100 / 10 / 0 on the boxed answer, docs/method.md). */
  reward?: (rollout: Rollout, problem: ProblemItem) => number;
  /** Files copied into every saved model directory (tokenizer.json, ...), so each is loadable on its own. */
  modelFiles?: readonly string[];
  onStep?: (m: StepMetrics) => void;
  onValidation?: (step: number, accuracy: number) => void;
  /**
   * Start afresh in a `dir` that already holds a run, replacing its log, checkpoint and
   * best model. Without it (and without `resume`) such a directory is refused, so that a
   * mistyped command cannot wipe a finished run.
   */
  overwrite?: boolean;
  /** Where the model, training and validation data came from (paths, specs), for run.json. Identity is by digest. */
  provenance?: { model?: string; data?: string; validation?: string };
  /** Stops the run at the next safe point: after the current step, with a checkpoint. */
  signal?: AbortSignal;
  /** The file system the checkpoint and best-model swaps use (tests crash it at every step). */
  directoryOps?: DirectoryOps;
}

export interface RlRunResult {
  params: ModelParams;
  history: StepMetrics[];
  /** Validation accuracy by step; step 0 is the starting model. */
  validation: { step: number; accuracy: number }[];
  /** Step of the model in best/ (0: the starting model was never beaten); -1 without validation. */
  bestStep: number;
  bestAccuracy: number;
  /** Updates done when the run ended (settings.steps unless interrupted). */
  stepsDone: number;
  /** True when `signal` stopped the run before settings.steps; its checkpoint is at stepsDone. */
  interrupted: boolean;
}

interface RunState {
  step: number;
  validation: { step: number; accuracy: number }[];
  bestStep: number;
  bestAccuracy: number;
}

/** A directory that already holds a run, where a fresh run was asked for. */
export class RunDirectoryInUseError extends Error {
  constructor(readonly dir: string, found: string[]) {
    super(`${dir} already holds a run (${found.join(', ')}): resume it, overwrite it, or choose another directory`);
    this.name = 'RunDirectoryInUseError';
  }
}

/** A resume of a directory that holds no run, or a run that stopped before its first checkpoint. */
export class NothingToResumeError extends Error {
  constructor(readonly dir: string, why: string) {
    super(`${dir}: nothing to resume: ${why}`);
    this.name = 'NothingToResumeError';
  }
}

/** A resume whose settings, model or data differ from the run's (run.json). */
export class ResumeMismatchError extends Error {
  constructor(readonly dir: string, readonly differences: string[]) {
    super(`cannot resume ${dir}: ${differences.join('; ')} (run.json records the run; start a new one to change them)`);
    this.name = 'ResumeMismatchError';
  }
}

/** The greedy mode a kind is validated in by default: its own CoT without noise, greedy answer. */
export function defaultValMode(kind: CotKind): EvalModeName {
  return `${kind}-greedy`;
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

// ---------------------------------------------------------------------------------------
// What defines a run (run.json)

const RUN_FORMAT = 'softgrad-rl-run/1';

/** Settings with every default made explicit (null: no gradient clipping), as run.json records them. */
export type ExplicitRlSettings = Omit<Required<RlSettings>, 'maxGradNorm'> & { maxGradNorm: number | null };

/** Settings with every default made explicit, so that run.json says what ran. */
export function explicitSettings(s: RlSettings): ExplicitRlSettings {
  return {
    kind: s.kind,
    tau: s.tau ?? DEFAULT_TAU[s.kind],
    noiseScale: s.noiseScale ?? DEFAULT_NOISE_SCALE,
    noiseConvention: s.noiseConvention ?? 'norm',
    batchPrompts: s.batchPrompts,
    samples: s.samples,
    maxCot: s.maxCot,
    maxAnswer: s.maxAnswer ?? 32,
    lr: s.lr,
    warmup: s.warmup,
    steps: s.steps,
    weightDecay: s.weightDecay ?? 0,
    // null: no clipping (JSON has no undefined, and 0 would read as "clip to zero").
    maxGradNorm: s.maxGradNorm ?? null,
    seed: s.seed,
    evalEvery: s.evalEvery,
    valMode: s.valMode ?? defaultValMode(s.kind),
    checkpointEvery: s.checkpointEvery,
  };
}

interface Identity {
  source: string | null;
  sha256: string;
  count?: number;
}

interface RunDefinition {
  settings: ExplicitRlSettings;
  model: Identity & { config: Record<string, unknown> };
  tokenizer: Identity;
  data: Identity;
  validation: Identity;
}

interface RunFile {
  format: string;
  definition: RunDefinition;
  /** How the run was started; informative, not compared on resume. */
  environment: Record<string, unknown>;
}

function sha256Of(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex');
}

/** SHA-256 of parameter values under their names, one tensor at a time. */
async function paramsDigest(params: ModelParams): Promise<string> {
  const hash = createHash('sha256');
  const named = paramsToNamed(params);
  for (const name of Object.keys(named).sort()) {
    const t = named[name]!;
    const data = await t.data();
    hash.update(`${JSON.stringify([name, t.dtype, t.shape])}\n`).update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  return hash.digest('hex');
}

function tokenizerDigest(tokenizer: Tokenizer): string {
  const vocab: (string | null)[] = [];
  for (let id = 0; id < tokenizer.vocabSize; id++) vocab.push(tokenizer.idToToken(id) ?? null);
  return sha256Of({ vocab, specials: [...tokenizer.specialTokens], bos: tokenizer.bosId, eos: tokenizer.eosId, pad: tokenizer.padId });
}

async function runDefinition(opts: RlRunOptions): Promise<RunDefinition> {
  const problems = (items: readonly ProblemItem[]) => items.map((p) => [p.question, p.solution, p.reference]);
  return {
    settings: explicitSettings(opts.settings),
    model: { source: opts.provenance?.model ?? null, sha256: await paramsDigest(opts.params), config: configToJson(opts.config) },
    tokenizer: { source: null, sha256: tokenizerDigest(opts.tokenizer) },
    data: { source: opts.provenance?.data ?? null, sha256: sha256Of(problems(opts.train)), count: opts.train.length },
    validation: { source: opts.provenance?.validation ?? null, sha256: sha256Of(problems(opts.validation)), count: opts.validation.length },
  };
}

const short = (digest: string) => digest.slice(0, 12);

function identityText(i: Identity): string {
  return `${i.source ?? 'given in code'} (sha256 ${short(i.sha256)}…${i.count !== undefined ? `, ${i.count} problems` : ''})`;
}

/** What differs between the recorded run and the one asked for, one phrase per difference. */
export function runDifferences(recorded: RunDefinition, now: RunDefinition): string[] {
  const diffs: string[] = [];
  const settingNames = new Set([...Object.keys(recorded.settings ?? {}), ...Object.keys(now.settings)]);
  for (const k of settingNames) {
    const a = (recorded.settings as Record<string, unknown>)[k];
    const b = (now.settings as Record<string, unknown>)[k];
    if (JSON.stringify(a) !== JSON.stringify(b)) diffs.push(`${k} is ${JSON.stringify(a) ?? 'unset'} in the run but ${JSON.stringify(b) ?? 'unset'} now`);
  }
  if (JSON.stringify(recorded.model?.config) !== JSON.stringify(now.model.config)) diffs.push('the model config differs from the run\'s');
  else if (recorded.model?.sha256 !== now.model.sha256) {
    diffs.push(`the starting model differs: the run started from ${identityText(recorded.model)}, now ${identityText(now.model)}`);
  }
  if (recorded.tokenizer?.sha256 !== now.tokenizer.sha256) diffs.push('the tokenizer differs from the run\'s');
  for (const k of ['data', 'validation'] as const) {
    if (recorded[k]?.sha256 !== now[k].sha256) diffs.push(`the ${k === 'data' ? 'training data' : 'validation set'} differs: the run used ${identityText(recorded[k])}, now ${identityText(now[k])}`);
  }
  return diffs;
}

function readRunFile(dir: string): RunFile {
  const path = join(dir, 'run.json');
  if (!existsSync(path)) throw new NothingToResumeError(dir, 'no run.json, so nothing says what this run was (not a run directory?)');
  const json = parseJsonStrict(readFileSync(path, 'utf8'), path) as Partial<RunFile>;
  if (json.format !== RUN_FORMAT || typeof json.definition !== 'object' || json.definition === null) {
    throw new Error(`${path}: not a run file of this version (expected "format": "${RUN_FORMAT}")`);
  }
  return json as RunFile;
}

// ---------------------------------------------------------------------------------------
// Checkpoints

const RUN_ARTIFACTS = ['run.json', 'metrics.jsonl', 'checkpoint', 'best'];

/** What of a run a directory holds (including halves of interrupted swaps). */
function runArtifacts(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const found: string[] = [];
  for (const name of RUN_ARTIFACTS) {
    const p = join(dir, name);
    const names = name === 'checkpoint' || name === 'best' ? [p, ...Object.values(swapNames(p))] : [p];
    if (names.some((n) => existsSync(n))) found.push(name === 'checkpoint' || name === 'best' ? `${name}/` : name);
  }
  return found;
}

async function writeModelDir(dir: string, config: TransformerConfig, params: ModelParams, files: readonly string[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  await saveModel(dir, config, params);
  for (const f of files) await copyFile(f, join(dir, basename(f)));
}

interface CheckpointContents {
  config: TransformerConfig;
  params: ModelParams;
  opt: AdamWState<ModelParams>;
  state: RunState;
  files: readonly string[];
}

async function saveCheckpoint(dir: string, c: CheckpointContents, ops: DirectoryOps): Promise<void> {
  await swapDirectory(join(dir, 'checkpoint'), async (tmp) => {
    await writeModelDir(tmp, c.config, c.params, c.files);
    const [m, v] = await Promise.all([paramsToHost(c.opt.m), paramsToHost(c.opt.v)]);
    await writeCheckpointDir(join(tmp, 'adam-m'), m);
    await writeCheckpointDir(join(tmp, 'adam-v'), v);
    writeFileAtomicSync(join(tmp, 'state.json'), `${JSON.stringify({ ...c.state, optimizerStep: c.opt.step }, null, 1)}\n`);
  }, ops);
}

async function loadCheckpoint(dir: string, config: TransformerConfig, backend: T.Backend, dtype: T.DType): Promise<{ params: ModelParams; opt: AdamWState<ModelParams>; state: RunState }> {
  const ck = join(dir, 'checkpoint');
  const statePath = join(ck, 'state.json');
  if (!existsSync(statePath)) {
    throw new NothingToResumeError(dir, 'no checkpoint to resume from (the run stopped before its first checkpoint); start it again with overwrite');
  }
  const raw = parseJsonStrict(readFileSync(statePath, 'utf8'), statePath) as RunState & { optimizerStep: number };
  if (!Number.isSafeInteger(raw.step) || raw.step < 0 || !Number.isSafeInteger(raw.optimizerStep) || !Array.isArray(raw.validation)) {
    throw new Error(`${statePath}: expected { step, optimizerStep, validation, bestStep, bestAccuracy }`);
  }
  const saved = await readConfig(ck);
  if (JSON.stringify(configToJson({ ...saved, torch_dtype: null })) !== JSON.stringify(configToJson({ ...config, torch_dtype: null }))) {
    throw new Error(`${join(ck, 'config.json')}: the checkpoint's model config differs from the run's`);
  }
  const opts = { backend, dtype };
  const params = await loadParams(config, ck, opts);
  try {
    const m = await loadParams(config, join(ck, 'adam-m'), opts);
    const v = await loadParams(config, join(ck, 'adam-v'), opts);
    return { params, opt: { step: raw.optimizerStep, m, v }, state: raw };
  } catch (e) {
    T.treeDispose(params);
    throw e;
  }
}

/**
 * The metrics log up to the checkpoint. Lines after it (written before a crash or Ctrl-C
 * that came before the next checkpoint) are dropped, and so is a torn last line (a crash in
 * the middle of an append); any other malformed line is an error naming it.
 */
function metricsUpTo(path: string, step: number): string[] {
  if (!existsSync(path)) return [];
  const { lines } = splitLogLines(readFileSync(path, 'utf8'));
  const kept: string[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let m: unknown;
    try {
      m = JSON.parse(line);
    } catch {
      throw new Error(`${path}:${i + 1}: not a JSON line (the log is corrupt before its end)`);
    }
    const s = (m as { step?: unknown }).step;
    if (typeof s !== 'number' || !Number.isSafeInteger(s)) throw new Error(`${path}:${i + 1}: expected a metrics record with a "step"`);
    if (s <= step) kept.push(line);
  });
  const steps = kept.map((l) => (JSON.parse(l) as StepMetrics).step);
  if (steps.length !== step || steps.some((s, i) => s !== i + 1)) {
    throw new Error(`${path}: holds steps ${steps.length ? `${steps[0]}..${steps[steps.length - 1]}` : 'none'} but the checkpoint is at step ${step}; the log does not belong to this checkpoint`);
  }
  return kept;
}

/**
 * The checks of `trainRl` that need neither the model nor the backend, for callers that
 * want them before loading a model (a resume with a wrong flag should not first read
 * gigabytes): the directory is free for a fresh run, or holds a run whose settings and
 * data match. trainRl repeats them, and adds the model and tokenizer.
 */
export function precheckRun(opts: Pick<RlRunOptions, 'dir' | 'resume' | 'overwrite' | 'settings' | 'train' | 'validation' | 'provenance'>): void {
  if (!opts.resume) {
    const found = runArtifacts(opts.dir);
    if (found.length > 0 && !opts.overwrite) throw new RunDirectoryInUseError(opts.dir, found);
    return;
  }
  const recorded = readRunFile(opts.dir).definition;
  const problems = (items: readonly ProblemItem[]) => items.map((p) => [p.question, p.solution, p.reference]);
  const now: RunDefinition = {
    ...recorded,
    settings: explicitSettings(opts.settings),
    data: { source: opts.provenance?.data ?? null, sha256: sha256Of(problems(opts.train)), count: opts.train.length },
    validation: { source: opts.provenance?.validation ?? null, sha256: sha256Of(problems(opts.validation)), count: opts.validation.length },
  };
  const diffs = runDifferences(recorded, now);
  if (diffs.length > 0) throw new ResumeMismatchError(opts.dir, diffs);
}

// ---------------------------------------------------------------------------------------
// The run

export async function trainRl(opts: RlRunOptions): Promise<RlRunResult> {
  const { config, tokenizer, settings: s, dir } = opts;
  if (opts.train.length === 0) throw new Error('trainRl: the training set is empty');
  if (s.samples < 2) throw new Error(`trainRl: RLOO needs at least 2 samples per prompt, got ${s.samples}`);
  const ops = opts.directoryOps ?? NODE_DIRECTORY_OPS;
  const backend = opts.params.embed.backend;
  const tau = s.tau ?? DEFAULT_TAU[s.kind];
  const cot = trainingCotSettings(s.kind, tau, s.noiseScale ?? DEFAULT_NOISE_SCALE, s.noiseConvention ?? 'norm');
  const valMode = s.valMode ?? defaultValMode(s.kind);
  const metricsPath = join(dir, 'metrics.jsonl');
  const modelFiles = opts.modelFiles ?? [];
  const definition = await runDefinition(opts);

  let params: ModelParams;
  let opt: AdamWState<ModelParams>;
  let state: RunState;
  let ownsParams = false;
  if (opts.resume) {
    // Everything that can refuse comes before anything is changed on disk.
    const recorded = readRunFile(dir);
    const diffs = runDifferences(recorded.definition, definition);
    if (diffs.length > 0) throw new ResumeMismatchError(dir, diffs);
    // A crash may have interrupted a swap or a file write: finish or undo them first.
    await recoverDirectory(join(dir, 'checkpoint'), ops);
    await recoverDirectory(join(dir, 'best'), ops);
    removeStaleTemporaries(dir);
    const loaded = await loadCheckpoint(dir, config, backend, opts.params.embed.dtype);
    params = loaded.params;
    opt = loaded.opt;
    state = { step: loaded.state.step, validation: loaded.state.validation, bestStep: loaded.state.bestStep, bestAccuracy: loaded.state.bestAccuracy };
    ownsParams = true;
    try {
      writeFileAtomicSync(metricsPath, metricsUpTo(metricsPath, state.step).map((l) => `${l}\n`).join(''));
    } catch (e) {
      T.treeDispose([params, opt]);
      throw e;
    }
  } else {
    const found = runArtifacts(dir);
    if (found.length > 0 && !opts.overwrite) throw new RunDirectoryInUseError(dir, found);
    await mkdir(dir, { recursive: true });
    for (const name of ['checkpoint', 'best']) {
      const p = join(dir, name);
      for (const n of [p, ...Object.values(swapNames(p))]) await ops.removeTree(n);
    }
    params = opts.params;
    opt = adamwInit(params);
    state = { step: 0, validation: [], bestStep: -1, bestAccuracy: -1 };
    const run: RunFile = {
      format: RUN_FORMAT,
      definition,
      environment: { backend: backend.name, dtype: params.embed.dtype, node: process.version, cot, started: new Date().toISOString() },
    };
    writeFileAtomicSync(join(dir, 'run.json'), `${JSON.stringify(run, null, 1)}\n`);
    writeFileAtomicSync(metricsPath, '');
  }

  const history: StepMetrics[] = [];
  const validate = async (step: number): Promise<number> => {
    const res = await evaluateMode({
      config, params, tokenizer, problems: opts.validation, mode: valMode, samples: 1,
      maxCot: s.maxCot, maxAnswer: s.maxAnswer, seed: s.seed,
    });
    state.validation.push({ step, accuracy: res.passAt1 });
    opts.onValidation?.(step, res.passAt1);
    // Step 0 is the starting model and a candidate like any other: if training never beats
    // it, best/ is the starting model and says so (bestStep 0).
    if (res.passAt1 > state.bestAccuracy) {
      state.bestAccuracy = res.passAt1;
      state.bestStep = step;
      await swapDirectory(join(dir, 'best'), async (tmp) => {
        await writeModelDir(tmp, config, params, modelFiles);
        writeFileAtomicSync(join(tmp, 'best.json'), `${JSON.stringify({ step, accuracy: res.passAt1, mode: valMode, problems: opts.validation.length })}\n`);
      }, ops);
    }
    return res.passAt1;
  };
  if (state.step === 0 && opts.validation.length > 0) await validate(0);

  let checkpointed = state.step;
  const checkpoint = async () => {
    await saveCheckpoint(dir, { config, params, opt, state, files: modelFiles }, ops);
    checkpointed = state.step;
  };
  while (state.step < s.steps) {
    if (opts.signal) {
      await yieldToEventLoop();
      if (opts.signal.aborted) break;
    }
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
      step: state.step,
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
    // On disk before the checkpoint that covers it, so a resumed log is never missing a step.
    appendFileDurableSync(metricsPath, `${JSON.stringify(m)}\n`);
    opts.onStep?.(m);
    if (last || (s.checkpointEvery > 0 && state.step % s.checkpointEvery === 0)) await checkpoint();
  }
  const interrupted = state.step < s.steps;
  // A stop between checkpoints keeps the steps done: this is the safe point. A fresh run
  // stopped before its first step gets one too, so that it can always be resumed.
  if (interrupted && (checkpointed < state.step || (!opts.resume && state.step === 0))) await checkpoint();
  T.treeDispose(opt);
  return {
    params, history, validation: state.validation, bestStep: state.bestStep, bestAccuracy: state.bestAccuracy,
    stepsDone: state.step, interrupted,
  };
}
