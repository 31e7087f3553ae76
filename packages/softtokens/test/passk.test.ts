import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { countCorrect, meanPassAtK, meanPassAtKCurve, passAtK, passAtKCurve } from '../src/passk.js';

/** Fraction of all k-subsets of n samples (the first c correct) holding a correct one. */
function bruteForce(n: number, c: number, k: number): number {
  let hits = 0;
  let total = 0;
  const visit = (start: number, left: number, anyCorrect: boolean) => {
    if (left === 0) {
      total++;
      if (anyCorrect) hits++;
      return;
    }
    for (let i = start; i <= n - left; i++) visit(i + 1, left - 1, anyCorrect || i < c);
  };
  visit(0, k, false);
  return hits / total;
}

describe('passAtK', () => {
  it('equals brute-force enumeration over all k-subsets for every n ≤ 12', () => {
    for (let n = 1; n <= 12; n++) {
      for (let c = 0; c <= n; c++) {
        for (let k = 1; k <= n; k++) {
          expect(passAtK(n, c, k), `n=${n} c=${c} k=${k}`).toBeCloseTo(bruteForce(n, c, k), 12);
        }
      }
    }
  });

  it('is c/n at k = 1 and 0 or 1 at the ends', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 500 }), fc.nat(), (n, cRaw) => {
        const c = cRaw % (n + 1);
        expect(passAtK(n, c, 1)).toBeCloseTo(c / n, 12);
        expect(passAtK(n, 0, n)).toBe(0);
        expect(passAtK(n, c, n)).toBe(c > 0 ? 1 : 0);
      }),
    );
  });

  it('is non-decreasing in k and in c, and stays in [0, 1] for large n', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 5000 }), fc.nat(), fc.nat(), (n, cRaw, kRaw) => {
        const c = cRaw % (n + 1);
        const k = (kRaw % (n - 1)) + 1;
        const p = passAtK(n, c, k);
        expect(p).toBeGreaterThanOrEqual(0);
        expect(p).toBeLessThanOrEqual(1);
        expect(passAtK(n, c, k + 1)).toBeGreaterThanOrEqual(p - 1e-12);
        if (c < n) expect(passAtK(n, c + 1, k)).toBeGreaterThanOrEqual(p - 1e-12);
      }),
    );
  });

  it('matches the paper’s setting: pass@32 from 32 samples is "any correct"', () => {
    expect(passAtK(32, 0, 32)).toBe(0);
    expect(passAtK(32, 1, 32)).toBe(1);
  });

  it('rejects impossible arguments with a clear message', () => {
    expect(() => passAtK(4, 1, 5)).toThrow('needs n ≥ k samples, got n = 4 < k = 5');
    expect(() => passAtK(4, 5, 1)).toThrow('c (5 correct) exceeds n (4 samples)');
    expect(() => passAtK(4, 1, 0)).toThrow('k must be at least 1');
    expect(() => passAtK(4, -1, 1)).toThrow('c must be a non-negative integer');
    expect(() => passAtK(4.5, 1, 1)).toThrow('n must be a non-negative integer');
  });
});

describe('curves and means', () => {
  it('computes a curve in the order of ks', () => {
    expect(passAtKCurve(10, 3, [1, 2, 10])).toEqual([passAtK(10, 3, 1), passAtK(10, 3, 2), 1]);
  });

  it('averages over problems', () => {
    const problems = countCorrect([
      [true, false, false, false],
      [false, false, false, false],
      [true, true, true, true],
    ]);
    expect(problems).toEqual([{ n: 4, c: 1 }, { n: 4, c: 0 }, { n: 4, c: 4 }]);
    expect(meanPassAtK(problems, 1)).toBeCloseTo((0.25 + 0 + 1) / 3, 12);
    expect(meanPassAtKCurve(problems, [1, 4])).toEqual([meanPassAtK(problems, 1), 2 / 3]);
    expect(() => meanPassAtK([], 1)).toThrow('no problems');
  });
});
