/**
 * `softgrad pretrain`: the script that makes the built-in base model — supervised training
 * of a tiny Llama on worked solutions of the built-in task's train split.
 */
import { readFileSync } from 'node:fs';
import { mkdir, rm, rename } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import * as T from '@softgrad/tensor';
import { initParams, loadModel, parameterCount, saveModel } from '@softgrad/transformer';
import {
  builtinModelConfig, builtinTokenizer, formatPrompt, formatSupervisedTarget, generateTask, trainSupervised, writeFileAtomic,
} from '@softgrad/softtokens';
import { helpText, parseFlags, type FlagSpecs } from './args.js';
import { log, Progress } from './progress.js';

export const PRETRAIN_FLAGS: FlagSpecs = {
  out: { type: 'string', help: 'output model directory', default: 'runs/base-model' },
  steps: { type: 'int', help: 'optimiser steps', default: 800, min: 1 },
  'batch-size': { type: 'int', help: 'sequences per step', default: 32, min: 1 },
  lr: { type: 'number', help: 'peak learning rate (AdamW, cosine, warm-up)', default: 3e-3, min: 0 },
  warmup: { type: 'int', help: 'warm-up steps', default: 40, min: 0 },
  examples: { type: 'int', help: 'training problems generated from the seed', default: 4000, min: 1 },
  seed: { type: 'int', help: 'seed for data, initialisation and order', default: 1, min: 0 },
  init: { type: 'string', help: 'continue from this model directory instead of a random initialisation' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function pretrainCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, PRETRAIN_FLAGS);
  if (f.help) {
    console.log(helpText('pretrain', 'train the built-in base model (supervised) and save it', PRETRAIN_FLAGS));
    return;
  }
  const out = resolve(String(f.out));
  const tokenizer = builtinTokenizer();
  const config = builtinModelConfig(tokenizer.vocabSize);
  const seed = Number(f.seed);
  const problems = generateTask({ seed, split: 'train', count: Number(f.examples) });
  const examples = problems.map((p) => ({ prompt: formatPrompt(p.question), completion: formatSupervisedTarget(p.answer) }));
  const init = f.init ? (await loadModel(resolve(String(f.init)))).params : initParams(config, seed);
  const previous = f.init ? JSON.parse(readFileSync(join(resolve(String(f.init)), 'pretrain.json'), 'utf8')) : null;
  log(`pretrain: ${parameterCount(init)} parameters, vocab ${tokenizer.vocabSize}, ${examples.length} examples`);
  const steps = Number(f.steps);
  const bar = new Progress('pretrain', steps);
  const history: { step: number; loss: number }[] = [];
  let ema = NaN;
  const params = await trainSupervised(config, init, tokenizer, examples, {
    steps, batchSize: Number(f['batch-size']), lr: Number(f.lr), warmup: Number(f.warmup), seed,
    onStep: ({ step, loss }) => {
      ema = Number.isNaN(ema) ? loss : 0.95 * ema + 0.05 * loss;
      history.push({ step, loss });
      bar.update(step + 1, `loss ${ema.toFixed(3)}`);
    },
  });
  T.treeDispose(init);
  // Write into a sibling temp directory, then swap it in: never a half-written model.
  const tmp = join(dirname(out), `.${Date.now()}-tmp-model`);
  await mkdir(tmp, { recursive: true });
  try {
    await saveModel(tmp, config, params);
    await tokenizer.save(tmp);
    writeFileAtomic(join(tmp, 'pretrain.json'), `${JSON.stringify({ flags: f, finalLoss: ema, history, previous }, null, 1)}\n`);
    await rm(out, { recursive: true, force: true });
    await rename(tmp, out);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  T.treeDispose(params);
  log(`pretrain: saved ${out} (final loss ${ema.toFixed(4)})`);
}
