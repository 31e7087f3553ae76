import { describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '@softgrad/tensor';
import { initParams, parseConfig, paramsToNamed, loadModel } from '@softgrad/transformer';
import { builtinProblems, builtinTokenizer } from '../src/builtin.js';
import { promptsForStep, trainRl, type RlSettings } from '../src/train.js';
import type { Rollout } from '../src/rollout.js';

const tokenizer = builtinTokenizer();
const config = parseConfig({
  model_type: 'llama', vocab_size: tokenizer.vocabSize, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1,
  num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 256, tie_word_embeddings: true,
}, 'tiny');
const train = builtinProblems('train', 20, 0);
const validation = builtinProblems('test', 2, 1);

function settings(kind: RlSettings['kind'], steps: number): RlSettings {
  return {
    kind, batchPrompts: 2, samples: 3, maxCot: 6, maxAnswer: 3, lr: 1e-2, warmup: 1, steps, seed: 4,
    evalEvery: 2, checkpointEvery: 2, maxGradNorm: 1,
  };
}

async function named(p: Parameters<typeof paramsToNamed>[0]): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  for (const [k, t] of Object.entries(paramsToNamed(p))) out[k] = Array.from(await t.data());
  return out;
}

describe('RL training runs', () => {
  it('draw prompts in a seeded epoch-wise order that visits every problem once per epoch', () => {
    const n = 10;
    const firstEpoch = Array.from({ length: 5 }, (_, s) => promptsForStep(3, s, 2, n)).flat();
    expect([...firstEpoch].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
    expect(promptsForStep(3, 7, 2, n)).toEqual(promptsForStep(3, 7, 2, n));
    expect(Array.from({ length: 5 }, (_, s) => promptsForStep(4, s, 2, n)).flat()).not.toEqual(firstEpoch);
  });

  for (const kind of ['hard', 'soft'] as const) {
    it(`resume continues a ${kind} run exactly (same parameters and metrics as an uninterrupted run)`, async () => {
      const root = await mkdtemp(join(tmpdir(), 'softgrad-rl-'));
      try {
        const params = initParams(config, 1, { std: 0.3 });
        // A dense reward, so that every step has a gradient: the CoT's summed entropies (they
        // depend on the sampled tokens, and on the noise of a soft CoT).
        const reward = (r: Rollout) => 100 * r.entropies.reduce((a, v) => a + v, 0);
        const common = { config, params, tokenizer, train, validation, reward };
        const full = await trainRl({ ...common, settings: settings(kind, 4), dir: join(root, 'full') });
        const part = await trainRl({ ...common, settings: settings(kind, 2), dir: join(root, 'part') });
        T.treeDispose(part.params);
        const resumed = await trainRl({ ...common, settings: settings(kind, 4), dir: join(root, 'part'), resume: true });
        // The run must actually learn something, or equality would prove nothing.
        expect(await named(full.params)).not.toEqual(await named(params));
        expect(await named(resumed.params)).toEqual(await named(full.params));
        const lines = (d: string) => readFileSync(join(root, d, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => {
          const m = JSON.parse(l);
          delete m.seconds;
          delete m.tokensPerSecond;
          return m;
        });
        expect(lines('part')).toEqual(lines('full'));
        // The best checkpoint is a complete model directory.
        const best = await loadModel(join(root, 'full', 'best'));
        T.treeDispose(best.params);
        for (const p of [params, full.params, resumed.params]) T.treeDispose(p);
      } finally {
        await rm(root, { recursive: true, force: true });
      }
    });
  }

  it('keeps a flat live-buffer count over a run', async () => {
    const root = await mkdtemp(join(tmpdir(), 'softgrad-rl-'));
    try {
      const backend = T.getDefaultBackend();
      const params = initParams(config, 2, { std: 0.3 });
      T.clearJitCaches();
      const before = backend.stats().liveBuffers;
      const counts: number[] = [];
      const res = await trainRl({
        config, params, tokenizer, train, validation: [], settings: { ...settings('fuzzy', 6), evalEvery: 0, checkpointEvery: 0 },
        dir: join(root, 'run'),
        onStep: () => {
          // Compiled programs keep their constants for the next step; count without them.
          T.clearJitCaches();
          counts.push(backend.stats().liveBuffers);
        },
      });
      // After each step: the new parameters and the optimiser's two moments, nothing else.
      const leaves = T.treeLeaves(params).length;
      expect(new Set(counts)).toEqual(new Set([before + 3 * leaves]));
      T.treeDispose(res.params);
      expect(backend.stats().liveBuffers).toBe(before);
      T.treeDispose(params);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('refuses to resume with different settings or without a checkpoint', async () => {
    const root = await mkdtemp(join(tmpdir(), 'softgrad-rl-'));
    try {
      const params = initParams(config, 3, { std: 0.3 });
      await expect(trainRl({ config, params, tokenizer, train, validation, settings: settings('hard', 2), dir: join(root, 'x'), resume: true }))
        .rejects.toThrow(/no checkpoint/);
      const r = await trainRl({ config, params, tokenizer, train, validation: [], settings: settings('hard', 2), dir: join(root, 'y') });
      T.treeDispose(r.params);
      await expect(trainRl({ config, params, tokenizer, train, validation: [], settings: { ...settings('hard', 4), lr: 5e-3 }, dir: join(root, 'y'), resume: true }))
        .rejects.toThrow(/different settings \(lr/);
      T.treeDispose(params);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

