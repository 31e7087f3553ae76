/** `softgrad train`: RL with hard, soft or fuzzy CoT on a model directory and a problem set. */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as T from '@softgrad/tensor';
import {
  DEFAULT_NOISE_SCALE, DEFAULT_TAU, EVAL_MODES, defaultValMode, NothingToResumeError, ResumeMismatchError, RunDirectoryInUseError, SettingsError, checkProblemsFit,
  precheckRun, trainRl, type RlSettings, type CotKind, type EvalModeName, type Located, type NoiseConvention, type ProblemItem,
} from '@softgrad/softtokens';
import { helpText, parseFlags, UsageError, type FlagSpecs } from './args.js';
import {
  BACKEND_FLAG, TOKENIZER_FLAG, commandLine, interruptOnSigint, loadModelDir, loadProblemSpec, modelDirOf, prepareOutputDir, selectBackend,
} from './common.js';
import { log, Progress } from './progress.js';

export const TRAIN_FLAGS: FlagSpecs = {
  model: { type: 'string', help: 'model directory (config.json, *.safetensors, tokenizer.json) or "builtin"', default: 'builtin' },
  data: { type: 'string', help: 'GSM8K/MATH JSONL file, or builtin[:train]', default: 'builtin:train' },
  'train-count': { type: 'int', help: 'use the first N training problems (builtin: how many to generate)', min: 1 },
  val: {
    type: 'string',
    help: 'validation: a JSONL file, builtin:val, none, or auto (builtin:val for the built-in data; for a data file, its last --val-count problems, held out from training)',
    default: 'auto',
  },
  'val-count': { type: 'int', help: 'validation problems', default: 40, min: 0 },
  'val-mode': { type: 'string', help: 'greedy mode for validation / checkpoint choice (default: the trained kind\'s own, e.g. soft-greedy for --mode soft)', choices: EVAL_MODES },
  out: { type: 'string', help: 'run directory (run.json, metrics.jsonl, checkpoint/, best/)', default: 'runs/rl' },
  mode: { type: 'string', help: 'CoT kind trained', default: 'soft', choices: ['hard', 'soft', 'fuzzy'] },
  tau: { type: 'number', help: 'CoT temperature (default: hard 1.0, soft 0.5, fuzzy 0.0001)', min: 0 },
  'noise-scale': { type: 'number', help: 'γ: noise σ = γ·r/√d (convention "norm") or γ·r ("coordinate")', default: DEFAULT_NOISE_SCALE, min: 0 },
  'noise-convention': { type: 'string', help: 'how γ becomes σ (r = RMS of embedding row norms)', default: 'norm', choices: ['norm', 'coordinate'] },
  'batch-prompts': { type: 'int', help: 'B: prompts per step', default: 2, min: 1 },
  samples: { type: 'int', help: 'G: samples per prompt (RLOO needs ≥ 2)', default: 32, min: 2 },
  'max-cot': { type: 'int', help: 'maximum CoT length (tokens/steps)', default: 128, min: 1 },
  'max-answer': { type: 'int', help: 'maximum answer tokens', default: 32, min: 1 },
  lr: { type: 'number', help: 'peak learning rate (AdamW, cosine schedule)', default: 6e-6, min: 0 },
  warmup: { type: 'int', help: 'warm-up steps', default: 20, min: 0 },
  steps: { type: 'int', help: 'optimiser steps', default: 4000, min: 1 },
  'weight-decay': { type: 'number', help: 'AdamW weight decay', default: 0, min: 0 },
  'max-grad-norm': { type: 'number', help: 'clip the global gradient norm (0: off)', default: 0, min: 0 },
  'eval-every': { type: 'int', help: 'greedy validation every N steps (0: at the end only)', default: 50, min: 0 },
  'checkpoint-every': { type: 'int', help: 'checkpoint every N steps', default: 50, min: 0 },
  seed: { type: 'int', help: 'seed (data order, sampling, noise)', default: 0, min: 0 },
  resume: { type: 'boolean', help: 'continue the run in --out from its last checkpoint (settings, model and data must match run.json)' },
  overwrite: { type: 'boolean', help: 'start afresh in an --out that already holds a run, replacing it' },
  quiet: { type: 'boolean', help: 'no progress output' },
  ...TOKENIZER_FLAG,
  ...BACKEND_FLAG,
  help: { type: 'boolean', help: 'show this help' },
};

/** The flag behind each of trainRl's settings, so a refused resume names what to change. */
const FLAG_OF_SETTING: Record<string, string> = {
  kind: '--mode', tau: '--tau', noiseScale: '--noise-scale', noiseConvention: '--noise-convention', batchPrompts: '--batch-prompts',
  samples: '--samples', maxCot: '--max-cot', maxAnswer: '--max-answer', lr: '--lr', warmup: '--warmup', steps: '--steps',
  weightDecay: '--weight-decay', maxGradNorm: '--max-grad-norm', seed: '--seed', evalEvery: '--eval-every', valMode: '--val-mode',
  checkpointEvery: '--checkpoint-every',
};

/** Training and validation problems as the flags define them. */
function problemSets(f: Record<string, unknown>, seed: number): { train: Located<ProblemItem>; validation: Located<ProblemItem>; valSpec: string } {
  const dataSpec = String(f.data);
  const valCount = Number(f['val-count']);
  const trainCount = f['train-count'] as number | undefined;
  let valSpec = String(f.val);
  const fromFile = !dataSpec.startsWith('builtin');
  if (valSpec === 'auto') valSpec = valCount === 0 ? 'none' : fromFile ? 'held-out' : 'builtin:val';
  let train = loadProblemSpec('data', dataSpec, fromFile ? undefined : trainCount, seed);
  let validation: Located<ProblemItem> = { source: 'none', items: [] };
  if (valSpec === 'held-out') {
    const n = train.items.length;
    if (n <= valCount) {
      throw new UsageError(`--data ${dataSpec} has ${n} problems, too few to hold out --val-count ${valCount} for validation; pass --val FILE, --val none or a smaller --val-count`);
    }
    const cut = n - valCount;
    validation = { source: `${dataSpec} (last ${valCount} problems, held out)`, items: train.items.slice(cut), lines: train.lines?.slice(cut) };
    train = { source: train.source, items: train.items.slice(0, cut), lines: train.lines?.slice(0, cut) };
  } else if (valSpec !== 'none' && valCount > 0) {
    // Validation problems never include a training question (they choose the checkpoint).
    const trainQuestions = new Set(train.items.map((p) => p.question));
    const loaded = loadProblemSpec('val', valSpec, valSpec.startsWith('builtin') ? valCount + 50 : undefined, seed + 1);
    const keep = loaded.items.map((p, i) => i).filter((i) => !trainQuestions.has(loaded.items[i]!.question)).slice(0, valCount);
    validation = { source: loaded.source, items: keep.map((i) => loaded.items[i]!), lines: loaded.lines && keep.map((i) => loaded.lines![i]!) };
  }
  if (fromFile && trainCount !== undefined) {
    train = { source: train.source, items: train.items.slice(0, trainCount), lines: train.lines?.slice(0, trainCount) };
  }
  return { train, validation, valSpec };
}

/** Wrong flags for the run directory are usage errors (exit 2) that name the flag. */
function asUsageError(dir: string, e: unknown): unknown {
  if (e instanceof ResumeMismatchError) {
    const named = e.differences.map((d) => d.replace(/^(\w+) is/, (all, k: string) => (FLAG_OF_SETTING[k] ? `${FLAG_OF_SETTING[k]} is` : all)));
    return new UsageError(`cannot resume ${dir}: ${named.join('; ')} (run.json records the run; use another --out, or --overwrite, to change them)`);
  }
  if (e instanceof RunDirectoryInUseError) {
    return new UsageError(`--out ${dir} already holds a run: pass --resume to continue it, --overwrite to start it again, or choose another --out`);
  }
  if (e instanceof NothingToResumeError) return new UsageError(`--resume: ${e.message.replace('with overwrite', 'with --overwrite')}`);
  return e;
}

function runChecked<R>(dir: string, run: () => R): R {
  try {
    return run();
  } catch (e) {
    throw asUsageError(dir, e);
  }
}

async function runCheckedAsync<R>(dir: string, run: () => Promise<R>): Promise<R> {
  try {
    return await run();
  } catch (e) {
    throw asUsageError(dir, e);
  }
}

export async function trainCommand(argv: string[]): Promise<number> {
  const f = parseFlags(argv, TRAIN_FLAGS);
  if (f.help) {
    console.log(helpText('train', 'RL (RLOO) with hard, soft or fuzzy chain of thought', TRAIN_FLAGS));
    return 0;
  }
  if (f.resume && f.overwrite) throw new UsageError('--resume and --overwrite contradict each other: continue the run, or start it again');
  // Everything the run needs is checked here, before any of it starts.
  const seed = Number(f.seed);
  const dir = resolve(String(f.out));
  prepareOutputDir('out', dir);
  modelDirOf(String(f.model));
  const { train, validation, valSpec } = problemSets(f, seed);
  const kind = String(f.mode) as CotKind;
  const steps = Number(f.steps);
  const maxGradNorm = Number(f['max-grad-norm']);
  const budget = { maxCot: Number(f['max-cot']), maxAnswer: Number(f['max-answer']) };
  const settings: RlSettings = {
    kind, tau: f.tau as number | undefined, noiseScale: Number(f['noise-scale']),
    noiseConvention: String(f['noise-convention']) as NoiseConvention,
    batchPrompts: Number(f['batch-prompts']), samples: Number(f.samples), maxCot: budget.maxCot,
    maxAnswer: budget.maxAnswer, lr: Number(f.lr), warmup: Number(f.warmup), steps,
    weightDecay: Number(f['weight-decay']), maxGradNorm: maxGradNorm > 0 ? maxGradNorm : undefined, seed,
    evalEvery: Number(f['eval-every']), valMode: (f['val-mode'] as EvalModeName | undefined) ?? defaultValMode(kind), checkpointEvery: Number(f['checkpoint-every']),
  };
  const provenance = { model: String(f.model), data: train.source, validation: validation.source };
  const runOptions = { dir, resume: !!f.resume, overwrite: !!f.overwrite, settings, train: train.items, validation: validation.items, provenance };
  // The run directory before the model: a refused resume must not first read the weights.
  runChecked(dir, () => precheckRun(runOptions));
  const backend = await selectBackend(String(f.backend));
  const model = await loadModelDir(String(f.model), backend, { strictTokenizer: !f['lenient-tokenizer'] });
  try {
    checkProblemsFit(train, model.tokenizer, model.config, budget);
    checkProblemsFit(validation, model.tokenizer, model.config, budget);
  } catch (e) {
    T.treeDispose(model.params);
    if (e instanceof SettingsError) throw new UsageError(`--max-cot ${budget.maxCot} --max-answer ${budget.maxAnswer}: ${e.message}`);
    throw e;
  }
  log(`train: ${kind} CoT, ${train.items.length} problems from ${train.source}, B=${f['batch-prompts']} G=${f.samples}, τ=${f.tau ?? DEFAULT_TAU[kind]}, γ=${f['noise-scale']} (${f['noise-convention']}), lr=${f.lr}, ${steps} steps → ${dir}`);
  log(validation.items.length > 0
    ? `train: validation on ${validation.items.length} problems from ${validation.source} (${settings.valMode}); best/ is the best of them, the starting model included`
    : `train: no validation set (${valSpec === 'none' ? '--val none' : '--val-count 0'}); the final model is in ${dir}/checkpoint`);
  const bar = new Progress(`train ${kind}`, steps, !!f.quiet);
  const interrupt = interruptOnSigint('train');
  let result: Awaited<ReturnType<typeof trainRl>>;
  try {
    result = await runCheckedAsync(dir, () => trainRl({
      ...runOptions,
      config: model.config, params: model.params, tokenizer: model.tokenizer,
      signal: interrupt.signal,
      modelFiles: ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json'].map((n) => join(model.dir, n)).filter((p) => existsSync(p)),
      onStep: (m) => bar.update(m.step, `reward ${m.reward.toFixed(1)} acc ${(100 * m.accuracy).toFixed(0)}% cot ${m.cotLength.toFixed(0)} ${m.tokensPerSecond.toFixed(0)} tok/s${m.valAccuracy !== undefined ? ` val ${(100 * m.valAccuracy).toFixed(1)}%` : ''}`),
    }));
  } catch (e) {
    T.treeDispose(model.params);
    throw e;
  } finally {
    interrupt.dispose();
  }
  T.treeDispose(result.params);
  T.treeDispose(model.params);
  if (result.interrupted) {
    log(`train: stopped after step ${result.stepsDone} of ${steps}; the checkpoint in ${join(dir, 'checkpoint')} holds it`);
    log(`train: continue with: ${commandLine('train', argv.filter((a) => a !== '--overwrite'), ['--resume'])}`);
    return 130;
  }
  if (result.bestStep === 0) {
    log(`train: done; no trained step beat the starting model's validation accuracy ${(100 * result.bestAccuracy).toFixed(1)}%, so ${dir}/best holds the starting model (step 0)`);
  } else if (result.bestStep > 0) {
    log(`train: done; best validation accuracy ${(100 * result.bestAccuracy).toFixed(1)}% at step ${result.bestStep} (${dir}/best; the starting model had ${(100 * (result.validation[0]?.accuracy ?? NaN)).toFixed(1)}%)`);
  } else {
    log(`train: done (no validation set); final model in ${dir}/checkpoint`);
  }
  return 0;
}
