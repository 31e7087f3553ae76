/**
 * ~10M-parameter Llama forward throughput: prefill, one-token decode with a KV cache, and a
 * training step (CPU), beside tfjs running only the same forward's linear-layer matmuls.
 *
 *   SOFTGRAD_BENCH_BACKEND=cpu|webgpu   (default cpu; webgpu runs prefill and decode only)
 *   SOFTGRAD_BENCH_SCALE=full|small     (default full; small = ~1.3M params, short sequences,
 *                                        for software WebGPU such as lavapipe)
 */
import { expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import type * as T from '@softgrad/tensor';
import { createCpuBackend } from '@softgrad/tensor';
import { envChoice, fmt, formatMachine, formatTable } from './bench-util.js';
import { runTransformerBench, SCALES, type BenchScale, type Row } from './transformer.bench.js';

const backendName = envChoice('SOFTGRAD_BENCH_BACKEND', ['cpu', 'webgpu'] as const, 'cpu');
const scale: BenchScale = envChoice('SOFTGRAD_BENCH_SCALE', ['full', 'small'] as const, 'full');

async function setUp(): Promise<{ backend: T.Backend; label: string; peer: string; close: () => void }> {
  if (backendName === 'cpu') {
    await tf.setBackend('cpu');
    await tf.ready();
    return { backend: createCpuBackend(), label: 'cpu', peer: 'tfjs-backend-cpu', close: () => {} };
  }
  // Dawn's instance must stay referenced for the whole run (see docs/webgpu.md); our
  // backend and tfjs-backend-webgpu both take it from navigator.gpu, so they share the adapter.
  const { create, globals } = (await import('webgpu')) as { create(o: string[]): GPU; globals: object };
  Object.assign(globalThis, globals);
  const dawn = create([]);
  (globalThis as { navigator?: unknown }).navigator = { gpu: dawn };
  (globalThis as { __softgradBenchDawn?: unknown }).__softgradBenchDawn = dawn;
  await import('@tensorflow/tfjs-backend-webgpu'); // registers itself only if navigator.gpu exists
  const { createWebGpuBackend } = await import('@softgrad/webgpu');
  const backend = await createWebGpuBackend();
  await tf.setBackend('webgpu');
  await tf.ready();
  const i = backend.adapterInfo;
  return {
    backend,
    label: `webgpu ${i.vendor}/${i.architecture} (${i.description})`,
    peer: 'tfjs-backend-webgpu',
    close: () => backend.destroy(),
  };
}

function table(rows: readonly Row[], label: string, peer: string): string {
  return formatTable(
    ['backend', 'case', 'tokens', 'ours ms', 'ours tok/s', 'ours linear-matmuls-only ms', `${peer} linear-matmuls-only ms`, 'ours full ÷ tfjs matmuls-only (time ratio)', 'samples'],
    rows.map((r) => [
      label,
      r.case,
      String(r.tokens),
      fmt(r.oursMs),
      fmt((r.tokens / r.oursMs) * 1000),
      fmt(r.oursMatmulMs),
      fmt(r.peerMs),
      `${(r.oursMs / r.peerMs).toFixed(2)}×`,
      r.samples.join('/'),
    ]),
  );
}

it(`transformer forward/decode/train throughput (${backendName}, ${scale})`, async () => {
  const { backend, label, peer, close } = await setUp();
  const s = SCALES[scale];
  const t0 = performance.now();
  try {
    const res = await runTransformerBench({
      scale,
      backend,
      tf,
      train: backendName === 'cpu',
      warmupCalls: backendName === 'cpu' ? 1 : 2,
      log: (l) => console.log(`[${label}] ${l}`),
    });
    const c = res.config;
    const m = s.model;
    const out = [
      '',
      formatMachine(),
      '',
      `[${label}] model: Llama, vocab ${m.vocab}, hidden ${m.hidden}, ${m.layers} layers, ${m.heads} heads (${m.kvHeads} KV, head_dim ${c.head_dim}), ` +
        `intermediate ${m.intermediate}, untied LM head, float32: ${res.parameters.toLocaleString('en-US')} parameters ` +
        `(scale ${scale})`,
      table(res.rows, label, peer),
      `[${label}] "ours full" = our whole forward (embedding, RMSNorm, RoPE, GQA attention with causal mask, SwiGLU, LM head` +
        `${backendName === 'cpu' ? '; train step: + cross-entropy and the full backward' : ''}).`,
      `[${label}] "linear-matmuls-only" = just the ${c.num_hidden_layers * 7 + 1} linear-layer matmuls of one forward (same shapes, x·Wᵀ)` +
        `${backendName === 'cpu' ? '; train row: ×3 (forward, dX = dY·W, dW = dYᵀ·X)' : ''}; no attention, norms or activations.`,
      `[${label}] The peer (${peer}) runs ONLY those matmuls, so a ratio above 1 is not "tfjs would run this model faster";` +
        ` it is how far our full forward is from tfjs's matmul floor. Peer: ${peer} in the same process.`,
      `[${label}] Times are medians of the timed samples (ours / ours matmuls-only / peer), after ${backendName === 'cpu' ? 'one untimed warm-up call' : 'two untimed warm-up calls (pipeline compilation)'} each.`,
      `[${label}] total bench time ${((performance.now() - t0) / 1000).toFixed(0)} s`,
      '',
    ];
    console.log(out.join('\n'));
    for (const r of res.rows) expect(r.oursMs).toBeGreaterThan(0);
  } finally {
    close();
  }
}, 600_000);
