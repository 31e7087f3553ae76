/**
 * End to end on the built-in task with the shipped base model: a few RL steps with each CoT
 * kind raise the mean reward above the base model's, measured on the prompts trained on with
 * that kind's own sampling, from fixed seeds.
 */
import { describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '@softgrad/tensor';
import { loadHfTokenizer, loadModel, type ModelParams } from '@softgrad/transformer';
import { builtinBaseModelDir, builtinProblems } from '../src/builtin.js';
import { trainingCotSettings, type CotKind } from '../src/modes.js';
import { formatPrompt } from '../src/prompt.js';
import { reward } from '../src/rewards.js';
import { rollout } from '../src/rollout.js';
import { trainRl } from '../src/train.js';

const PROMPTS = 4;
const MAX_COT = 32;

describe('RL on the built-in task', async () => {
  const dir = builtinBaseModelDir();
  const tokenizer = await loadHfTokenizer(dir);
  const { config, params: base } = await loadModel(dir);
  const problems = builtinProblems('train', 64, 7).slice(0, PROMPTS);

  async function meanReward(params: ModelParams, kind: CotKind): Promise<number> {
    const batch = await rollout({
      config, params, tokenizer, prompts: problems.map((p) => formatPrompt(p.question)), samples: 24,
      cot: trainingCotSettings(kind), maxCot: MAX_COT, answerSample: true, key: T.key(1234),
    });
    const rs = batch.rollouts.map((r) => reward(r.answerText, problems[r.promptIndex]!.reference));
    return rs.reduce((a, b) => a + b, 0) / rs.length;
  }

  for (const kind of ['hard', 'soft', 'fuzzy'] as const) {
    it(`a few ${kind} RL steps raise the mean reward above the base model's`, async () => {
      const root = await mkdtemp(join(tmpdir(), 'softgrad-e2e-'));
      try {
        const before = await meanReward(base, kind);
        const res = await trainRl({
          config, params: base, tokenizer, train: problems, validation: [], dir: root,
          settings: {
            kind, batchPrompts: PROMPTS, samples: 8, maxCot: MAX_COT, lr: 3e-4, warmup: 0, steps: 12, seed: 3,
            evalEvery: 0, checkpointEvery: 0, maxGradNorm: 1,
          },
        });
        const after = await meanReward(res.params, kind);
        T.treeDispose(res.params);
        console.log(`${kind}: mean reward ${before.toFixed(1)} → ${after.toFixed(1)}; training rewards ${res.history.map((m) => m.reward.toFixed(0)).join(' ')}`);
        expect(before).toBeLessThan(95); // room to improve, or the test proves nothing
        expect(after).toBeGreaterThan(before);
      } finally {
        await rm(root, { recursive: true, force: true });
      }
    });
  }
});
