/**
 * Seeded test data and elementwise comparisons shared by the backend parity suites.
 */
import type { TypedArray } from '@softgrad/tensor';

/** Deterministic values in [lo, hi) from a seed (fast-check shrinks shapes and seeds, not arrays). */
export function seededValues(seed: number, n: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    out[i] = lo + ((s >>> 8) / 2 ** 24) * (hi - lo);
  }
  return out;
}

export function seededInts(seed: number, n: number, lo: number, hi: number): Int32Array {
  return Int32Array.from(seededValues(seed, n, 0, 1), (v) => lo + Math.min(hi - lo - 1, Math.floor(v * (hi - lo))));
}

/**
 * Elementwise closeness |got − want| ≤ atol + rtol·|want|. NaN in either array never passes
 * (tests keep inputs in the ops' domains), and infinities must match exactly.
 */
export function expectClose(got: TypedArray, want: TypedArray, rtol = 1e-5, atol = 1e-6, what = ''): void {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length} ≠ ${want.length}`);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    if (g === w) continue;
    const err = Math.abs(g - w);
    const ok = err <= atol + rtol * Math.abs(w);
    if (!ok) {
      throw new Error(`${what}: element ${i}: got ${g}, want ${w} (abs error ${err}, relative ${err / Math.abs(w)})`);
    }
    worst = Math.max(worst, err / (Math.abs(w) || 1));
  }
}

/**
 * expectClose where NaN is a value like any other: a NaN must be matched by a NaN at the same
 * element (random fused kernels draw NaN constants; a kernel that propagates them is right).
 */
export function expectCloseOrBothNaN(got: TypedArray, want: TypedArray, rtol = 1e-5, atol = 1e-6, what = ''): void {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length} ≠ ${want.length}`);
  const g = Float64Array.from(got);
  const w = Float64Array.from(want);
  for (let i = 0; i < g.length; i++) {
    const gn = Number.isNaN(g[i]!);
    if (gn !== Number.isNaN(w[i]!)) throw new Error(`${what}: element ${i}: got ${g[i]}, want ${w[i]}`);
    if (gn) g[i] = w[i] = 0;
  }
  expectClose(g, w, rtol, atol, what);
}

export function expectEqual(got: TypedArray, want: TypedArray, what = ''): void {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length} ≠ ${want.length}`);
  for (let i = 0; i < got.length; i++) {
    if (!Object.is(got[i]! + 0, want[i]! + 0)) throw new Error(`${what}: element ${i}: got ${got[i]}, want ${want[i]}`);
  }
}
