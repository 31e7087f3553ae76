/**
 * The RL loop on WebGPU: rollouts decide each next input on the device (sampling, the
 * mixture, the noise, the entropies) and read back one small vector per decoding step; a
 * fixed seed decodes the same tokens as the CPU backend, with the same mixtures to float32
 * rounding; jitted decoding steps take far fewer dispatches than op-by-op ones; and many RL
 * steps keep GPU memory flat (benchmarks/webgpu-rl.bench.run.ts runs 1,000 of them, and
 * times them).
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as T from '@softgrad/tensor';
import {
  createDecodeState, decodeStep, disposeDecodeParams, disposeDecodeState, initParams, loadHfTokenizer, loadModel, prepareDecodeParams,
  type DecodeParams, type DecodeState, type ModelParams,
} from '@softgrad/transformer';
import {
  adamwInit, builtinBaseModelDir, builtinModelConfig, builtinProblems, builtinTokenizer, disposeRolloutBatch, evalModeSettings, formatPrompt,
  rollout, type EvalModeName, type RolloutBatch,
} from '@softgrad/softtokens';
import { acquireTestBackend, expectClose } from '../packages/webgpu/test/gpu-setup.js';
import { realRlStep } from './support/real-shapes.js';

const gpu = await acquireTestBackend();
afterAll(() => gpu?.destroy());

const problems = builtinProblems('test', 2, 11);
const prompts = problems.map((p) => formatPrompt(p.question));

/** Rollouts of the shipped model in one evaluation mode on a backend, with how many reads it made and how large. */
async function decode(backend: T.Backend, mode: EvalModeName, reads?: number[]): Promise<{ batch: RolloutBatch; soft: Float32Array | null }> {
  const dir = builtinBaseModelDir();
  const tokenizer = await loadHfTokenizer(dir);
  const { config, params } = await loadModel(dir, { backend });
  const original = backend.read.bind(backend);
  if (reads) backend.read = (buf, dtype, size) => (reads.push(size), original(buf, dtype, size));
  try {
    const batch = await rollout({
      config, params, tokenizer, prompts, samples: 2, cot: evalModeSettings(mode), maxCot: 40, maxAnswer: 8,
      answerSample: false, key: T.key(7),
    });
    const soft = batch.softInputs ? ((await batch.softInputs.data()) as Float32Array) : null;
    return { batch, soft };
  } finally {
    backend.read = original;
    T.treeDispose(params);
  }
}

describe.skipIf(!gpu)('the RL loop on WebGPU', () => {
  it('a fixed seed decodes the same tokens as the CPU, with mixtures and entropies within float32 rounding', async () => {
    for (const mode of ['hard-greedy', 'soft-greedy', 'soft-sample'] as const) {
      const reads: number[] = [];
      const g = await decode(gpu!, mode, reads);
      const c = await decode(T.getDefaultBackend(), mode);
      const rows = g.batch.rollouts.length;
      g.batch.rollouts.forEach((r, i) => {
        const w = c.batch.rollouts[i]!;
        expect(r.cotTokens, `${mode} row ${i} CoT`).toEqual(w.cotTokens);
        expect(r.answerIds, `${mode} row ${i} answer`).toEqual(w.answerIds);
        expect(r.stoppedEarly).toBe(w.stoppedEarly);
        expectClose(Float32Array.from(r.entropies), Float32Array.from(w.entropies), 1e-3, 1e-4, `${mode} row ${i} entropies`);
      });
      if (mode === 'hard-greedy') {
        expect(g.soft).toBeNull();
      } else {
        expect(g.batch.sigma > 0).toBe(mode === 'soft-sample');
        // Each mixture is the next step's input, so float32 rounding compounds along the CoT (40
        // steps of the shipped model reach 6e-5 on entries of a few hundredths, 0.2 %): the first
        // step of every row must agree to float32 rounding, the rest within 1 %, and the shadow
        // tokens above exactly.
        const d = builtinModelConfig(builtinTokenizer().vocabSize).hidden_size;
        const maxCot = g.soft!.length / rows / d;
        for (let r = 0; r < rows; r++) {
          const first = (x: Float32Array) => x.subarray(r * maxCot * d, (r * maxCot + 1) * d);
          expectClose(first(g.soft!), first(c.soft!), 1e-4, 1e-5, `${mode} row ${r} first soft input`);
        }
        expectClose(g.soft!, c.soft!, 1e-2, 1e-4, `${mode} soft inputs`);
      }
      // One small readback per decoding step: the [rows] tokens (plus, once, the embedding RMS
      // and the entropies at the end of the CoT).
      const steps = Math.max(...g.batch.rollouts.map((r) => r.cotTokens.length)) + Math.max(...g.batch.rollouts.map((r) => r.answerIds.length));
      expect(reads.length, `${mode}: ${reads.length} reads for ${steps} steps`).toBeLessThanOrEqual(steps + 2 + (mode === 'hard-greedy' ? 0 : 1));
      expect(reads.filter((n) => n > rows).length, `${mode} read sizes ${reads.join(',')}`).toBeLessThanOrEqual(mode === 'hard-greedy' ? 1 : 2);
      disposeRolloutBatch(g.batch);
      disposeRolloutBatch(c.batch);
    }
  });

  it('a jitted decoding step takes a fraction of the dispatches of the same step op by op, with the same logits', async () => {
    const tokenizer = builtinTokenizer();
    const config = builtinModelConfig(tokenizer.vocabSize);
    const params = initParams(config, 3, { backend: gpu! });
    const dp = prepareDecodeParams(config, params);
    const rows = 8;
    const feed = (p: DecodeParams, st: DecodeState, ids: T.Tensor, valid: T.Tensor, at: T.Tensor) => decodeStep(config, p, st, T.gather(p.embed, ids, 0), valid, at, 32);
    const jitted = T.jit(feed, { donateArgnums: [1] });
    const place = { backend: gpu! };
    const ids = T.tensor(Int32Array.from({ length: rows }, (_, i) => 3 + i), { shape: [rows, 1], dtype: 'int32', ...place });
    const valid = T.ones([rows, 1], place);
    /** Three steps from an empty cache: dispatches and logits of each. */
    const run = async (f: typeof feed, donates: boolean) => {
      let st = createDecodeState(config, rows, 64, { dtype: 'float32', backend: gpu! });
      const steps: { n: number; logits: Float32Array }[] = [];
      for (let at = 0; at < 3; at++) {
        const a = T.scalar(at, { dtype: 'int32', ...place });
        const before = gpu!.dispatches;
        const out = f(dp, st, ids, valid, a);
        const n = gpu!.dispatches - before;
        steps.push({ n, logits: (await out.logits.data()) as Float32Array });
        out.logits.dispose();
        a.dispose();
        if (!donates) disposeDecodeState(st);
        st = out.state;
      }
      disposeDecodeState(st);
      return steps;
    };
    const eager = await run(feed, false);
    const jit = await run(jitted, true); // the first step traces, the others replay
    console.log(`[webgpu] dispatches per decoding step (built-in model, ${rows} rows): ${eager[2]!.n} op by op, ${jit[2]!.n} jitted`);
    expect(jit[2]!.n).toBeGreaterThan(0);
    expect(jit[2]!.n).toBeLessThanOrEqual(eager[2]!.n / 4);
    for (let t = 0; t < 3; t++) expectClose(jit[t]!.logits, eager[t]!.logits, 1e-4, 1e-5, `logits at step ${t}`);
    disposeDecodeParams(dp);
    jitted.dispose();
    T.treeDispose([params, ids, valid]);
  });

  it('keeps GPU memory flat over many RL steps (rollout, jitted value and gradient, AdamW)', async () => {
    // Random weights: every CoT runs to its limit and every answer to its, so each step has
    // the same shapes and the programs are traced in the first step only.
    const tokenizer = builtinTokenizer();
    const config = builtinModelConfig(tokenizer.vocabSize);
    T.clearJitCaches();
    const start = gpu!.stats().liveBuffers;
    let params: ModelParams = initParams(config, 4, { backend: gpu! });
    let opt = adamwInit(params);
    const counts: { buffers: number; bytes: number }[] = [];
    const steps = 12;
    const t0 = performance.now();
    for (let s = 0; s < steps; s++) {
      const step = await realRlStep({
        config, params, opt, tokenizer, kind: 'soft', prompts: [problems[0]!], samples: 2, maxCot: 6, maxAnswer: 3, seed: s, lr: 1e-3,
        rewardOf: (r) => r.cotTokens[0]! % 3,
      });
      params = step.params;
      opt = step.opt;
      const { liveBuffers, liveBytes } = gpu!.stats();
      counts.push({ buffers: liveBuffers, bytes: liveBytes });
    }
    const perStep = (performance.now() - t0) / steps;
    console.log(`[webgpu] ${steps} RL steps, ${perStep.toFixed(0)} ms per step (first included); live buffers ${counts.map((c) => c.buffers).join(',')}`);
    const settled = counts.slice(2);
    expect(new Set(settled.map((c) => c.buffers)).size, `live buffers per step: ${counts.map((c) => c.buffers).join(',')}`).toBe(1);
    expect(new Set(settled.map((c) => c.bytes)).size).toBe(1);
    T.treeDispose([params, opt]);
    T.clearJitCaches();
    expect(gpu!.stats().liveBuffers).toBe(start);
  });
});
