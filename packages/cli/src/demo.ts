/**
 * `softgrad demo` (what `npm start` runs): the whole pipeline on the built-in task (docs/demo.md).
 * The shipped base model is trained with hard, soft and fuzzy RL (same budget, same seeds),
 * then the base and the trained models are evaluated in the six inference modes and out of
 * domain, and a report directory is written: the headline (did RL improve the base, with its
 * interval), Table 1 in the paper's layout, the out-of-domain table, the paper's five findings
 * tested with paired statistics, every setting, SVG plots and every raw result.
 *
 * Runs and evaluations are separate `softgrad train` / `softgrad eval` processes, so that
 * every CPU core works and each run's directory is exactly what those commands produce.
 */
import { spawn as spawnProcess, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus } from 'node:os';
import { parseJsonStrict, writeFileAtomicSync } from '@softgrad/transformer';
import { COT_KINDS, builtinBaseModelDir, builtinProblems, toJsonl, type CotKind, type StepMetrics } from '@softgrad/softtokens';
import { helpText, parseFlags, UsageError, type FlagSpecs } from './args.js';
import { prepareOutputDir } from './common.js';
import { buildDemoReport, type EvalPair } from './demo-report.js';
import type { EvalReport } from './eval.js';
import { formatDuration, log } from './progress.js';

/** What a preset sets; any flag given on the command line wins over it. */
export interface DemoPreset {
  description: string;
  values: Record<string, number>;
}

/**
 * The learning rates of the default budget, from the sweep in docs/demo.md (each kind's best
 * mean validation accuracy over the second half of its run, in its own greedy mode).
 */
export const DEMO_LEARNING_RATES: Record<CotKind, number> = { hard: 5e-5, soft: 1e-5, fuzzy: 3e-5 };

const COMMON = {
  warmup: 20, 'max-cot': 128, 'test-count': 200, 'ood-count': 200, 'choice-count': 200, 'val-count': 100, 'eval-samples': 32,
  'lr-hard': DEMO_LEARNING_RATES.hard, 'lr-soft': DEMO_LEARNING_RATES.soft, 'lr-fuzzy': DEMO_LEARNING_RATES.fuzzy,
  'max-grad-norm': 0, 'weight-decay': 0, 'noise-scale': 0.33,
};

export const DEMO_PRESETS: Record<string, DemoPreset> = {
  default: {
    description: 'what npm start runs: under 10 minutes on 2 CPU cores, one seed',
    values: { ...COMMON, steps: 250, 'batch-prompts': 4, samples: 16, 'eval-every': 25, seeds: 1 },
  },
  seeds: {
    description: 'the default budget with three seeds (mean ± sd over seeds), about 3× the default time',
    values: { ...COMMON, steps: 250, 'batch-prompts': 4, samples: 16, 'eval-every': 25, seeds: 3 },
  },
  paper: {
    description: "the paper's schedule: B = 2 × G = 32, 4000 steps, 20 warm-up steps, cosine, three seeds (hours; use --backend webgpu and --jobs where there is a GPU or many cores)",
    values: { ...COMMON, steps: 4000, 'batch-prompts': 2, samples: 32, 'eval-every': 100, 'val-count': 200, seeds: 3 },
  },
};

export const DEMO_FLAGS: FlagSpecs = {
  preset: { type: 'string', help: `budget and schedule (${Object.entries(DEMO_PRESETS).map(([k, p]) => `${k}: ${p.description}`).join('; ')}); flags given here override it`, default: 'default', choices: Object.keys(DEMO_PRESETS) },
  out: { type: 'string', help: 'report directory (a re-run replaces the runs and results in it)', default: 'reports/demo' },
  model: { type: 'string', help: 'base model directory', default: 'builtin' },
  steps: { type: 'int', help: 'RL steps per run', min: 1 },
  'batch-prompts': { type: 'int', help: 'B: prompts per RL step', min: 1 },
  samples: { type: 'int', help: 'G: samples per prompt in training', min: 2 },
  lr: { type: 'number', help: 'peak learning rate of every kind (default: each kind its own, --lr-hard/--lr-soft/--lr-fuzzy)', min: 0 },
  'lr-hard': { type: 'number', help: 'peak learning rate of hard RL', min: 0 },
  'lr-soft': { type: 'number', help: 'peak learning rate of soft RL', min: 0 },
  'lr-fuzzy': { type: 'number', help: 'peak learning rate of fuzzy RL', min: 0 },
  warmup: { type: 'int', help: 'warm-up steps (then cosine decay)', min: 0 },
  'weight-decay': { type: 'number', help: 'AdamW weight decay', min: 0 },
  'max-grad-norm': { type: 'number', help: 'clip the global gradient norm (0: no clipping)', min: 0 },
  'noise-scale': { type: 'number', help: 'γ of the soft/fuzzy noise (σ = γ·r/√d)', min: 0 },
  'max-cot': { type: 'int', help: 'maximum CoT length (training and evaluation)', min: 1 },
  seeds: { type: 'int', help: 'RL runs per kind, seeds --seed, --seed+1, ... (tables show mean ± sd)', min: 1 },
  'test-count': { type: 'int', help: 'test problems evaluated', min: 1 },
  'ood-count': { type: 'int', help: 'out-of-domain word problems', min: 1 },
  'choice-count': { type: 'int', help: 'multiple-choice items', min: 1 },
  'val-count': { type: 'int', help: 'validation problems (checkpoint choice, each kind in its own greedy mode)', min: 0 },
  'eval-every': { type: 'int', help: 'validate every N RL steps', min: 0 },
  'eval-samples': { type: 'int', help: 'samples per problem in sampling modes (pass@k, k ≤ this)', min: 1 },
  'margin-pass': { type: 'number', help: 'equivalence margin for pass@k differences, in points', default: 5, min: 0 },
  'margin-nll': { type: 'number', help: 'equivalence margin for NLL differences, nats per token', default: 0.05, min: 0 },
  'margin-entropy': { type: 'number', help: 'equivalence margin for CoT entropy differences, nats', default: 0.05, min: 0 },
  'bootstrap-resamples': { type: 'int', help: 'paired bootstrap resamples per interval', default: 10000, min: 100 },
  seed: { type: 'int', help: 'seed of everything (the first RL seed, the evaluation, the bootstrap)', default: 0, min: 0 },
  jobs: { type: 'int', help: 'processes at once (default: RL runs 3 at a time or one per CPU if more; evaluations one per CPU, at most 4)', min: 1 },
  backend: { type: 'string', help: 'compute backend of every run and evaluation', default: 'cpu', choices: ['cpu', 'webgpu'] },
  help: { type: 'boolean', help: 'show this help' },
};

/** The demo's settings: the preset's values, overridden by the flags given. */
export function resolveDemoSettings(f: Record<string, string | number | boolean | undefined>): Record<string, string | number | boolean> {
  const preset = DEMO_PRESETS[String(f.preset)];
  if (!preset) throw new UsageError(`--preset ${String(f.preset)}: unknown (expected ${Object.keys(DEMO_PRESETS).join(', ')})`);
  const out: Record<string, string | number | boolean> = { ...preset.values };
  for (const [k, v] of Object.entries(f)) if (v !== undefined && k !== 'help' && k !== 'lr') out[k] = v;
  if (f.lr !== undefined) {
    for (const k of COT_KINDS) if (f[`lr-${k}`] === undefined) out[`lr-${k}`] = Number(f.lr);
  }
  if (Number(out['eval-samples']) < 2) throw new UsageError(`--eval-samples ${out['eval-samples']}: the sampling modes need at least 2 samples per problem`);
  for (const k of ['margin-pass', 'margin-nll', 'margin-entropy']) {
    if (!(Number(out[k]) > 0)) throw new UsageError(`--${k} ${out[k]}: an equivalence margin must be positive`);
  }
  return out;
}

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

function runJob(job: Job, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolveJob, reject) => {
    if (interrupted) return reject(new DemoInterrupted());
    const logStream = createWriteStream(job.logFile);
    const child = spawnProcess(process.execPath, [MAIN, ...job.args, '--quiet'], { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env });
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

/** Runs `jobs`, `parallel` at a time, each child with SOFTGRAD_THREADS sharing the CPUs (unless set). */
async function runPool(label: string, jobs: Job[], parallel: number): Promise<number> {
  const t0 = performance.now();
  const tty = process.stderr.isTTY === true;
  const threads = Math.max(1, Math.floor(cpus().length / Math.min(parallel, jobs.length)));
  const env = { ...process.env, SOFTGRAD_THREADS: process.env['SOFTGRAD_THREADS'] ?? String(threads) };
  let lastPrint = 0;
  const show = (final = false) => {
    const now = performance.now();
    if (!final && now - lastPrint < (tty ? 500 : 15_000)) return;
    lastPrint = now;
    const parts = jobs.map((j) => `${j.name} ${Math.round(100 * Math.min(1, j.progress()))}%`).join('  ');
    const line = `${label}: ${parts}  ${formatDuration((now - t0) / 1000)}`;
    process.stderr.write(tty ? `\r\x1b[K${line}${final ? '\n' : ''}` : `${line}\n`);
  };
  const timer = setInterval(() => show(), 500);
  try {
    const queue = [...jobs];
    const workers = Array.from({ length: Math.min(parallel, jobs.length) }, async () => {
      for (let j = queue.shift(); j; j = queue.shift()) await runJob(j, env);
    });
    // Every worker finishes (a failed job must not leave the others running unwatched).
    const results = await Promise.allSettled(workers);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  } finally {
    clearInterval(timer);
  }
  show(true);
  return (performance.now() - t0) / 1000;
}

function countLines(path: string): number {
  if (!existsSync(path)) return 0;
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).length;
}

/** Modes finished so far in an evaluation's results.json (it is rewritten after every mode). */
function modesDone(path: string, cache: { mtime: number; n: number }): number {
  if (!existsSync(path)) return 0;
  const mtime = statSync(path).mtimeMs;
  if (mtime !== cache.mtime) {
    cache.mtime = mtime;
    try {
      cache.n = (JSON.parse(readFileSync(path, 'utf8')) as EvalReport).modes.length;
    } catch {
      // Replaced atomically, so a parse failure is a file from another writer: show no progress.
    }
  }
  return cache.n;
}

export async function demoCommand(argv: string[]): Promise<number> {
  const f = parseFlags(argv, DEMO_FLAGS);
  if (f.help) {
    console.log(helpText('demo', 'the whole pipeline on the built-in task: RL (hard/soft/fuzzy), six-mode evaluation, report', DEMO_FLAGS));
    return 0;
  }
  const t0 = performance.now();
  const settings = resolveDemoSettings(f);
  const out = resolve(String(settings.out));
  const model = String(settings.model) === 'builtin' ? builtinBaseModelDir() : resolve(String(settings.model));
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
    await runDemo(settings, f, out, model, t0);
  } catch (e) {
    if (!(e instanceof DemoInterrupted)) throw e;
    log(`demo: stopped; the runs in ${join(out, 'runs')} can be continued with softgrad train … --resume (see ${join(out, 'logs')})`);
    return 130;
  } finally {
    process.off('SIGINT', onSigint);
  }
  return 0;
}

/** A run's directory name: `hard-s0`, `soft-s1`, ... */
const runName = (kind: CotKind, seed: number) => `${kind}-s${seed}`;

async function runDemo(
  s: Record<string, string | number | boolean>, flags: Record<string, string | number | boolean | undefined>, out: string, model: string, t0: number,
): Promise<void> {
  const seed = Number(s.seed);
  const seeds = Array.from({ length: Number(s.seeds) }, (_, i) => seed + i);
  const steps = Number(s.steps);
  const ncpu = Math.max(1, cpus().length);
  const rlParallel = Number(flags.jobs ?? Math.max(3, ncpu));
  const evalParallel = Number(flags.jobs ?? Math.min(4, ncpu));
  const maxCot = String(s['max-cot']);
  const backend = String(s.backend);
  const samplesPerRun = steps * Number(s['batch-prompts']) * Number(s.samples);
  log(`demo: preset ${s.preset}; base model ${model}; report → ${out}`);
  log(`demo: RL ${COT_KINDS.map((k) => `${k} lr ${s[`lr-${k}`]}`).join(', ')}; ${steps} steps × B ${s['batch-prompts']} × G ${s.samples} = ${samplesPerRun} samples per run; `
    + `seeds ${seeds.join(', ')}; clipping ${Number(s['max-grad-norm']) > 0 ? `at global norm ${s['max-grad-norm']}` : 'none'}; weight decay ${s['weight-decay']}; γ ${s['noise-scale']}`);

  // The exact problems used, for inspection.
  writeFileAtomicSync(join(out, 'data', 'test.jsonl'), toJsonl(builtinProblems('test', Number(s['test-count']), seed + 1)));
  writeFileAtomicSync(join(out, 'data', 'ood.jsonl'), toJsonl(builtinProblems('ood', Number(s['ood-count']), seed + 1)));

  // 1. RL with each CoT kind and seed, same budget.
  const runs = seeds.flatMap((sd) => COT_KINDS.map((kind) => ({ kind, seed: sd, dir: join(out, 'runs', runName(kind, sd)) })));
  const trainJobs: Job[] = runs.map(({ kind, seed: sd, dir }) => ({
    name: seeds.length > 1 ? runName(kind, sd) : kind,
    logFile: join(out, 'logs', `train-${runName(kind, sd)}.log`),
    progress: () => countLines(join(dir, 'metrics.jsonl')) / steps,
    args: [
      'train', '--model', model, '--data', 'builtin:train', '--val', 'builtin:val', '--val-count', String(s['val-count']),
      '--out', dir, '--mode', kind, '--batch-prompts', String(s['batch-prompts']), '--samples', String(s.samples),
      '--max-cot', maxCot, '--lr', String(s[`lr-${kind}`]), '--warmup', String(s.warmup), '--steps', String(steps),
      '--eval-every', String(s['eval-every']), '--checkpoint-every', String(s['eval-every']), '--seed', String(sd),
      '--max-grad-norm', String(s['max-grad-norm']), '--weight-decay', String(s['weight-decay']), '--noise-scale', String(s['noise-scale']),
      '--backend', backend, '--overwrite',
    ],
  }));
  const rlSeconds = await runPool('RL training', trainJobs, rlParallel);

  // 2. Evaluate the base model and each run's checkpoint with the best validation accuracy
  //    (in the run's own greedy mode), all on the same problems with the same evaluation seed.
  const models: { name: string; dir: string }[] = [
    { name: 'base', dir: model },
    ...runs.map(({ kind, seed: sd, dir }) => ({
      name: runName(kind, sd), dir: existsSync(join(dir, 'best', 'config.json')) ? join(dir, 'best') : join(dir, 'checkpoint'),
    })),
  ];
  const modeCount = 6;
  const evalJobs: Job[] = models.flatMap(({ name, dir }) => {
    const cache = { mtime: -1, n: 0 };
    return [
      {
        name,
        logFile: join(out, 'logs', `eval-${name}.log`),
        progress: () => modesDone(join(out, 'eval', name, 'results.json'), cache) / modeCount,
        args: ['eval', '--model', dir, '--data', 'builtin:test', '--count', String(s['test-count']), '--modes', 'all',
          '--samples', String(s['eval-samples']), '--max-cot', maxCot, '--noise-scale', String(s['noise-scale']), '--choices', 'builtin',
          '--choice-count', String(s['choice-count']), '--seed', String(seed), '--backend', backend, '--out', join(out, 'eval', name)],
      },
      {
        name: `${name}-ood`,
        logFile: join(out, 'logs', `eval-${name}-ood.log`),
        progress: () => (existsSync(join(out, 'eval', `${name}-ood`, 'results.json')) ? 1 : 0),
        args: ['eval', '--model', dir, '--data', 'builtin:ood', '--count', String(s['ood-count']), '--modes', 'hard-greedy',
          '--max-cot', maxCot, '--seed', String(seed), '--backend', backend, '--out', join(out, 'eval', `${name}-ood`)],
      },
    ];
  });
  const evalSeconds = await runPool('evaluation', evalJobs, evalParallel);

  // 3. The report.
  const readJson = (path: string) => parseJsonStrict(readFileSync(path, 'utf8'), path);
  const evalOf = (name: string): EvalPair => ({
    test: readJson(join(out, 'eval', name, 'results.json')) as EvalReport,
    ood: readJson(join(out, 'eval', `${name}-ood`, 'results.json')) as EvalReport,
  });
  const perKind = <T>(f: (kind: CotKind, sd: number, dir: string) => T) =>
    Object.fromEntries(COT_KINDS.map((k) => [k, seeds.map((sd) => f(k, sd, join(out, 'runs', runName(k, sd))))])) as Record<CotKind, T[]>;
  const metrics = perKind((_k, _s, dir) => readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as StepMetrics));
  const validation = perKind((_k, _s, dir) => {
    const path = join(dir, 'checkpoint', 'state.json');
    return existsSync(path) ? (readJson(path) as { validation: { step: number; accuracy: number }[] }).validation : [];
  });
  const best = perKind((_k, _s, dir) => {
    const path = join(dir, 'best', 'best.json');
    return existsSync(path) ? (readJson(path) as { step: number; accuracy: number; mode?: string }) : undefined;
  });
  const sigma = metrics.soft[0]?.[0]?.sigma;
  const reportSeconds0 = performance.now();
  const wallSeconds = (performance.now() - t0) / 1000;
  const settings: Record<string, string | number | boolean> = {
    ...Object.fromEntries(Object.entries(s).filter(([k]) => !k.startsWith('lr-') && k !== 'out' && k !== 'model')),
    'lr (hard, soft, fuzzy)': COT_KINDS.map((k) => s[`lr-${k}`]).join(', '),
    'samples per run': samplesPerRun,
    'max-answer': 32,
    schedule: `AdamW, ${s.warmup} warm-up steps then cosine`,
    tau: 'hard 1.0, soft 0.5, fuzzy 0.0001 (training); evaluation per mode (docs/method.md)',
    sigma: sigma === undefined ? '–' : sigma.toExponential(3),
    'validation mode': 'each kind its own greedy mode (hard-greedy, soft-greedy, fuzzy-greedy)',
    'CPU threads per process': process.env['SOFTGRAD_THREADS'] ?? `${ncpu} CPUs shared by the processes running at once`,
  };
  const report = buildDemoReport({
    base: evalOf('base'),
    trained: perKind((k, sd) => evalOf(runName(k, sd))),
    seeds, metrics, validation, best, settings,
    lr: Object.fromEntries(COT_KINDS.map((k) => [k, Number(s[`lr-${k}`])])) as Record<CotKind, number>,
    margins: { pass: Number(s['margin-pass']) / 100, nll: Number(s['margin-nll']), entropy: Number(s['margin-entropy']) },
    bootstrap: { resamples: Number(s['bootstrap-resamples']), seed },
    passK: Math.min(32, Number(s['eval-samples'])),
    wallSeconds,
    phases: [{ name: 'RL', seconds: rlSeconds }, { name: 'evaluation', seconds: evalSeconds }],
    preset: String(s.preset),
  });
  writeFileAtomicSync(join(out, 'report.md'), report.markdown);
  for (const [file, svg] of Object.entries(report.svgs)) writeFileAtomicSync(join(out, file), svg);
  writeFileAtomicSync(join(out, 'summary.json'), `${JSON.stringify(report.summary, null, 1)}\n`);
  console.log(report.markdown);
  log(`demo: report in ${formatDuration((performance.now() - reportSeconds0) / 1000)}; finished in ${formatDuration((performance.now() - t0) / 1000)}; report at ${join(out, 'report.md')}`);
}
