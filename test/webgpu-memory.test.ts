/**
 * Memory stays flat in training: 200 SGD steps of a 2-layer MLP, written with the frontend's
 * valueAndGrad, on the WebGPU backend, hold a constant number of live GPU buffers after
 * warm-up — nothing is left for the garbage collector to free.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as T from '@softgrad/tensor';
import type { Tensor } from '@softgrad/tensor';
import { acquireTestBackend, seededValues } from '../packages/webgpu/test/gpu-setup.js';

const gpu = await acquireTestBackend();
afterAll(() => gpu?.destroy());

interface Params { w1: Tensor; b1: Tensor; w2: Tensor; b2: Tensor }

describe.skipIf(!gpu)('WebGPU memory', () => {
  it('keeps a constant live-buffer count over 200 training steps', async () => {
    const be = gpu!;
    const t = (data: Float32Array, shape: number[]) => T.tensor(data, { shape, dtype: 'float32', backend: be });
    const x = t(seededValues(1, 64 * 8), [64, 8]);
    // A smooth target the MLP can fit: y = sin(sum of the inputs).
    const xs = seededValues(1, 64 * 8);
    const yData = new Float32Array(64).map((_, i) => Math.sin(xs.subarray(i * 8, i * 8 + 8).reduce((a, b) => a + b, 0)));
    const y = t(yData, [64, 1]);
    let params: Params = {
      w1: t(seededValues(2, 8 * 32, -0.5, 0.5), [8, 32]), b1: t(new Float32Array(32), [32]),
      w2: t(seededValues(3, 32, -0.5, 0.5), [32, 1]), b2: t(new Float32Array(1), [1]),
    };
    const loss = (p: Params) => {
      const h = T.tanh(T.add(T.matmul(x, p.w1), p.b1));
      const d = T.sub(T.add(T.matmul(h, p.w2), p.b2), y);
      return T.mean(T.mul(d, d));
    };
    const step = T.valueAndGrad(loss);
    const counts: number[] = [];
    const losses: number[] = [];
    for (let i = 0; i < 200; i++) {
      const [l, g] = step(params) as [Tensor, Params];
      const next = T.scope(() => ({
        w1: T.sub(params.w1, T.mul(g.w1, 0.1)), b1: T.sub(params.b1, T.mul(g.b1, 0.1)),
        w2: T.sub(params.w2, T.mul(g.w2, 0.1)), b2: T.sub(params.b2, T.mul(g.b2, 0.1)),
      }));
      T.treeDispose(params);
      T.treeDispose(g);
      params = next;
      losses.push((await l.data())[0]!);
      l.dispose();
      counts.push(be.stats().liveBuffers);
    }
    const afterWarmup = counts.slice(5);
    expect(new Set(afterWarmup).size, `live buffers per step: ${afterWarmup.join(',')}`).toBe(1);
    expect(losses[199]!).toBeLessThan(losses[0]! * 0.5);
    T.treeDispose(params);
    x.dispose();
    y.dispose();
    expect(be.stats().liveBuffers).toBe(0);
    // Freed buffers are reused: the pool stays small.
    expect(be.poolStats().pooledBuffers).toBeLessThan(64);
  });
});
