/**
 * `softgrad demo` (what `npm start` runs): the whole pipeline on the built-in task (docs/method.md).
 * The shipped base model is trained with hard, soft and fuzzy RL (same budget, same seed),
 * then the base and the three trained models are evaluated in the six inference modes and
 * out of domain, and a report directory is written: Markdown tables laid out like the
 * paper's Table 1, the out-of-domain table, SVG plots, and every raw result.
 *
 * Runs and evaluations are separate `softgrad train` / `softgrad eval` processes, so that
 * both CPU cores work and each run's directory is exactly what those commands produce.
 */
import { spawn as spawnProcess, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, createWriteStream } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus } from 'node:os';
import { parseJsonStrict, writeFileAtomicSync } from '@softgrad/transformer';
import {
  builtinBaseModelDir, lineChartSvg, markdownTable, toJsonl, builtinProblems, type StepMetrics,
} from '@softgrad/softtokens';
import { helpText, parseFlags, UsageError, type FlagSpecs } from './args.js';
import { BACKEND_FLAG, prepareOutputDir } from './common.js';
import type { EvalReport } from './eval.js';
import { formatDuration, log } from './progress.js';

export const DEMO_FLAGS: FlagSpecs = {
  out: { type: 'string', help: 'report directory (a re-run replaces the runs and results in it)', default: 'reports/demo' },
  model: { type: 'string', help: 'base model directory', default: 'builtin' },
  steps: { type: 'int', help: 'RL steps per training kind', default: 80, min: 1 },
  'batch-prompts': { type: 'int', help: 'B: prompts per RL step', default: 2, min: 1 },
  samples: { type: 'int', help: 'G: samples per prompt in training', default: 16, min: 2 },
  lr: { type: 'number', help: 'peak learning rate', default: 1e-4, min: 0 },
  warmup: { type: 'int', help: 'warm-up steps', default: 5, min: 0 },
  'max-cot': { type: 'int', help: 'maximum CoT length (training and evaluation)', default: 48, min: 1 },
  'test-count': { type: 'int', help: 'test problems evaluated', default: 40, min: 1 },
  'ood-count': { type: 'int', help: 'out-of-domain word problems', default: 40, min: 1 },
  'choice-count': { type: 'int', help: 'multiple-choice items', default: 60, min: 1 },
  'val-count': { type: 'int', help: 'validation problems (checkpoint choice)', default: 40, min: 0 },
  'eval-every': { type: 'int', help: 'validate every N RL steps', default: 20, min: 0 },
  'eval-samples': { type: 'int', help: 'samples per problem in sampling modes (pass@k, k ≤ this)', default: 32, min: 1 },
  seed: { type: 'int', help: 'seed of everything', default: 0, min: 0 },
  jobs: { type: 'int', help: 'evaluation processes at once (default: number of CPUs, at most 4); the three RL runs always run together', min: 1 },
  ...BACKEND_FLAG,
  help: { type: 'boolean', help: 'show this help' },
};

const KINDS = ['hard', 'soft', 'fuzzy'] as const;
const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

interface Job {
  name: string;
  args: string[];
  logFile: string;
  /** Progress in [0, 1]. */
  progress: () => number;
}

/** The demo was stopped by Ctrl-C; its running jobs stopped at their safe points. */
class DemoInterrupted extends Error {}

// Jobs run in their own process groups, so that a terminal's Ctrl-C reaches them once,
// forwarded by the demo, and not a second time (which would make them stop at once).
const running = new Set<ChildProcess>();
let interrupted = false;

function runJob(job: Job): Promise<void> {
  return new Promise((resolveJob, reject) => {
    if (interrupted) return reject(new DemoInterrupted());
    const logStream = createWriteStream(job.logFile);
    const child = spawnProcess(process.execPath, [MAIN, ...job.args, '--quiet'], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    running.add(child);
    child.stdout!.pipe(logStream, { end: false });
    child.stderr!.pipe(logStream, { end: false });
    let tail = '';
    child.stderr!.on('data', (d: Buffer) => (tail = (tail + d.toString()).slice(-2000)));
    child.on('error', reject);
    child.on('close', (code) => {
      running.delete(child);
      logStream.end();
      if (code === 0) resolveJob();
      else if (code === 130 && interrupted) reject(new DemoInterrupted());
      else reject(new Error(`${job.name} failed (exit ${code}); last output:\n${tail.trim().split('\n').slice(-5).join('\n')}\nfull log: ${job.logFile}`));
    });
  });
}

async function runPool(label: string, jobs: Job[], parallel: number): Promise<void> {
  const t0 = performance.now();
  const tty = process.stderr.isTTY === true;
  let lastPrint = 0;
  const show = (final = false) => {
    const now = performance.now();
    if (!final && now - lastPrint < (tty ? 500 : 10_000)) return;
    lastPrint = now;
    const parts = jobs.map((j) => `${j.name} ${Math.round(100 * Math.min(1, j.progress()))}%`).join('  ');
    const line = `${label}: ${parts}  ${formatDuration((now - t0) / 1000)}`;
    process.stderr.write(tty ? `\r\x1b[K${line}${final ? '\n' : ''}` : `${line}\n`);
  };
  const timer = setInterval(() => show(), 500);
  try {
    const queue = [...jobs];
    const workers = Array.from({ length: Math.min(parallel, jobs.length) }, async () => {
      for (let j = queue.shift(); j; j = queue.shift()) await runJob(j);
    });
    // Every worker finishes (a failed job must not leave the others running unwatched).
    const results = await Promise.allSettled(workers);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  } finally {
    clearInterval(timer);
  }
  show(true);
}

function countLines(path: string): number {
  if (!existsSync(path)) return 0;
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).length;
}

export async function demoCommand(argv: string[]): Promise<number> {
  const f = parseFlags(argv, DEMO_FLAGS);
  if (f.help) {
    console.log(helpText('demo', 'the whole pipeline on the built-in task: RL (hard/soft/fuzzy), six-mode evaluation, report', DEMO_FLAGS));
    return 0;
  }
  const t0 = performance.now();
  const out = resolve(String(f.out));
  const model = String(f.model) === 'builtin' ? builtinBaseModelDir() : resolve(String(f.model));
  if (!existsSync(join(model, 'config.json'))) throw new UsageError(`--model ${model}: base model not found (no config.json)`);
  prepareOutputDir('out', out);
  for (const d of ['runs', 'eval', 'logs', 'data']) mkdirSync(join(out, d), { recursive: true });
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log('\ndemo: interrupted; stopping the running jobs at their safe points (Ctrl-C again to stop at once)');
    for (const child of running) child.kill('SIGINT');
  };
  process.on('SIGINT', onSigint);
  try {
    await runDemo(f, out, model, t0);
  } catch (e) {
    if (!(e instanceof DemoInterrupted)) throw e;
    log(`demo: stopped; the runs in ${join(out, 'runs')} can be continued with softgrad train … --resume (see ${join(out, 'logs')})`);
    return 130;
  } finally {
    process.off('SIGINT', onSigint);
  }
  return 0;
}

async function runDemo(f: Record<string, string | number | boolean | undefined>, out: string, model: string, t0: number): Promise<void> {
  const seed = Number(f.seed);
  const steps = Number(f.steps);
  const parallel = Number(f.jobs ?? Math.min(4, Math.max(1, cpus().length)));
  const maxCot = String(f['max-cot']);
  log(`demo: base model ${model}; report → ${out}; ${parallel} process(es) at a time; backend ${f.backend}`);

  // The exact problems used, for inspection.
  writeFileAtomicSync(join(out, 'data', 'test.jsonl'), toJsonl(builtinProblems('test', Number(f['test-count']), seed + 1)));
  writeFileAtomicSync(join(out, 'data', 'ood.jsonl'), toJsonl(builtinProblems('ood', Number(f['ood-count']), seed + 1)));

  // 1. RL with each CoT kind, same budget and seed.
  const trainJobs: Job[] = KINDS.map((kind) => {
    const dir = join(out, 'runs', kind);
    return {
      name: kind,
      logFile: join(out, 'logs', `train-${kind}.log`),
      progress: () => countLines(join(dir, 'metrics.jsonl')) / steps,
      args: [
        'train', '--model', model, '--data', 'builtin:train', '--val', 'builtin:val', '--val-count', String(f['val-count']),
        '--out', dir, '--mode', kind, '--batch-prompts', String(f['batch-prompts']), '--samples', String(f.samples),
        '--max-cot', maxCot, '--lr', String(f.lr), '--warmup', String(f.warmup), '--steps', String(steps),
        '--eval-every', String(f['eval-every']), '--checkpoint-every', String(f['eval-every']), '--seed', String(seed),
        '--max-grad-norm', '1', '--overwrite', '--backend', String(f.backend),
      ],
    };
  });
  // The three runs take the same time, so sharing the cores three ways finishes soonest.
  await runPool('RL training', trainJobs, trainJobs.length);

  // 2. Evaluate base and trained models (the checkpoint with the best greedy validation accuracy).
  const models: [string, string][] = [['base', model], ...KINDS.map((k): [string, string] => {
    const best = join(out, 'runs', k, 'best');
    return [k, existsSync(join(best, 'config.json')) ? best : join(out, 'runs', k, 'checkpoint')];
  })];
  const testCount = Number(f['test-count']);
  const evalJobs: Job[] = models.flatMap(([name, dir]) => [
    {
      name: `${name}`,
      logFile: join(out, 'logs', `eval-${name}.log`),
      progress: () => (existsSync(join(out, 'eval', name, 'results.json')) ? 1 : 0),
      args: ['eval', '--model', dir, '--data', 'builtin:test', '--count', String(testCount), '--modes', 'all',
        '--samples', String(f['eval-samples']), '--max-cot', maxCot, '--choices', 'builtin', '--choice-count', String(f['choice-count']),
        '--seed', String(seed), '--out', join(out, 'eval', name), '--backend', String(f.backend)],
    },
    {
      name: `${name}-ood`,
      logFile: join(out, 'logs', `eval-${name}-ood.log`),
      progress: () => (existsSync(join(out, 'eval', `${name}-ood`, 'results.json')) ? 1 : 0),
      args: ['eval', '--model', dir, '--data', 'builtin:ood', '--count', String(f['ood-count']), '--modes', 'hard-greedy',
        '--max-cot', maxCot, '--seed', String(seed), '--out', join(out, 'eval', `${name}-ood`), '--backend', String(f.backend)],
    },
  ]);
  await runPool('evaluation', evalJobs, parallel);

  // 3. The report.
  const readJson = (path: string) => parseJsonStrict(readFileSync(path, 'utf8'), path);
  const read = (name: string) => readJson(join(out, 'eval', name, 'results.json')) as EvalReport;
  const evals = Object.fromEntries(models.map(([n]) => [n, { test: read(n), ood: read(`${n}-ood`) }]));
  const metrics = Object.fromEntries(KINDS.map((k) => [k, readFileSync(join(out, 'runs', k, 'metrics.jsonl'), 'utf8')
    .split('\n').filter(Boolean).map((l) => JSON.parse(l) as StepMetrics)]));
  const best = Object.fromEntries(KINDS.map((k) => {
    const path = join(out, 'runs', k, 'best', 'best.json');
    return [k, existsSync(path) ? (readJson(path) as { step: number; accuracy: number }) : undefined];
  }));
  const report = buildReport({ evals, metrics, best, flags: f, wallSeconds: (performance.now() - t0) / 1000, out });
  writeFileAtomicSync(join(out, 'report.md'), report.markdown);
  for (const [file, svg] of Object.entries(report.svgs)) writeFileAtomicSync(join(out, file), svg);
  writeFileAtomicSync(join(out, 'summary.json'), `${JSON.stringify(report.summary, null, 1)}\n`);
  console.log(report.markdown);
  log(`demo: finished in ${formatDuration((performance.now() - t0) / 1000)}; report at ${join(out, 'report.md')}`);
}

type Cell = { g1: number; s1: number; s32: number };

interface ReportInput {
  evals: Record<string, { test: EvalReport; ood: EvalReport }>;
  metrics: Record<string, StepMetrics[]>;
  /** Each run's best.json: the step whose model was evaluated (0: the starting model). */
  best?: Record<string, { step: number; accuracy: number } | undefined>;
  flags: Record<string, unknown>;
  wallSeconds: number;
  out: string;
}

const pct = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '–' : (100 * x).toFixed(1));

/** summary.json: the report's numbers as numbers (fractions in [0, 1]; null where there is none). */
export interface DemoSummary {
  table1: { model: string; cells: Record<string, { greedyPass1: number | null; samplePass1: number | null; samplePassK: number | null }> }[];
  passK: number;
  ood: { model: string; oodGreedyPass1: number | null; choiceAccuracy: number | null; choiceNll: number | null }[];
  training: { kind: string; steps: number; bestStep: number | null; bestValAccuracy: number | null }[];
  findings: string[];
  wallSeconds: number;
}

const num = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? null : x);

export function buildReport(input: ReportInput): { markdown: string; svgs: Record<string, string>; summary: DemoSummary } {
  const names = Object.keys(input.evals);
  const modeOf = (name: string, mode: string) => input.evals[name]!.test.modes.find((m) => m.mode === mode);
  const cell = (name: string, kind: string): Cell => {
    const g = modeOf(name, `${kind}-greedy`);
    const s = modeOf(name, `${kind}-sample`);
    return { g1: g?.passAt1 ?? NaN, s1: s?.passAt1 ?? NaN, s32: s ? s.passAtK[Math.min(31, s.passAtK.length - 1)]! : NaN };
  };
  const table1Rows = names.map((n) => [n === 'base' ? 'base model' : `${n}-trained`, ...KINDS.flatMap((k) => {
    const c = cell(n, k);
    return [pct(c.g1), pct(c.s1), pct(c.s32)];
  })]);
  const evalSamples = Number(input.flags['eval-samples']);
  const sk = evalSamples >= 32 ? 'S@32' : `S@${evalSamples}`;
  const table1 = markdownTable(
    ['training ↓ / inference →', ...KINDS.flatMap((k) => [`${k} G@1`, `${k} S@1`, `${k} ${sk}`])],
    table1Rows,
  );
  const oodRows = names.map((n) => {
    const e = input.evals[n]!;
    return [n === 'base' ? 'base model' : `${n}-trained`, pct(e.ood.modes[0]?.passAt1), pct(e.test.choices?.accuracy), e.test.choices ? e.test.choices.meanNll.toFixed(3) : '–'];
  });
  const oodTable = markdownTable(['model', 'OOD word problems G@1 % (hard)', 'multiple choice acc %', 'NLL of correct choice (nats)'], oodRows);
  const entropyMean = (n: string, mode: string) => {
    const m = modeOf(n, mode);
    return m && m.entropyByPosition.length ? m.entropyByPosition.reduce((a, b) => a + b, 0) / m.entropyByPosition.length : NaN;
  };
  const detailRows = names.flatMap((n) => input.evals[n]!.test.modes.map((m) => [
    n, m.mode, pct(m.passAt1), m.samples > 1 ? pct(m.passAtK[m.passAtK.length - 1]) : '–', pct(m.formatRate), m.meanCotLength.toFixed(1), pct(m.stopRate),
    Number.isNaN(entropyMean(n, m.mode)) ? '–' : entropyMean(n, m.mode).toFixed(3),
  ]));
  const details = markdownTable(['model', 'mode', 'pass@1 %', `pass@${evalSamples} %`, 'boxed %', 'CoT length', 'stop string %', 'mean CoT entropy'], detailRows);

  const trainRows = KINDS.map((k) => {
    const h = input.metrics[k] ?? [];
    const last = h.slice(-Math.max(1, Math.floor(h.length / 4)));
    const first = h.slice(0, Math.max(1, Math.floor(h.length / 4)));
    const avg = (xs: StepMetrics[], f: (m: StepMetrics) => number) => xs.reduce((a, m) => a + f(m), 0) / Math.max(1, xs.length);
    const vals = h.filter((m) => m.valAccuracy !== undefined).map((m) => m.valAccuracy!);
    return [k, String(h.length), avg(first, (m) => m.reward).toFixed(1), avg(last, (m) => m.reward).toFixed(1),
      vals.length ? pct(Math.max(...vals)) : '–', avg(h, (m) => m.tokensPerSecond).toFixed(0), avg(h, (m) => m.seconds).toFixed(2), h[0] ? h[0].sigma.toExponential(2) : '–'];
  });
  const trainTable = markdownTable(['training', 'steps', 'reward (first quarter)', 'reward (last quarter)', 'best val G@1 %', 'tokens/s', 's/step', 'σ', 'evaluated model'],
    trainRows.map((r, i) => {
      const b = input.best?.[KINDS[i]!];
      return [...r, b === undefined ? 'last checkpoint' : b.step === 0 ? 'step 0 (the base model was never beaten)' : `step ${b.step}`];
    }));

  // Findings, checked on the numbers above.
  const hardInf = (n: string) => cell(n, 'hard');
  const findings: string[] = [];
  const has = (n: string) => names.includes(n);
  if (has('hard') && has('soft') && has('fuzzy')) {
    const h = hardInf('hard'), s = hardInf('soft'), z = hardInf('fuzzy'), b = hardInf('base');
    // Two-sided comparisons against binomial noise over the n test problems: a difference is
    // called real only beyond two standard errors.
    const n = input.evals['base']!.test.modes[0]?.problems ?? 1;
    const se = (p: number, q: number) => Math.sqrt((p * (1 - p) + q * (1 - q)) / n);
    const vs = (a: number, c: number) => {
      const d = a - c;
      const e = se(a, c);
      return `${d >= 0 ? '+' : ''}${(100 * d).toFixed(1)} ± ${(100 * e).toFixed(1)}`;
    };
    const beyond = (a: number, c: number) => Math.abs(a - c) > 2 * se(a, c);
    const signal = Math.max(h.g1, s.g1, z.g1) > 0;
    findings.push(`1. pass@1, soft/fuzzy training ≈ hard training (hard inference, greedy): hard ${pct(h.g1)}, soft ${pct(s.g1)} (${vs(s.g1, h.g1)}), fuzzy ${pct(z.g1)} (${vs(z.g1, h.g1)}) → ${!signal ? 'no signal (all zero)' : !beyond(s.g1, h.g1) && !beyond(z.g1, h.g1) ? 'consistent (no difference beyond 2 standard errors)' : 'not shown'}.`);
    const higher = (a: number, c: number) => a > c && beyond(a, c);
    findings.push(`2. pass@${evalSamples}, soft/fuzzy training > hard training (hard inference): hard ${pct(h.s32)}, soft ${pct(s.s32)} (${vs(s.s32, h.s32)}), fuzzy ${pct(z.s32)} (${vs(z.s32, h.s32)}) → ${higher(s.s32, h.s32) && higher(z.s32, h.s32) ? 'shown' : higher(s.s32, h.s32) || higher(z.s32, h.s32) ? 'partly shown' : s.s32 > h.s32 || z.s32 > h.s32 ? 'same direction, within noise' : 'not shown'}.`);
    const nll = (m: string) => input.evals[m]!.test.choices?.meanNll ?? NaN;
    const nllSe = (m: string) => input.evals[m]!.test.choices?.nllStdErr ?? NaN;
    const dn = (m: string) => `${nll(m) - nll('base') >= 0 ? '+' : ''}${(nll(m) - nll('base')).toFixed(3)}`;
    findings.push(`3. Out-of-domain NLL of the correct choice vs base ${nll('base').toFixed(3)} (± ${nllSe('base').toFixed(3)} over items): hard ${dn('hard')}, soft ${dn('soft')}, fuzzy ${dn('fuzzy')} → ${nll('hard') > nll('base') && nll('soft') - nll('base') < nll('hard') - nll('base') && nll('fuzzy') - nll('base') < nll('hard') - nll('base') ? 'same direction as the paper (hard raises it most)' : 'not shown'}.`);
    const ent = (m: string) => entropyMean(m, 'hard-sample');
    findings.push(`4. Mean CoT entropy (hard sampling): base ${ent('base').toFixed(3)}, hard ${ent('hard').toFixed(3)}, soft ${ent('soft').toFixed(3)}, fuzzy ${ent('fuzzy').toFixed(3)} → ${ent('hard') < ent('soft') && ent('hard') < ent('fuzzy') && ent('hard') < ent('base') ? 'same direction as the paper (hard training lowers it most)' : 'not shown'}.`);
    let best = { v: -1, n: '', k: '' };
    for (const n of names) for (const k of KINDS) if (cell(n, k).g1 > best.v) best = { v: cell(n, k).g1, n, k };
    findings.push(`5. Best greedy pass@1 cell: ${best.n}-${best.n === 'base' ? 'model' : 'trained'} with ${best.k} inference (${pct(best.v)}) → ${best.n !== 'hard' && best.n !== 'base' && best.k === 'hard' ? 'same as the paper (train soft/fuzzy, infer hard)' : 'not shown'}.`);
    findings.push(`Base model for reference (hard inference): G@1 ${pct(b.g1)}, S@1 ${pct(b.s1)}, ${sk} ${pct(b.s32)}.`);
  }

  const svgs: Record<string, string> = {};
  const ema = (xs: number[], a = 0.3) => {
    let e = xs[0] ?? 0;
    return xs.map((x) => (e = a * x + (1 - a) * e));
  };
  svgs['reward.svg'] = lineChartSvg({
    title: 'RL training: mean reward per step (EMA 0.3)', xLabel: 'step', yLabel: 'mean reward',
    series: KINDS.map((k) => ({ name: k, points: ema((input.metrics[k] ?? []).map((m) => m.reward)).map((y, i) => [i + 1, y] as [number, number]) })),
  });
  svgs['val-accuracy.svg'] = lineChartSvg({
    title: 'Greedy validation accuracy during RL', xLabel: 'step', yLabel: 'accuracy %',
    series: KINDS.map((k) => ({ name: k, points: (input.metrics[k] ?? []).filter((m) => m.valAccuracy !== undefined).map((m) => [m.step, 100 * m.valAccuracy!] as [number, number]) })),
  });
  for (const kind of KINDS) {
    svgs[`passk-${kind}.svg`] = lineChartSvg({
      title: `pass@k, ${kind} sampling inference (test split)`, xLabel: 'k', yLabel: 'pass@k %',
      series: names.map((n) => ({ name: n, points: (modeOf(n, `${kind}-sample`)?.passAtK ?? []).map((v, i) => [i + 1, 100 * v] as [number, number]) })),
    });
  }
  svgs['entropy.svg'] = lineChartSvg({
    title: 'Next-token entropy per CoT position (hard sampling inference)', xLabel: 'CoT position', yLabel: 'entropy (nats)',
    series: names.map((n) => {
      const m = modeOf(n, 'hard-sample');
      // Positions reached by fewer than 10% of samples are noise.
      const maxCount = Math.max(1, ...(m?.entropyCounts ?? [1]));
      return { name: n, points: (m?.entropyByPosition ?? []).map((v, i) => [i + 1, v] as [number, number]).filter((_, i) => (m!.entropyCounts[i] ?? 0) >= 0.1 * maxCount) };
    }),
  });

  const flags = Object.entries(input.flags).filter(([k, v]) => v !== undefined && k !== 'help').map(([k, v]) => `--${k} ${String(v)}`).join(' ');
  const sampleLines = names.map((n) => {
    const o = modeOf(n, 'hard-greedy')?.outcomes[0];
    return o ? `- **${n}** (hard greedy) — Q: ${o.question}\n  CoT: \`${o.cotText.replace(/`/g, "'")}\` → \`${o.answerText}\` (reference ${o.reference}, reward ${o.rewards[0]})` : '';
  }).join('\n');
  const markdown = `# softgrad demo report

Soft-token RL (RLOO) on the built-in arithmetic task: the shipped base model trained with hard, soft and fuzzy chain of thought
(same budget and seed), then evaluated in the six inference modes (docs/method.md, "Evaluation"). Wall time ${formatDuration(input.wallSeconds)}.

Settings: \`${flags}\`. Trained models are the checkpoints with the best greedy validation accuracy (hard greedy), as in the paper;
the base model itself is a candidate, so a run that never beats it is evaluated as the base model (see "evaluated model" below).
G@1 = greedy pass@1, S@1 = sampled pass@1, ${sk} = pass@${Math.min(32, evalSamples)} from ${evalSamples} samples (unbiased estimator). All numbers are %.

## Table 1 — test split (${input.evals[names[0]!]!.test.modes[0]?.problems ?? '?'} problems)

${table1}

## Out of domain

${oodTable}

## What the paper found, checked here

${findings.join('\n')}

Differences are given ± one standard error (binomial over the test problems); only differences beyond two standard errors are called real. These are tiny models and small samples.

## Training

${trainTable}

![reward](reward.svg) ![validation](val-accuracy.svg)

## pass@k and entropy

![pass@k hard](passk-hard.svg) ![pass@k soft](passk-soft.svg) ![pass@k fuzzy](passk-fuzzy.svg)

![entropy](entropy.svg)

## Every mode

${details}

## Example outputs

${sampleLines}

Raw results: \`eval/*/results.json\`, training logs \`runs/*/metrics.jsonl\`, problems \`data/*.jsonl\`.
`;
  const summary: DemoSummary = {
    table1: names.map((n) => ({
      model: n,
      cells: Object.fromEntries(KINDS.map((k) => {
        const c = cell(n, k);
        return [k, { greedyPass1: num(c.g1), samplePass1: num(c.s1), samplePassK: num(c.s32) }];
      })),
    })),
    passK: Math.min(32, evalSamples),
    ood: names.map((n) => {
      const e = input.evals[n]!;
      return { model: n, oodGreedyPass1: num(e.ood.modes[0]?.passAt1), choiceAccuracy: num(e.test.choices?.accuracy), choiceNll: num(e.test.choices?.meanNll) };
    }),
    training: KINDS.map((k) => {
      const h = input.metrics[k] ?? [];
      const vals = h.filter((m) => m.valAccuracy !== undefined).map((m) => m.valAccuracy!);
      return { kind: k, steps: h.length, bestStep: input.best?.[k]?.step ?? null, bestValAccuracy: num(input.best?.[k]?.accuracy ?? (vals.length ? Math.max(...vals) : undefined)) };
    }),
    findings,
    wallSeconds: input.wallSeconds,
  };
  return { markdown, svgs, summary };
}

