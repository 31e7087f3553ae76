/**
 * Gradient properties of every differentiable primitive and composite, float64 on the CPU:
 * for random shapes (rank 0..4, size-1 and broadcast dimensions) and random values, the JVP
 * agrees with a central finite difference and the VJP satisfies ⟨vjp(u), v⟩ = ⟨u, jvp(v)⟩
 * (T.checkGrads); elementwise ops and matmul are also checked at order 2 (grad of grad).
 *
 * Values come from a seeded generator whose seed is part of each fast-check case, so a
 * failure's printed counter-example (shape, axes, seed) reproduces it exactly. Set
 * FC_SEED=<n> to replay a whole run with fast-check's seed.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as T from '@softgrad/tensor';

if (process.env.FC_SEED) fc.configureGlobal({ seed: Number(process.env.FC_SEED) });

const RUNS = 40;
const be = T.getDefaultBackend();
let live0 = 0;
beforeEach(() => {
  live0 = be.stats().liveBuffers;
});
afterEach(() => {
  // Neither the operations nor the checker leak buffers.
  expect(be.stats().liveBuffers).toBe(live0);
});

// ---------------------------------------------------------------------------------------
// Generators

/** Seeded uniform [0,1) test data, independent of the engine's RNG. */
const rng = T.mulberry32;

const size = (s: readonly number[]): number => s.reduce((a, d) => a * d, 1);

/** Host value generators for one case. */
class Vals {
  readonly r: () => number;
  constructor(seed: number) {
    this.r = rng(seed);
  }
  uniform(n: number, lo = -2, hi = 2): Float64Array {
    return Float64Array.from({ length: n }, () => lo + (hi - lo) * this.r());
  }
  /** |x| in [lo, hi] with a random sign: keeps abs/div/rmsNorm away from 0. */
  awayFromZero(n: number, lo = 0.3, hi = 2): Float64Array {
    return Float64Array.from({ length: n }, () => (this.r() < 0.5 ? -1 : 1) * (lo + (hi - lo) * this.r()));
  }
  /** Distinct values 0.1 apart in random order: no ties for max/min. */
  distinct(n: number): Float64Array {
    const a = Float64Array.from({ length: n }, (_, i) => (i - n / 2) * 0.1 + 0.013);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(this.r() * (i + 1));
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a;
  }
  /** Multiples of 0.25 plus `offset`: two grids with offsets 0 and 0.125 never tie. */
  grid(n: number, offset: number): Float64Array {
    return Float64Array.from({ length: n }, () => (Math.floor(this.r() * 17) - 8) * 0.25 + offset);
  }
  ints(n: number, hi: number): Int32Array {
    return Int32Array.from({ length: n }, () => Math.floor(this.r() * hi));
  }
  bools(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => (this.r() < 0.5 ? 1 : 0));
  }
  perm(n: number): number[] {
    const p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(this.r() * (i + 1));
      [p[i], p[j]] = [p[j]!, p[i]!];
    }
    return p;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.r() * (hi - lo + 1));
  }
}

const f64 = (data: Float64Array, shape: readonly number[]): T.Tensor => T.tensor(data, { shape, dtype: 'float64' });
const i32 = (data: Int32Array, shape: readonly number[]): T.Tensor => T.tensor(data, { shape, dtype: 'int32' });

const dim = fc.integer({ min: 1, max: 3 });
const shapeArb = (minRank = 0, maxRank = 4, maxDim = 3) =>
  fc.array(fc.integer({ min: 1, max: maxDim }), { minLength: minRank, maxLength: maxRank });
const seedArb = fc.integer({ min: 0, max: 0x7fffffff });
const mask = (n: number) => fc.array(fc.boolean(), { minLength: n, maxLength: n });

/** A shape that broadcasts to `out`: some leading axes dropped, some axes set to 1. */
function broadcastable(out: readonly number[], ones: readonly boolean[], drop: number): number[] {
  return out.slice(Math.min(drop, out.length)).map((d, i) => (ones[i] ? 1 : d));
}

/** n shapes that broadcast together (to a shape of rank minRank..maxRank). */
const broadcastShapes = (n: number, minRank = 0, maxRank = 4) =>
  fc
    .record({
      out: shapeArb(minRank, maxRank),
      ones: fc.array(mask(4), { minLength: n, maxLength: n }),
      drops: fc.array(fc.nat(4), { minLength: n, maxLength: n }),
    })
    .map(({ out, ones, drops }) => ones.map((m, j) => broadcastable(out, m, drops[j]!)));

/** Random axes of a rank-r shape: all (undefined), a single number, or a list (maybe negative, maybe empty). */
const axesCase = fc.record({ kind: fc.constantFrom('all', 'list', 'one'), pick: mask(4), negative: fc.boolean(), keepdims: fc.boolean() });
function axesFor(c: { kind: string; pick: boolean[]; negative: boolean }, rank: number): number | number[] | undefined {
  if (c.kind === 'all' || rank === 0) return c.kind === 'all' ? undefined : [];
  const list = c.pick.slice(0, rank).flatMap((p, i) => (p ? [c.negative ? i - rank : i] : []));
  if (c.kind === 'one') return c.negative ? -1 : rank - 1;
  return list;
}

const run = <A>(arb: fc.Arbitrary<A>, body: (a: A) => void, numRuns = RUNS): void => {
  fc.assert(
    fc.property(arb, (a) => {
      T.scope(() => {
        body(a);
        return null;
      });
    }),
    { numRuns },
  );
};

// ---------------------------------------------------------------------------------------
// Elementwise unary (order 2)

type Domain = 'any' | 'positive' | 'nonzero';
const unaryCases: [string, (x: T.Tensor) => T.Tensor, Domain][] = [
  ['neg', T.neg, 'any'],
  ['exp', T.exp, 'any'],
  ['log', T.log, 'positive'],
  ['sqrt', T.sqrt, 'positive'],
  ['rsqrt', T.rsqrt, 'positive'],
  ['abs', T.abs, 'nonzero'],
  ['tanh', T.tanh, 'any'],
  ['sigmoid', T.sigmoid, 'any'],
  ['sin', T.sin, 'any'],
  ['cos', T.cos, 'any'],
  ['reciprocal', T.reciprocal, 'nonzero'],
  ['square', T.square, 'any'],
  ['silu', T.silu, 'any'],
];

function unaryValues(v: Vals, n: number, d: Domain): Float64Array {
  return d === 'positive' ? v.uniform(n, 0.3, 3) : d === 'nonzero' ? v.awayFromZero(n) : v.uniform(n);
}

describe('elementwise unary gradients', () => {
  for (const [name, f, domain] of unaryCases) {
    it(`${name} gradient (and grad of grad) matches finite differences for any shape`, () => {
      run(fc.record({ shape: shapeArb(), seed: seedArb }), ({ shape, seed }) => {
        const x = f64(unaryValues(new Vals(seed), size(shape), domain), shape);
        T.checkGrads(f, [x], { order: 2, rng: seed });
      });
    });
  }
});

// ---------------------------------------------------------------------------------------
// Elementwise binary with broadcasting (order 2)

const binaryCases: [string, (a: T.Tensor, b: T.Tensor) => T.Tensor, (v: Vals, n: number) => Float64Array, (v: Vals, n: number) => Float64Array][] = [
  ['add', T.add, (v, n) => v.uniform(n), (v, n) => v.uniform(n)],
  ['sub', T.sub, (v, n) => v.uniform(n), (v, n) => v.uniform(n)],
  ['mul', T.mul, (v, n) => v.uniform(n), (v, n) => v.uniform(n)],
  ['div', T.div, (v, n) => v.uniform(n), (v, n) => v.awayFromZero(n, 0.5, 2)],
  ['pow', T.pow, (v, n) => v.uniform(n, 0.5, 2), (v, n) => v.uniform(n, -2, 2)],
  ['maximum', T.maximum, (v, n) => v.grid(n, 0), (v, n) => v.grid(n, 0.125)],
  ['minimum', T.minimum, (v, n) => v.grid(n, 0), (v, n) => v.grid(n, 0.125)],
];

describe('elementwise binary gradients', () => {
  for (const [name, f, genA, genB] of binaryCases) {
    it(`${name} gradient (and grad of grad) matches finite differences for any broadcast shapes`, () => {
      run(fc.record({ shapes: broadcastShapes(2), seed: seedArb }), ({ shapes: [sa, sb], seed }) => {
        const v = new Vals(seed);
        const a = f64(genA(v, size(sa!)), sa!);
        const b = f64(genB(v, size(sb!)), sb!);
        T.checkGrads(f, [a, b], { order: 2, rng: seed });
      });
    });
  }

  it('binary ops with a number operand differentiate in the tensor operand', () => {
    run(fc.record({ shape: shapeArb(), seed: seedArb }), ({ shape, seed }) => {
      const x = f64(new Vals(seed).uniform(size(shape), 0.5, 2), shape);
      T.checkGrads((x: T.Tensor) => T.add(T.mul(T.sub(3, x), T.div(x, 2)), T.pow(x, 3)), [x], { order: 2, rng: seed });
      T.checkGrads((x: T.Tensor) => T.add(T.pow(2, x), T.div(1.5, x)), [x], { order: 2, rng: seed });
    });
  });

  it('pow with a negative base and an integer exponent differentiates in the base', () => {
    run(fc.record({ shape: shapeArb(), k: fc.integer({ min: -3, max: 4 }), seed: seedArb }), ({ shape, k, seed }) => {
      const x = f64(new Vals(seed).awayFromZero(size(shape), 0.5, 2), shape);
      T.checkGrads((x: T.Tensor) => T.pow(x, k), [x], { order: 2, rng: seed });
    });
  });

  it('where gradient matches finite differences in both branches for any broadcast shapes', () => {
    run(fc.record({ shapes: broadcastShapes(3), seed: seedArb }), ({ shapes: [sc, sa, sb], seed }) => {
      const v = new Vals(seed);
      const c = T.tensor(v.bools(size(sc!)), { shape: sc!, dtype: 'bool' });
      const a = f64(v.uniform(size(sa!)), sa!);
      const b = f64(v.uniform(size(sb!)), sb!);
      T.checkGrads((c: T.Tensor, a: T.Tensor, b: T.Tensor) => T.where(c, T.mul(a, a), T.sin(b)), [c, a, b], { order: 2, rng: seed });
    });
  });
});

// ---------------------------------------------------------------------------------------
// Reductions

describe('reduction gradients', () => {
  const reductions: [string, (x: T.Tensor, axes: number | number[] | undefined, keepdims: boolean) => T.Tensor, boolean][] = [
    ['sum', T.sum, false],
    ['mean', T.mean, false],
    ['max', T.max, true],
    ['min', T.min, true],
    ['logsumexp', (x, axes, keepdims) => T.logsumexp(x, axes ?? x.shape.map((_, i) => i), keepdims), false],
  ];
  for (const [name, f, distinct] of reductions) {
    it(`${name} gradient matches finite differences over any axes, keepdims or not`, () => {
      run(fc.record({ shape: shapeArb(), axes: axesCase, seed: seedArb }), ({ shape, axes, seed }) => {
        const v = new Vals(seed);
        const x = f64(distinct ? v.distinct(size(shape)) : v.uniform(size(shape)), shape);
        const ax = axesFor(axes, shape.length);
        // Composed with a nonlinearity so that the reduction's second-order rules are exercised too.
        T.checkGrads((x: T.Tensor) => T.sin(f(x, ax, axes.keepdims)), [x], { order: 2, rng: seed });
      });
    });
  }

  it('max gradient is shared equally among tied maxima', async () => {
    const x = T.tensor([[1, 3, 3], [2, 2, 2]], { dtype: 'float64' });
    const g = T.grad((x: T.Tensor) => T.sum(T.max(x, 1)))(x);
    expect(await g.toArray()).toEqual([[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]]);
    x.dispose();
    g.dispose();
  });
});

// ---------------------------------------------------------------------------------------
// matmul (order 2)

describe('matmul gradients', () => {
  const matmulArb = fc.record({
    batch: shapeArb(0, 2),
    onesA: mask(2),
    onesB: mask(2),
    dropA: fc.nat(2),
    dropB: fc.nat(2),
    m: fc.integer({ min: 1, max: 4 }),
    k: fc.integer({ min: 1, max: 4 }),
    n: fc.integer({ min: 1, max: 4 }),
    transposeA: fc.boolean(),
    transposeB: fc.boolean(),
    seed: seedArb,
  });
  it('matmul gradient (and grad of grad) matches finite differences for any shapes, batch broadcasting and transposes', () => {
    run(
      matmulArb,
      ({ batch, onesA, onesB, dropA, dropB, m, k, n, transposeA, transposeB, seed }) => {
        const v = new Vals(seed);
        const sa = [...broadcastable(batch, onesA, dropA), ...(transposeA ? [k, m] : [m, k])];
        const sb = [...broadcastable(batch, onesB, dropB), ...(transposeB ? [n, k] : [k, n])];
        const a = f64(v.uniform(size(sa)), sa);
        const b = f64(v.uniform(size(sb)), sb);
        T.checkGrads((a: T.Tensor, b: T.Tensor) => T.matmul(a, b, { transposeA, transposeB }), [a, b], { order: 2, rng: seed });
      },
      100,
    );
  });

  it('every transposeA/transposeB combination is differentiated correctly', () => {
    for (const transposeA of [false, true]) {
      for (const transposeB of [false, true]) {
        T.scope(() => {
          const v = new Vals(7);
          const a = f64(v.uniform(2 * 3 * 4), transposeA ? [2, 4, 3] : [2, 3, 4]);
          const b = f64(v.uniform(4 * 5), transposeB ? [5, 4] : [4, 5]);
          T.checkGrads((a: T.Tensor, b: T.Tensor) => T.tanh(T.matmul(a, b, { transposeA, transposeB })), [a, b], { order: 2 });
          return null;
        });
      }
    }
  });
});

// ---------------------------------------------------------------------------------------
// Movement

describe('movement gradients', () => {
  it('reshape gradient matches finite differences for any compatible target shape', () => {
    run(fc.record({ shape: shapeArb(), seed: seedArb, hole: fc.boolean() }), ({ shape, seed, hole }) => {
      const v = new Vals(seed);
      // Target: the dims shuffled, some adjacent pairs merged, size-1 axes inserted, maybe one -1.
      const dims = v.perm(shape.length).map((i) => shape[i]!);
      const target: number[] = [];
      for (const d of dims) {
        if (target.length && v.r() < 0.3) target[target.length - 1]! *= d;
        else target.push(d);
        if (v.r() < 0.2) target.push(1);
      }
      if (hole && target.length) target[v.int(0, target.length - 1)] = -1;
      const x = f64(v.uniform(size(shape)), shape);
      T.checkGrads((x: T.Tensor) => T.reshape(x, target), [x], { order: 2, rng: seed });
    });
  });

  it('transpose gradient matches finite differences for any permutation', () => {
    run(fc.record({ shape: shapeArb(0, 4, 4), seed: seedArb, reverse: fc.boolean(), negative: fc.boolean() }), ({ shape, seed, reverse, negative }) => {
      const v = new Vals(seed);
      const perm = v.perm(shape.length).map((p) => (negative ? p - shape.length : p));
      const x = f64(v.uniform(size(shape)), shape);
      T.checkGrads((x: T.Tensor) => T.transpose(x, reverse ? undefined : perm), [x], { order: 2, rng: seed });
    });
  });

  it('broadcastTo gradient matches finite differences for any broadcastable shape', () => {
    run(fc.record({ out: shapeArb(), ones: mask(4), drop: fc.nat(4), seed: seedArb }), ({ out, ones, drop, seed }) => {
      const s = broadcastable(out, ones, drop);
      const x = f64(new Vals(seed).uniform(size(s)), s);
      T.checkGrads((x: T.Tensor) => T.broadcastTo(x, out), [x], { order: 2, rng: seed });
    });
  });

  it('slice gradient matches finite differences for any in-range window', () => {
    run(fc.record({ shape: shapeArb(0, 4, 4), seed: seedArb }), ({ shape, seed }) => {
      const v = new Vals(seed);
      const begin: number[] = [];
      const sz: number[] = [];
      const k = v.int(0, shape.length); // trailing axes left out take the whole axis
      shape.slice(0, k).forEach((d) => {
        const b = v.int(0, d - 1);
        const n = v.int(0, d - b);
        begin.push(v.r() < 0.3 ? b - d : b); // negative begin counts from the end
        sz.push(n === d - b && v.r() < 0.5 ? -1 : n);
      });
      const x = f64(v.uniform(size(shape)), shape);
      T.checkGrads((x: T.Tensor) => T.slice(x, begin, sz), [x], { order: 2, rng: seed });
    });
  });

  it('pad gradient matches finite differences for any padding', () => {
    run(fc.record({ shape: shapeArb(), seed: seedArb }), ({ shape, seed }) => {
      const v = new Vals(seed);
      const before = shape.map(() => v.int(0, 2));
      const after = shape.map(() => v.int(0, 2));
      const x = f64(v.uniform(size(shape)), shape);
      T.checkGrads((x: T.Tensor) => T.pad(x, before, after), [x], { order: 2, rng: seed });
    });
  });

  it('concat gradient matches finite differences for every input, any axis', () => {
    run(fc.record({ shape: shapeArb(1, 4), count: fc.integer({ min: 1, max: 3 }), seed: seedArb }), ({ shape, count, seed }) => {
      const v = new Vals(seed);
      const axis = v.int(-shape.length, shape.length - 1);
      const ax = axis < 0 ? axis + shape.length : axis;
      const xs = Array.from({ length: count }, () => {
        const s = shape.map((d, i) => (i === ax ? v.int(1, 3) : d));
        return f64(v.uniform(size(s)), s);
      });
      T.checkGrads((...xs: T.Tensor[]) => T.concat(xs, axis), xs, { order: 2, rng: seed });
    });
  });

  it('stack gradient matches finite differences for every input, any axis', () => {
    run(fc.record({ shape: shapeArb(0, 3), count: fc.integer({ min: 1, max: 3 }), seed: seedArb }), ({ shape, count, seed }) => {
      const v = new Vals(seed);
      const axis = v.int(-(shape.length + 1), shape.length);
      const xs = Array.from({ length: count }, () => f64(v.uniform(size(shape)), shape));
      T.checkGrads((xs: T.Tensor[]) => T.stack(xs, axis), [xs], { order: 2, rng: seed });
    });
  });

  it('expandDims and squeeze gradients match finite differences', () => {
    run(fc.record({ shape: fc.array(fc.integer({ min: 1, max: 2 }), { maxLength: 4 }), seed: seedArb }), ({ shape, seed }) => {
      const v = new Vals(seed);
      const axis = v.int(-(shape.length + 1), shape.length);
      const x = f64(v.uniform(size(shape)), shape);
      T.checkGrads((x: T.Tensor) => T.expandDims(x, axis), [x], { order: 2, rng: seed });
      T.checkGrads((x: T.Tensor) => T.squeeze(x), [x], { order: 2, rng: seed });
      const ones = shape.flatMap((d, i) => (d === 1 ? [i] : []));
      const some = ones.filter(() => v.r() < 0.5);
      T.checkGrads((x: T.Tensor) => T.squeeze(x, some), [x], { order: 2, rng: seed });
    });
  });
});

// ---------------------------------------------------------------------------------------
// gather / scatterAdd

describe('indexing gradients', () => {
  it('gather gradient w.r.t. x matches finite differences for any axis and indices (with repeats)', () => {
    run(fc.record({ shape: shapeArb(1, 3, 4), idxShape: shapeArb(0, 2, 4), seed: seedArb }), ({ shape, idxShape, seed }) => {
      const v = new Vals(seed);
      const axis = v.int(-shape.length, shape.length - 1);
      const d = shape[axis < 0 ? axis + shape.length : axis]!;
      const idx = i32(v.ints(size(idxShape), d), idxShape);
      const x = f64(v.uniform(size(shape)), shape);
      // The int32 indices are an argument too: the checker holds them constant.
      T.checkGrads((x: T.Tensor, idx: T.Tensor) => T.gather(x, idx, axis), [x, idx], { order: 2, rng: seed });
    });
  });

  it('scatterAdd gradient w.r.t. updates matches finite differences (repeated indices accumulate)', () => {
    run(fc.record({ shape: shapeArb(1, 3, 4), idxShape: shapeArb(0, 2, 4), seed: seedArb }), ({ shape, idxShape, seed }) => {
      const v = new Vals(seed);
      const axis = v.int(-shape.length, shape.length - 1);
      const ax = axis < 0 ? axis + shape.length : axis;
      const idx = i32(v.ints(size(idxShape), shape[ax]!), idxShape);
      const us = [...shape.slice(0, ax), ...idxShape, ...shape.slice(ax + 1)];
      const u = f64(v.uniform(size(us)), us);
      T.checkGrads((u: T.Tensor) => T.scatterAdd(u, idx, axis, shape), [u], { order: 2, rng: seed });
    });
  });

  it('takeAlongLastAxis (one-hot contraction) gradient matches finite differences', () => {
    run(fc.record({ shape: shapeArb(1, 3, 4), seed: seedArb }), ({ shape, seed }) => {
      const v = new Vals(seed);
      const labels = i32(v.ints(size(shape.slice(0, -1)), shape[shape.length - 1]!), shape.slice(0, -1));
      const x = f64(v.uniform(size(shape)), shape);
      T.checkGrads((x: T.Tensor) => T.takeAlongLastAxis(x, labels), [x], { order: 2, rng: seed });
      T.checkGrads((x: T.Tensor) => T.sum(T.mul(T.oneHot(labels, shape[shape.length - 1]!, 'float64'), T.exp(x)), -1), [x], { rng: seed });
    });
  });
});

// ---------------------------------------------------------------------------------------
// cast, stopGradient

describe('cast and stopGradient gradients', () => {
  it('cast float64→float64 is the identity for gradients', () => {
    run(fc.record({ shape: shapeArb(), seed: seedArb }), ({ shape, seed }) => {
      const x = f64(new Vals(seed).uniform(size(shape)), shape);
      T.checkGrads((x: T.Tensor) => T.mul(T.cast(x, 'float64'), x), [x], { order: 2, rng: seed });
    });
  });

  it('cast float64→float32 and float32→float64 pass gradients through (float32 tolerances)', () => {
    run(fc.record({ shape: shapeArb(), seed: seedArb }), ({ shape, seed }) => {
      const data = new Vals(seed).uniform(size(shape));
      const x = f64(data, shape);
      // Linear, so the finite difference is exact up to float32 rounding of x ± εv.
      T.checkGrads((x: T.Tensor) => T.cast(x, 'float32'), [x], { eps: 1e-2, rtol: 1e-4, atol: 1e-4, rng: seed });
      const y = T.tensor(data, { shape, dtype: 'float32' });
      T.checkGrads((y: T.Tensor) => T.mul(T.cast(y, 'float64'), 2), [y], { rng: seed });
    });
  });

  it('cast to int32 and stopGradient block gradients', async () => {
    const x = T.tensor([0.5, 1.5, -2.5], { dtype: 'float64' });
    const g = T.grad((x: T.Tensor) => T.sum(T.add(T.cast(T.cast(x, 'int32'), 'float64'), T.stopGradient(T.mul(x, x)))))(x);
    expect(await g.toArray()).toEqual([0, 0, 0]);
    x.dispose();
    g.dispose();
  });
});

// ---------------------------------------------------------------------------------------
// nn composites

describe('nn composite gradients', () => {
  it('softmax and logSoftmax gradients match finite differences along any axis', () => {
    run(fc.record({ shape: shapeArb(1, 4), seed: seedArb }), ({ shape, seed }) => {
      const v = new Vals(seed);
      const axis = v.int(-shape.length, shape.length - 1);
      const x = f64(v.uniform(size(shape), -3, 3), shape);
      T.checkGrads((x: T.Tensor) => T.softmax(x, axis), [x], { order: 2, rng: seed });
      T.checkGrads((x: T.Tensor) => T.logSoftmax(x, axis), [x], { order: 2, rng: seed });
    });
  });

  it('crossEntropy gradient matches finite differences for every reduction', () => {
    run(
      fc.record({ shape: shapeArb(1, 3, 4), reduction: fc.constantFrom<T.Reduction>('mean', 'sum', 'none'), seed: seedArb }),
      ({ shape, reduction, seed }) => {
        const v = new Vals(seed);
        const lead = shape.slice(0, -1);
        const labels = i32(v.ints(size(lead), shape[shape.length - 1]!), lead);
        const logits = f64(v.uniform(size(shape), -3, 3), shape);
        T.checkGrads((l: T.Tensor) => T.crossEntropy(l, labels, reduction), [logits], { order: 2, rng: seed });
      },
    );
  });

  it('silu gradient matches finite differences', () => {
    run(fc.record({ shape: shapeArb(), seed: seedArb }), ({ shape, seed }) => {
      const x = f64(new Vals(seed).uniform(size(shape), -4, 4), shape);
      T.checkGrads(T.silu, [x], { order: 2, rng: seed });
    });
  });

  it('rmsNorm gradient w.r.t. input and weight matches finite differences', () => {
    run(fc.record({ shape: shapeArb(1, 3, 4), seed: seedArb }), ({ shape, seed }) => {
      const v = new Vals(seed);
      const x = f64(v.awayFromZero(size(shape)), shape);
      const w = f64(v.uniform(shape[shape.length - 1]!), [shape[shape.length - 1]!]);
      T.checkGrads((x: T.Tensor, w: T.Tensor) => T.rmsNorm(x, w), [x, w], { order: 2, rng: seed });
    });
  });
});

// ---------------------------------------------------------------------------------------
// The checker itself

describe('checkGrads', () => {
  const badSin = (which: 'jvp' | 'vjp'): T.Primitive<null> => ({
    name: 'badSin',
    impl: ([x]) => T.sin(x!),
    jvp: ([t], [x]) => (t ? T.mul(t, which === 'jvp' ? T.sin(x!) : T.cos(x!)) : null),
    vjp: (g, [x]) => [T.mul(g, which === 'vjp' ? T.mul(T.cos(x!), 1.001) : T.cos(x!))],
  });

  it('reports a wrong JVP rule with the check, shapes and both numbers', () => {
    const x = T.tensor([[0.3, 1.2, -0.7]], { dtype: 'float64' });
    expect(() => T.checkGrads((x: T.Tensor) => T.bind(badSin('jvp'), [x], null), [x])).toThrow(
      /JVP: JVP disagrees with the central finite difference \(args \(\[1,3\] float64\); output leaf 0 \[1,3\] float64, element \[0,\d\]\): jvp = \S+, finite difference = \S+/,
    );
    x.dispose();
  });

  it('reports a wrong VJP rule through the inner-product identity', () => {
    const x = T.tensor([[0.3, 1.2, -0.7]], { dtype: 'float64' });
    expect(() => T.checkGrads((x: T.Tensor) => T.bind(badSin('vjp'), [x], null), [x])).toThrow(
      /VJP: VJP inner-product identity fails \(args \(\[1,3\] float64\); outputs \[1,3\] float64\): ⟨vjp\(u\), v⟩ = \S+, ⟨u, jvp\(v\)⟩ = \S+/,
    );
    x.dispose();
  });

  it('reports a wrong second derivative at order 2 only', () => {
    // First derivative right, but its rule is written with a non-differentiable stand-in
    // (stopGradient), so the derivative of the derivative is wrong.
    const sq: T.Primitive<null> = {
      name: 'badSquare',
      impl: ([x]) => T.mul(x!, x!),
      jvp: ([t], [x]) => (t ? T.mul(t, T.mul(2, T.stopGradient(x!))) : null),
      vjp: (g, [x]) => [T.mul(g, T.mul(2, T.stopGradient(x!)))],
    };
    const x = T.tensor([0.5, -1.5], { dtype: 'float64' });
    const f = (x: T.Tensor) => T.bind(sq, [x], null);
    expect(() => T.checkGrads(f, [x], { order: 1 })).not.toThrow();
    expect(() => T.checkGrads(f, [x], { order: 2 })).toThrow(/of /);
    x.dispose();
  });

  it('accepts pytree arguments and holds non-float leaves constant', () => {
    const v = new Vals(3);
    const params = { w: f64(v.uniform(6), [2, 3]), b: [f64(v.uniform(3), [3])], steps: 3 };
    const ids = i32(Int32Array.from([1, 0, 1]), [3]);
    T.checkGrads(
      (p: typeof params, ids: T.Tensor) => T.add(T.gather(p.w, ids, 0), p.b[0]!),
      [params, ids],
      { order: 2 },
    );
    T.treeDispose([params, ids]);
  });
});
