/**
 * The kernel-level parity suite every fast backend runs: each method of the Backend interface
 * gives the JS CPU backend's float32 result on random shapes (broadcasting, sizes of 1, sizes
 * that do not divide vector widths or tiles) and values, and — for backends that run fused
 * kernels — random fused kernels agree with their reference meaning (runFusedReference).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  createCpuBackend, phasedOutputSize, runFusedReference, runPhasedReference, type Backend, type BackendBuffer, type BufferView, type DType,
  type FusedKernel, type FusedNode, type FusedPhase, type PhaseNode, type PhasedKernel, type TypedArray,
} from '@softgrad/tensor';
import { expectClose, expectCloseOrBothNaN, expectEqual, seededInts, seededValues } from './numeric.js';

export interface Input { data: TypedArray; shape: number[]; dtype: DType }
export type Kernel = (be: Backend, views: BufferView[]) => BackendBuffer;

const sizeOf = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const cpu = createCpuBackend();

export async function runKernel(be: Backend, inputs: Input[], k: Kernel, outDType: DType, outSize: number): Promise<TypedArray> {
  const views = inputs.map((i) => ({ buf: be.fromTyped(i.data, i.dtype), shape: i.shape, dtype: i.dtype }));
  const out = k(be, views);
  try {
    return await be.read(out, outDType, outSize);
  } finally {
    for (const v of views) be.free(v.buf);
    be.free(out);
  }
}

export const f32 = (shape: number[], seed: number, lo = -1, hi = 1): Input => ({ data: seededValues(seed, sizeOf(shape), lo, hi), shape, dtype: 'float32' });
export const i32 = (shape: number[], seed: number, lo = -20, hi = 20): Input => ({ data: seededInts(seed, sizeOf(shape), lo, hi), shape, dtype: 'int32' });
export const bool = (shape: number[], seed: number): Input => ({ data: Uint8Array.from(seededInts(seed, sizeOf(shape), 0, 2)), shape, dtype: 'bool' });

const dim = fc.integer({ min: 1, max: 6 });
export const shapeArb = (maxRank = 4) => fc.array(dim, { minLength: 0, maxLength: maxRank });
export const seedArb = fc.integer({ min: 1, max: 2 ** 31 - 1 });

/** An operand shape that broadcasts to `out`: a suffix of it with some dims set to 1. */
export const operandOf = (out: number[]) =>
  fc.tuple(fc.integer({ min: 0, max: out.length }), fc.array(fc.boolean(), { minLength: out.length, maxLength: out.length }))
    .map(([r, ones]) => out.slice(out.length - r).map((d, i) => (ones[i + out.length - r] ? 1 : d)));
const broadcastPair = shapeArb().chain((out) => fc.tuple(fc.constant(out), operandOf(out), operandOf(out), operandOf(out)));

const RUNS = { numRuns: 12 };
const UNARY_DOMAIN: Record<string, [number, number]> = {
  log: [0.01, 10], sqrt: [0, 10], rsqrt: [0.01, 10], exp: [-10, 10],
};

export interface ParityOptions {
  /** The backend runs fused kernels (`runFused`): check random ones against the reference. */
  fused?: boolean;
  /** Also check unary ops over float32's whole range and at special values (±0, ±∞, NaN, subnormals). */
  wideRange?: boolean;
  /** Random fused kernels to try (default 150; each compiles a new kernel, slow on software GPUs). */
  fusedRuns?: number;
}

export function describeKernelParity(label: string, backend: () => Backend | null, options: ParityOptions = {}): void {
  const both = async (inputs: Input[], k: Kernel, outDType: DType, outSize: number): Promise<[TypedArray, TypedArray]> =>
    [await runKernel(backend()!, inputs, k, outDType, outSize), await runKernel(cpu, inputs, k, outDType, outSize)];

  describe.skipIf(!backend())(`${label} kernels match the CPU backend`, () => {
    it('unary float32 ops', async () => {
      const ops = ['neg', 'exp', 'log', 'sqrt', 'rsqrt', 'abs', 'tanh', 'sigmoid', 'sin', 'cos', 'sign'] as const;
      await fc.assert(fc.asyncProperty(fc.constantFrom(...ops), shapeArb(), seedArb, async (op, shape, seed) => {
        const [lo, hi] = UNARY_DOMAIN[op] ?? [-6, 6];
        const [g, c] = await both([f32(shape, seed, lo, hi)], (be, [x]) => be.unary(op, x!), 'float32', sizeOf(shape));
        expectClose(g, c, 2e-6, 1e-7, op);
      }), { numRuns: 30 });
    });

    it.skipIf(!options.wideRange)('unary float32 ops over their whole range and at special values', async () => {
      const special = [0, -0, 1, -1, 1e-30, -1e-30, 1e-40, 3.4e38, -3.4e38, 88.7, 88.8, -103, -104, 1e4, -1e4, Infinity, -Infinity, NaN];
      const wide = Float32Array.from([...special, ...seededValues(5, 400, -60, 60), ...seededValues(6, 400, 1e-6, 1e6)]);
      for (const op of ['neg', 'exp', 'log', 'sqrt', 'rsqrt', 'abs', 'tanh', 'sigmoid', 'sign'] as const) {
        const x: Input = { data: wide, shape: [wide.length], dtype: 'float32' };
        const [g, c] = await both([x], (be, [v]) => be.unary(op, v!), 'float32', wide.length);
        for (let i = 0; i < g.length; i++) {
          const [a, b] = [g[i]!, c[i]!];
          if (Number.isNaN(b)) expect(a, `${op}(${wide[i]})`).toBeNaN();
          else if (!Number.isFinite(b) || b === 0) expect(a, `${op}(${wide[i]})`).toBe(b);
          // Denormal results: an absolute error far below float32's smallest normal number is fine.
          else expect(Math.abs(a - b), `${op}(${wide[i]}) = ${a}, want ${b}`).toBeLessThanOrEqual(4e-7 * Math.abs(b) + 1e-40);
        }
      }
      const trig = Float32Array.from([0, -0, 1e-20, ...seededValues(8, 300, -100, 100)]);
      for (const op of ['sin', 'cos'] as const) {
        const [g, c] = await both([{ data: trig, shape: [trig.length], dtype: 'float32' }], (be, [v]) => be.unary(op, v!), 'float32', trig.length);
        expectClose(g, c, 1e-6, 2e-7, op);
      }
    });

    it('tanh keeps its relative accuracy near zero', async () => {
      // A driver's tanh may be (e^2x - 1)/(e^2x + 1), whose error near zero is absolute: 0.2 % at
      // x = 5e-5, which a fused kernel's later cancellation turns into a wrong result.
      const tiny = Float32Array.from([-0, 0, ...Array.from({ length: 60 }, (_, i) => (i % 2 ? -1 : 1) * 10 ** (-8 + (8 * i) / 60))]);
      const [g, c] = await both([{ data: tiny, shape: [tiny.length], dtype: 'float32' }], (be, [v]) => be.unary('tanh', v!), 'float32', tiny.length);
      expectClose(g, c, 1e-6, 0, 'tanh near zero');
      expect(Object.is(g[0], -0), 'tanh(-0) is -0').toBe(true);
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
      const ops = ['add', 'sub', 'mul', 'maximum', 'minimum', 'less', 'equal', 'and', 'or'] as const;
      await fc.assert(fc.asyncProperty(fc.constantFrom(...ops), broadcastPair, seedArb, async (op, [out, sa, sb], seed) => {
        const logical = op === 'and' || op === 'or';
        const a = logical ? bool(sa, seed) : i32(sa, seed);
        const b = logical ? bool(sb, seed + 1) : i32(sb, seed + 1, -5, 5);
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
      }), { numRuns: 40 });
    });

    it('long reductions, and bool reductions', async () => {
      for (const [shape, axes] of [[[3, 700], [1]], [[700, 3], [0]], [[5, 90, 4], [0, 2]], [[2, 3000], [0, 1]], [[7, 33, 5], [1]]] as [number[], number[]][]) {
        for (const op of ['sum', 'max', 'argmin', 'argmax'] as const) {
          const ax = op === 'argmin' || op === 'argmax' ? [axes[0]!] : axes;
          const outSize = sizeOf(shape.filter((_, i) => !ax.includes(i)));
          const [g, c] = await both([f32(shape, 7)], (be, [v]) => be.reduce(op, v!, ax), op === 'argmin' || op === 'argmax' ? 'int32' : 'float32', outSize);
          if (op === 'sum') expectClose(g, c, 1e-5, 1e-6 * sizeOf(shape), op);
          else expectEqual(g, c, `${op} ${JSON.stringify(shape)} over ${ax}`);
        }
      }
      for (const op of ['sum', 'max', 'min'] as const) {
        const [g, c] = await both([bool([4, 5], 3)], (be, [v]) => be.reduce(op, v!, [1]), 'bool', 4);
        expectEqual(g, c, `bool ${op}`);
      }
    });

    it('argmax and argmin pick the first of equal values, and the first NaN', async () => {
      const rows = [[3, 1, 3, 2, 3, 0, 1], [-Infinity, -Infinity, -Infinity], [2, NaN, 5, NaN], [NaN], [1, 1, 1, 1, 1, 1, 1, 1, 1], [5, 4, 3, 2, 1, 0, -1, -2, -9]];
      for (const row of rows) {
        for (const op of ['argmax', 'argmin'] as const) {
          const x: Input = { data: Float32Array.from(row), shape: [1, row.length], dtype: 'float32' };
          const [g, c] = await both([x], (be, [v]) => be.reduce(op, v!, [1]), 'int32', 1);
          expectEqual(g, c, `${op} ${JSON.stringify(row)}`);
        }
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

    it('matmul: every transpose combination, edge tiles and broadcast batches', async () => {
      for (const [m, n, k] of [[36, 44, 20], [4, 8, 4], [68, 4, 36], [1, 12, 8], [130, 70, 300], [7, 1, 9], [1, 1, 33]]) {
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

    it('gather and scatterAdd', async () => {
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

    it('dynamicSlice and dynamicUpdateSlice with clamped starts', async () => {
      const arb = fc.array(dim, { minLength: 1, maxLength: 4 }).chain((shape) => fc.tuple(
        fc.constant(shape), fc.integer({ min: 0, max: shape.length - 1 }), fc.integer({ min: -3, max: 9 }),
      ).chain(([s, axis, index]) => fc.tuple(fc.constant(s), fc.constant(axis), fc.constant(index), fc.integer({ min: 0, max: s[axis]! }))));
      await fc.assert(fc.asyncProperty(arb, seedArb, async ([shape, axis, index, size], seed) => {
        const idx: Input = { data: Int32Array.of(index), shape: [], dtype: 'int32' };
        const outShape = shape.map((d, i) => (i === axis ? size : d));
        let [g, c] = await both([f32(shape, seed), idx], (be, [x, i]) => be.dynamicSlice(x!, i!, axis, size), 'float32', sizeOf(outShape));
        expectEqual(g, c, 'dynamicSlice');
        for (const reuse of [false, true]) {
          const k: Kernel = (be, [x, u, i]) => {
            const copy = reuse ? be.slice(x!, x!.shape.map(() => 0), x!.shape) : x!.buf;
            const out = be.dynamicUpdateSlice({ ...x!, buf: copy }, u!, i!, axis, reuse);
            if (reuse && out !== copy) be.free(copy);
            return out;
          };
          [g, c] = await both([f32(shape, seed), f32(outShape, seed + 1), idx], k, 'float32', sizeOf(shape));
          expectEqual(g, c, `dynamicUpdateSlice reuse=${reuse}`);
        }
      }), { numRuns: 25 });
    });

    it('cast between float32, int32 and bool', async () => {
      const dts: DType[] = ['float32', 'int32', 'bool'];
      await fc.assert(fc.asyncProperty(fc.constantFrom(...dts), fc.constantFrom(...dts), shapeArb(), seedArb, async (from, to, shape, seed) => {
        const x = from === 'float32' ? f32(shape, seed, -5, 5) : from === 'int32' ? i32(shape, seed, -3, 3) : bool(shape, seed);
        if (from === 'float32' && x.data.length) x.data[0] = 0;
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
      const be = backend()!;
      const before = be.stats();
      const a = be.full(1000, 'float32', 1);
      const b = be.unary('exp', { buf: a, shape: [1000], dtype: 'float32' });
      expect(be.stats().liveBuffers).toBe(before.liveBuffers + 2);
      expect(be.stats().liveBytes).toBeGreaterThanOrEqual(before.liveBytes + 8000);
      be.free(a);
      const c = be.fromTyped(new Float32Array(1000).fill(5), 'float32');
      expect((await be.read(b, 'float32', 1000))[999]).toBeCloseTo(Math.E, 5);
      expect((await be.read(c, 'float32', 1000))[0]).toBe(5);
      be.free(b);
      be.free(c);
      expect(be.stats().liveBuffers).toBe(before.liveBuffers);
      expect(be.stats().liveBytes).toBe(before.liveBytes);
      expect(() => be.free(b)).toThrow(/freed/);
    });

    it.skipIf(!options.fused)('random fused kernels agree with their reference meaning', async () => {
      await fc.assert(fc.asyncProperty(fusedCaseArb, async (fcase) => {
        const be = backend()!;
        const bufs = fcase.buffers.map((b) => be.fromTyped(b.data, b.dtype));
        try {
          const outs = be.runFused!(fcase.kernel, bufs);
          const want = runFusedReference(fcase.kernel, fcase.buffers.map((b) => b.data));
          for (let j = 0; j < outs.length; j++) {
            const o = fcase.kernel.outputs[j]!;
            const got = await be.read(outs[j]!, o.dtype, want[j]!.length);
            be.free(outs[j]!);
            const what = `output ${j} (${o.reduce ?? 'elementwise'}) of ${describeKernel(fcase.kernel)}`;
            if (o.dtype === 'float32') expectCloseOrBothNaN(got, want[j]!, 2e-5, 1e-5 * Math.max(1, fcase.kernel.shape.reduce((a, b) => a * b, 1) ** 0.5), what);
            else expectEqual(got, want[j]!, what);
          }
        } finally {
          for (const b of bufs) be.free(b);
        }
      }), { numRuns: options.fusedRuns ?? 150 });
    });

    it.skipIf(!options.fused)('random phased kernels (row fusion) agree with their reference meaning', async () => {
      const be = backend()!;
      if (!be.runPhased) return;
      await fc.assert(fc.asyncProperty(phasedCaseArb, async (pcase) => {
        const bufs = pcase.buffers.map((b) => be.fromTyped(b.data, 'float32'));
        try {
          const outs = be.runPhased!(pcase.kernel, bufs);
          const want = runPhasedReference(pcase.kernel, pcase.buffers.map((b) => b.data));
          for (let j = 0; j < outs.length; j++) {
            const [p, o] = pcase.kernel.written[j]!;
            const dtype = pcase.kernel.phases[p]!.outputs[o]!.dtype;
            const got = await be.read(outs[j]!, dtype, phasedOutputSize(pcase.kernel, p, o));
            be.free(outs[j]!);
            const what = `output ${p}.${o} of ${JSON.stringify(pcase.kernel)}`;
            if (dtype === 'float32') expectCloseOrBothNaN(got, want[j]!, 1e-4, 1e-5 * Math.max(1, pcase.kernel.shape.reduce((a, b) => a * b, 1) ** 0.5), what);
            else expectEqual(got, want[j]!, what);
          }
        } finally {
          for (const b of bufs) be.free(b);
        }
      }), { numRuns: options.fusedRuns ?? 150 });
    });
  });
}

/**
 * A random phased kernel: a space with some axes reduced (rows short, or long enough for a
 * workgroup per row), float32 inputs read contiguously or broadcast, then 2–4 phases — the
 * first a reduction, each later one a reduction, an elementwise map over the space or a
 * per-row value — whose expressions mix loads with earlier phases' row values and (in maps
 * and reductions) earlier space-sized values at the same point. Arg-reductions only see loads,
 * so rounding cannot change which index wins.
 */
const phasedCaseArb = fc.record({
  shape: fc.oneof(
    fc.array(fc.oneof(fc.integer({ min: 1, max: 6 }), fc.constantFrom(1, 9, 17)), { minLength: 1, maxLength: 3 }),
    fc.tuple(fc.integer({ min: 1, max: 3 }), fc.constantFrom(256, 300, 577)).map(([a, b]) => [a, b]),
  ),
  seed: seedArb,
  kinds: fc.array(fc.constantFrom<FusedPhase['kind']>('reduce', 'map', 'row'), { minLength: 1, maxLength: 3 }),
  nInputs: fc.integer({ min: 1, max: 3 }),
}).map(({ shape, seed, kinds, nInputs }) => buildPhasedCase(shape, seed, ['reduce', ...kinds], nInputs));

/** A xorshift stream of uniforms in [0, 1) and a choice among values, from one seed. */
function seededChoices(seed: number): { rnd: () => number; pick: <T>(xs: readonly T[]) => T } {
  let s = seed >>> 0 || 1;
  const rnd = (): number => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 2 ** 32;
  };
  return { rnd, pick: <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]! };
}

function buildPhasedCase(shape: number[], seed: number, kinds: FusedPhase['kind'][], nInputs: number): { kernel: PhasedKernel; buffers: { data: TypedArray }[] } {
  const { rnd, pick } = seededChoices(seed);
  const r = shape.length;
  // Long rows: the last axis reduced. Otherwise a random non-empty set of axes.
  let reduceAxes = shape.map((_, a) => a).filter(() => rnd() < 0.5);
  if (shape[r - 1]! >= 256 || reduceAxes.length === 0) reduceAxes = [r - 1];
  const inputs: PhasedKernel['inputs'] = [];
  const buffers: { data: TypedArray }[] = [];
  const contiguous = (dims: number[]) => {
    const st = new Array<number>(r).fill(0);
    let acc = 1;
    for (let a = r - 1; a >= 0; a--) {
      st[a] = dims[a] === 1 ? 0 : acc;
      acc *= dims[a]!;
    }
    return { strides: st, total: acc };
  };
  for (let i = 0; i < nInputs; i++) {
    const dims = shape.map((d) => (rnd() < 0.25 ? 1 : d));
    const { strides, total } = contiguous(dims);
    const offset = rnd() < 0.3 ? 3 : 0;
    inputs.push({ dtype: 'float32', offset, strides });
    buffers.push({ data: seededValues(seed + i, total + offset, -2, 2) });
  }
  const phases: FusedPhase[] = [];
  const rowOuts: [number, number][] = [];
  const pointOuts: [number, number][] = [];
  kinds.forEach((kind, p) => {
    const nodes: PhaseNode[] = [];
    const leaves: number[] = [];
    if (kind !== 'row') for (let i = 0; i < nInputs; i++) leaves.push(nodes.push({ kind: 'input', input: i, dtype: 'float32' }) - 1);
    for (const [q, o] of rowOuts) if (rnd() < 0.7 || leaves.length === 0) leaves.push(nodes.push({ kind: 'ref', phase: q, output: o, dtype: phases[q]!.outputs[o]!.dtype }) - 1);
    if (kind !== 'row') for (const [q, o] of pointOuts) if (rnd() < 0.5) leaves.push(nodes.push({ kind: 'ref', phase: q, output: o, dtype: 'float32' }) - 1);
    if (leaves.length === 0) leaves.push(nodes.push({ kind: 'const', value: 1.5, dtype: 'float32' }) - 1);
    const floats = leaves.filter((l) => nodes[l]!.dtype === 'float32');
    const exactLeaves = floats.filter((l) => nodes[l]!.kind === 'input');
    let cur = floats.length ? pick(floats) : nodes.push({ kind: 'cast', a: leaves[0]!, dtype: 'float32' }) - 1;
    for (let k = 0; k < 3; k++) {
      const other = floats.length ? pick(floats) : cur;
      const op = pick(['add', 'sub', 'mul', 'maximum'] as const);
      cur = nodes.push({ kind: 'binary', op, a: cur, b: other, dtype: 'float32' }) - 1;
      if (rnd() < 0.3) cur = nodes.push({ kind: 'unary', op: pick(['tanh', 'exp', 'neg'] as const), a: nodes.push({ kind: 'unary', op: 'tanh', a: cur, dtype: 'float32' }) - 1, dtype: 'float32' }) - 1;
    }
    const outputs: FusedPhase['outputs'] = [];
    if (kind === 'reduce') {
      const op = exactLeaves.length && rnd() < 0.3 ? pick(['argmax', 'argmin'] as const) : pick(['sum', 'max', 'min'] as const);
      const node = op === 'argmax' || op === 'argmin' ? pick(exactLeaves) : cur;
      if ((op === 'argmax' || op === 'argmin') && reduceAxes.length !== 1) outputs.push({ node: cur, reduce: 'sum', dtype: 'float32' });
      else outputs.push({ node, reduce: op, dtype: op === 'argmax' || op === 'argmin' ? 'int32' : 'float32' });
      if (rnd() < 0.5) outputs.push({ node: cur, dtype: 'float32' });
    } else {
      outputs.push({ node: cur, dtype: 'float32' });
    }
    phases.push({ kind, nodes, outputs });
    outputs.forEach((o, j) => {
      if (kind === 'row' || o.reduce) {
        if (o.dtype === 'float32') rowOuts.push([p, j]);
      } else pointOuts.push([p, j]);
    });
  });
  // Written: every space-sized output a later phase reads, the last phase's, and some others.
  const written: [number, number][] = [];
  phases.forEach((ph, p) => ph.outputs.forEach((_, j) => {
    const pointRead = phases.some((q) => q.nodes.some((n) => n.kind === 'ref' && n.phase === p && n.output === j && !(ph.kind === 'row' || ph.outputs[j]!.reduce)));
    if (pointRead || p === phases.length - 1 || rnd() < 0.5) written.push([p, j]);
  }));
  return { kernel: { shape, reduceAxes, inputs, phases, written }, buffers };
}

function describeKernel(k: FusedKernel): string {
  return JSON.stringify({ shape: k.shape, reduceAxes: k.reduceAxes, inputs: k.inputs, nodes: k.nodes, outputs: k.outputs });
}

// ---------------------------------------------------------------------------------------
// Random fused kernels

interface FusedCase {
  kernel: FusedKernel;
  buffers: { data: TypedArray; dtype: DType }[];
}

/**
 * A random kernel: an iteration space, inputs read through random views (contiguous,
 * broadcast, transposed, offset), an expression DAG over them, and outputs (elementwise, or
 * reductions over a random axis set). Comparisons, casts to int and arg-reductions only see
 * exactly computed values (loads, +, −, ×, max, min, where of those), so a last-ulp
 * difference in exp or sin cannot flip a comparison.
 */
const fusedCaseArb: fc.Arbitrary<FusedCase> = fc.record({
  shape: fc.array(fc.oneof(fc.integer({ min: 1, max: 6 }), fc.constantFrom(1, 9, 17)), { minLength: 0, maxLength: 4 }),
  seed: seedArb,
  nInputs: fc.integer({ min: 1, max: 4 }),
  nOps: fc.integer({ min: 1, max: 12 }),
  reduce: fc.constantFrom('none', 'none', 'sum', 'max', 'min', 'argmax', 'argmin'),
}).map(({ shape, seed, nInputs, nOps, reduce }) => buildFusedCase(shape, seed, nInputs, nOps, reduce));

function buildFusedCase(shape: number[], seed: number, nInputs: number, nOps: number, reduce: string): FusedCase {
  const { rnd, pick } = seededChoices(seed);
  const r = shape.length;
  const nodes: FusedNode[] = [];
  const exact: boolean[] = [];
  const inputs: FusedKernel['inputs'] = [];
  const buffers: FusedCase['buffers'] = [];
  for (let i = 0; i < nInputs; i++) {
    const dtype = pick<DType>(['float32', 'float32', 'float32', 'int32', 'bool']);
    // A view: each iteration axis is read contiguously, broadcast, or reversed in order.
    const kind = pick(['contiguous', 'broadcast', 'permuted', 'offset']);
    const dims = shape.map((d) => (kind === 'broadcast' && rnd() < 0.5 ? 1 : d));
    let strides: number[];
    let total = dims.reduce((a, b) => a * b, 1);
    let offset = 0;
    if (kind === 'permuted' && r > 1) {
      const perm = dims.map((_, j) => j).reverse();
      const permDims = perm.map((p) => dims[p]!);
      const ps: number[] = new Array(r);
      let acc = 1;
      for (let j = r - 1; j >= 0; j--) {
        ps[perm[j]!] = acc;
        acc *= permDims[j]!;
      }
      strides = ps;
    } else {
      strides = new Array(r);
      let acc = 1;
      for (let j = r - 1; j >= 0; j--) {
        strides[j] = dims[j] === 1 ? 0 : acc;
        acc *= dims[j]!;
      }
    }
    if (kind === 'offset') {
      offset = 1 + Math.floor(rnd() * 5);
      total += offset + 3;
    }
    const data = dtype === 'float32' ? seededValues(seed + i, total, -2, 2) : dtype === 'int32' ? seededInts(seed + i, total, -4, 5) : Uint8Array.from(seededInts(seed + i, total, 0, 2));
    buffers.push({ data, dtype });
    inputs.push({ dtype, offset, strides });
    nodes.push({ kind: 'input', input: i, dtype });
    exact.push(true);
  }
  const ofType = (dt: DType, needExact = false) => nodes.map((n, i) => [n, i] as const).filter(([n, i]) => n.dtype === dt && (!needExact || exact[i])).map(([, i]) => i);
  const add = (n: FusedNode, isExact: boolean): void => {
    nodes.push(n);
    exact.push(isExact);
  };
  for (let k = 0; k < nOps; k++) {
    const fs = ofType('float32');
    const is = ofType('int32');
    const bs = ofType('bool');
    const choice = pick(['funary', 'fbinary', 'fbinary', 'compare', 'where', 'cast', 'iop', 'bop', 'const']);
    if (choice === 'funary' && fs.length) {
      const a = pick(fs);
      const op = pick(['neg', 'abs', 'tanh', 'sigmoid', 'sin', 'cos', 'exp', 'log', 'sqrt', 'rsqrt', 'sign'] as const);
      if (op === 'log' || op === 'sqrt' || op === 'rsqrt') {
        // Keep the argument positive: |a| + 0.5.
        add({ kind: 'unary', op: 'abs', a, dtype: 'float32' }, exact[a]!);
        add({ kind: 'const', value: 0.5, dtype: 'float32' }, true);
        add({ kind: 'binary', op: 'add', a: nodes.length - 2, b: nodes.length - 1, dtype: 'float32' }, false);
        add({ kind: 'unary', op, a: nodes.length - 1, dtype: 'float32' }, false);
      } else {
        add({ kind: 'unary', op, a, dtype: 'float32' }, exact[a]! && (op === 'neg' || op === 'abs' || op === 'sign'));
      }
    } else if (choice === 'fbinary' && fs.length) {
      const op = pick(['add', 'sub', 'mul', 'maximum', 'minimum', 'div'] as const);
      const a = pick(fs);
      let b = pick(fs);
      if (op === 'div') {
        add({ kind: 'unary', op: 'abs', a: b, dtype: 'float32' }, exact[b]!);
        add({ kind: 'const', value: 1, dtype: 'float32' }, true);
        add({ kind: 'binary', op: 'add', a: nodes.length - 2, b: nodes.length - 1, dtype: 'float32' }, false);
        b = nodes.length - 1;
      }
      add({ kind: 'binary', op, a, b, dtype: 'float32' }, op !== 'div' && exact[a]! && exact[b]! && op !== 'mul');
    } else if (choice === 'compare') {
      const pool = rnd() < 0.5 ? ofType('float32', true) : is;
      if (pool.length) {
        const op = pick(['less', 'lessEqual', 'greater', 'greaterEqual', 'equal', 'notEqual'] as const);
        add({ kind: 'binary', op, a: pick(pool), b: pick(pool), dtype: 'bool' }, true);
      }
    } else if (choice === 'where' && bs.length) {
      const dt = pick<DType>(['float32', 'int32']);
      const pool = dt === 'float32' ? fs : is;
      if (pool.length) {
        const a = pick(pool);
        const b = pick(pool);
        add({ kind: 'where', cond: pick(bs), a, b, dtype: dt }, exact[a]! && exact[b]!);
      }
    } else if (choice === 'cast') {
      const from = pick<DType>(['float32', 'int32', 'bool']);
      const to = pick<DType>(['float32', 'int32', 'bool']);
      const pool = ofType(from, from === 'float32' && to !== 'float32');
      if (pool.length && from !== to) {
        const a = pick(pool);
        add({ kind: 'cast', a, dtype: to }, exact[a]!);
      }
    } else if (choice === 'iop' && is.length) {
      const op = pick(['add', 'sub', 'mul', 'maximum', 'minimum'] as const);
      add({ kind: 'binary', op, a: pick(is), b: pick(is), dtype: 'int32' }, true);
      if (rnd() < 0.3) add({ kind: 'unary', op: pick(['neg', 'abs', 'sign'] as const), a: nodes.length - 1, dtype: 'int32' }, true);
    } else if (choice === 'bop' && bs.length) {
      if (rnd() < 0.3) add({ kind: 'unary', op: 'not', a: pick(bs), dtype: 'bool' }, true);
      else add({ kind: 'binary', op: pick(['and', 'or', 'equal', 'notEqual'] as const), a: pick(bs), b: pick(bs), dtype: 'bool' }, true);
    } else if (choice === 'const') {
      const dt = pick<DType>(['float32', 'int32', 'bool']);
      // Float constants include ±∞ and NaN now and then (masks, finiteness tests): WGSL cannot spell them as literals.
      const special = [Infinity, -Infinity, NaN];
      const fval = rnd() < 0.15 ? special[Math.floor(rnd() * 3)]! : Math.round(rnd() * 40 - 20) / 8;
      add({ kind: 'const', value: dt === 'bool' ? Math.round(rnd()) : dt === 'int32' ? Math.floor(rnd() * 7) - 3 : fval, dtype: dt }, true);
    }
  }
  const last = nodes.length - 1;
  const outputs: FusedKernel['outputs'] = [];
  let reduceAxes: number[] = [];
  if (reduce !== 'none' && r > 0) {
    const isArg = reduce === 'argmax' || reduce === 'argmin';
    const pool = [...ofType('float32', isArg), ...ofType('int32')];
    if (pool.length) {
      const node = pick(pool);
      reduceAxes = isArg ? [Math.floor(rnd() * r)] : shape.map((_, j) => j).filter(() => rnd() < 0.5);
      if (reduceAxes.length === 0) reduceAxes = [r - 1];
      outputs.push({ node, reduce: reduce as 'sum', dtype: isArg ? 'int32' : nodes[node]!.dtype });
      if (!isArg && rnd() < 0.5) {
        const other = pick(pool);
        outputs.push({ node: other, reduce: reduce as 'sum', dtype: nodes[other]!.dtype });
      }
    }
  }
  if (outputs.length === 0 || rnd() < 0.4) outputs.push({ node: last, dtype: nodes[last]!.dtype });
  if (rnd() < 0.3) {
    const extra = Math.floor(rnd() * nodes.length);
    outputs.push({ node: extra, dtype: nodes[extra]!.dtype });
  }
  return { kernel: { shape, reduceAxes, inputs, nodes, outputs }, buffers };
}
