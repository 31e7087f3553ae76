/**
 * The unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models
 * Trained on Code"): from n samples of which c are correct, the probability that a
 * uniformly drawn k-subset holds at least one correct sample, 1 − C(n−c, k) / C(n, k).
 */

function checkCount(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`passAtK: ${name} must be a non-negative integer, got ${value}`);
  }
}

/**
 * pass@k for one problem. Computed as 1 − ∏_{i=n−c+1}^{n} (1 − k/i), which equals the
 * binomial ratio but never forms the huge binomials, so it is stable for n in the
 * thousands.
 */
export function passAtK(n: number, c: number, k: number): number {
  checkCount('n', n);
  checkCount('c', c);
  checkCount('k', k);
  if (k < 1) throw new Error(`passAtK: k must be at least 1, got ${k}`);
  if (c > n) throw new Error(`passAtK: c (${c} correct) exceeds n (${n} samples)`);
  if (n < k) throw new Error(`passAtK: needs n ≥ k samples, got n = ${n} < k = ${k}`);
  // Every k-subset then contains a correct sample.
  if (n - c < k) return 1;
  let allWrong = 1;
  for (let i = n - c + 1; i <= n; i++) allWrong *= 1 - k / i;
  return 1 - allWrong;
}

/** pass@k for each k in `ks`, in the same order. */
export function passAtKCurve(n: number, c: number, ks: readonly number[]): number[] {
  return ks.map((k) => passAtK(n, c, k));
}

/** Sample counts for one problem: n samples drawn, c of them correct. */
export interface SampleCounts {
  readonly n: number;
  readonly c: number;
}

/** Mean pass@k over problems; problems may have different n as long as each n ≥ k. */
export function meanPassAtK(problems: readonly SampleCounts[], k: number): number {
  if (problems.length === 0) throw new Error('meanPassAtK: no problems');
  let sum = 0;
  for (const p of problems) sum += passAtK(p.n, p.c, k);
  return sum / problems.length;
}

/** Mean pass@k over problems for each k in `ks`. */
export function meanPassAtKCurve(problems: readonly SampleCounts[], ks: readonly number[]): number[] {
  return ks.map((k) => meanPassAtK(problems, k));
}

/** Per-problem counts from a matrix of per-sample correctness (problems × samples). */
export function countCorrect(correct: readonly (readonly boolean[])[]): SampleCounts[] {
  return correct.map((row) => ({ n: row.length, c: row.filter(Boolean).length }));
}
