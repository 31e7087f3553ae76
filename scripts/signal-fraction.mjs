#!/usr/bin/env node
/**
 * How much of one RL step's gradient is signal: K independent RLOO batch gradients g_k of the
 * same model, and the fraction ‖E g‖² / E‖g‖² estimated without bias as
 * mean_{j≠k} g_j·g_k / mean_k ‖g_k‖² (1: every batch points the same way; 0: pure noise; it can
 * come out slightly negative when the signal is below the estimate's noise). docs/demo.md uses it
 * to explain why a base model needs a choice that RL can learn from every problem at once.
 *
 *   npm run build && node scripts/signal-fraction.mjs [--model builtin|DIR] [--kind hard|soft|fuzzy]
 *       [--batches 10] [--batch-prompts 4] [--samples 16] [--prompts diverse|fixed] [--seed 0]
 *
 * --prompts diverse draws each batch's prompts from 1,000 training problems (as training does);
 * --prompts fixed uses the same B prompts in every batch (which measures how well one batch
 * pins down *those* prompts' gradient, not the task's).
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = (pkg) => join(root, 'packages', pkg, 'dist', 'index.js');
const T = await import(dist('tensor'));
const M = await import(dist('transformer'));
const S = await import(dist('softtokens'));

const flags = { model: 'builtin', kind: 'hard', batches: '10', 'batch-prompts': '4', samples: '16', prompts: 'diverse', seed: '0' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const name = argv[i].replace(/^--/, '');
  if (!(name in flags) || argv[i + 1] === undefined) {
    console.error(`signal-fraction: unknown flag or missing value: ${argv[i]} (flags: ${Object.keys(flags).map((k) => `--${k}`).join(' ')})`);
    process.exit(2);
  }
  flags[name] = argv[++i];
}
const K = Number(flags.batches);
const B = Number(flags['batch-prompts']);
const G = Number(flags.samples);
const seed = Number(flags.seed);
if (!S.COT_KINDS.includes(flags.kind)) { console.error(`signal-fraction: --kind ${flags.kind}: expected hard, soft or fuzzy`); process.exit(2); }
if (!['diverse', 'fixed'].includes(flags.prompts)) { console.error(`signal-fraction: --prompts ${flags.prompts}: expected diverse or fixed`); process.exit(2); }
for (const [n, v, min] of [['batches', K, 2], ['batch-prompts', B, 1], ['samples', G, 2]]) {
  if (!Number.isInteger(v) || v < min) { console.error(`signal-fraction: --${n} must be an integer ≥ ${min}`); process.exit(2); }
}

const dir = flags.model === 'builtin' ? S.builtinBaseModelDir() : flags.model;
const { config, params } = await M.loadModel(dir);
const tokenizer = await M.loadHfTokenizer(dir);
const problems = S.builtinProblems('train', 1000, seed);
const order = Array.from({ length: problems.length }, (_, i) => i);
const rng = new S.SeededRng(seed + 1);
for (let i = order.length - 1; i > 0; i--) {
  const j = rng.int(0, i);
  [order[i], order[j]] = [order[j], order[i]];
}
const grads = [];
let rewardSum = 0;
let count = 0;
for (let k = 0; k < K; k++) {
  const picked = Array.from({ length: B }, (_, j) => problems[flags.prompts === 'fixed' ? j : order[(k * B + j) % order.length]]);
  const batch = await S.rollout({
    config, params, tokenizer, prompts: picked.map((p) => S.formatPrompt(p.question)), samples: G,
    cot: S.trainingCotSettings(flags.kind), maxCot: 128, maxAnswer: 32, answerSample: true, answerTau: 1, key: T.key(1000 * seed + k),
  });
  const rewards = picked.map((p, b) => batch.rollouts.slice(b * G, (b + 1) * G).map((r) => S.reward(r.answerText, p.reference)));
  for (const r of rewards.flat()) { rewardSum += r; count++; }
  const [loss, g] = S.rlooValueAndGrad(config, params, batch, S.rlooAdvantages(rewards));
  const flat = [];
  for (const leaf of T.treeLeaves(g)) flat.push(await leaf.data());
  grads.push(flat);
  loss.dispose();
  T.treeDispose(g);
  S.disposeRolloutBatch(batch);
  process.stderr.write(`\rsignal-fraction: batch ${k + 1}/${K}`);
}
process.stderr.write('\n');
const dot = (a, b) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) for (let j = 0; j < a[i].length; j++) s += a[i][j] * b[i][j];
  return s;
};
let own = 0;
let cross = 0;
let pairs = 0;
for (let i = 0; i < K; i++) {
  own += dot(grads[i], grads[i]);
  for (let j = i + 1; j < K; j++) { cross += dot(grads[i], grads[j]); pairs++; }
}
own /= K;
cross /= pairs;
console.log(
  `${flags.kind}, ${flags.prompts} prompts, B=${B} × G=${G}, ${K} batches, model ${flags.model}: ` +
  `signal fraction ${(cross / own).toFixed(4)} (mean reward ${(rewardSum / count).toFixed(1)}, mean ‖g‖ ${Math.sqrt(own).toFixed(0)})`,
);
