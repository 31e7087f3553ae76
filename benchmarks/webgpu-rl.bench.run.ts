/**
 * The RL loop on WebGPU (on whatever adapter comes up; lavapipe on CI machines), ours alone:
 *
 * - the RL step of the shipped model (B = 2 prompts × G = 8 samples, CoT ≤ 48, answer ≤ 16;
 *   soft and hard): rollout, jitted RLOO value and gradient, AdamW, with its phases;
 * - dispatches per decoding step, jitted (one program per step) against the same step run op
 *   by op, and the rollout's dispatches per decoding step;
 * - a soak: SOFTGRAD_WEBGPU_RL_STEPS (default 1000) RL steps of a random-weight model of the
 *   same shape, GPU memory (live buffers and bytes) checked flat: every 100 steps the jit caches
 *   are released and what remains must be the same, step after step.
 *
 * No peer implements soft-token RL on WebGPU; the figures stand alone, with the adapter named.
 *
 *   SOFTGRAD_WEBGPU_RL_STEPS=n   soak steps (default 1000; 0 skips the soak)
 */
import os from 'node:os';
import { expect, it } from 'vitest';
import * as T from '@softgrad/tensor';
import { createWebGpuBackend } from '@softgrad/webgpu';
import {
  createDecodeState, decodeStep, disposeDecodeParams, disposeDecodeState, initParams, loadHfTokenizer, loadModel, prepareDecodeParams,
  type DecodeParams, type DecodeState, type ModelParams,
} from '@softgrad/transformer';
import { adamwInit, builtinBaseModelDir, builtinModelConfig, builtinProblems, builtinTokenizer } from '@softgrad/softtokens';
import { fmt, formatMachine, formatTable } from './bench-util.js';
import { realRlStep } from '../test/support/real-shapes.js';

const SOAK = Number(process.env['SOFTGRAD_WEBGPU_RL_STEPS'] ?? 1000);
const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

it('the RL loop on WebGPU: step time, dispatches per decoding step, memory over many steps', async () => {
  if (!(Number.isInteger(SOAK) && SOAK >= 0)) throw new Error(`SOFTGRAD_WEBGPU_RL_STEPS must be a non-negative integer, got ${process.env['SOFTGRAD_WEBGPU_RL_STEPS']}`);
  const gpu = await createWebGpuBackend();
  const info = gpu.adapterInfo;
  const lines: string[] = ['', formatMachine(), `adapter: ${info.vendor} ${info.architecture} ${info.description}; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`, ''];

  // --- Dispatches per decoding step: jitted vs op by op.
  {
    const tokenizer = builtinTokenizer();
    const config = builtinModelConfig(tokenizer.vocabSize);
    const params = initParams(config, 3, { backend: gpu });
    const dp = prepareDecodeParams(config, params);
    const rows = 16;
    const feed = (p: DecodeParams, st: DecodeState, ids: T.Tensor, valid: T.Tensor, at: T.Tensor) => decodeStep(config, p, st, T.gather(p.embed, ids, 0), valid, at, 32);
    const jitted = T.jit(feed, { donateArgnums: [1] });
    const ids = T.tensor(Int32Array.from({ length: rows }, (_, i) => 3 + i), { shape: [rows, 1], dtype: 'int32', backend: gpu });
    const valid = T.ones([rows, 1], { backend: gpu });
    let st = createDecodeState(config, rows, 64, { dtype: 'float32', backend: gpu });
    const one = async (f: typeof feed, at: number) => {
      const a = T.scalar(at, { dtype: 'int32', backend: gpu });
      const d0 = gpu.dispatches;
      const t0 = performance.now();
      const out = f(dp, st, ids, valid, a);
      const n = gpu.dispatches - d0;
      await out.logits.data();
      const ms = performance.now() - t0;
      out.logits.dispose();
      a.dispose();
      st = out.state;
      return { n, ms };
    };
    const eager = [await one(feed, 0), await one(feed, 1), await one(feed, 2)];
    await one(jitted, 3);
    const jit = [await one(jitted, 4), await one(jitted, 5), await one(jitted, 6)];
    lines.push(`dispatches per decoding step (built-in model shape, ${rows} rows, one position, logits read back):`);
    lines.push(formatTable(['', 'dispatches', 'ms (median of 3)'], [
      ['op by op', String(eager[2]!.n), fmt(median(eager.map((e) => e.ms)))],
      ['jitted', String(jit[2]!.n), fmt(median(jit.map((e) => e.ms)))],
    ]));
    expect(jit[2]!.n).toBeLessThan(eager[2]!.n);
    disposeDecodeState(st);
    disposeDecodeParams(dp);
    jitted.dispose();
    T.treeDispose([params, ids, valid]);
  }

  // --- The RL step of the shipped model.
  {
    const dir = builtinBaseModelDir();
    const tokenizer = await loadHfTokenizer(dir);
    const { config, params: base } = await loadModel(dir, { backend: gpu });
    const problems = builtinProblems('train', 64, 0);
    const rows: string[][] = [];
    for (const kind of ['hard', 'soft'] as const) {
      let params: ModelParams = base;
      let opt = adamwInit(params);
      const phases: { step: number; rollout: number; grad: number; opt: number; generated: number; dispatches: number }[] = [];
      for (let s = 0; s < 8; s++) {
        const d0 = gpu.dispatches;
        const t0 = performance.now();
        const chosen = [problems[(2 * s) % 64]!, problems[(2 * s + 1) % 64]!];
        const r = await realRlStep({ config, params, opt, tokenizer, kind, prompts: chosen, samples: 8, maxCot: 48, maxAnswer: 16, seed: s, keep: base, lr: 1e-5 });
        phases.push({ step: performance.now() - t0, rollout: r.rolloutMs, grad: r.gradMs, opt: r.optimiserMs, generated: r.generated, dispatches: gpu.dispatches - d0 });
        if (params !== base) T.treeDispose(params);
        params = r.params;
        opt = r.opt;
      }
      const timed = phases.slice(3); // after the first steps' traces and kernel compiles
      const m = (k: keyof (typeof phases)[number]) => median(timed.map((p) => p[k]));
      rows.push([kind, fmt(m('step')), fmt(m('rollout')), fmt(m('grad')), fmt(m('opt')), String(m('generated')), fmt((m('generated') / m('step')) * 1000), String(m('dispatches')), fmt(phases[0]!.step)]);
      if (params !== base) T.treeDispose(params);
      T.treeDispose(opt);
    }
    T.treeDispose(base);
    lines.push('', 'RL step of the shipped model on WebGPU, B = 2 × G = 8, CoT ≤ 48, answer ≤ 16 (ms; medians of steps 4-8; first step = traces + kernel compiles):');
    lines.push(formatTable(['kind', 'step', 'rollout', 'value+grad', 'AdamW', 'generated tokens', 'generated tok/s', 'dispatches', 'first step'], rows));
  }

  // --- Soak: memory over many steps.
  if (SOAK > 0) {
    const tokenizer = builtinTokenizer();
    const config = builtinModelConfig(tokenizer.vocabSize);
    T.clearJitCaches();
    const start = gpu.stats();
    let params: ModelParams = initParams(config, 4, { backend: gpu });
    let opt = adamwInit(params);
    const problem = builtinProblems('train', 1, 3)[0]!;
    const live: { buffers: number; bytes: number }[] = [];
    // Every 100 steps the jit caches are released and what is left counted: the parameters, the
    // optimiser state and nothing else, however many steps ran. (Between releases the caches hold
    // one compiled program per shape met — an answer cut short by an EOS is a new shape — each
    // with its constants, at most 64 per function.)
    const released: { step: number; buffers: number; bytes: number }[] = [];
    const t0 = performance.now();
    for (let s = 0; s < SOAK; s++) {
      const r = await realRlStep({ config, params, opt, tokenizer, kind: s % 2 ? 'soft' : 'hard', prompts: [problem], samples: 2, maxCot: 8, maxAnswer: 4, seed: s, lr: 1e-4, rewardOf: (x) => x.cotTokens[0]! % 3 });
      params = r.params;
      opt = r.opt;
      const st = gpu.stats();
      live.push({ buffers: st.liveBuffers, bytes: st.liveBytes });
      if ((s + 1) % 100 === 0 || s === 4) {
        T.clearJitCaches();
        const after = gpu.stats();
        released.push({ step: s + 1, buffers: after.liveBuffers, bytes: after.liveBytes });
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    const settled = live.slice(4);
    const maxB = Math.max(...settled.map((l) => l.buffers));
    const minB = Math.min(...settled.map((l) => l.buffers));
    const maxBytes = Math.max(...settled.map((l) => l.bytes));
    const minBytes = Math.min(...settled.map((l) => l.bytes));
    lines.push('', `soak: ${SOAK} RL steps (random-weight model of the built-in shape, hard and soft alternating, 1 × 2 samples, CoT 8, answer 4) in ${fmt(seconds)} s (${fmt((seconds / SOAK) * 1000)} ms/step)`);
    lines.push(`live GPU buffers after each of steps 5..${SOAK}, jit caches included: ${minB}..${maxB}; live bytes ${minBytes}..${maxBytes}`);
    lines.push(`with the jit caches released (steps ${released.map((r) => r.step).join(', ')}): live buffers ${[...new Set(released.map((r) => r.buffers))].join(' / ')}, ` +
      `live bytes ${[...new Set(released.map((r) => r.bytes))].join(' / ')} (flat: ${new Set(released.map((r) => `${r.buffers}:${r.bytes}`)).size === 1 ? 'yes' : 'NO'})`);
    T.treeDispose([params, opt]);
    T.clearJitCaches();
    lines.push(`after disposing everything: ${gpu.stats().liveBuffers} live buffers (${start.liveBuffers} before)`);
    console.log(lines.join('\n'));
    expect(new Set(released.map((r) => r.buffers)).size).toBe(1);
    expect(new Set(released.map((r) => r.bytes)).size).toBe(1);
    expect(maxB - minB).toBeLessThan(200); // the caches' bound, far below a leak's step-by-step growth
  } else {
    console.log(lines.join('\n'));
  }
  gpu.destroy();
}, 7_200_000);
