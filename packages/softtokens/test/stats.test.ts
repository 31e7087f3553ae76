import { describe, expect, it } from 'vitest';
import {
  directionalVerdict, discordantPairs, equivalenceVerdict, mcnemarExact, mean, pairedBootstrap, quantileSorted, sampleSd,
} from '../src/stats.js';
import { SeededRng } from '../src/task.js';

/** Exact two-sided binomial(1/2) p-value with BigInt binomials: the oracle for mcnemarExact. */
function exactMcnemar(b: number, c: number): number {
  const n = b + c;
  if (n === 0) return 1;
  let choose = 1n;
  let tail = 0n;
  for (let i = 0; i <= Math.min(b, c); i++) {
    if (i > 0) choose = (choose * BigInt(n - i + 1)) / BigInt(i);
    tail += choose;
  }
  return Math.min(1, (2 * Number(tail * 10n ** 18n / 2n ** BigInt(n))) / 1e18);
}

describe('mcnemarExact', () => {
  it('gives the textbook values', () => {
    expect(mcnemarExact(10, 2)).toBeCloseTo(158 / 4096, 12); // 2·(1 + 12 + 66)/2^12
    expect(mcnemarExact(0, 5)).toBeCloseTo(2 / 32, 12);
    expect(mcnemarExact(5, 0)).toBeCloseTo(2 / 32, 12);
    expect(mcnemarExact(3, 3)).toBe(1);
    expect(mcnemarExact(1, 0)).toBe(1);
    expect(mcnemarExact(0, 0)).toBe(1);
    // 40 of 100 discordant pairs one way: 2·P(Bin(100, 1/2) ≤ 40) = 0.056888…
    expect(mcnemarExact(60, 40)).toBeCloseTo(0.0568879, 6);
  });

  it('equals the exact binomial tail for any counts', () => {
    const rng = new SeededRng(5);
    for (let t = 0; t < 200; t++) {
      const b = rng.int(0, 120);
      const c = rng.int(0, 120);
      expect(mcnemarExact(b, c)).toBeCloseTo(exactMcnemar(b, c), 10);
      expect(mcnemarExact(b, c)).toBe(mcnemarExact(c, b));
    }
  });

  it('refuses counts that are not non-negative integers', () => {
    expect(() => mcnemarExact(-1, 2)).toThrow(/b must be a non-negative integer/);
    expect(() => mcnemarExact(1, 2.5)).toThrow(/c must be a non-negative integer/);
  });
});

describe('discordantPairs', () => {
  it('counts problems only one model solves', () => {
    expect(discordantPairs([true, true, false, false, true], [true, false, true, false, false])).toEqual({ onlyA: 2, onlyB: 1 });
    expect(() => discordantPairs([true], [true, false])).toThrow(/same problems/);
  });
});

describe('mean, sampleSd, quantileSorted', () => {
  it('match hand-computed values', () => {
    expect(mean([1, 2, 3, 4])).toBe(2.5);
    expect(sampleSd([2, 4, 4, 4, 5, 5, 7, 9])).toBeCloseTo(Math.sqrt(32 / 7), 12);
    expect(sampleSd([3])).toBe(0);
    expect(Number.isNaN(mean([]))).toBe(true);
    expect(quantileSorted([1, 2, 3, 4], 0.5)).toBe(2.5);
    expect(quantileSorted([1, 2, 3, 4], 0)).toBe(1);
    expect(quantileSorted([1, 2, 3, 4], 1)).toBe(4);
    expect(quantileSorted([10, 20], 0.25)).toBe(12.5);
    expect(() => quantileSorted([], 0.5)).toThrow(/no values/);
  });
});

describe('pairedBootstrap', () => {
  it('estimates the mean paired difference and brackets it', () => {
    const a = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1];
    const b = [0, 0, 1, 0, 0, 1, 0, 1, 0, 0];
    const ci = pairedBootstrap(a, b, { seed: 3 });
    expect(ci.estimate).toBeCloseTo(0.4, 12);
    expect(ci.lo).toBeLessThan(ci.estimate);
    expect(ci.hi).toBeGreaterThan(ci.estimate);
    expect(ci.level).toBe(0.95);
    // Differences are 0 or 1, so every resampled mean lies in [0, 1].
    expect(ci.lo).toBeGreaterThanOrEqual(0);
    expect(ci.hi).toBeLessThanOrEqual(1);
  });

  it('is exactly zero-width for identical models and reproducible from its seed', () => {
    const a = [0.1, 0.5, 0.9, 0.3];
    expect(pairedBootstrap(a, a)).toEqual({ estimate: 0, lo: 0, hi: 0, level: 0.95 });
    const rng = new SeededRng(4);
    const x = Array.from({ length: 40 }, () => rng.nextFloat());
    const y = Array.from({ length: 40 }, () => rng.nextFloat());
    expect(pairedBootstrap(x, y, { seed: 9 })).toEqual(pairedBootstrap(x, y, { seed: 9 }));
    expect(pairedBootstrap(x, y, { seed: 9 })).not.toEqual(pairedBootstrap(x, y, { seed: 10 }));
  });

  it('pairs: a shared per-problem effect does not widen the interval', () => {
    const rng = new SeededRng(1);
    const base = Array.from({ length: 200 }, () => rng.nextFloat() * 10); // problem difficulty, large
    const a = base.map((x) => x + 0.5 + 0.1 * (rng.nextFloat() - 0.5));
    const ci = pairedBootstrap(a, base, { seed: 2 });
    expect(ci.lo).toBeGreaterThan(0.49);
    expect(ci.hi).toBeLessThan(0.51);
  });

  it('covers the true difference about 95% of the time on synthetic data', () => {
    // Skewed paired differences (exponential minus its mean, plus δ) and binary outcomes.
    const rng = new SeededRng(42);
    const reps = 300;
    let coveredSkewed = 0;
    let coveredBinary = 0;
    const delta = 0.3;
    for (let r = 0; r < reps; r++) {
      const n = 80;
      const b = Array.from({ length: n }, () => rng.nextFloat());
      const a = b.map((x) => x + delta + (-Math.log(1 - rng.nextFloat()) - 1));
      const ci = pairedBootstrap(a, b, { seed: r, resamples: 2000 });
      if (ci.lo <= delta && delta <= ci.hi) coveredSkewed++;
      // Model A solves a problem with probability 0.6, B with 0.45, independently: true difference 0.15.
      const ya = Array.from({ length: 150 }, () => (rng.nextFloat() < 0.6 ? 1 : 0));
      const yb = Array.from({ length: 150 }, () => (rng.nextFloat() < 0.45 ? 1 : 0));
      const cb = pairedBootstrap(ya, yb, { seed: 1000 + r, resamples: 2000 });
      if (cb.lo <= 0.15 && 0.15 <= cb.hi) coveredBinary++;
    }
    // Binomial(300, 0.95) has sd 1.3 points; the percentile bootstrap runs a little under nominal at these n.
    expect(coveredSkewed / reps).toBeGreaterThan(0.9);
    expect(coveredSkewed / reps).toBeLessThan(0.985);
    expect(coveredBinary / reps).toBeGreaterThan(0.9);
    expect(coveredBinary / reps).toBeLessThan(0.985);
  });

  it('narrows as the number of problems grows', () => {
    const rng = new SeededRng(8);
    const width = (n: number) => {
      const b = Array.from({ length: n }, () => rng.nextFloat());
      const a = b.map((x) => x + rng.nextFloat() - 0.5);
      const ci = pairedBootstrap(a, b, { seed: 1 });
      return ci.hi - ci.lo;
    };
    const w100 = width(100);
    const w1600 = width(1600);
    // 1/√n: sixteen times the problems, a quarter of the width (±25%).
    expect(w1600 / w100).toBeGreaterThan(0.25 * 0.75);
    expect(w1600 / w100).toBeLessThan(0.25 * 1.25);
  });

  it('refuses unpaired, empty or non-finite input, naming the problem', () => {
    expect(() => pairedBootstrap([1, 2], [1])).toThrow(/2 scores vs 1/);
    expect(() => pairedBootstrap([], [])).toThrow(/no problems/);
    expect(() => pairedBootstrap([1, NaN], [1, 2])).toThrow(/a\[1\] is NaN/);
    expect(() => pairedBootstrap([1], [1], { level: 1 })).toThrow(/level/);
    expect(() => pairedBootstrap([1], [1], { resamples: 0 })).toThrow(/resamples/);
  });
});

describe('verdicts', () => {
  const iv = (lo: number, hi: number) => ({ estimate: (lo + hi) / 2, lo, hi, level: 0.95 });
  it('equivalence needs the whole interval inside the margin', () => {
    expect(equivalenceVerdict(iv(-0.03, 0.04), 0.05)).toBe('parity');
    expect(equivalenceVerdict(iv(-0.06, 0.04), 0.05)).toBe('inconclusive');
    expect(equivalenceVerdict(iv(0.02, 0.09), 0.05)).toBe('differs');
    expect(equivalenceVerdict(iv(-0.2, -0.01), 0.05)).toBe('differs');
    // Excludes zero but inside the margin: a difference too small to matter.
    expect(equivalenceVerdict(iv(0.01, 0.03), 0.05)).toBe('parity');
    expect(() => equivalenceVerdict(iv(0, 1), 0)).toThrow(/margin must be positive/);
  });
  it('a direction needs the interval to exclude zero on its side', () => {
    expect(directionalVerdict(iv(0.01, 0.2), 'positive')).toBe('consistent');
    expect(directionalVerdict(iv(-0.2, -0.01), 'positive')).toBe('contradicted');
    expect(directionalVerdict(iv(-0.2, 0.01), 'positive')).toBe('inconclusive');
    expect(directionalVerdict(iv(-0.2, -0.01), 'negative')).toBe('consistent');
    expect(directionalVerdict(iv(0.01, 0.2), 'negative')).toBe('contradicted');
  });
});
