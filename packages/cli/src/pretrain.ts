/**
 * `softgrad pretrain`: the script that makes the built-in base model — supervised training
 * of a tiny Llama on worked solutions of the built-in task's train split.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as T from '@softgrad/tensor';
import { initParams, loadModel, parameterCount, parseJsonStrict, saveModel, swapDirectory, writeFileAtomicSync } from '@softgrad/transformer';
import {
  builtinModelConfig, builtinTokenizer, fnv1a32, formatPrompt, formatSupervisedTarget, generateTask, shortcutAnswer, trainSupervised,
} from '@softgrad/softtokens';
import { helpText, parseFlags, UsageError, type FlagSpecs } from './args.js';
import { modelDirOf } from './common.js';
import { log, Progress } from './progress.js';

export const PRETRAIN_FLAGS: FlagSpecs = {
  out: { type: 'string', help: 'output model directory', default: 'runs/base-model' },
  steps: { type: 'int', help: 'optimiser steps', default: 800, min: 1 },
  'batch-size': { type: 'int', help: 'sequences per step', default: 32, min: 1 },
  lr: { type: 'number', help: 'peak learning rate (AdamW, cosine, warm-up)', default: 3e-3, min: 0 },
  warmup: { type: 'int', help: 'warm-up steps', default: 40, min: 0 },
  examples: { type: 'int', help: 'training problems generated from the seed', default: 4000, min: 1 },
  seed: { type: 'int', help: 'seed for data, initialisation and order', default: 1, min: 0 },
  'shortcut-fraction': { type: 'number', help: 'fraction of examples written in the shortcut style (the result with no working; the built-in base model uses 0.5, see docs/demo.md)', default: 0, min: 0, max: 1 },
  init: { type: 'string', help: 'continue from this model directory ("builtin": the shipped base model) instead of a random initialisation' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function pretrainCommand(argv: string[]): Promise<number> {
  const f = parseFlags(argv, PRETRAIN_FLAGS);
  if (f.help) {
    console.log(helpText('pretrain', 'train the built-in base model (supervised) and save it', PRETRAIN_FLAGS));
    return 0;
  }
  const out = resolve(String(f.out));
  if (existsSync(out) && !existsSync(join(out, 'config.json'))) {
    throw new UsageError(`--out ${out} exists and is not a model directory; it would be replaced: choose another --out`);
  }
  let initDir: string | undefined;
  if (f.init !== undefined) {
    try {
      initDir = modelDirOf(String(f.init) === 'builtin' ? 'builtin' : resolve(String(f.init)));
    } catch (e) {
      // modelDirOf speaks of --model; here the directory came from --init.
      throw e instanceof UsageError ? new UsageError(e.message.replace(/^--model /, '--init ')) : e;
    }
  }
  const previousPath = initDir && join(initDir, 'pretrain.json');
  if (previousPath && !existsSync(previousPath)) throw new UsageError(`--init ${initDir}: no pretrain.json (not made by softgrad pretrain)`);
  const tokenizer = builtinTokenizer();
  const config = builtinModelConfig(tokenizer.vocabSize);
  const seed = Number(f.seed);
  const problems = generateTask({ seed, split: 'train', count: Number(f.examples) });
  const shortcut = Number(f['shortcut-fraction']);
  // Which examples are shortcuts depends on the seed and the index only: reproducible.
  const isShortcut = (i: number) => fnv1a32(`${seed}:shortcut:${i}`) / 2 ** 32 < shortcut;
  const examples = problems.map((p, i) => ({
    prompt: formatPrompt(p.question),
    completion: formatSupervisedTarget(isShortcut(i) ? shortcutAnswer(p) : p.answer),
  }));
  const previous = previousPath ? parseJsonStrict(readFileSync(previousPath, 'utf8'), previousPath) : null;
  const init = initDir ? (await loadModel(initDir)).params : initParams(config, seed);
  log(`pretrain: ${parameterCount(init)} parameters, vocab ${tokenizer.vocabSize}, ${examples.length} examples (${problems.filter((_, i) => isShortcut(i)).length} in the shortcut style)`);
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
  // Swapped in whole: a crash leaves the previous model or the new one, never a mixture.
  await swapDirectory(out, async (tmp) => {
    await saveModel(tmp, config, params);
    await tokenizer.save(tmp);
    writeFileAtomicSync(join(tmp, 'pretrain.json'), `${JSON.stringify({ flags: f, finalLoss: ema, history, previous }, null, 1)}\n`);
  });
  T.treeDispose(params);
  log(`pretrain: saved ${out} (final loss ${ema.toFixed(4)})`);
  return 0;
}
