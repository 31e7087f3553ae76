/**
 * jit's WebGPU-only fusions give what the same function gives op by op, on random shapes:
 * row fusion (a reduction and the kernels that use its rows as one phased kernel: RMSNorm,
 * softmax, with short rows and with rows long enough for a workgroup each), small broadcast
 * producers recomputed inside their readers (a mask), and dynamicUpdateSlice whose update is
 * an elementwise kernel or a slice (written straight into the result, in place when the
 * state is donated), and independent elementwise kernels and updates run as one dispatch.
 * Each case also checks that the fusion it is about happened.
 */
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as T from '@softgrad/tensor';
import type { Tensor } from '@softgrad/tensor';
import { acquireTestBackend, expectClose, seededValues } from '../packages/webgpu/test/gpu-setup.js';

const gpu = await acquireTestBackend();
afterAll(() => gpu?.destroy());

const on = (data: Float32Array, shape: number[]) => T.tensor(data, { shape, dtype: 'float32', backend: gpu! });
const kinds = (f: T.Jitted<(...a: never[]) => unknown>) => f.lastProgram()!.ops.map((o) => o.kind);

describe.skipIf(!gpu)('jit fusions on WebGPU agree with op-by-op execution', () => {
  it('RMSNorm, a mask and softmax: phased kernels, the mask recomputed inside them', async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 1, max: 5 }), fc.constantFrom(3, 17, 64, 300), fc.integer({ min: 1, max: 2 ** 30 }),
      async (rows, width, seed) => {
        const f = (x: Tensor, w: Tensor, res: Tensor, limit: Tensor) => {
          const h = T.add(x, res);
          const ms = T.mean(T.square(h), -1, true);
          const y = T.mul(T.mul(h, T.rsqrt(T.add(ms, 1e-5))), w);
          // A [1, width] mask from a [1] limit, read broadcast over the rows.
          const j = T.reshape(T.arange(0, width, 1, { dtype: 'float32', backend: gpu! }), [1, width]);
          const bias = T.where(T.lessEqual(j, limit), T.zeros([], { backend: gpu! }), -1e9);
          return { y, p: T.softmax(T.add(y, bias), -1), h };
        };
        const args = [
          on(seededValues(seed, rows * width, -2, 2), [rows, width]), on(seededValues(seed + 1, width, 0.5, 1.5), [width]),
          on(seededValues(seed + 2, rows * width), [rows, width]), on(Float32Array.of(Math.floor(width / 2)), [1]),
        ] as const;
        const want = f(...args);
        const jf = T.jit(f);
        const got = jf(...args);
        for (const k of ['y', 'p', 'h'] as const) expectClose((await got[k].data()) as Float32Array, (await want[k].data()) as Float32Array, 2e-5, 2e-6, `${k} (${rows}×${width})`);
        const ops = kinds(jf);
        // The norm's rows are the softmax's: one phased kernel, or one per function where a
        // row result is written out for the other (h, y and p are all outputs).
        expect(ops.every((k) => k === 'phased'), ops.join(' ')).toBe(true);
        expect(ops.length, ops.join(' ')).toBeLessThanOrEqual(2);
        jf.dispose();
        T.treeDispose([want, got, [...args]]);
      },
    ), { numRuns: 8 });
  });

  it('dynamicUpdateSlice of an elementwise update or a slice: one kernel, in place when donated', async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 2, max: 9 }), fc.integer({ min: -3, max: 12 }),
      fc.boolean(), fc.boolean(), fc.integer({ min: 1, max: 2 ** 30 }),
      async (n, d, cap, at, fromSlice, donate, seed) => {
        // A cache [n, d, cap] written at column `at` (clamped) with [n, d, 1].
        const f = (cache: Tensor, proj: Tensor, c: Tensor, s: Tensor, index: Tensor) => {
          const u = fromSlice
            ? T.reshape(T.slice(proj, [0, d], [n, d]), [n, d, 1])
            : T.reshape(T.add(T.mul(T.slice(proj, [0, 0], [n, d]), c), T.mul(T.slice(proj, [0, d], [n, d]), s)), [n, d, 1]);
          return T.dynamicUpdateSlice(cache, u, index, 2);
        };
        const make = () => [
          on(seededValues(seed, n * d * cap), [n, d, cap]), on(seededValues(seed + 1, n * 2 * d), [n, 2 * d]),
          on(seededValues(seed + 2, d), [d]), on(seededValues(seed + 3, d), [d]), T.scalar(at, { dtype: 'int32', backend: gpu! }),
        ] as const;
        const a = make();
        const want = (await f(...a).data()) as Float32Array;
        const jf = T.jit(f, donate ? { donateArgnums: [0] } : {});
        const b = make();
        const got = jf(...b);
        expectClose((await got.data()) as Float32Array, want, 1e-6, 1e-6, `n ${n} d ${d} cap ${cap} at ${at} ${fromSlice ? 'slice' : 'elementwise'}`);
        expect(kinds(jf)).toEqual(['fusedInto']);
        jf.dispose();
        T.treeDispose([[...a], donate ? [...b.slice(1)] : [...b], got]);
      },
    ), { numRuns: 12 });
  });

  it('independent updates and elementwise kernels: one horizontal dispatch', async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 2, max: 9 }), fc.integer({ min: -2, max: 10 }),
      fc.boolean(), fc.integer({ min: 1, max: 2 ** 30 }),
      async (n, d, cap, at, donate, seed) => {
        // Two caches written from one projection (as K and V are), plus an unrelated result.
        const f = (kc: Tensor, vc: Tensor, proj: Tensor, c: Tensor, index: Tensor) => ({
          k: T.dynamicUpdateSlice(kc, T.reshape(T.mul(T.slice(proj, [0, 0], [n, d]), c), [n, d, 1]), index, 2),
          v: T.dynamicUpdateSlice(vc, T.reshape(T.slice(proj, [0, d], [n, d]), [n, 1, d]), index, 1),
          s: T.tanh(T.add(c, 1)),
        });
        const make = () => [
          on(seededValues(seed, n * d * cap), [n, d, cap]), on(seededValues(seed + 1, n * cap * d), [n, cap, d]),
          on(seededValues(seed + 2, n * 2 * d), [n, 2 * d]), on(seededValues(seed + 3, d), [d]), T.scalar(at, { dtype: 'int32', backend: gpu! }),
        ] as const;
        const a = make();
        const want = f(...a);
        const jf = T.jit(f, donate ? { donateArgnums: [0, 1] } : {});
        const b = make();
        const got = jf(...b);
        for (const key of ['k', 'v', 's'] as const) {
          expectClose((await got[key].data()) as Float32Array, (await want[key].data()) as Float32Array, 1e-6, 1e-6, `${key}: n ${n} d ${d} cap ${cap} at ${at}`);
        }
        expect(kinds(jf)).toEqual(['horizontal']);
        jf.dispose();
        T.treeDispose([[...a], want, donate ? [...b.slice(2)] : [...b], got]);
      },
    ), { numRuns: 10 });
  });
});
