import { describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { appendFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '@softgrad/tensor';
import {
  CrashingDirectoryOps, NODE_DIRECTORY_OPS, SimulatedCrash, initParams, parseConfig, paramsToNamed, loadModel, type ModelParams,
} from '@softgrad/transformer';
import { builtinProblems, builtinTokenizer } from '../src/builtin.js';
import { ResumeMismatchError, RunDirectoryInUseError, promptsForStep, trainRl, type RlRunOptions, type RlSettings } from '../src/train.js';
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

// A dense reward, so that every step has a gradient: the digits of a hard CoT, the
// (noise-dependent) sum of a soft CoT's inputs.
// A dense reward, so that every step has a gradient: the CoT's summed entropies (they depend on
// the sampled tokens, and on the noise of a soft CoT).
const denseReward = (r: Rollout) => 100 * r.entropies.reduce((a, v) => a + v, 0);

async function named(p: ModelParams): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  for (const [k, t] of Object.entries(paramsToNamed(p))) out[k] = Array.from(await t.data());
  return out;
}

/** metrics.jsonl without the wall-clock fields, which differ between any two runs. */
function metrics(dir: string): Record<string, unknown>[] {
  return readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').filter(Boolean).map((l) => {
    const m = JSON.parse(l) as Record<string, unknown>;
    delete m.seconds;
    delete m.tokensPerSecond;
    return m;
  });
}

async function withRoot<R>(run: (root: string) => Promise<R>): Promise<R> {
  const root = await mkdtemp(join(tmpdir(), 'softgrad-rl-'));
  try {
    return await run(root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
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
    it(`stop at a safe point (Ctrl-C) and resume continue a ${kind} run exactly`, async () => withRoot(async (root) => {
      const params = initParams(config, 1, { std: 0.3 });
      const common = { config, params, tokenizer, train, validation, reward: denseReward };
      const full = await trainRl({ ...common, settings: settings(kind, 4), dir: join(root, 'full') });
      // Interrupted after step 1, between checkpoints (every 2 steps): the safe point saves one.
      const stop = new AbortController();
      const part = await trainRl({ ...common, settings: settings(kind, 4), dir: join(root, 'part'), signal: stop.signal, onStep: (m) => m.step === 1 && stop.abort() });
      expect([part.interrupted, part.stepsDone]).toEqual([true, 1]);
      expect(JSON.parse(readFileSync(join(root, 'part', 'checkpoint', 'state.json'), 'utf8')).step).toBe(1);
      T.treeDispose(part.params);
      const resumed = await trainRl({ ...common, settings: settings(kind, 4), dir: join(root, 'part'), resume: true });
      expect([resumed.interrupted, resumed.stepsDone]).toEqual([false, 4]);
      // The run must actually learn something, or equality would prove nothing.
      expect(await named(full.params)).not.toEqual(await named(params));
      expect(await named(resumed.params)).toEqual(await named(full.params));
      expect(metrics(join(root, 'part'))).toEqual(metrics(join(root, 'full')));
      // One step numbering everywhere: metrics 1..4, validation after steps 0 (the starting model), 2 and 4.
      expect(metrics(join(root, 'full')).map((m) => m.step)).toEqual([1, 2, 3, 4]);
      expect(full.validation.map((v) => v.step)).toEqual([0, 2, 4]);
      expect(metrics(join(root, 'full')).filter((m) => m.valAccuracy !== undefined).map((m) => m.step)).toEqual([2, 4]);
      // The best model is a complete model directory that says which step it is.
      const best = await loadModel(join(root, 'full', 'best'));
      T.treeDispose(best.params);
      expect(JSON.parse(readFileSync(join(root, 'full', 'best', 'best.json'), 'utf8')).step).toBe(full.bestStep);
      for (const p of [params, full.params, resumed.params]) T.treeDispose(p);
    }));
  }

  it('keeps the starting model as best when training never beats it', async () => withRoot(async (root) => {
    const params = initParams(config, 5, { std: 0.3 });
    // Learning rate 0: every validation gives the same accuracy, so step 0 stays best.
    const res = await trainRl({ config, params, tokenizer, train, validation, settings: { ...settings('hard', 2), lr: 0 }, dir: join(root, 'r') });
    expect(res.bestStep).toBe(0);
    expect(JSON.parse(readFileSync(join(root, 'r', 'best', 'best.json'), 'utf8'))).toMatchObject({ step: 0, accuracy: res.validation[0]!.accuracy });
    T.treeDispose([params, res.params]);
  }));

  it('keeps a flat live-buffer count over a run', async () => withRoot(async (root) => {
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
  }));

  it('refuses a resume that differs from run.json in one line naming what differs, before touching anything', async () => withRoot(async (root) => {
    const params = initParams(config, 3, { std: 0.3 });
    const other = initParams(config, 4, { std: 0.3 });
    const dir = join(root, 'y');
    const base: RlRunOptions = { config, params, tokenizer, train, validation: [], settings: settings('hard', 2), dir };
    await expect(trainRl({ ...base, dir: join(root, 'x'), resume: true })).rejects.toThrow(/no run\.json/);
    T.treeDispose((await trainRl(base)).params);
    const log = readFileSync(join(dir, 'metrics.jsonl'), 'utf8');
    const cases: [Partial<RlRunOptions>, RegExp][] = [
      [{ settings: { ...settings('hard', 2), lr: 5e-3 } }, /lr is 0\.01 in the run but 0\.005 now/],
      // A longer run would re-stretch the learning-rate schedule.
      [{ settings: settings('hard', 4) }, /steps is 2 in the run but 4 now/],
      [{ settings: { ...settings('hard', 2), maxGradNorm: undefined } }, /maxGradNorm is 1 in the run but null now/],
      [{ train: builtinProblems('train', 21, 0), provenance: { data: 'mine.jsonl' } }, /the training data differs: the run used given in code \(sha256 [0-9a-f]{12}…, 20 problems\), now mine\.jsonl \(sha256 [0-9a-f]{12}…, 21 problems\)/],
      [{ params: other, provenance: { model: 'other-model' } }, /the starting model differs: .*now other-model/],
    ];
    for (const [change, message] of cases) {
      const error = await trainRl({ ...base, ...change, resume: true }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ResumeMismatchError);
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).not.toContain('\n');
    }
    expect(readFileSync(join(dir, 'metrics.jsonl'), 'utf8')).toBe(log);
    T.treeDispose([params, other]);
  }));

  it('refuses to start afresh over an existing run unless told to overwrite it', async () => withRoot(async (root) => {
    const params = initParams(config, 3, { std: 0.3 });
    const dir = join(root, 'run');
    const base: RlRunOptions = { config, params, tokenizer, train, validation: [], settings: settings('hard', 2), dir };
    T.treeDispose((await trainRl(base)).params);
    const log = readFileSync(join(dir, 'metrics.jsonl'), 'utf8');
    const error = await trainRl(base).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RunDirectoryInUseError);
    expect((error as Error).message).toMatch(/already holds a run \(run\.json, metrics\.jsonl, checkpoint\/\)/);
    expect(readFileSync(join(dir, 'metrics.jsonl'), 'utf8')).toBe(log);
    const again = await trainRl({ ...base, settings: settings('hard', 1), overwrite: true });
    expect(metrics(dir).map((m) => m.step)).toEqual([1]);
    T.treeDispose([params, again.params]);
  }));

  it('resumes past a torn last metrics line and names a corrupt earlier one', async () => withRoot(async (root) => {
    const params = initParams(config, 6, { std: 0.3 });
    const dir = join(root, 'run');
    const base: RlRunOptions = { config, params, tokenizer, train, validation: [], settings: { ...settings('hard', 3), checkpointEvery: 1 }, dir };
    const stop = new AbortController();
    T.treeDispose((await trainRl({ ...base, signal: stop.signal, onStep: (m) => m.step === 2 && stop.abort() })).params);
    // A crash in the middle of appending the next line leaves half of it.
    appendFileSync(join(dir, 'metrics.jsonl'), '{"step":3,"rew');
    const resumed = await trainRl({ ...base, resume: true });
    expect(metrics(dir).map((m) => m.step)).toEqual([1, 2, 3]);
    T.treeDispose(resumed.params);
    const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n');
    writeFileSync(join(dir, 'metrics.jsonl'), [lines[0], 'garbage', ...lines.slice(1)].join('\n'));
    // The last checkpoint is at step 3 = steps: a resume finds nothing left to do but must still read the log.
    await expect(trainRl({ ...base, resume: true })).rejects.toThrow(/metrics\.jsonl:2: not a JSON line/);
    T.treeDispose(params);
  }));
});

describe('RL training under a crash at every step of its checkpoint swaps', () => {
  it('resumes from what recovery keeps and reproduces the uninterrupted run exactly', async () => withRoot(async (root) => {
    const params = initParams(config, 7, { std: 0.3 });
    const s = { ...settings('hard', 3), checkpointEvery: 1, evalEvery: 2 };
    const common = { config, params, tokenizer, train, validation: validation.slice(0, 1), reward: denseReward, settings: s };
    // The uninterrupted run, through a file system that records its steps.
    const probe = new CrashingDirectoryOps(Infinity, NODE_DIRECTORY_OPS, join(root, 'full'));
    const stepAt: number[] = [];
    const full = await trainRl({ ...common, dir: join(root, 'full'), directoryOps: probe, onStep: () => stepAt.push(probe.steps.length) });
    const reference = metrics(join(root, 'full'));
    const finalParams = await named(full.params);
    T.treeDispose(full.params);
    // Every step from the first swap on (the clearing of a fresh directory before it is
    // not a swap): the best-model swap of step 0 and the checkpoint swaps after steps 1
    // (no old copy yet), 2 and 3 (replacing one), 36 crash points in all.
    const first = probe.steps.findIndex((l) => l.startsWith('mkdir .best.partial'));
    expect(first).toBeGreaterThan(0);
    const points = Array.from({ length: probe.steps.length - first }, (_, i) => first + i);
    expect(points.length).toBeGreaterThan(30);
    const outcomes = { resumed: 0, nothingToResume: 0 };
    for (const crashAt of points) {
      const dir = join(root, `crash-${crashAt}`);
      const ops = new CrashingDirectoryOps(crashAt, NODE_DIRECTORY_OPS, dir);
      const crashed = await trainRl({ ...common, dir, directoryOps: ops }).catch((e: unknown) => e);
      expect(crashed, `crash at ${crashAt}`).toBeInstanceOf(SimulatedCrash);
      const resumed = await trainRl({ ...common, dir, resume: true }).catch((e: unknown) => e);
      if (resumed instanceof Error) {
        // Only a crash before the first checkpoint existed leaves nothing to resume.
        expect(resumed.message, `crash at ${ops.crashedAt}`).toMatch(/nothing to resume: no checkpoint to resume from/);
        expect(crashAt).toBeLessThan(stepAt[0]! + 10);
        outcomes.nothingToResume++;
      } else {
        const r = resumed as Awaited<ReturnType<typeof trainRl>>;
        expect(metrics(dir), `crash at ${ops.crashedAt}`).toEqual(reference);
        expect(await named(r.params), `crash at ${ops.crashedAt}`).toEqual(finalParams);
        expect(readFileSync(join(dir, 'best', 'best.json'), 'utf8')).toBe(readFileSync(join(root, 'full', 'best', 'best.json'), 'utf8'));
        // Recovery leaves nothing of the interrupted swap behind.
        expect(readdirSync(dir).filter((n) => n.startsWith('.')), `crash at ${ops.crashedAt}`).toEqual([]);
        T.treeDispose(r.params);
        outcomes.resumed++;
      }
      await rm(dir, { recursive: true, force: true });
    }
    expect(outcomes.resumed).toBeGreaterThan(20);
    expect(existsSync(join(root, 'full', 'checkpoint', 'state.json'))).toBe(true);
    T.treeDispose(params);
  }));
});
