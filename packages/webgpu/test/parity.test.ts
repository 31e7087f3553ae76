/**
 * Every kernel of the Backend interface on WebGPU gives the CPU backend's float32 result on
 * random shapes (broadcasting, sizes of 1, sizes that do not divide the tiles) and values.
 */
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createCpuBackend, type Backend, type BackendBuffer, type BufferView, type DType, type TypedArray } from '@softgrad/tensor';
import { WebGpuBackend, type MatmulTile, type MatmulVariant } from '@softgrad/webgpu';
import { acquireTestBackend, expectClose, expectEqual, seededInts, seededValues } from './gpu-setup.js';

const gpu = await acquireTestBackend();
const cpu = createCpuBackend();
afterAll(() => gpu?.destroy());

interface Input { data: TypedArray; shape: number[]; dtype: DType }
type Kernel = (be: Backend, views: BufferView[]) => BackendBuffer;

const sizeOf = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

async function run(be: Backend, inputs: Input[], k: Kernel, outDType: DType, outSize: number): Promise<TypedArray> {
  const views = inputs.map((i) => ({ buf: be.fromTyped(i.data, i.dtype), shape: i.shape, dtype: i.dtype }));
  const out = k(be, views);
  try {
    return await be.read(out, outDType, outSize);
  } finally {
    for (const v of views) be.free(v.buf);
    be.free(out);
  }
}

async function both(inputs: Input[], k: Kernel, outDType: DType, outSize: number): Promise<[TypedArray, TypedArray]> {
  return [await run(gpu!, inputs, k, outDType, outSize), await run(cpu, inputs, k, outDType, outSize)];
}

const f32 = (shape: number[], seed: number, lo = -1, hi = 1): Input => ({ data: seededValues(seed, sizeOf(shape), lo, hi), shape, dtype: 'float32' });
const i32 = (shape: number[], seed: number, lo = -20, hi = 20): Input => ({ data: seededInts(seed, sizeOf(shape), lo, hi), shape, dtype: 'int32' });
const bool = (shape: number[], seed: number): Input => ({ data: Uint8Array.from(seededInts(seed, sizeOf(shape), 0, 2)), shape, dtype: 'bool' });

const dim = fc.integer({ min: 1, max: 6 });
const shapeArb = (maxRank = 4) => fc.array(dim, { minLength: 0, maxLength: maxRank });
const seedArb = fc.integer({ min: 1, max: 2 ** 31 - 1 });

/** An operand shape that broadcasts to `out`: a suffix of it with some dims set to 1. */
const operandOf = (out: number[]) =>
  fc.tuple(fc.integer({ min: 0, max: out.length }), fc.array(fc.boolean(), { minLength: out.length, maxLength: out.length }))
    .map(([r, ones]) => out.slice(out.length - r).map((d, i) => (ones[i + out.length - r] ? 1 : d)));
const broadcastPair = shapeArb().chain((out) => fc.tuple(fc.constant(out), operandOf(out), operandOf(out), operandOf(out)));

const RUNS = { numRuns: 12 };
const UNARY_DOMAIN: Record<string, [number, number]> = {
  log: [0.01, 10], sqrt: [0, 10], rsqrt: [0.01, 10], exp: [-10, 10],
};

describe.skipIf(!gpu)('WebGPU kernels match the CPU backend', () => {
  it('unary float32 ops', async () => {
    const ops = ['neg', 'exp', 'log', 'sqrt', 'rsqrt', 'abs', 'tanh', 'sigmoid', 'sin', 'cos', 'sign'] as const;
    await fc.assert(fc.asyncProperty(fc.constantFrom(...ops), shapeArb(), seedArb, async (op, shape, seed) => {
      const [lo, hi] = UNARY_DOMAIN[op] ?? [-6, 6];
      const [g, c] = await both([f32(shape, seed, lo, hi)], (be, [x]) => be.unary(op, x!), 'float32', sizeOf(shape));
      expectClose(g, c, 2e-6, 1e-7, op);
    }), { numRuns: 30 });
  });

  it('unary int32 and bool ops', async () => {
    await fc.assert(fc.asyncProperty(fc.constantFrom('neg', 'abs', 'sign', 'not'), shapeArb(), seedArb, async (op, shape, seed) => {
      const x = op === 'not' ? bool(shape, seed) : i32(shape, seed);
      const [g, c] = await both([x], (be, [v]) => be.unary(op as 'neg', v!), x.dtype, sizeOf(shape));
      expectEqual(g, c, op);
    }), RUNS);
  });

  it('binary float32 ops with broadcasting', async () => {
    const ops = ['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum', 'less', 'lessEqual', 'greater', 'greaterEqual', 'equal', 'notEqual'] as const;
    await fc.assert(fc.asyncProperty(fc.constantFrom(...ops), broadcastPair, seedArb, async (op, [out, sa, sb], seed) => {
      const a = op === 'pow' ? f32(sa, seed, 0.1, 3) : f32(sa, seed);
      const b = op === 'div' ? f32(sb, seed + 1, 0.5, 2) : op === 'pow' ? f32(sb, seed + 1, -3, 3) : f32(sb, seed + 1);
      if (op === 'equal' || op === 'notEqual') a.data.set(b.data.subarray(0, Math.min(a.data.length, b.data.length)));
      const isCmp = !['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum'].includes(op);
      const [g, c] = await both([a, b], (be, [x, y]) => be.binary(op, x!, y!, out), isCmp ? 'bool' : 'float32', sizeOf(out));
      if (isCmp) expectEqual(g, c, op);
      else expectClose(g, c, op === 'pow' ? 1e-5 : 1e-6, 1e-7, op);
    }), { numRuns: 30 });
  });

  it('binary int32 and bool ops with broadcasting', async () => {
    const ops = ['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum', 'less', 'equal', 'and', 'or'] as const;
    await fc.assert(fc.asyncProperty(fc.constantFrom(...ops), broadcastPair, seedArb, async (op, [out, sa, sb], seed) => {
      const logical = op === 'and' || op === 'or';
      const a = logical ? bool(sa, seed) : i32(sa, seed);
      const b = logical ? bool(sb, seed + 1) : op === 'pow' ? i32(sb, seed + 1, -2, 6) : i32(sb, seed + 1, -5, 5);
      const outDType: DType = logical || op === 'less' || op === 'equal' ? 'bool' : 'int32';
      const [g, c] = await both([a, b], (be, [x, y]) => be.binary(op, x!, y!, out), outDType, sizeOf(out));
      expectEqual(g, c, op);
    }), RUNS);
  });

  it('where with broadcasting', async () => {
    await fc.assert(fc.asyncProperty(broadcastPair, seedArb, fc.constantFrom<DType>('float32', 'int32'), async ([out, sc, sa, sb], seed, dt) => {
      const mk = dt === 'float32' ? f32 : i32;
      const [g, c] = await both([bool(sc, seed), mk(sa, seed + 1), mk(sb, seed + 2)], (be, [k, x, y]) => be.where(k!, x!, y!, out), dt, sizeOf(out));
      expectEqual(g, c, 'where');
    }), RUNS);
  });

  it('reductions over any axis set (sum, max, min) and one axis (argmax, argmin)', async () => {
    const arb = fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 4 }).chain((shape) =>
      fc.tuple(fc.constant(shape), fc.subarray(shape.map((_, i) => i), { minLength: 1 }), fc.integer({ min: 0, max: shape.length - 1 })));
    const ops = ['sum', 'max', 'min', 'argmax', 'argmin'] as const;
    await fc.assert(fc.asyncProperty(fc.constantFrom(...ops), arb, seedArb, fc.constantFrom<DType>('float32', 'int32'), async (op, [shape, axes, axis], seed, dt) => {
      const ax = op === 'argmax' || op === 'argmin' ? [axis] : axes;
      const x = dt === 'float32' ? f32(shape, seed) : i32(shape, seed, -3, 3);
      const outSize = sizeOf(shape.filter((_, i) => !ax.includes(i)));
      const outDType: DType = op === 'argmax' || op === 'argmin' ? 'int32' : dt;
      const [g, c] = await both([x], (be, [v]) => be.reduce(op, v!, ax), outDType, outSize);
      if (op === 'sum' && dt === 'float32') expectClose(g, c, 1e-5, 1e-6 * sizeOf(shape), op);
      else expectEqual(g, c, op);
    }), { numRuns: 30 });
  });

  it('reductions long enough for the workgroup tree, and bool reductions', async () => {
    for (const [shape, axes] of [[[3, 700], [1]], [[700, 3], [0]], [[5, 90, 4], [0, 2]], [[2, 3000], [0, 1]]] as [number[], number[]][]) {
      for (const op of ['sum', 'max', 'argmin'] as const) {
        const ax = op === 'argmin' ? [axes[0]!] : axes;
        const outSize = sizeOf(shape.filter((_, i) => !ax.includes(i)));
        const [g, c] = await both([f32(shape, 7)], (be, [v]) => be.reduce(op, v!, ax), op === 'argmin' ? 'int32' : 'float32', outSize);
        if (op === 'sum') expectClose(g, c, 1e-5, 1e-6 * sizeOf(shape), op);
        else expectEqual(g, c, op);
      }
    }
    for (const op of ['sum', 'max', 'min'] as const) {
      const [g, c] = await both([bool([4, 5], 3)], (be, [v]) => be.reduce(op, v!, [1]), 'bool', 4);
      expectEqual(g, c, `bool ${op}`);
    }
  });

  it('matmul on random shapes, transposes and broadcast batches', async () => {
    const mdim = fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 30, max: 70 }));
    const batch = fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 0, maxLength: 2 });
    const arb = fc.tuple(mdim, mdim, mdim, fc.boolean(), fc.boolean(), batch).chain(([m, n, k, ta, tb, bs]) =>
      fc.tuple(fc.constant([m, n, k, ta, tb, bs] as const), operandOf(bs), operandOf(bs)));
    await fc.assert(fc.asyncProperty(arb, seedArb, async ([[m, n, k, ta, tb, bs], ba, bb], seed) => {
      const sa = [...ba, ...(ta ? [k, m] : [m, k])];
      const sb = [...bb, ...(tb ? [n, k] : [k, n])];
      const [g, c] = await both([f32(sa, seed), f32(sb, seed + 1)], (be, [x, y]) => be.matmul(x!, y!, ta, tb, bs), 'float32', sizeOf(bs) * m * n);
      expectClose(g, c, 1e-5, 2e-6 * k, 'matmul');
    }), { numRuns: 25 });
  });

  it('matmul vec4 path: every transpose combination, edge tiles and broadcast batches', async () => {
    for (const [m, n, k] of [[36, 44, 20], [4, 8, 4], [68, 4, 36], [1, 12, 8]]) {
      for (const ta of [false, true]) {
        for (const tb of [false, true]) {
          const bs = [2, 3];
          const sa = [2, 1, ...(ta ? [k!, m!] : [m!, k!])];
          const sb = [3, ...(tb ? [n!, k!] : [k!, n!])];
          const [g, c] = await both([f32(sa, m! + n!), f32(sb, k!)], (be, [x, y]) => be.matmul(x!, y!, ta, tb, bs), 'float32', 6 * m! * n!);
          expectClose(g, c, 1e-5, 2e-6 * k!, `matmul ${m}×${k}·${k}×${n} ta=${ta} tb=${tb}`);
        }
      }
    }
  });

  // Each matmul variant, forced on this adapter (whichever the adapter would pick), on shapes
  // that cross its tile edges, every transpose combination, a K that is no multiple of 4 (the
  // direct kernel's K tail: transposed A, plain B) and broadcast batches.
  const variants: [MatmulVariant, MatmulTile | undefined][] = [
    ['tiled', undefined], ['direct', undefined], ['tiled', { wx: 16, wy: 8, bk: 32, tm: 8 }], ['direct', { wx: 4, wy: 4, bk: 16, tm: 4 }],
  ];
  for (const [variant, tile] of variants) {
    it(`matmul variant ${variant}${tile ? ` tile ${JSON.stringify(tile)}` : ' (default tile)'}`, async () => {
      const be = new WebGpuBackend(gpu!.device, gpu!.adapterInfo, false, { matmulVariant: variant, ...(tile ? { matmulTile: tile } : {}) });
      try {
        expect(be.matmulVariant).toBe(variant);
        for (const [m, n, k] of [[132, 68, 20], [36, 136, 24], [8, 12, 21], [68, 72, 13], [5, 44, 12]]) {
          for (const ta of [false, true]) {
            for (const tb of [false, true]) {
              const bs = [2, 1];
              const sa = [2, 1, ...(ta ? [k!, m!] : [m!, k!])];
              const sb = [1, ...(tb ? [n!, k!] : [k!, n!])];
              const inputs = [f32(sa, m! + n!), f32(sb, k!)];
              const k4: Kernel = (b, [x, y]) => b.matmul(x!, y!, ta, tb, bs);
              const g = await run(be, inputs, k4, 'float32', 2 * m! * n!);
              const c = await run(cpu, inputs, k4, 'float32', 2 * m! * n!);
              expectClose(g, c, 1e-5, 2e-6 * k!, `${variant} matmul ${m}×${k}·${k}×${n} ta=${ta} tb=${tb}`);
            }
          }
        }
      } finally {
        be.destroy();
      }
    });
  }

  it('transpose, broadcastTo, slice and pad', async () => {
    const arb = shapeArb(5).chain((shape) => fc.tuple(
      fc.constant(shape),
      fc.shuffledSubarray(shape.map((_, i) => i), { minLength: shape.length, maxLength: shape.length }),
      fc.tuple(...shape.map((d) => fc.integer({ min: 0, max: d - 1 }).chain((s) => fc.tuple(fc.constant(s), fc.integer({ min: 0, max: d - s }))))),
      fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 })), { minLength: shape.length, maxLength: shape.length }),
    ));
    await fc.assert(fc.asyncProperty(arb, seedArb, async ([shape, perm, ss, pads], seed) => {
      const x = f32(shape, seed);
      const tShape = perm.map((p) => shape[p]!);
      let [g, c] = await both([x], (be, [v]) => be.transpose(v!, perm), 'float32', sizeOf(tShape));
      expectEqual(g, c, 'transpose');
      const bShape = [2, ...shape.map((d, i) => (i % 2 === 0 && d === 1 ? 3 : d))];
      const bx = f32(shape.map((d, i) => (i % 2 === 0 ? 1 : d)), seed);
      [g, c] = await both([bx], (be, [v]) => be.broadcastTo(v!, bShape), 'float32', sizeOf(bShape));
      expectEqual(g, c, 'broadcastTo');
      const starts = ss.map(([s]) => s);
      const sizes = ss.map(([, n]) => n);
      [g, c] = await both([x], (be, [v]) => be.slice(v!, starts, sizes), 'float32', sizeOf(sizes));
      expectEqual(g, c, 'slice');
      const pShape = shape.map((d, i) => pads[i]![0] + d + pads[i]![1]);
      [g, c] = await both([i32(shape, seed)], (be, [v]) => be.pad(v!, pads.map((p) => p[0]), pads.map((p) => p[1])), 'int32', sizeOf(pShape));
      expectEqual(g, c, 'pad');
    }), { numRuns: 20 });
  });

  it('concat along any axis', async () => {
    const arb = fc.array(dim, { minLength: 1, maxLength: 4 }).chain((shape) =>
      fc.tuple(fc.constant(shape), fc.integer({ min: 0, max: shape.length - 1 }), fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 4 })));
    await fc.assert(fc.asyncProperty(arb, seedArb, async ([shape, axis, lens], seed) => {
      const inputs = lens.map((l, i) => bool(shape.map((d, j) => (j === axis ? l : d)), seed + i));
      const outShape = shape.map((d, j) => (j === axis ? lens.reduce((a, b) => a + b, 0) : d));
      const [g, c] = await both(inputs, (be, vs) => be.concat(vs, axis), 'bool', sizeOf(outShape));
      expectEqual(g, c, 'concat');
    }), RUNS);
  });

  it('gather and scatterAdd (direct and bucketed paths)', async () => {
    const arb = fc.array(dim, { minLength: 1, maxLength: 3 }).chain((shape) =>
      fc.tuple(fc.constant(shape), fc.integer({ min: 0, max: shape.length - 1 }), fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 0, maxLength: 2 }),
        fc.integer({ min: 1, max: 40 })));
    await fc.assert(fc.asyncProperty(arb, seedArb, async ([shape, axis, idxShape0, extra], seed) => {
      const idxShape = idxShape0.length ? [...idxShape0.slice(0, -1), idxShape0[idxShape0.length - 1]! * Math.ceil(extra / 10)] : idxShape0;
      const idx = i32(idxShape, seed, 0, shape[axis]!);
      const outShape = [...shape.slice(0, axis), ...idxShape, ...shape.slice(axis + 1)];
      let [g, c] = await both([f32(shape, seed), idx], (be, [x, i]) => be.gather(x!, i!, axis), 'float32', sizeOf(outShape));
      expectEqual(g, c, 'gather');
      [g, c] = await both([f32(outShape, seed + 3), idx], (be, [u, i]) => be.scatterAdd(u!, i!, axis, shape), 'float32', sizeOf(shape));
      expectClose(g, c, 1e-6, 1e-6, 'scatterAdd');
    }), { numRuns: 25 });
  });

  it('scatterAdd of many repeated indices is deterministic run to run', async () => {
    const idx: Input = { data: seededInts(5, 5000, 0, 3), shape: [5000], dtype: 'int32' };
    const k: Kernel = (be, [u, i]) => be.scatterAdd(u!, i!, 0, [3, 4]);
    const [g, c] = await both([f32([5000, 4], 9), idx], k, 'float32', 12);
    expectClose(g, c, 1e-5, 1e-5, 'scatterAdd repeated');
    for (let r = 0; r < 3; r++) expectEqual(await run(gpu!, [f32([5000, 4], 9), idx], k, 'float32', 12), g, 'scatterAdd rerun');
  });

  it('an out-of-range gather index is reported at the next read', async () => {
    const x = gpu!.fromTyped(new Float32Array([1, 2, 3]), 'float32');
    const i = gpu!.fromTyped(new Int32Array([0, 3]), 'int32');
    const out = gpu!.gather({ buf: x, shape: [3], dtype: 'float32' }, { buf: i, shape: [2], dtype: 'int32' }, 0);
    await expect(gpu!.read(out, 'float32', 2)).rejects.toThrow(/gather: index 3 out of range \[0, 3\)/);
    // The flag is cleared once reported.
    await expect(gpu!.read(x, 'float32', 3)).resolves.toEqual(new Float32Array([1, 2, 3]));
    for (const b of [x, i, out]) gpu!.free(b);
  });

  it('cast between float32, int32 and bool', async () => {
    const dts: DType[] = ['float32', 'int32', 'bool'];
    await fc.assert(fc.asyncProperty(fc.constantFrom(...dts), fc.constantFrom(...dts), shapeArb(), seedArb, async (from, to, shape, seed) => {
      const x = from === 'float32' ? f32(shape, seed, -5, 5) : from === 'int32' ? i32(shape, seed, -3, 3) : bool(shape, seed);
      if (from === 'float32') x.data[0] = 0;
      const [g, c] = await both([x], (be, [v]) => be.cast(v!, to), to, sizeOf(shape));
      expectEqual(g, c, `cast ${from}→${to}`);
    }), RUNS);
  });

  it('randomUniform is bit-identical to the CPU backend', async () => {
    await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: 3000 }), fc.tuple(fc.nat(), fc.nat()), async (n, key) => {
      const [g, c] = await both([], (be) => be.randomUniform([key[0] >>> 0, key[1] >>> 0], n, 'float32'), 'float32', n);
      expectEqual(g, c, 'randomUniform');
    }), RUNS);
  });

  it('full and fromTyped round-trip every dtype', async () => {
    for (const [dt, v] of [['float32', -2.5], ['int32', -7], ['bool', 1]] as [DType, number][]) {
      const [g, c] = await both([], (be) => be.full(37, dt, v), dt, 37);
      expectEqual(g, c, `full ${dt}`);
    }
  });

  it('NaN propagates through maximum, max and argmax as on the CPU', async () => {
    const x: Input = { data: new Float32Array([1, NaN, 3, 2, -1, NaN]), shape: [2, 3], dtype: 'float32' };
    const y: Input = { data: new Float32Array([0, 0, 0]), shape: [3], dtype: 'float32' };
    let [g, c] = await both([x, y], (be, [a, b]) => be.binary('maximum', a!, b!, [2, 3]), 'float32', 6);
    expectEqual(g, c, 'maximum');
    [g, c] = await both([x], (be, [a]) => be.reduce('max', a!, [1]), 'float32', 2);
    expectEqual(g, c, 'max');
    [g, c] = await both([x], (be, [a]) => be.reduce('argmax', a!, [1]), 'int32', 2);
    expectEqual(g, c, 'argmax');
  });

  it('frees deterministically: live buffers return to their count and stats track bytes', async () => {
    const before = gpu!.stats();
    const a = gpu!.full(1000, 'float32', 1);
    const b = gpu!.unary('exp', { buf: a, shape: [1000], dtype: 'float32' });
    expect(gpu!.stats().liveBuffers).toBe(before.liveBuffers + 2);
    expect(gpu!.stats().liveBytes).toBeGreaterThanOrEqual(before.liveBytes + 8000);
    gpu!.free(a);
    // b still reads correctly although a's storage was recycled after the kernel was encoded.
    const c = gpu!.fromTyped(new Float32Array(1000).fill(5), 'float32');
    expect((await gpu!.read(b, 'float32', 1000))[999]).toBeCloseTo(Math.E, 5);
    expect((await gpu!.read(c, 'float32', 1000))[0]).toBe(5);
    gpu!.free(b);
    gpu!.free(c);
    expect(gpu!.stats()).toEqual(before);
    expect(() => gpu!.free(b)).toThrow(/already freed/);
  });

  it('writes into a recycled buffer never overtake pending reads of it', async () => {
    // x is read by a pending kernel, freed, and its storage re-filled by fromTyped before any submit.
    const x = gpu!.fromTyped(new Float32Array(64).fill(2), 'float32');
    const y = gpu!.unary('sqrt', { buf: x, shape: [64], dtype: 'float32' });
    gpu!.free(x);
    const z = gpu!.fromTyped(new Float32Array(64).fill(9), 'float32');
    expect((await gpu!.read(y, 'float32', 64))[0]).toBeCloseTo(Math.SQRT2, 6);
    expect((await gpu!.read(z, 'float32', 64))[0]).toBe(9);
    gpu!.free(y);
    gpu!.free(z);
  });
});
