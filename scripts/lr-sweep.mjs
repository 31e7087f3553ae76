#!/usr/bin/env node
/**
 * The learning-rate sweep behind the demo's per-kind learning rates (docs/demo.md): for each
 * CoT kind and learning rate, one `softgrad train` run with the default preset's budget and
 * seed, validated in the kind's own greedy mode on held-out training-distribution problems
 * (never the test split). The criterion is the mean validation accuracy over the second half
 * of the run (less noisy than the single best validation); ties go to the smaller rate.
 *
 *   npm run build && node scripts/lr-sweep.mjs [--kinds hard,soft,fuzzy] [--lrs 3e-4,1e-3,3e-3] [--lrs-soft 1e-4,3e-4,1e-3]
 *       [--out reports/lr-sweep] [--jobs 1] [--seed 0] [--preset default] [--reuse true]
 *
 * --reuse true keeps runs in OUT/runs that already finished (their checkpoint is at the last
 * step), so that a sweep can be widened without training its finished runs again.
 * Writes OUT/sweep.md and OUT/sweep.json (atomically) and every run directory under OUT/runs.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const MAIN = join(root, 'packages', 'cli', 'dist', 'main.js');
if (!existsSync(MAIN)) {
  console.error('lr-sweep: packages/cli/dist/main.js not found; run npm run build first');
  process.exit(2);
}
const { DEMO_PRESETS } = await import(join(root, 'packages', 'cli', 'dist', 'demo.js'));
const { writeFileAtomicSync } = await import(join(root, 'packages', 'transformer', 'dist', 'index.js'));
const { markdownTable } = await import(join(root, 'packages', 'softtokens', 'dist', 'index.js'));

const flags = { kinds: 'hard,soft,fuzzy', lrs: '3e-4,1e-3,3e-3', 'lrs-hard': '', 'lrs-soft': '', 'lrs-fuzzy': '', out: 'reports/lr-sweep', jobs: '1', seed: '0', preset: 'default', reuse: 'false' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const name = argv[i].replace(/^--/, '');
  if (!(name in flags) || argv[i + 1] === undefined) {
    console.error(`lr-sweep: unknown flag or missing value: ${argv[i]} (flags: ${Object.keys(flags).map((k) => `--${k}`).join(' ')})`);
    process.exit(2);
  }
  flags[name] = argv[++i];
}
const preset = DEMO_PRESETS[flags.preset];
if (!preset) {
  console.error(`lr-sweep: --preset ${flags.preset}: unknown (expected ${Object.keys(DEMO_PRESETS).join(', ')})`);
  process.exit(2);
}
const kinds = flags.kinds.split(',');
for (const k of kinds) if (!['hard', 'soft', 'fuzzy'].includes(k)) { console.error(`lr-sweep: --kinds: unknown kind "${k}"`); process.exit(2); }
const lrsOf = (kind) => {
  const spec = flags[`lrs-${kind}`] || flags.lrs;
  const lrs = spec.split(',').map(Number);
  if (lrs.some((x) => !(x > 0))) { console.error(`lr-sweep: --lrs${flags[`lrs-${kind}`] ? `-${kind}` : ''} ${spec}: expected positive numbers`); process.exit(2); }
  return lrs;
};
const out = resolve(flags.out);
mkdirSync(join(out, 'runs'), { recursive: true });
const v = preset.values;

const runs = kinds.flatMap((kind) => lrsOf(kind).map((lr) => ({ kind, lr, dir: join(out, 'runs', `${kind}-lr${lr}`) })));
const t0 = performance.now();
let done = 0;
function finished(run) {
  const path = join(run.dir, 'checkpoint', 'state.json');
  return existsSync(path) && JSON.parse(readFileSync(path, 'utf8')).step === v.steps;
}
async function train(run) {
  if (flags.reuse === 'true' && finished(run)) {
    done++;
    console.error(`lr-sweep: ${done}/${runs.length} ${run.kind} lr ${run.lr}: finished before, reused`);
    return;
  }
  const args = [MAIN, 'train', '--model', 'builtin', '--data', 'builtin:train', '--val', 'builtin:val', '--val-count', String(v['val-count']),
    '--out', run.dir, '--mode', run.kind, '--batch-prompts', String(v['batch-prompts']), '--samples', String(v.samples),
    '--max-cot', String(v['max-cot']), '--lr', String(run.lr), '--warmup', String(v.warmup), '--steps', String(v.steps),
    '--eval-every', String(v['eval-every']), '--checkpoint-every', String(v['eval-every']), '--seed', flags.seed,
    '--max-grad-norm', String(v['max-grad-norm']), '--weight-decay', String(v['weight-decay']), '--noise-scale', String(v['noise-scale']),
    '--overwrite', '--quiet'];
  const t = performance.now();
  await new Promise((ok, fail) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { SOFTGRAD_THREADS: '1', ...process.env } });
    let tail = '';
    child.stderr.on('data', (d) => (tail = (tail + d).slice(-2000)));
    child.on('close', (code) => (code === 0 ? ok() : fail(new Error(`${run.kind} lr ${run.lr} failed (exit ${code}):\n${tail}`))));
  });
  done++;
  console.error(`lr-sweep: ${done}/${runs.length} ${run.kind} lr ${run.lr} in ${((performance.now() - t) / 1000).toFixed(0)}s (total ${((performance.now() - t0) / 60000).toFixed(1)} min)`);
}
const queue = [...runs];
await Promise.all(Array.from({ length: Math.max(1, Number(flags.jobs)) }, async () => {
  for (let r = queue.shift(); r; r = queue.shift()) await train(r);
}));

const results = runs.map((run) => {
  const state = JSON.parse(readFileSync(join(run.dir, 'checkpoint', 'state.json'), 'utf8'));
  const val = state.validation;
  const half = val.filter((p) => p.step > v.steps / 2);
  const metrics = readFileSync(join(run.dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const q = Math.max(1, Math.floor(metrics.length / 4));
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  return {
    kind: run.kind, lr: run.lr, base: val[0].accuracy, secondHalf: mean(half.map((p) => p.accuracy)), best: Math.max(...val.map((p) => p.accuracy)),
    final: val[val.length - 1].accuracy, rewardFirst: mean(metrics.slice(0, q).map((m) => m.reward)), rewardLast: mean(metrics.slice(-q).map((m) => m.reward)),
    medianGradNorm: metrics.map((m) => m.gradNorm).sort((a, b) => a - b)[Math.floor(metrics.length / 2)],
  };
});
const chosen = Object.fromEntries(kinds.map((k) => {
  const rs = results.filter((r) => r.kind === k);
  return [k, rs.reduce((a, b) => (b.secondHalf > a.secondHalf ? b : a)).lr];
}));
const pct = (x) => (100 * x).toFixed(1);
const table = markdownTable(
  ['kind', 'lr', 'val % step 0', 'val % mean 2nd half', 'val % best', 'val % final', 'reward 1st quarter', 'reward last quarter', 'median grad norm', 'chosen'],
  results.map((r) => [r.kind, String(r.lr), pct(r.base), pct(r.secondHalf), pct(r.best), pct(r.final), r.rewardFirst.toFixed(1), r.rewardLast.toFixed(1), r.medianGradNorm.toExponential(1), chosen[r.kind] === r.lr ? '✓' : '']),
);
const md = `# Learning-rate sweep (preset ${flags.preset}: ${v.steps} steps × B ${v['batch-prompts']} × G ${v.samples}, warm-up ${v.warmup}, no clipping, seed ${flags.seed})\n\n`
  + `Validation: ${v['val-count']} held-out training-distribution problems, each kind in its own greedy mode, every ${v['eval-every']} steps.\n`
  + `Criterion: mean validation accuracy over the second half of the run.\n\n${table}\nChosen: ${JSON.stringify(chosen)}; wall time ${((performance.now() - t0) / 60000).toFixed(1)} min.\n`;
writeFileAtomicSync(join(out, 'sweep.md'), md);
writeFileAtomicSync(join(out, 'sweep.json'), `${JSON.stringify({ preset: flags.preset, seed: Number(flags.seed), results, chosen }, null, 1)}\n`);
console.log(md);
