/**
 * Real model shapes at full size: SmolLM2-135M, Qwen2.5-0.5B and Llama-3.2-1B (their published
 * config.json, test/fixtures/configs) with random weights written by our writer in BF16 (the
 * larger ones sharded with an index), then for each:
 *
 * - loading, streamed, in a fresh process: peak resident memory growth against the weights'
 *   float32 size, on the CPU backend and on WebGPU where the adapter can hold the tensors;
 * - prefill (one sequence of PREFILL tokens, the full forward) and KV-cache decoding (DECODE_ROWS
 *   rows, DECODE_STEPS tokens each) throughput on the CPU, with PyTorch doing the same work on
 *   the same weights (benchmarks/peer/torch_peer.py loads our safetensors), and the two
 *   engines' last-position logits compared (an independent check of the forward, llama3 RoPE
 *   scaling and Qwen's biases included);
 * - one RL step (rollout, jitted RLOO value and gradient, AdamW) on the CPU and on WebGPU where
 *   memory allows, with PyTorch's nearest work (a next-token training step, forward + backward
 *   + AdamW, over as many tokens as the step scored).
 *
 * The CPU backend is the default WebAssembly one, whose memory holds at most 4 GiB: Llama-3.2-1B
 * (4.9 GB as float32) runs on the JavaScript CPU backend instead. An RL step needs about seven
 * float32 copies of the weights at its peak (weights, gradients, AdamW's two moments, and the
 * new weights and moments before the old are freed): it runs where that fits this machine.
 *
 *   SOFTGRAD_REAL_MODELS=a,b   which models (default all three)
 *   SOFTGRAD_REAL_DIR=path     where checkpoints are written (default a temporary directory, removed after)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import * as T from '@softgrad/tensor';
import { createWebGpuBackend, type WebGpuBackend } from '@softgrad/webgpu';
import {
  configParameterCount, disposeCache, forward, loadParams, writeRandomCheckpoint, type ModelParams, type TransformerConfig,
} from '@softgrad/transformer';
import { adamwInit } from '@softgrad/softtokens';
import { fmt, formatMachine, formatTable } from './bench-util.js';
import { TorchPeer } from './peer/torch-peer.js';
import { REAL_MODELS, realConfig, realRlStep, rlPrompts, tokenizerFor, type RealModel } from '../test/support/real-shapes.js';

const CHILD = fileURLToPath(new URL('../test/support/load-memory-child.mjs', import.meta.url));
const PREFILL = 64;
const DECODE_ROWS = 4;
const DECODE_PROMPT = 16;
const DECODE_STEPS = 8;
const GiB = 2 ** 30;

const SHARD: Record<RealModel, number | undefined> = { 'SmolLM2-135M': undefined, 'Qwen2.5-0.5B': 512 * 2 ** 20, 'Llama-3.2-1B': GiB };

interface LoadMemory { ratio: number; growthBytes: number; float32Bytes: number; seconds: number }

function loadMemory(dir: string, backend: 'wasm' | 'js' | 'webgpu'): LoadMemory | string {
  const r = spawnSync(process.execPath, ['--expose-gc', CHILD, dir, backend], { encoding: 'utf8', timeout: 1_800_000 });
  if (r.status !== 0) return `failed: ${(r.stderr.split('\n').find((l) => /Error/.test(l)) ?? r.stderr.slice(-300)).trim()}`;
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as LoadMemory;
}

const ids = (rows: number, len: number, vocab: number, mul: number) =>
  Array.from({ length: rows }, (_, b) => Array.from({ length: len }, (_, i) => ((b * len + i) * mul) % vocab));

/** Seconds of a prefill forward over one sequence of n tokens (the last position's logits read back). */
async function prefillSeconds(config: TransformerConfig, params: ModelParams, n: number): Promise<number> {
  const x = T.tensor(ids(1, n, config.vocab_size, 5), { dtype: 'int32', backend: params.embed.backend });
  const t0 = performance.now();
  const out = forward(config, params, { ids: x });
  const last = T.slice(out.logits, [0, n - 1, 0], [1, 1, -1]);
  await last.data();
  const s = (performance.now() - t0) / 1000;
  T.treeDispose([x, out.logits, out.hidden, last]);
  return s;
}

/** Seconds of greedy KV-cache decoding (the argmax read back each step, as a stop test does), and the prompt's last logits. */
interface DecodeShape { rows: number; prompt: number; steps: number }

async function decodeSeconds(config: TransformerConfig, params: ModelParams, shape: DecodeShape): Promise<{ seconds: number; logits: Float32Array }> {
  const { rows: DECODE_ROWS, prompt: DECODE_PROMPT, steps: DECODE_STEPS } = shape;
  const backend = params.embed.backend;
  const prompt = T.tensor(ids(DECODE_ROWS, DECODE_PROMPT, config.vocab_size, 5), { dtype: 'int32', backend });
  const first = forward(config, params, { ids: prompt, useCache: true });
  const lastOf = (z: T.Tensor) => T.reshape(T.slice(z, [0, z.shape[1]! - 1, 0], [-1, 1, -1]), [DECODE_ROWS, -1]);
  let z = lastOf(first.logits);
  const logits = (await z.data()) as Float32Array;
  T.treeDispose([prompt, first.logits, first.hidden]);
  let cache = first.cache!;
  const t0 = performance.now();
  for (let t = 0; t < DECODE_STEPS; t++) {
    const y = T.reshape(T.argmax(z, -1), [DECODE_ROWS, 1]);
    await y.data();
    const out = forward(config, params, { ids: y, cache });
    disposeCache(cache);
    T.treeDispose([y, z, out.hidden]);
    cache = out.cache!;
    z = lastOf(out.logits);
    out.logits.dispose();
  }
  await z.data();
  const seconds = (performance.now() - t0) / 1000;
  z.dispose();
  disposeCache(cache);
  return { seconds, logits };
}

it('real model shapes at full size: loading memory, prefill, decode and RL-step throughput, with the PyTorch peer', async () => {
  const which = (process.env['SOFTGRAD_REAL_MODELS'] ?? REAL_MODELS.join(',')).split(',').map((s) => s.trim()) as RealModel[];
  for (const m of which) if (!REAL_MODELS.includes(m)) throw new Error(`SOFTGRAD_REAL_MODELS: unknown model ${m} (expected ${REAL_MODELS.join(', ')})`);
  const root = process.env['SOFTGRAD_REAL_DIR'] ?? mkdtempSync(join(os.tmpdir(), 'softgrad-real-'));
  const machineBytes = os.totalmem();
  const lines: string[] = ['', formatMachine(), `memory ${fmt(machineBytes / GiB)} GiB; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`];
  let gpu: WebGpuBackend | null = null;
  try {
    gpu = await createWebGpuBackend();
    lines.push(`WebGPU adapter: ${gpu.adapterInfo.vendor} ${gpu.adapterInfo.architecture} ${gpu.adapterInfo.description}; largest storage binding ${fmt(gpu.device.limits.maxStorageBufferBindingSize / 2 ** 20)} MiB`);
  } catch (e) {
    lines.push(`WebGPU: none (${(e as Error).message.split('\n')[0]})`);
  }
  const peerOrWhy = await TorchPeer.start(2);
  const peer = typeof peerOrWhy === 'string' ? null : peerOrWhy;
  lines.push(peer ? `peer: torch ${String(peer.info['torch'])} at ${peer.python}, 2 threads, BLAS ${(peer.info['blas'] as string[]).join(', ')}` : `peer: ${peerOrWhy}`);
  const memRows: string[][] = [];
  const speedRows: string[][] = [];
  const rlRows: string[][] = [];
  const notes: string[] = [];
  const workloads: string[] = [];
  try {
    for (const m of which) {
      const config = realConfig(m);
      const f32 = 4 * configParameterCount(config);
      const dir = join(root, m);
      const w0 = performance.now();
      const written = await writeRandomCheckpoint(dir, config, { seed: 1, maxShardBytes: SHARD[m] });
      notes.push(`${m}: ${configParameterCount(config).toLocaleString('en-US')} parameters, ${fmt(written.storedBytes / GiB, 2)} GiB BF16 in ${written.files.filter((f) => f.endsWith('.safetensors')).length} file(s), written in ${fmt((performance.now() - w0) / 1000)} s`);
      // The CPU backend: WebAssembly's memory holds 4 GiB (with room for the size classes).
      const cpuKind = f32 * 1.3 < 3.5 * GiB ? 'wasm' : 'js';
      // A fresh backend per model: WebAssembly memory never shrinks, and its size classes are the last model's.
      const cpuBackend = cpuKind === 'wasm' ? T.createWasmBackend() : T.createCpuBackend();

      // --- Loading memory, each in a fresh process.
      const memCpu = loadMemory(dir, cpuKind);
      const biggest = 4 * config.vocab_size * config.hidden_size;
      const gpuFits = gpu && biggest <= gpu.device.limits.maxStorageBufferBindingSize;
      const memGpu = gpu ? (gpuFits ? loadMemory(dir, 'webgpu') : `not run: the embedding (${fmt(biggest / 2 ** 20)} MiB) exceeds this adapter's largest storage binding`) : 'no adapter';
      for (const [label, r] of [[`CPU (${cpuKind})`, memCpu], ['WebGPU', memGpu]] as const) {
        memRows.push(typeof r === 'string'
          ? [m, label, fmt(f32 / GiB, 2), r, '', '']
          : [m, label, fmt(f32 / GiB, 2), fmt(r.growthBytes / GiB, 2), `${r.ratio.toFixed(2)}×`, fmt(r.seconds)]);
      }
      if (typeof memCpu !== 'string' && cpuKind === 'wasm') expect(memCpu.ratio).toBeLessThan(1.3);

      // --- Prefill and decode, ours on the CPU.
      // The JavaScript backend (under 1 GFLOP/s) gets a smaller workload.
      const prefillLen = cpuKind === 'js' ? 16 : PREFILL;
      const shape: DecodeShape = cpuKind === 'js' ? { rows: 1, prompt: 4, steps: 4 } : { rows: DECODE_ROWS, prompt: DECODE_PROMPT, steps: DECODE_STEPS };
      const params = await loadParams(config, dir, { backend: cpuBackend });
      await prefillSeconds(config, params, cpuKind === 'js' ? 2 : 8); // warm-up: kernels compiled, pages touched
      const ourPrefill = await prefillSeconds(config, params, prefillLen);
      const ourDecode = await decodeSeconds(config, params, shape);
      const decodeTokens = shape.rows * shape.steps;
      workloads.push(`${m}: prefill ${prefillLen} tokens; decode ${shape.rows} row(s) × ${shape.steps} tokens after ${shape.prompt}`);
      let peerPrefill = NaN;
      let peerDecode = NaN;
      let diff = NaN;
      // --- One RL step where it fits (about seven float32 copies of the weights at its peak).
      const rlFits = cpuKind === 'wasm' && 7.5 * f32 < 3.9 * GiB;
      const { tokenizer, name: tokName } = await tokenizerFor(m);
      const rl = async (label: string, p: ModelParams) => {
        try {
          return await rlSteps(label, p);
        } catch (e) {
          // Out of memory (WebAssembly's 4 GiB, or the device) is a result here, not a crash.
          rlRows.push([m, label, `failed: ${(e as Error).message.split('\n')[0]!.slice(0, 160)}`, '', '', '', '', '', '']);
          T.clearJitCaches();
          return 0;
        }
      };
      const rlSteps = async (label: string, p: ModelParams) => {
        const opt = adamwInit(p);
        const prompts = rlPrompts(1);
        // Two steps: the first traces and compiles, the second is timed.
        const a = await realRlStep({ config, params: p, opt, tokenizer, kind: 'soft', prompts, samples: 4, maxCot: 16, maxAnswer: 8, seed: 1 });
        const b = await realRlStep({ config, params: a.params, opt: a.opt, tokenizer, kind: 'soft', prompts, samples: 4, maxCot: 16, maxAnswer: 8, seed: 2 });
        const step = b.rolloutMs + b.gradMs + b.optimiserMs;
        rlRows.push([m, label, fmt(step), fmt(b.rolloutMs), fmt((b.generated / b.rolloutMs) * 1000), fmt(b.gradMs), fmt(b.optimiserMs), String(b.scored), fmt(a.rolloutMs + a.gradMs + a.optimiserMs)]);
        T.treeDispose([b.params, b.opt]);
        T.clearJitCaches();
        return b.scored;
      };
      let scored = 0;
      if (rlFits) {
        scored = await rl(`CPU (${cpuKind})`, params);
      } else {
        rlRows.push([m, `CPU (${cpuKind})`, `not run: needs about ${fmt((7 * f32) / GiB, 1)} GiB${cpuKind === 'wasm' ? ' (WebAssembly holds 4 GiB)' : ` (this machine has ${fmt(machineBytes / GiB)} GiB, shared)`}`, '', '', '', '', '', '']);
        T.treeDispose(params);
      }
      T.clearJitCaches();
      if (gpu) {
        if (gpuFits) {
          const onGpu = await loadParams(config, dir, { backend: gpu });
          await prefillSeconds(config, onGpu, 8);
          const gPrefill = await prefillSeconds(config, onGpu, prefillLen);
          const gDecode = await decodeSeconds(config, onGpu, shape);
          speedRows.push([m, 'WebGPU', fmt(prefillLen / gPrefill), fmt(decodeTokens / gDecode.seconds), '', '']);
          await rl('WebGPU', onGpu);
        } else {
          rlRows.push([m, 'WebGPU', 'not run (see loading)', '', '', '', '', '', '']);
        }
      }
      // --- The peer on the same weights (after ours are freed).
      if (peer) {
        await peer.send({ cmd: 'load', dir });
        const peerIds = ids(shape.rows, shape.prompt, config.vocab_size, 5);
        const z = (await peer.send({ cmd: 'logits', ids: peerIds }))['logits'] as number[][];
        const ours = ourDecode.logits;
        diff = 0;
        let scale = 0;
        z.forEach((row, b) => row.forEach((v, j) => {
          diff = Math.max(diff, Math.abs(v - ours[b * config.vocab_size + j]!));
          scale = Math.max(scale, Math.abs(v));
        }));
        notes.push(`${m}: last-position logits, ours vs PyTorch on the same weights: max |difference| ${diff.toExponential(2)} (largest |logit| ${scale.toFixed(3)})`);
        peerPrefill = prefillLen / (await peer.seconds({ cmd: 'prefill', batch: 1, seq: prefillLen, reps: 2 }));
        peerDecode = decodeTokens / (await peer.seconds({ cmd: 'decode', batch: shape.rows, prompt: shape.prompt, steps: shape.steps, reps: 2 }));
        if (scored > 0 && 7.5 * f32 < 0.6 * machineBytes) {
          const s = await peer.seconds({ cmd: 'train', batch: 1, seq: scored, reps: 2 });
          rlRows.push([m, 'PyTorch: training step on as many tokens', fmt(s * 1000), '', '', '', '', String(scored), '']);
        }
        await peer.send({ cmd: 'free' });
      }
      speedRows.unshift([m, `CPU (${cpuKind})`, fmt(prefillLen / ourPrefill), fmt(decodeTokens / ourDecode.seconds), fmt(peerPrefill), fmt(peerDecode)]);
      notes.push(`${m}: tokenizer for the RL step: ${tokName}`);
      T.clearJitCaches();
      if (cpuBackend instanceof T.WasmBackend) cpuBackend.destroy();
      if (!process.env['SOFTGRAD_REAL_DIR']) rmSync(dir, { recursive: true, force: true });
      if (peer && Number.isFinite(diff)) expect(diff).toBeLessThan(5e-3);
    }
  } finally {
    peer?.stop();
    gpu?.destroy();
    if (!process.env['SOFTGRAD_REAL_DIR']) rmSync(root, { recursive: true, force: true });
  }
  lines.push('', 'Loading, streamed (fresh process; peak resident memory growth over loading):');
  lines.push(formatTable(['model', 'backend', 'float32 GiB', 'peak growth GiB', 'ratio', 'seconds'], memRows));
  lines.push('', 'Throughput (tokens/s): prefill = one sequence, the full forward; decode = greedy with a KV cache, the argmax read back each step:');
  lines.push(formatTable(['model', 'backend', 'prefill', 'decode', 'PyTorch prefill', 'PyTorch decode'], speedRows));
  lines.push('', 'RL step (soft CoT, 1 prompt × 4 samples, CoT ≤ 16, answer ≤ 8; second step timed; ms):');
  lines.push(formatTable(['model', 'backend', 'step', 'rollout', 'rollout tok/s', 'value+grad', 'AdamW', 'scored tokens', 'first step'], rlRows));
  lines.push(...workloads, '', ...notes, '');
  console.log(lines.join('\n'));
}, 14_400_000);
