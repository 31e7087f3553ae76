/**
 * float32 matmul on our WebGPU backend beside @tensorflow/tfjs-backend-webgpu, both on the
 * same Dawn adapter in the same process, timed including readback; plus the round-trip cost
 * of one tiny dispatch. Every line names the adapter.
 */
import { expect, it } from 'vitest';
import { create, globals } from 'webgpu';
import * as tf from '@tensorflow/tfjs-core';
import { createWebGpuBackend, type MatmulTile, type MatmulVariant } from '@softgrad/webgpu';

// Dawn's instance must stay referenced for the whole run (see docs/webgpu.md).
Object.assign(globalThis, globals);
const dawn = create([]);
(globalThis as { navigator?: unknown }).navigator = { gpu: dawn };
// tfjs-backend-webgpu registers itself only if navigator.gpu exists when it is imported.
await import('@tensorflow/tfjs-backend-webgpu');

const SIZES = (process.env['BENCH_SIZES'] ?? '256,512,1024').split(',').map(Number);
const tileEnv = process.env['SOFTGRAD_TILE']?.split(',').map(Number);
const tile: MatmulTile | undefined = tileEnv ? { wx: tileEnv[0]!, wy: tileEnv[1]!, bk: tileEnv[2]!, tm: tileEnv[3] ?? 4 } : undefined;
// SOFTGRAD_MATMUL=tiled|direct forces a matmul variant (default: chosen from the adapter).
const variantEnv = process.env['SOFTGRAD_MATMUL'];
if (variantEnv !== undefined && variantEnv !== 'tiled' && variantEnv !== 'direct') throw new Error(`SOFTGRAD_MATMUL must be tiled or direct, got ${variantEnv}`);
const variant = variantEnv as MatmulVariant | undefined;

/**
 * Medians of alternating samples of `a` and `b`: alternating keeps a load change on a shared
 * machine from favouring whichever side happened to run first.
 */
async function timePair(a: () => Promise<void>, b: () => Promise<void>, minMs: number, minReps = 3): Promise<[number, number]> {
  await a(); // warm-up: pipeline compilation, pool fill
  await b();
  const sa: number[] = [];
  const sb: number[] = [];
  const start = performance.now();
  while (sa.length < minReps || performance.now() - start < minMs) {
    let t0 = performance.now();
    await a();
    sa.push(performance.now() - t0);
    t0 = performance.now();
    await b();
    sb.push(performance.now() - t0);
  }
  const median = (x: number[]) => x.sort((p, q) => p - q)[Math.floor(x.length / 2)]!;
  return [median(sa), median(sb)];
}

function randomData(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

it('float32 matmul: softgrad WebGPU vs tfjs-backend-webgpu (same adapter)', async () => {
  const ours = await createWebGpuBackend({ ...(tile ? { matmulTile: tile } : {}), ...(variant ? { matmulVariant: variant } : {}) });
  const info = ours.adapterInfo;
  const adapter = `${info.vendor}/${info.architecture} (${info.description})`;
  await tf.setBackend('webgpu');
  await tf.ready();
  const lines: string[] = [];
  for (const n of SIZES) {
    const a = randomData(n * n, 1);
    const b = randomData(n * n, 2);
    const va = { buf: ours.fromTyped(a, 'float32'), shape: [n, n], dtype: 'float32' as const };
    const vb = { buf: ours.fromTyped(b, 'float32'), shape: [n, n], dtype: 'float32' as const };
    const minMs = n >= 1024 ? 4000 : 1500;
    let check: Float32Array | undefined;
    let ref: Float32Array | undefined;
    const ta = tf.tensor2d(a, [n, n]);
    const tb = tf.tensor2d(b, [n, n]);
    const [tOurs, tTf] = await timePair(async () => {
      const out = ours.matmul(va, vb, false, false, []);
      check = (await ours.read(out, 'float32', n * n)) as Float32Array;
      ours.free(out);
    }, async () => {
      const c = tf.matMul(ta, tb);
      ref = (await c.data()) as Float32Array;
      c.dispose();
    }, minMs);
    let maxErr = 0;
    for (let i = 0; i < n * n; i++) maxErr = Math.max(maxErr, Math.abs(check![i]! - ref![i]!));
    expect(maxErr).toBeLessThan(1e-3);
    ta.dispose();
    tb.dispose();
    ours.free(va.buf);
    ours.free(vb.buf);
    const flops = 2 * n ** 3;
    const g1 = flops / tOurs / 1e6;
    const g2 = flops / tTf / 1e6;
    lines.push(
      `matmul ${n}×${n}·${n}×${n} [${adapter}]: softgrad ${g1.toFixed(2)} GFLOP/s (${tOurs.toFixed(1)} ms), ` +
        `tfjs-webgpu ${g2.toFixed(2)} GFLOP/s (${tTf.toFixed(1)} ms), ratio ${(g1 / g2).toFixed(2)}×`,
    );
  }
  // Round trip: one one-element dispatch plus its readback.
  const x = { buf: ours.fromTyped(new Float32Array([1]), 'float32'), shape: [1], dtype: 'float32' as const };
  const tx = tf.tensor1d([1]);
  const [tRound, tRoundTf] = await timePair(async () => {
    const y = ours.unary('exp', x);
    await ours.read(y, 'float32', 1);
    ours.free(y);
  }, async () => {
    const y = tf.exp(tx);
    await y.data();
    y.dispose();
  }, 1000, 20);
  ours.free(x.buf);
  tx.dispose();
  lines.push(`one-dispatch round trip [${adapter}]: softgrad ${(tRound * 1000).toFixed(0)} µs, tfjs-webgpu ${(tRoundTf * 1000).toFixed(0)} µs (tfjs runs tensors this small on the CPU)`);
  console.log(`\n${lines.join('\n')}\n(matmul variant ${ours.matmulVariant}${tile ? `, tile ${JSON.stringify(tile)}` : ''})\n`);
  ours.destroy();
}, 600_000);
