/**
 * Real model shapes, small: the published config.json of SmolLM2-135M, Qwen2.5-0.5B and
 * Llama-3.2-1B parse with their published parameter counts and RoPE; the same configs shrunk
 * (real vocabulary, RoPE, biases and tying; 2 layers, narrow) go through the code path of
 * the full-size benchmark (benchmarks/real-shapes.bench.run.ts): random weights written by
 * our writer in BF16 and sharded, a streaming load whose peak memory is measured in a fresh
 * process, a forward pass and one RL step on the CPU, and the forward on WebGPU.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@softgrad/tensor';
import { configParameterCount, forward, loadParams, ropeInverseFrequencies, writeRandomCheckpoint, type ModelParams } from '@softgrad/transformer';
import { adamwInit } from '@softgrad/softtokens';
import { acquireTestBackend, expectClose } from '../packages/webgpu/test/gpu-setup.js';
import { PUBLISHED_PARAMETERS, REAL_MODELS, realConfig, realRlStep, rlPrompts, scaledConfig, tokenizerFor, type RealModel } from './support/real-shapes.js';

const CHILD = fileURLToPath(new URL('./support/load-memory-child.mjs', import.meta.url));
const SCALE = { layers: 2, headDim: 16, maxPositions: 4096 };
let root = '';
const dirs = new Map<RealModel, string>();

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'softgrad-real-shapes-'));
  for (const m of REAL_MODELS) {
    const dir = join(root, m);
    await writeRandomCheckpoint(dir, scaledConfig(m, SCALE), { seed: 1, maxShardBytes: 4 << 20 });
    dirs.set(m, dir);
  }
});
afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe('the published configs', () => {
  it.each(REAL_MODELS)('%s parses with its published parameter count', (m) => {
    const c = realConfig(m);
    expect(configParameterCount(c)).toBe(PUBLISHED_PARAMETERS[m]);
    expect(c.tie_word_embeddings).toBe(true);
    expect(c.attention_bias).toBe(m === 'Qwen2.5-0.5B');
    expect(c.head_dim).toBe(64);
    expect(c.rope_scaling?.rope_type ?? null).toBe(m === 'Llama-3.2-1B' ? 'llama3' : null);
  });

  it("Llama-3.2-1B's llama3 RoPE frequencies match PyTorch's float32 computation of transformers' formula", () => {
    const ref = JSON.parse(readFileSync(new URL('./fixtures/rope/llama-3.2-1b-inv-freq.json', import.meta.url), 'utf8')) as { inv_freq: number[] };
    const ours = ropeInverseFrequencies(realConfig('Llama-3.2-1B'));
    expect(ours.length).toBe(ref.inv_freq.length);
    // transformers computes in float32: agreement to float32 rounding (a few ulps).
    ours.forEach((f, i) => expect(Math.abs(f - ref.inv_freq[i]!) / ref.inv_freq[i]!, `frequency ${i}`).toBeLessThan(1e-6));
    // The scaling changed most of them: the reference is not the unscaled formula.
    const plain = ropeInverseFrequencies({ ...realConfig('Llama-3.2-1B'), rope_scaling: null });
    expect(plain.filter((f, i) => Math.abs(f - ref.inv_freq[i]!) / f > 1e-3).length).toBeGreaterThan(10);
  });
});

describe('real shapes, scaled down', () => {
  it.each(REAL_MODELS)('%s: random BF16 weights written sharded with an index', async (m) => {
    const files = await readdir(dirs.get(m)!);
    expect(files).toContain('model.safetensors.index.json');
    expect(files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)).length).toBeGreaterThan(1);
    const config = JSON.parse(readFileSync(join(dirs.get(m)!, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config['torch_dtype']).toBe('bfloat16');
    expect(config['vocab_size']).toBe(realConfig(m).vocab_size);
  });

  const distBuilt = existsSync(fileURLToPath(new URL('../packages/transformer/dist/index.js', import.meta.url)));
  it.skipIf(!distBuilt)('loads streaming: peak memory within 1.3× the float32 weights (a whole-tensor read would not be)', () => {
    // Qwen's embedding is 97% of the shrunk model, so holding it whole on the host while
    // copying it to the backend shows as about 2×; the pieces are scaled down with the model.
    const measure = (piece: number) => {
      const r = spawnSync(process.execPath, ['--expose-gc', CHILD, dirs.get('Qwen2.5-0.5B')!, 'wasm', String(piece)], {
        encoding: 'utf8', timeout: 60_000, env: { ...process.env, SOFTGRAD_THREADS: '1' },
      });
      if (r.status !== 0) throw new Error(`load-memory child failed (${r.status}): ${r.stderr}`);
      return JSON.parse(r.stdout) as { ratio: number; float32Bytes: number; growthBytes: number };
    };
    const streamed = measure(1 << 20);
    const whole = measure(1 << 30);
    expect(streamed.float32Bytes).toBeGreaterThan(60e6);
    expect(streamed.ratio, `peak growth ${(streamed.growthBytes / 2 ** 20).toFixed(1)} MiB`).toBeLessThan(1.3);
    expect(whole.ratio, JSON.stringify(whole)).toBeGreaterThan(1.6);
  });

  it.each(REAL_MODELS)('%s: forward and one RL step on the CPU', async (m) => {
    const config = scaledConfig(m, SCALE);
    const backend = T.getDefaultBackend();
    const before = backend.stats().liveBuffers;
    const params = await loadParams(config, dirs.get(m)!);
    const ids = T.tensor([[1, 17, 300, 2048]], { dtype: 'int32' });
    const { logits, hidden } = forward(config, params, { ids });
    expect(logits.shape).toEqual([1, 4, config.vocab_size]);
    const z = await logits.data();
    expect(z.every(Number.isFinite)).toBe(true);
    T.treeDispose([ids, logits, hidden]);
    const { tokenizer } = await tokenizerFor(m);
    const kind = m === 'Qwen2.5-0.5B' ? 'soft' : 'hard';
    const opt = adamwInit(params);
    // Random weights never earn the method's reward, so every advantage would be 0: a reward
    // that tells the two samples apart makes the update move the weights.
    const step = await realRlStep({
      config, params, opt, tokenizer, kind, prompts: rlPrompts(1), samples: 2, maxCot: 6, maxAnswer: 3, seed: 5, keep: params, lr: 1e-3,
      rewardOf: (r) => r.sampleIndex,
    });

    expect(Number.isFinite(step.loss)).toBe(true);
    expect(step.generated).toBeGreaterThanOrEqual(2 * 6);
    // The update moved the weights.
    const a = await params.layers[0]!.q.data();
    const b = await step.params.layers[0]!.q.data();
    expect(a.some((v, i) => v !== b[i])).toBe(true);
    T.treeDispose([params, step.params, step.opt]);
    T.clearJitCaches();
    expect(backend.stats().liveBuffers).toBe(before);
  });
});

const gpu = await acquireTestBackend();
afterAll(() => gpu?.destroy());

describe.skipIf(!gpu)('real shapes, scaled down, on WebGPU', () => {
  // The forward of each (Qwen's biases, Llama's scaled RoPE, the real vocabularies), loaded in
  // pieces. The RL loop on WebGPU is tested with the built-in model (test/webgpu-rl.test.ts),
  // whose kernels the suite compiles anyway; a first RL step at a new shape spends most of its
  // time compiling kernels on lavapipe (about 40 s), so the real shapes' WebGPU RL step runs in
  // benchmarks/real-shapes.bench.run.ts.
  it.each(REAL_MODELS)('%s: the streamed load gives the CPU forward', async (m) => {
    const config = scaledConfig(m, SCALE);
    const onCpu = await loadParams(config, dirs.get(m)!);
    const onGpu = await loadParams(config, dirs.get(m)!, { backend: gpu!, pieceBytes: 1 << 20 });
    const logitsOf = async (params: ModelParams, backend: T.Backend) => {
      const ids = T.tensor([[5, 900, 77, 3000, 12]], { dtype: 'int32', backend });
      const out = forward(config, params, { ids });
      const z = await out.logits.data();
      T.treeDispose([ids, out.logits, out.hidden]);
      return z;
    };
    expectClose(await logitsOf(onGpu, gpu!), await logitsOf(onCpu, T.getDefaultBackend()), 1e-4, 1e-5, `${m} logits`);
    T.treeDispose([onCpu, onGpu]);
  });
});
