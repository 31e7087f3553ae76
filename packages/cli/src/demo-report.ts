/**
 * The demo's report (docs/demo.md): the headline (did RL improve the base model, by how much,
 * with its interval), Table 1 in the paper's layout, the out-of-domain table, the paper's five
 * findings each tested on the numbers, every setting, the wall time, and the plots.
 *
 * Every comparison is paired: two models are compared on the same problems, and the 95 %
 * interval of the difference comes from the paired bootstrap over problems (per-problem scores
 * of trained models are first averaged over seeds). Greedy pass@1 also gets the exact McNemar
 * test. A claim of equivalence is called "parity" only when the whole interval lies inside the
 * stated margin; a claim of direction is "consistent" only when the interval excludes zero on
 * the claimed side.
 */
import {
  COT_KINDS, directionalVerdict, discordantPairs, equivalenceVerdict, lineChartSvg, markdownTable, mcnemarExact, mean, pairedBootstrap,
  passAtK, REWARD_CORRECT, sampleSd, type CotKind, type Interval, type ModeResult, type StepMetrics,
} from '@softgrad/softtokens';
import type { EvalReport } from './eval.js';
import { formatDuration } from './progress.js';

export type ModelName = 'base' | CotKind;
export const MODEL_NAMES: readonly ModelName[] = ['base', ...COT_KINDS];

/** One colour per model in every plot (Tableau 10: red, blue, green; the base grey). */
export const MODEL_COLOURS: Record<ModelName, string> = { base: '#7f7f7f', hard: '#e15759', soft: '#4e79a7', fuzzy: '#59a14f' };

/** How a model is named in tables and legends: `base model`, `hard-trained`, ... */
export function modelLabel(m: ModelName): string {
  return m === 'base' ? 'base model' : `${m}-trained`;
}

export interface EvalPair {
  /** The test split in every mode, plus the multiple-choice set. */
  test: EvalReport;
  /** Out-of-domain word problems, hard greedy. */
  ood: EvalReport;
}

/** Equivalence margins, stated before the run (flags of `softgrad demo`). */
export interface Margins {
  /** pass@k, as a fraction (0.05: five percentage points). */
  pass: number;
  /** NLL per token, nats. */
  nll: number;
  /** Mean CoT entropy, nats. */
  entropy: number;
}

export interface DemoReportInput {
  base: EvalPair;
  /** Per kind, one evaluation per seed (in `seeds` order). */
  trained: Record<CotKind, EvalPair[]>;
  seeds: number[];
  metrics: Record<CotKind, StepMetrics[][]>;
  /** Per kind and seed: greedy validation accuracy by step, step 0 (the base model) first. */
  validation: Record<CotKind, { step: number; accuracy: number }[][]>;
  /** Per kind and seed: the step whose model was evaluated (best.json). */
  best: Record<CotKind, ({ step: number; accuracy: number; mode?: string } | undefined)[]>;
  /** The settings as `name → value`, printed in full. */
  settings: Record<string, string | number | boolean>;
  /** Learning rate of each kind. */
  lr: Record<CotKind, number>;
  margins: Margins;
  bootstrap: { resamples: number; seed: number };
  /** k of pass@k (32 in the paper; at most the evaluation's samples). */
  passK: number;
  wallSeconds: number;
  phases: { name: string; seconds: number }[];
  preset: string;
}

// ---------------------------------------------------------------------------------------
// Per-problem scores

type Metric = 'greedy' | 'pass1' | 'passk' | 'entropy';

function modeOf(r: EvalReport, mode: string): ModeResult {
  const m = r.modes.find((x) => x.mode === mode);
  if (!m) throw new Error(`demo report: the evaluation of ${r.model} has no ${mode} results`);
  return m;
}

/** One score per problem of a mode's results. */
export function perProblemScores(m: ModeResult, metric: Metric, k = 32): number[] {
  return m.outcomes.map((o) => {
    const n = o.rewards.length;
    const c = o.rewards.filter((r) => r === REWARD_CORRECT).length;
    switch (metric) {
      case 'greedy':
      case 'pass1':
        return c / n;
      case 'passk':
        return passAtK(n, c, Math.min(k, n));
      case 'entropy':
        // JSON writes NaN as null: a problem without any CoT step has no entropy.
        return typeof o.meanEntropy === 'number' ? o.meanEntropy : NaN;
    }
  });
}

/** Scores of one model (seed-averaged per problem) and its per-seed means. */
interface ModelScores {
  perProblem: number[];
  perSeed: number[];
}

function averageOverSeeds(lists: number[][]): number[] {
  const n = lists[0]!.length;
  for (const l of lists) if (l.length !== n) throw new Error('demo report: seeds were evaluated on different numbers of problems');
  return Array.from({ length: n }, (_, i) => mean(lists.map((l) => l[i]!)));
}

function finiteMean(xs: readonly number[]): number {
  return mean(xs.filter(Number.isFinite));
}

/** Pairs of finite scores (problems where either model has no score are left out). */
function finitePairs(a: readonly number[], b: readonly number[]): [number[], number[]] {
  const x: number[] = [];
  const y: number[] = [];
  for (let i = 0; i < a.length; i++) {
    if (Number.isFinite(a[i]) && Number.isFinite(b[i])) {
      x.push(a[i]!);
      y.push(b[i]!);
    }
  }
  return [x, y];
}

// ---------------------------------------------------------------------------------------
// Formatting

const pct = (x: number) => (Number.isFinite(x) ? (100 * x).toFixed(1) : '–');
const signed = (x: number, digits: number, scale = 1) => (Number.isFinite(x) ? `${x >= 0 ? '+' : '−'}${Math.abs(scale * x).toFixed(digits)}` : '–');

/** `+12.3 [+8.1, +16.4]` (points for fractions with scale 100). */
function intervalText(iv: Interval, digits: number, scale: number): string {
  return `${signed(iv.estimate, digits, scale)} [${signed(iv.lo, digits, scale)}, ${signed(iv.hi, digits, scale)}]`;
}

function meanSd(xs: readonly number[], scale: number, digits: number): string {
  const f = xs.filter(Number.isFinite);
  if (f.length === 0) return '–';
  const m = (scale * mean(f)).toFixed(digits);
  return f.length > 1 ? `${m} ± ${(scale * sampleSd(f)).toFixed(digits)}` : m;
}

// ---------------------------------------------------------------------------------------
// The report

export interface Comparison {
  what: string;
  a: string;
  b: string;
  metric: string;
  difference: Interval;
  /** The difference in the unit it is printed in (points for pass@k, nats otherwise). */
  unit: 'points' | 'nats' | 'nats/token';
  verdict: string;
  /** Exact McNemar p-value (greedy pass@1 with one seed). */
  mcnemarP?: number;
  /** Shown for reference; the finding's verdict does not use it. */
  secondary?: boolean;
}

export interface Finding {
  id: number;
  claim: string;
  comparisons: Comparison[];
  verdict: 'consistent' | 'contradicted' | 'inconclusive';
  note?: string;
}

export interface DemoSummary {
  preset: string;
  seeds: number[];
  headline: Comparison[];
  table1: { model: string; cells: Record<string, { greedyPass1: number | null; samplePass1: number | null; samplePassK: number | null; seedSd?: { greedyPass1: number; samplePass1: number; samplePassK: number } }> }[];
  passK: number;
  ood: { model: string; oodGreedyPass1: number | null; choiceAccuracy: number | null; choiceNllPerToken: number | null }[];
  findings: Finding[];
  /** Kinds whose evaluated model is the base model (best validation at step 0 in every seed). */
  untrained: string[];
  training: { kind: string; seed: number; steps: number; samples: number; bestStep: number | null; bestValAccuracy: number | null; valMode: string | null }[];
  settings: Record<string, string | number | boolean>;
  margins: Margins;
  wallSeconds: number;
}

const num = (x: number) => (Number.isFinite(x) ? x : null);

export function buildDemoReport(input: DemoReportInput): { markdown: string; svgs: Record<string, string>; summary: DemoSummary } {
  const { margins, passK } = input;
  const boot = (a: number[], b: number[]) => {
    const [x, y] = finitePairs(a, b);
    return pairedBootstrap(x, y, { resamples: input.bootstrap.resamples, seed: input.bootstrap.seed });
  };
  const evalsOf = (m: ModelName): EvalPair[] => (m === 'base' ? [input.base] : input.trained[m]);
  const questions = input.base.test.modes[0]?.outcomes.map((o) => o.question) ?? [];
  for (const m of MODEL_NAMES) {
    for (const e of evalsOf(m)) {
      for (const mode of e.test.modes) {
        if (mode.outcomes.length !== questions.length || mode.outcomes.some((o, i) => o.question !== questions[i])) {
          throw new Error(`demo report: ${e.test.model} (${mode.mode}) was evaluated on other problems than the base model; paired comparisons need the same problems in the same order`);
        }
      }
    }
  }
  const scores = (m: ModelName, mode: string, metric: Metric): ModelScores => {
    const lists = evalsOf(m).map((e) => perProblemScores(modeOf(e.test, mode), metric, passK));
    return { perProblem: averageOverSeeds(lists), perSeed: lists.map(finiteMean) };
  };
  const multiSeed = input.seeds.length > 1;
  const unitScale = (u: Comparison['unit']) => (u === 'points' ? 100 : 1);
  const digitsOf = (u: Comparison['unit']) => (u === 'points' ? 1 : 3);
  const comparison = (
    what: string, a: ModelName, b: ModelName, mode: string, metric: Metric, judge: (iv: Interval) => string,
  ): Comparison => {
    const sa = scores(a, mode, metric);
    const sb = scores(b, mode, metric);
    const difference = boot(sa.perProblem, sb.perProblem);
    const unit: Comparison['unit'] = metric === 'entropy' ? 'nats' : 'points';
    const c: Comparison = { what, a: modelLabel(a), b: modelLabel(b), metric: `${mode} ${metric === 'passk' ? `pass@${passK}` : metric === 'entropy' ? 'mean CoT entropy' : 'pass@1'}`, difference, unit, verdict: judge(difference) };
    if (metric === 'greedy' && !multiSeed) {
      const { onlyA, onlyB } = discordantPairs(sa.perProblem.map((x) => x > 0.5), sb.perProblem.map((x) => x > 0.5));
      c.mcnemarP = mcnemarExact(onlyA, onlyB);
    }
    return c;
  };
  const choiceScores = (m: ModelName) => {
    const lists = evalsOf(m).map((e) => {
      if (!e.test.choices) throw new Error(`demo report: ${e.test.model} has no multiple-choice results`);
      return e.test.choices.itemNll;
    });
    return { perProblem: averageOverSeeds(lists), perSeed: lists.map(finiteMean) };
  };
  const nllComparison = (what: string, a: ModelName, b: ModelName, judge: (iv: Interval) => string): Comparison => {
    const difference = boot(choiceScores(a).perProblem, choiceScores(b).perProblem);
    return { what, a: modelLabel(a), b: modelLabel(b), metric: 'multiple-choice NLL of the correct choice per token', difference, unit: 'nats/token', verdict: judge(difference) };
  };
  const improved = (iv: Interval) => ({ consistent: 'improved', contradicted: 'worse', inconclusive: 'no change shown' })[directionalVerdict(iv, 'positive')];

  // Headline: each trained kind against the base, hard inference (the paper's main comparison).
  const headline: Comparison[] = [];
  for (const k of COT_KINDS) {
    headline.push(comparison(`${k} RL vs base`, k, 'base', 'hard-sample', 'pass1', improved));
    headline.push(comparison(`${k} RL vs base`, k, 'base', 'hard-greedy', 'greedy', improved));
  }
  const cmpLine = (c: Comparison) =>
    `${c.a} − ${c.b}, ${c.metric}: ${intervalText(c.difference, digitsOf(c.unit), unitScale(c.unit))} ${c.unit}${c.mcnemarP !== undefined ? `, McNemar p = ${c.mcnemarP.toPrecision(2)}` : ''} → **${c.verdict}**`;
  const hardS1 = headline[0]!;
  const baseS1 = mean(scores('base', 'hard-sample', 'pass1').perProblem);
  const hardS1Value = mean(scores('hard', 'hard-sample', 'pass1').perProblem);
  const headlineText = `**Hard RL ${hardS1.verdict === 'improved' ? 'improved' : hardS1.verdict === 'worse' ? 'lowered' : 'did not measurably change'} the base model**: hard-inference sampled pass@1 ${pct(baseS1)} % → ${pct(hardS1Value)} % `
    + `(${intervalText(hardS1.difference, 1, 100)} points, paired 95 % bootstrap interval over ${questions.length} test problems${multiSeed ? `, ${input.seeds.length} seeds averaged` : ''}).`;

  // Table 1.
  const cellOf = (m: ModelName, kind: CotKind) => ({
    g1: scores(m, `${kind}-greedy`, 'greedy').perSeed,
    s1: scores(m, `${kind}-sample`, 'pass1').perSeed,
    sk: scores(m, `${kind}-sample`, 'passk').perSeed,
  });
  const table1 = markdownTable(
    ['training ↓ / inference →', ...COT_KINDS.flatMap((k) => [`${k} G@1`, `${k} S@1`, `${k} S@${passK}`])],
    MODEL_NAMES.map((m) => [modelLabel(m), ...COT_KINDS.flatMap((k) => {
      const c = cellOf(m, k);
      return [meanSd(c.g1, 100, 1), meanSd(c.s1, 100, 1), meanSd(c.sk, 100, 1)];
    })]),
  );

  // Out of domain.
  const oodScores = (m: ModelName) => {
    const lists = evalsOf(m).map((e) => perProblemScores(modeOf(e.ood, 'hard-greedy'), 'greedy'));
    return { perProblem: averageOverSeeds(lists), perSeed: lists.map(finiteMean) };
  };
  const choiceAcc = (m: ModelName) => evalsOf(m).map((e) => mean(e.test.choices!.itemCorrect.map((x) => (x ? 1 : 0))));
  const oodRows = MODEL_NAMES.map((m) => {
    const o = oodScores(m);
    const nll = choiceScores(m);
    const dOod = m === 'base' ? '' : intervalText(boot(o.perProblem, oodScores('base').perProblem), 1, 100);
    const dNll = m === 'base' ? '' : intervalText(boot(nll.perProblem, choiceScores('base').perProblem), 3, 1);
    return [modelLabel(m), meanSd(o.perSeed, 100, 1), dOod, meanSd(choiceAcc(m), 100, 1), meanSd(nll.perSeed, 1, 3), dNll];
  });
  const oodTable = markdownTable(
    ['model', 'OOD word problems G@1 % (hard)', 'Δ vs base [95 % CI], points', 'multiple choice acc %', 'NLL of correct choice, nats/token', 'Δ NLL vs base [95 % CI]'],
    oodRows,
  );

  // The five findings.
  const parity = (margin: number) => (iv: Interval) => equivalenceVerdict(iv, margin);
  const dir = (expected: 'positive' | 'negative') => (iv: Interval) => directionalVerdict(iv, expected);
  const findings: Finding[] = [];
  const overall = (parts: string[], good: string[], bad: string[]): Finding['verdict'] =>
    parts.every((p) => good.includes(p)) ? 'consistent' : parts.some((p) => bad.includes(p)) ? 'contradicted' : 'inconclusive';
  {
    // The verdict reads sampled pass@1 (32 samples per problem, so far less noise than one
    // greedy outcome); greedy pass@1 is shown beside it.
    const primary = (['soft', 'fuzzy'] as const).map((k) => comparison('pass@1', k, 'hard', 'hard-sample', 'pass1', parity(margins.pass)));
    const greedy = (['soft', 'fuzzy'] as const).map((k) => ({ ...comparison('pass@1', k, 'hard', 'hard-greedy', 'greedy', parity(margins.pass)), secondary: true }));
    findings.push({
      id: 1, claim: `pass@1: soft/fuzzy training ≈ hard training (hard inference, sampled pass@1; parity = interval inside ±${(100 * margins.pass).toFixed(0)} points)`,
      comparisons: [...primary, ...greedy], verdict: overall(primary.map((c) => c.verdict), ['parity'], ['differs']),
    });
  }
  {
    const cs = (['soft', 'fuzzy'] as const).map((k) => comparison(`pass@${passK}`, k, 'hard', 'hard-sample', 'passk', dir('positive')));
    findings.push({
      id: 2, claim: `pass@${passK}: soft/fuzzy training > hard training (hard inference)`,
      comparisons: cs, verdict: overall(cs.map((c) => c.verdict), ['consistent'], ['contradicted']),
    });
  }
  {
    const raise = nllComparison('NLL', 'hard', 'base', dir('positive'));
    const keep = (['soft', 'fuzzy'] as const).map((k) => nllComparison('NLL', k, 'base', parity(margins.nll)));
    const ok = raise.verdict === 'consistent' && keep.every((c) => c.verdict === 'parity');
    // Contradicted: hard training lowers the NLL, or soft/fuzzy training raises it beyond the margin.
    const bad = raise.verdict === 'contradicted' || keep.some((c) => c.verdict === 'differs' && c.difference.lo > 0);
    findings.push({
      id: 3, claim: `out-of-domain NLL (per token): hard training raises it; soft/fuzzy training preserve it (parity = interval inside ±${margins.nll} nats/token)`,
      comparisons: [raise, ...keep], verdict: ok ? 'consistent' : bad ? 'contradicted' : 'inconclusive',
    });
  }
  {
    const drop = comparison('entropy', 'hard', 'base', 'hard-sample', 'entropy', dir('negative'));
    const keep = (['soft', 'fuzzy'] as const).map((k) => comparison('entropy', k, 'base', 'hard-sample', 'entropy', parity(margins.entropy)));
    const ok = drop.verdict === 'consistent' && keep.every((c) => c.verdict === 'parity');
    // Contradicted: hard training raises the entropy, or soft/fuzzy training lowers it beyond the margin.
    const bad = drop.verdict === 'contradicted' || keep.some((c) => c.verdict === 'differs' && c.difference.hi < 0);
    findings.push({
      id: 4, claim: `CoT entropy (hard sampling): hard training collapses it; soft/fuzzy training keep it (parity = interval inside ±${margins.entropy} nats)`,
      comparisons: [drop, ...keep], verdict: ok ? 'consistent' : bad ? 'contradicted' : 'inconclusive',
    });
  }
  {
    // The best cell of the claimed group (soft/fuzzy training, hard inference) against the
    // best cell outside it, greedy pass@1. Both maxima are picked on the same data, so the
    // comparison flatters neither side more than the other.
    type Cell = { m: ModelName; k: CotKind; value: number };
    const cells: Cell[] = MODEL_NAMES.flatMap((m) => COT_KINDS.map((k) => ({ m, k, value: mean(scores(m, `${k}-greedy`, 'greedy').perProblem) })));
    const inGroup = (c: Cell) => (c.m === 'soft' || c.m === 'fuzzy') && c.k === 'hard';
    const best = (cs: Cell[]) => cs.reduce((a, b) => (b.value > a.value ? b : a));
    const g = best(cells.filter(inGroup));
    const o = best(cells.filter((c) => !inGroup(c)));
    // The two cells may differ in inference mode: each is scored on its own per-problem outcomes.
    const ga = scores(g.m, `${g.k}-greedy`, 'greedy').perProblem;
    const ob = scores(o.m, `${o.k}-greedy`, 'greedy').perProblem;
    const difference = boot(ga, ob);
    const c: Comparison = {
      what: 'best combination', a: `${modelLabel(g.m)} × ${g.k} inference`, b: `${modelLabel(o.m)} × ${o.k} inference`, metric: 'greedy pass@1',
      difference, unit: 'points', verdict: directionalVerdict(difference, 'positive'),
    };
    if (!multiSeed) {
      const { onlyA, onlyB } = discordantPairs(ga.map((x) => x > 0.5), ob.map((x) => x > 0.5));
      c.mcnemarP = mcnemarExact(onlyA, onlyB);
    }
    findings.push({
      id: 5, claim: 'the best combination is soft or fuzzy training with hard inference (greedy pass@1)',
      comparisons: [c], verdict: c.verdict as Finding['verdict'],
      note: `best claimed cell: ${modelLabel(g.m)} with ${g.k} inference (${pct(g.value)} %); best other cell: ${modelLabel(o.m)} with ${o.k} inference (${pct(o.value)} %)`,
    });
  }
  const untrained = COT_KINDS.filter((k) => input.best[k].length > 0 && input.best[k].every((b) => b?.step === 0));
  const untrainedNote = untrained.length
    ? `\n\n**Caution:** the evaluated ${untrained.map(modelLabel).join(', ')} model${untrained.length > 1 ? 's are' : ' is'} the base model itself (no trained step beat it on validation), so ${untrained.length > 1 ? 'their' : 'its'} comparisons measure the base model against itself.`
    : '';
  const findingText = findings.map((f) => [
    `${f.id}. **${f.claim}** → **${f.verdict}**${f.note ? ` (${f.note})` : ''}`,
    ...f.comparisons.map((c) => `   - ${c.secondary ? '(for reference) ' : ''}${cmpLine(c)}`),
  ].join('\n')).join('\n');

  // Training.
  const trainRows = COT_KINDS.flatMap((k) => input.seeds.map((seed, si) => {
    const h = input.metrics[k][si] ?? [];
    const q = Math.max(1, Math.floor(h.length / 4));
    const avg = (xs: StepMetrics[], f: (m: StepMetrics) => number) => mean(xs.map(f));
    const v = input.validation[k][si] ?? [];
    const b = input.best[k][si];
    const grads = h.map((m) => m.gradNorm).sort((x, y) => x - y);
    return [
      `${modelLabel(k)}${multiSeed ? ` (seed ${seed})` : ''}`, String(h.length),
      String(h.length * Number(input.settings['batch-prompts']) * Number(input.settings.samples)),
      String(input.lr[k]), avg(h.slice(0, q), (m) => m.reward).toFixed(1), avg(h.slice(-q), (m) => m.reward).toFixed(1),
      pct(v[0]?.accuracy ?? NaN), v.length ? pct(v[v.length - 1]!.accuracy) : '–',
      b === undefined ? 'last checkpoint' : b.step === 0 ? 'step 0 (base never beaten)' : `step ${b.step} (${pct(b.accuracy)} %)`,
      grads.length ? grads[Math.floor(grads.length / 2)]!.toExponential(1) : '–', avg(h, (m) => m.seconds).toFixed(2),
    ];
  }));
  const trainTable = markdownTable(
    ['run', 'steps', 'samples', 'lr', 'reward (first quarter)', 'reward (last quarter)', 'val G@1 % at step 0', 'val G@1 % at end', 'evaluated model', 'median grad norm', 's/step'],
    trainRows,
  );

  // Plots: one colour per model everywhere; bands are the range over seeds.
  const svgs: Record<string, string> = {};
  const spread = (perSeed: [number, number][][]) => {
    const xs = [...new Set(perSeed.flatMap((s) => s.map((p) => p[0])))].sort((a, b) => a - b);
    const at = (s: [number, number][], x: number) => s.find((p) => p[0] === x)?.[1];
    const rows = xs.map((x) => {
      const ys = perSeed.map((s) => at(s, x)).filter((y): y is number => y !== undefined);
      return { x, m: mean(ys), lo: Math.min(...ys), hi: Math.max(...ys) };
    });
    return { points: rows.map((r) => [r.x, r.m] as [number, number]), band: perSeed.length > 1 ? rows.map((r) => [r.x, r.lo, r.hi] as [number, number, number]) : undefined };
  };
  const ema = (xs: number[], a = 0.1) => {
    let e = xs[0] ?? 0;
    return xs.map((x) => (e = a * x + (1 - a) * e));
  };
  svgs['reward.svg'] = lineChartSvg({
    title: `RL training: mean reward per step (EMA 0.1${multiSeed ? '; band: range over seeds' : ''})`, xLabel: 'step', yLabel: 'mean reward',
    series: COT_KINDS.map((k) => ({
      name: modelLabel(k), colour: MODEL_COLOURS[k],
      ...spread(input.metrics[k].map((h) => ema(h.map((m) => m.reward)).map((y, i) => [h[i]!.step, y] as [number, number]))),
    })),
  });
  svgs['val-accuracy.svg'] = lineChartSvg({
    title: `Greedy validation accuracy, each kind in its own greedy mode (step 0: base)${multiSeed ? '; band: range over seeds' : ''}`,
    xLabel: 'step', yLabel: 'accuracy %', markers: true,
    series: COT_KINDS.map((k) => ({
      name: modelLabel(k), colour: MODEL_COLOURS[k],
      ...spread(input.validation[k].map((v) => v.map((p) => [p.step, 100 * p.accuracy] as [number, number]))),
    })),
  });
  const curve = (m: ModelName, mode: string) => {
    const lists = evalsOf(m).map((e) => modeOf(e.test, mode).passAtK.map((v, i) => [i + 1, 100 * v] as [number, number]));
    return spread(lists);
  };
  for (const kind of COT_KINDS) {
    svgs[`passk-${kind}.svg`] = lineChartSvg({
      title: `pass@k, ${kind} sampling inference (test split)`, xLabel: 'k', yLabel: 'pass@k %',
      series: MODEL_NAMES.map((m) => ({ name: modelLabel(m), colour: MODEL_COLOURS[m], ...curve(m, `${kind}-sample`) })),
    });
  }
  svgs['entropy.svg'] = lineChartSvg({
    title: 'Next-token entropy per CoT position (hard sampling inference)', xLabel: 'CoT position', yLabel: 'entropy (nats)',
    series: MODEL_NAMES.map((m) => {
      const lists = evalsOf(m).map((e) => {
        const r = modeOf(e.test, 'hard-sample');
        // Positions reached by fewer than 10 % of samples are noise.
        const maxCount = Math.max(1, ...r.entropyCounts);
        return r.entropyByPosition.map((v, i) => [i + 1, v] as [number, number]).filter((_, i) => (r.entropyCounts[i] ?? 0) >= 0.1 * maxCount);
      });
      return { name: modelLabel(m), colour: MODEL_COLOURS[m], ...spread(lists) };
    }),
  });

  // Every mode, for reading.
  const detailRows = MODEL_NAMES.flatMap((m) => evalsOf(m).flatMap((e, si) => e.test.modes.map((r) => [
    `${modelLabel(m)}${multiSeed && m !== 'base' ? ` (seed ${input.seeds[si]})` : ''}`, r.mode, pct(r.passAt1), r.samples > 1 ? pct(r.passAtK[Math.min(passK, r.samples) - 1]!) : '–', pct(r.formatRate),
    r.meanCotLength.toFixed(1), pct(r.stopRate), Number.isFinite(r.meanEntropy) ? r.meanEntropy.toFixed(3) : '–',
  ])));
  const details = markdownTable(['model', 'mode', 'pass@1 %', `pass@${passK} %`, 'boxed %', 'CoT length', 'stop string %', 'mean CoT entropy (per step)'], detailRows);
  const sampleLines = MODEL_NAMES.map((m) => {
    const o = modeOf(evalsOf(m)[0]!.test, 'hard-greedy').outcomes[0];
    return o ? `- **${modelLabel(m)}** (hard greedy) — Q: ${o.question}\n  CoT: \`${o.cotText.replace(/`/g, "'").replace(/\n/g, ' ⏎ ')}\` → \`${o.answerText}\` (reference ${o.reference}, reward ${o.rewards[0]})` : '';
  }).join('\n');

  const settingsTable = markdownTable(['setting', 'value'], Object.entries(input.settings).map(([k, v]) => [k, String(v)]));
  const phases = input.phases.map((p) => `${p.name} ${formatDuration(p.seconds)}`).join(', ');
  const markdown = `# softgrad demo report

${headlineText}

${headline.map((c) => `- ${cmpLine(c)}`).join('\n')}

Soft-token RL (RLOO) on the built-in arithmetic task: the shipped base model trained with hard, soft and fuzzy chain of
thought (same budget${multiSeed ? `, seeds ${input.seeds.join(', ')}` : `, seed ${input.seeds[0]}`}), then evaluated in the six inference modes (docs/method.md). Preset
\`${input.preset}\`; wall time ${formatDuration(input.wallSeconds)} (${phases}).

How to read it: every difference is *paired* (the two models on the same ${questions.length} test problems) with a 95 % percentile
bootstrap interval over problems (${input.bootstrap.resamples} resamples, seed ${input.bootstrap.seed}${multiSeed ? '; per-problem scores averaged over seeds first, so the interval covers problem sampling, and ± in the tables is the standard deviation over seeds' : ''}); greedy pass@1
differences also get the exact McNemar test${multiSeed ? ' (single-seed runs only)' : ''}. A claim of equivalence is "parity" only when the whole interval lies inside the margin
stated below; a claimed direction is "consistent" only when the interval excludes zero on that side; anything else is "inconclusive".
Margins (fixed before the run): pass@k ±${(100 * margins.pass).toFixed(0)} points, NLL ±${margins.nll} nats/token, entropy ±${margins.entropy} nats.
Differences are trained − reference, in points for pass@k.

## Table 1 — test split (${questions.length} problems)

G@1 = greedy pass@1, S@1 = sampled pass@1, S@${passK} = pass@${passK} from ${input.settings['eval-samples']} samples (unbiased estimator). All numbers are %${multiSeed ? ', mean ± sd over seeds' : ''}.
Trained models are the checkpoints with the best greedy validation accuracy in the trained kind's own greedy mode (no noise,
greedy answer), as in the paper; the base model is a candidate (step 0), so a run that never beats it is evaluated as the base model.

${table1}
## Out of domain

Word problems from held-out template × item combinations with larger numbers (hard greedy), and the built-in multiple-choice
set scored by likelihood (NLL of the correct choice per token).

${oodTable}
## The paper's five findings, tested here

${findingText}${untrainedNote}

## Settings

Gradient clipping: ${input.settings['max-grad-norm'] === 0 ? 'none' : `global norm ${input.settings['max-grad-norm']}`}; weight decay ${input.settings['weight-decay']}; noise γ ${input.settings['noise-scale']} (σ = γ·r/√d = ${input.settings.sigma}); learning rates ${COT_KINDS.map((k) => `${k} ${input.lr[k]}`).join(', ')} (cosine schedule, ${input.settings.warmup} warm-up steps).

${settingsTable}
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

Raw results: \`eval/*/results.json\`, training logs \`runs/*/metrics.jsonl\`, problems \`data/*.jsonl\`, these numbers as numbers: \`summary.json\`.
`;

  const summary: DemoSummary = {
    preset: input.preset,
    seeds: input.seeds,
    headline,
    table1: MODEL_NAMES.map((m) => ({
      model: m,
      cells: Object.fromEntries(COT_KINDS.map((k) => {
        const c = cellOf(m, k);
        const cell: DemoSummary['table1'][number]['cells'][string] = { greedyPass1: num(mean(c.g1)), samplePass1: num(mean(c.s1)), samplePassK: num(mean(c.sk)) };
        if (c.g1.length > 1) cell.seedSd = { greedyPass1: sampleSd(c.g1), samplePass1: sampleSd(c.s1), samplePassK: sampleSd(c.sk) };
        return [k, cell];
      })),
    })),
    passK,
    ood: MODEL_NAMES.map((m) => ({
      model: m, oodGreedyPass1: num(mean(oodScores(m).perSeed)), choiceAccuracy: num(mean(choiceAcc(m))), choiceNllPerToken: num(mean(choiceScores(m).perSeed)),
    })),
    findings,
    untrained,
    training: COT_KINDS.flatMap((k) => input.seeds.map((seed, si) => {
      const h = input.metrics[k][si] ?? [];
      const b = input.best[k][si];
      return {
        kind: k, seed, steps: h.length, samples: h.length * Number(input.settings['batch-prompts']) * Number(input.settings.samples),
        bestStep: b?.step ?? null, bestValAccuracy: b ? num(b.accuracy) : null, valMode: b?.mode ?? null,
      };
    })),
    settings: input.settings,
    margins,
    wallSeconds: input.wallSeconds,
  };
  return { markdown, svgs, summary };
}
