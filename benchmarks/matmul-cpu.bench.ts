/**
 * float32 matmul on the CPU backend against @tensorflow/tfjs-backend-cpu, same sizes, same
 * process, interleaved per size so both see the same machine state.
 */
import { Bench } from 'tinybench';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import type { BufferView } from '../packages/tensor/src/backend.js';
import { createCpuBackend } from '../packages/tensor/src/cpu/index.js';

export interface MatmulBenchRow {
  size: number;
  oursGflops: number;
  tfjsGflops: number;
  /** ours / tfjs: above 1 means we are faster. */
  ratio: number;
}

function randomFloat32(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

function medianMs(bench: Bench, name: string): number {
  const r = bench.getTask(name)?.result;
  if (r === undefined || r.state !== 'completed') throw new Error(`matmul bench: task ${name} did not complete (${r?.state})`);
  return r.latency.p50;
}

export async function runMatmulCpuBench(sizes: readonly number[] = [256, 512, 1024]): Promise<MatmulBenchRow[]> {
  await tf.setBackend('cpu');
  await tf.ready();
  const be = createCpuBackend();
  const rows: MatmulBenchRow[] = [];
  for (const n of sizes) {
    const a = randomFloat32(n * n, 1);
    const b = randomFloat32(n * n, 2);
    const av: BufferView = { buf: be.fromTyped(a, 'float32'), shape: [n, n], dtype: 'float32' };
    const bv: BufferView = { buf: be.fromTyped(b, 'float32'), shape: [n, n], dtype: 'float32' };
    const ta = tf.tensor2d(a, [n, n]);
    const tb = tf.tensor2d(b, [n, n]);
    // Large sizes take ~0.5 s per call: bound the sample count by time rather than iterations.
    const bench = new Bench({ time: n >= 1024 ? 3000 : 1500, iterations: n >= 1024 ? 3 : 10, warmupIterations: 2, warmupTime: 200 });
    bench
      .add('ours', () => {
        be.free(be.matmul(av, bv, false, false, []));
      })
      .add('tfjs', () => {
        const c = tf.matMul(ta, tb);
        c.dataSync();
        c.dispose();
      });
    await bench.run();
    const flops = 2 * n * n * n;
    const ours = flops / (medianMs(bench, 'ours') / 1000) / 1e9;
    const tfjs = flops / (medianMs(bench, 'tfjs') / 1000) / 1e9;
    rows.push({ size: n, oursGflops: ours, tfjsGflops: tfjs, ratio: ours / tfjs });
    be.free(av.buf);
    be.free(bv.buf);
    ta.dispose();
    tb.dispose();
  }
  if (be.stats().liveBuffers !== 0) throw new Error(`matmul bench: ${be.stats().liveBuffers} buffers leaked`);
  return rows;
}

export function formatMatmulTable(rows: readonly MatmulBenchRow[]): string {
  const lines = ['size  | ours GFLOP/s | tfjs-cpu GFLOP/s | ratio', '------|--------------|------------------|------'];
  for (const r of rows) {
    lines.push(
      `${String(r.size).padEnd(5)} | ${r.oursGflops.toFixed(2).padStart(12)} | ${r.tfjsGflops.toFixed(2).padStart(16)} | ${r.ratio.toFixed(2).padStart(5)}`,
    );
  }
  return lines.join('\n');
}
