/**
 * Paired statistics for comparing models on the same problems (docs/method.md, "How the demo
 * tests the findings"): the exact McNemar test for two binary outcomes per problem, the
 * paired percentile bootstrap for the difference of two per-problem scores (pass@1, pass@k,
 * NLL per token, entropy), and the verdicts a report draws from an interval.
 *
 * Everything here is deterministic: the bootstrap draws its resamples from a seeded
 * generator, so a report's intervals reproduce from its seed.
 */
import { SeededRng } from './task.js';

/** A point estimate with a two-sided confidence interval. */
export interface Interval {
  readonly estimate: number;
  readonly lo: number;
  readonly hi: number;
  /** Confidence level, e.g. 0.95. */
  readonly level: number;
}

function checkFinite(fn: string, name: string, xs: readonly number[]): void {
  xs.forEach((x, i) => {
    if (!Number.isFinite(x)) throw new Error(`${fn}: ${name}[${i}] is ${x}; expected a finite number`);
  });
}

/** Arithmetic mean; NaN for an empty list. */
export function mean(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/** Sample standard deviation (n − 1 in the denominator); 0 for one value, NaN for none. */
export function sampleSd(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  if (xs.length === 1) return 0;
  const m = mean(xs);
  let s = 0;
  for (const x of xs) s += (x - m) ** 2;
  return Math.sqrt(s / (xs.length - 1));
}

/** log C(n, k) by sums of logarithms (exact enough for the tail sums below, n up to 10^6). */
function logChoose(n: number, k: number): number {
  let s = 0;
  for (let i = 1; i <= k; i++) s += Math.log(n - k + i) - Math.log(i);
  return s;
}

/**
 * The exact (binomial) two-sided McNemar test for paired binary outcomes: `b` problems that
 * only the first model solves, `c` that only the second solves (problems both or neither
 * solve carry no information about the difference). Under the null each discordant problem
 * is equally likely to go either way, so min(b, c) ~ Binomial(b + c, 1/2), and the p-value is
 * twice its lower tail, capped at 1. With no discordant problem it is 1.
 */
export function mcnemarExact(b: number, c: number): number {
  for (const [name, v] of [['b', b], ['c', c]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new Error(`mcnemarExact: ${name} must be a non-negative integer count, got ${v}`);
  }
  const n = b + c;
  if (n === 0) return 1;
  const m = Math.min(b, c);
  // Sum C(n, i) / 2^n for i ≤ m in log space, largest term first for accuracy.
  const logs: number[] = [];
  for (let i = 0; i <= m; i++) logs.push(logChoose(n, i) - n * Math.LN2);
  const top = Math.max(...logs);
  let tail = 0;
  for (const l of logs) tail += Math.exp(l - top);
  return Math.min(1, 2 * Math.exp(top) * tail);
}

/** Discordant counts of two binary outcome lists over the same problems. */
export function discordantPairs(a: readonly boolean[], b: readonly boolean[]): { onlyA: number; onlyB: number } {
  if (a.length !== b.length) throw new Error(`discordantPairs: ${a.length} outcomes vs ${b.length}; a paired test needs the same problems`);
  let onlyA = 0;
  let onlyB = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] && !b[i]) onlyA++;
    else if (!a[i] && b[i]) onlyB++;
  }
  return { onlyA, onlyB };
}

export interface BootstrapOptions {
  /** Resamples (default 10,000). */
  resamples?: number;
  /** Confidence level (default 0.95). */
  level?: number;
  /** Seed of the resampling (default 0). */
  seed?: number;
}

/** The q-quantile of sorted values by linear interpolation (type 7, as R's and NumPy's default). */
export function quantileSorted(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) throw new Error('quantileSorted: no values');
  if (!(q >= 0 && q <= 1)) throw new Error(`quantileSorted: q must be in [0, 1], got ${q}`);
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

/**
 * The paired percentile bootstrap of mean(a − b): problems (pairs) are resampled with
 * replacement, so that whatever makes a problem easy or hard for both models cancels. `a`
 * and `b` are per-problem scores of two models on the same problems in the same order
 * (a 0/1 outcome, a fraction of correct samples, a per-problem pass@k, an NLL...). The
 * estimate is the observed mean difference; the interval is the (1 − level)/2 and
 * (1 + level)/2 quantiles of the resampled mean differences.
 */
export function pairedBootstrap(a: readonly number[], b: readonly number[], options: BootstrapOptions = {}): Interval {
  if (a.length !== b.length) throw new Error(`pairedBootstrap: ${a.length} scores vs ${b.length}; a paired comparison needs the same problems`);
  if (a.length === 0) throw new Error('pairedBootstrap: no problems to compare');
  checkFinite('pairedBootstrap', 'a', a);
  checkFinite('pairedBootstrap', 'b', b);
  const resamples = options.resamples ?? 10_000;
  const level = options.level ?? 0.95;
  if (!Number.isInteger(resamples) || resamples < 1) throw new Error(`pairedBootstrap: resamples must be a positive integer, got ${resamples}`);
  if (!(level > 0 && level < 1)) throw new Error(`pairedBootstrap: level must be in (0, 1), got ${level}`);
  const n = a.length;
  const d = new Float64Array(n);
  for (let i = 0; i < n; i++) d[i] = a[i]! - b[i]!;
  const rng = new SeededRng(options.seed ?? 0);
  const means = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += d[Math.floor(rng.nextFloat() * n)]!;
    means[r] = s / n;
  }
  means.sort();
  const sorted = Array.from(means);
  return {
    estimate: mean(Array.from(d)),
    lo: quantileSorted(sorted, (1 - level) / 2),
    hi: quantileSorted(sorted, (1 + level) / 2),
    level,
  };
}

/**
 * Verdict on a claim of equivalence ("A ≈ B") from the interval of A − B and a margin stated
 * in advance: `parity` when the whole interval lies inside (−margin, margin); `differs` when
 * it excludes zero and reaches beyond the margin; `inconclusive` otherwise (the data cannot
 * tell equivalence from a difference of the margin's size).
 */
export function equivalenceVerdict(diff: Interval, margin: number): 'parity' | 'differs' | 'inconclusive' {
  if (!(margin > 0)) throw new Error(`equivalenceVerdict: the margin must be positive, got ${margin}`);
  if (diff.lo > -margin && diff.hi < margin) return 'parity';
  if (diff.lo > 0 || diff.hi < 0) return 'differs';
  return 'inconclusive';
}

/**
 * Verdict on a directional claim ("A > B" for `expected` 'positive', "A < B" for
 * 'negative') from the interval of A − B: `consistent` when the interval excludes zero on the
 * claimed side, `contradicted` when it excludes zero on the other side, `inconclusive` when it
 * contains zero.
 */
export function directionalVerdict(diff: Interval, expected: 'positive' | 'negative'): 'consistent' | 'contradicted' | 'inconclusive' {
  const above = diff.lo > 0;
  const below = diff.hi < 0;
  if (!above && !below) return 'inconclusive';
  return (expected === 'positive') === above ? 'consistent' : 'contradicted';
}
