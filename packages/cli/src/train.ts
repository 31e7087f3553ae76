/** `softgrad train`: RL with hard, soft or fuzzy CoT on a model directory and a problem set. */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as T from '@softgrad/tensor';
import { DEFAULT_NOISE_SCALE, DEFAULT_TAU, EVAL_MODES, trainRl, type CotKind, type EvalModeName, type NoiseConvention } from '@softgrad/softtokens';
import { helpText, parseFlags, type FlagSpecs } from './args.js';
import { BACKEND_FLAG, loadModelDir, loadProblemSpec, selectBackend } from './common.js';
import { log, Progress } from './progress.js';

export const TRAIN_FLAGS: FlagSpecs = {
  model: { type: 'string', help: 'model directory (config.json, *.safetensors, tokenizer.json) or "builtin"', default: 'builtin' },
  data: { type: 'string', help: 'GSM8K/MATH JSONL file, or builtin[:train]', default: 'builtin:train' },
  'train-count': { type: 'int', help: 'use the first N training problems (builtin: how many to generate)', min: 1 },
  val: { type: 'string', help: 'validation JSONL, or builtin:val (training-distribution problems held out from training)', default: 'builtin:val' },
  'val-count': { type: 'int', help: 'validation problems', default: 40, min: 0 },
  'val-mode': { type: 'string', help: 'greedy mode for validation / checkpoint choice', default: 'hard-greedy', choices: EVAL_MODES },
  out: { type: 'string', help: 'run directory (metrics.jsonl, checkpoint/, best/)', default: 'runs/rl' },
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
  resume: { type: 'boolean', help: 'continue the run in --out from its last checkpoint' },
  quiet: { type: 'boolean', help: 'no progress output' },
  ...BACKEND_FLAG,
  help: { type: 'boolean', help: 'show this help' },
};

export async function trainCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, TRAIN_FLAGS);
  if (f.help) {
    console.log(helpText('train', 'RL (RLOO) with hard, soft or fuzzy chain of thought', TRAIN_FLAGS));
    return;
  }
  const backend = await selectBackend(String(f.backend));
  const seed = Number(f.seed);
  const model = await loadModelDir(String(f.model), backend);
  const train = loadProblemSpec(String(f.data), f['train-count'] as number | undefined, seed);
  const valCount = Number(f['val-count']);
  // Validation problems never include a training question (they choose the checkpoint).
  const trainQuestions = new Set(train.map((p) => p.question));
  const validation = valCount > 0 ? loadProblemSpec(String(f.val), valCount + 50, seed + 1).filter((p) => !trainQuestions.has(p.question)).slice(0, valCount) : [];
  const kind = String(f.mode) as CotKind;
  const steps = Number(f.steps);
  const dir = resolve(String(f.out));
  const maxGradNorm = Number(f['max-grad-norm']);
  log(`train: ${kind} CoT, ${train.length} problems, B=${f['batch-prompts']} G=${f.samples}, τ=${f.tau ?? DEFAULT_TAU[kind]}, γ=${f['noise-scale']} (${f['noise-convention']}), lr=${f.lr}, ${steps} steps → ${dir}`);
  const bar = new Progress(`train ${kind}`, steps, !!f.quiet);
  const result = await trainRl({
    config: model.config, params: model.params, tokenizer: model.tokenizer, train, validation, dir,
    resume: !!f.resume,
    modelFiles: ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json'].map((n) => join(model.dir, n)).filter((p) => existsSync(p)),
    settings: {
      kind, tau: f.tau as number | undefined, noiseScale: Number(f['noise-scale']),
      noiseConvention: String(f['noise-convention']) as NoiseConvention,
      batchPrompts: Number(f['batch-prompts']), samples: Number(f.samples), maxCot: Number(f['max-cot']),
      maxAnswer: Number(f['max-answer']), lr: Number(f.lr), warmup: Number(f.warmup), steps,
      weightDecay: Number(f['weight-decay']), maxGradNorm: maxGradNorm > 0 ? maxGradNorm : undefined, seed,
      evalEvery: Number(f['eval-every']), valMode: String(f['val-mode']) as EvalModeName, checkpointEvery: Number(f['checkpoint-every']),
    },
    onStep: (m) => bar.update(m.step + 1, `reward ${m.reward.toFixed(1)} acc ${(100 * m.accuracy).toFixed(0)}% cot ${m.cotLength.toFixed(0)} ${m.tokensPerSecond.toFixed(0)} tok/s${m.valAccuracy !== undefined ? ` val ${(100 * m.valAccuracy).toFixed(1)}%` : ''}`),
  });
  log(result.bestStep >= 0
    ? `train: done; best validation accuracy ${(100 * result.bestAccuracy).toFixed(1)}% at step ${result.bestStep} (${dir}/best)`
    : `train: done (no validation set); final model in ${dir}/checkpoint`);
  T.treeDispose(result.params);
  T.treeDispose(model.params);
}
