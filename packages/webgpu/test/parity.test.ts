/**
 * Every kernel of the Backend interface on WebGPU gives the CPU backend's float32 result on
 * random shapes (the shared suite in test/support/backend-parity.ts), plus what is particular
 * to WebGPU: each matmul variant, deferred error reports, and ordering of recycled buffers.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createCpuBackend, runFusedReference, type DType, type FusedKernel } from '@softgrad/tensor';
import { WebGpuBackend, type MatmulTile, type MatmulVariant } from '@softgrad/webgpu';
import { describeKernelParity, f32, runKernel as run, type Input, type Kernel } from '../../../test/support/backend-parity.js';
import { acquireTestBackend, expectClose, expectEqual, seededInts } from './gpu-setup.js';

const gpu = await acquireTestBackend();
const cpu = createCpuBackend();
afterAll(() => gpu?.destroy());

const both = async (inputs: Input[], k: Kernel, outDType: DType, outSize: number) =>
  [await run(gpu!, inputs, k, outDType, outSize), await run(cpu, inputs, k, outDType, outSize)] as const;

describeKernelParity('WebGPU', () => gpu, { fused: true, fusedRuns: Number(process.env['SOFTGRAD_FUSED_RUNS'] ?? 40) });

describe.skipIf(!gpu)('WebGPU-specific kernels', () => {
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

  it('fused kernels with infinite, NaN and out-of-range constants compile and agree with the reference', async () => {
    // WGSL refuses a constant expression that evaluates to inf or NaN (jit's isFinite test
    // |x| < Infinity, a -Infinity mask fill), so those must reach the shader as run-time values.
    const data = new Float32Array([0, 1.5, -2, Infinity, -Infinity, NaN, 3e38, -7]);
    for (const value of [Infinity, -Infinity, NaN, 1e39, -1e39]) {
      const kernel: FusedKernel = {
        shape: [8], reduceAxes: [], inputs: [{ dtype: 'float32', offset: 0, strides: [1] }],
        nodes: [
          { kind: 'input', input: 0, dtype: 'float32' },
          { kind: 'const', value, dtype: 'float32' },
          { kind: 'binary', op: 'less', a: 0, b: 1, dtype: 'bool' },
          { kind: 'where', cond: 2, a: 0, b: 1, dtype: 'float32' },
          { kind: 'binary', op: 'maximum', a: 3, b: 1, dtype: 'float32' },
        ],
        outputs: [{ node: 3, dtype: 'float32' }, { node: 4, dtype: 'float32' }],
      };
      const x = gpu!.fromTyped(data, 'float32');
      const outs = gpu!.runFused(kernel, [x]);
      const want = runFusedReference(kernel, [data]);
      for (let j = 0; j < outs.length; j++) {
        expectEqual(await gpu!.read(outs[j]!, 'float32', 8), want[j]!, `constant ${value}, output ${j}`);
        gpu!.free(outs[j]!);
      }
      gpu!.free(x);
    }
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
