/**
 * Every primitive's gradient, taken through the frontend with tensors on the WebGPU backend,
 * matches the same gradient on the CPU backend (float32), on random shapes.
 */
import { afterAll, describe, it } from 'vitest';
import fc from 'fast-check';
import * as T from '@softgrad/tensor';
import type { Backend, Tensor } from '@softgrad/tensor';
import { acquireTestBackend, expectClose, seededInts, seededValues } from '../packages/webgpu/test/gpu-setup.js';

const gpu = await acquireTestBackend();
const cpu = T.createCpuBackend();
afterAll(() => gpu?.destroy());

const sizeOf = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

interface Case {
  name: string;
  /** Input shapes (float32, differentiated), value ranges, and the function to a tensor. */
  shapes: number[][];
  range?: [number, number];
  f: (...xs: Tensor[]) => Tensor;
}

/** Reduces f's output against a fixed random cotangent, so every output element matters. */
function scalarLoss(f: Case['f']) {
  return (...xs: Tensor[]) => {
    const y = f(...xs);
    const w = T.tensor(seededValues(99, y.size), { shape: y.shape, dtype: 'float32', backend: y.backend });
    return T.sum(T.mul(y, w));
  };
}

async function gradsOn(backend: Backend, c: Case, seed: number): Promise<Float32Array[]> {
  const [lo, hi] = c.range ?? [-1, 1];
  const xs = c.shapes.map((s, i) => T.tensor(seededValues(seed + i, sizeOf(s), lo, hi), { shape: s, dtype: 'float32', backend }));
  const g = T.grad(scalarLoss(c.f), { argnums: xs.map((_, i) => i) })(...xs) as Tensor[];
  if (g.some((t) => t.backend !== backend)) throw new Error(`${c.name}: gradient computed on another backend`);
  const out = (await Promise.all(g.map((t) => t.data()))) as Float32Array[];
  T.treeDispose(g);
  for (const x of xs) x.dispose();
  return out;
}

async function check(c: Case, seed: number): Promise<void> {
  const want = await gradsOn(cpu, c, seed);
  const got = await gradsOn(gpu!, c, seed);
  got.forEach((g, i) => expectClose(g, want[i]!, 1e-4, 1e-5, `${c.name} d/dx${i} ${JSON.stringify(c.shapes)}`));
}

const dim = fc.integer({ min: 1, max: 5 });
const shape = fc.array(dim, { minLength: 1, maxLength: 3 });
/** Two shapes broadcasting against each other: b is a suffix of a with some dims set to 1. */
const pair = shape.chain((a) =>
  fc.tuple(fc.constant(a), fc.integer({ min: 0, max: a.length }), fc.array(fc.boolean(), { minLength: a.length, maxLength: a.length }))
    .map(([s, r, ones]): [number[], number[]] => [s, s.slice(s.length - r).map((d, i) => (ones[i + s.length - r] ? 1 : d))]));
const seed = fc.integer({ min: 1, max: 2 ** 30 });
const RUNS = { numRuns: 6 };

describe.skipIf(!gpu)('gradients on WebGPU match the CPU backend', () => {
  it('unary primitives', async () => {
    const ops: [string, (x: Tensor) => Tensor, [number, number]?][] = [
      ['neg', T.neg], ['exp', T.exp], ['log', T.log, [0.2, 3]], ['sqrt', T.sqrt, [0.2, 3]], ['rsqrt', T.rsqrt, [0.2, 3]],
      ['abs', T.abs], ['tanh', T.tanh], ['sigmoid', T.sigmoid], ['sin', T.sin], ['cos', T.cos],
    ];
    await fc.assert(fc.asyncProperty(fc.constantFrom(...ops), shape, seed, async ([name, f, range], s, sd) => {
      await check({ name, shapes: [s], f, ...(range ? { range } : {}) }, sd);
    }), { numRuns: 15 });
  });

  it('binary primitives with broadcasting, and where', async () => {
    const ops: [string, (a: Tensor, b: Tensor) => Tensor, [number, number]?][] = [
      ['add', T.add], ['sub', T.sub], ['mul', T.mul], ['div', T.div, [0.5, 2]], ['pow', T.pow, [0.5, 2]],
      ['maximum', T.maximum], ['minimum', T.minimum],
      ['where', (a, b) => T.where(T.greater(a, 0), a, b)],
    ];
    await fc.assert(fc.asyncProperty(fc.constantFrom(...ops), pair, seed, async ([name, f, range], [sa, sb], sd) => {
      await check({ name, shapes: [sa, sb], f, ...(range ? { range } : {}) }, sd);
    }), { numRuns: 15 });
  });

  it('reductions', async () => {
    const arb = shape.chain((s) => fc.tuple(fc.constant(s), fc.subarray(s.map((_, i) => i), { minLength: 1 })));
    const ops: [string, (x: Tensor, axes: number[]) => Tensor][] = [
      ['sum', (x, a) => T.sum(x, a)], ['mean', (x, a) => T.mean(x, a, true)], ['max', (x, a) => T.max(x, a)], ['min', (x, a) => T.min(x, a)],
      ['logsumexp', (x, a) => T.logsumexp(x, a)],
    ];
    await fc.assert(fc.asyncProperty(fc.constantFrom(...ops), arb, seed, async ([name, f], [s, axes], sd) => {
      await check({ name, shapes: [s], f: (x) => f(x, axes) }, sd);
    }), RUNS);
  });

  it('matmul with transposes and broadcast batches', async () => {
    const arb = fc.tuple(dim, dim, dim, fc.boolean(), fc.boolean(), fc.integer({ min: 1, max: 3 }), fc.boolean());
    await fc.assert(fc.asyncProperty(arb, seed, async ([m, n, k, ta, tb, batch, bcast], sd) => {
      const sa = [batch, ...(ta ? [k, m] : [m, k])];
      const sb = bcast ? (tb ? [n, k] : [k, n]) : [batch, ...(tb ? [n, k] : [k, n])];
      await check({ name: 'matmul', shapes: [sa, sb], f: (a, b) => T.matmul(a, b, { transposeA: ta, transposeB: tb }) }, sd);
    }), { numRuns: 10 });
  });

  it('movement: reshape, transpose, broadcastTo, slice, pad, concat', async () => {
    await fc.assert(fc.asyncProperty(fc.array(fc.integer({ min: 2, max: 4 }), { minLength: 2, maxLength: 3 }), seed, async (s, sd) => {
      const r = s.length;
      const perm = s.map((_, i) => r - 1 - i);
      await check({ name: 'reshape', shapes: [s], f: (x) => T.reshape(x, [-1]) }, sd);
      await check({ name: 'transpose', shapes: [s], f: (x) => T.transpose(x, perm) }, sd);
      await check({ name: 'broadcastTo', shapes: [s], f: (x) => T.broadcastTo(x, [2, ...s]) }, sd);
      await check({ name: 'slice', shapes: [s], f: (x) => T.slice(x, s.map(() => 1), s.map((d) => d - 1)) }, sd);
      await check({ name: 'pad', shapes: [s], f: (x) => T.pad(x, s.map(() => 1), s.map((_, i) => i % 2)) }, sd);
      await check({ name: 'concat', shapes: [s, s], f: (a, b) => T.concat([a, b], r - 1) }, sd);
    }), RUNS);
  });

  it('gather and scatterAdd (each the other\'s adjoint)', async () => {
    await fc.assert(fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 3 }), fc.integer({ min: 1, max: 30 }), seed, async (s, nIdx, sd) => {
      const axis = s.length - 1;
      const d = s[axis]!;
      const idxData = seededInts(sd, nIdx, 0, d);
      const idx = (b: Backend) => T.tensor(idxData, { shape: [nIdx], dtype: 'int32', backend: b });
      await check({ name: 'gather', shapes: [s], f: (x) => T.gather(x, idx(x.backend), axis) }, sd);
      const us = [...s.slice(0, axis), nIdx];
      await check({ name: 'scatterAdd', shapes: [us], f: (u) => T.scatterAdd(u, idx(u.backend), axis, s) }, sd);
    }), RUNS);
  });

  it('composite layers: softmax, logSoftmax, rmsNorm, crossEntropy', async () => {
    await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 2, max: 9 }), seed, async (b, v, sd) => {
      await check({ name: 'softmax', shapes: [[b, v]], f: (x) => T.softmax(x) }, sd);
      await check({ name: 'logSoftmax', shapes: [[b, v]], f: (x) => T.logSoftmax(x) }, sd);
      await check({ name: 'rmsNorm', shapes: [[b, v], [v]], f: (x, w) => T.rmsNorm(x, w) }, sd);
      const labels = seededInts(sd, b, 0, v);
      await check({ name: 'crossEntropy', shapes: [[b, v]], f: (x) => T.crossEntropy(x, T.tensor(labels, { shape: [b], dtype: 'int32', backend: x.backend })) }, sd);
    }), RUNS);
  });
});
