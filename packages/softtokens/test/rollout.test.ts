import { describe, expect, it } from 'vitest';
import * as T from '@softgrad/tensor';
import { initParams, loadHfTokenizer, loadModel, parseConfig, type TransformerConfig } from '@softgrad/transformer';
import { builtinBaseModelDir, builtinProblems, builtinTokenizer } from '../src/builtin.js';
import { evalModeSettings, trainingCotSettings } from '../src/modes.js';
import { disposeRolloutBatch, rollout, rolloutSoftInputs, type RolloutBatch } from '../src/rollout.js';
import { rlooLoss, rlooAdvantages, sequenceLogProbs } from '../src/estimator.js';
import { formatPrompt } from '../src/prompt.js';
import { chooseAnswerPrefill } from '../src/stop.js';

const tokenizer = builtinTokenizer();
function tinyConfig(): TransformerConfig {
  return parseConfig({
    model_type: 'llama', vocab_size: tokenizer.vocabSize, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1,
    num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 256, tie_word_embeddings: true,
  }, 'tiny');
}
const prompts = [formatPrompt('Tom has 3 apples. He buys 4 more. How many apples does Tom have now?'), formatPrompt('Ann has 9 pens.')];

describe('rollouts', () => {
  it('record tokens, inputs, prefill and answer consistently for every CoT kind', async () => {
    const config = tinyConfig();
    const params = initParams(config, 1, { std: 0.5 });
    T.clearJitCaches();
    const before = T.getDefaultBackend().stats().liveBuffers;
    for (const kind of ['hard', 'soft', 'fuzzy'] as const) {
      const batch = await rollout({
        config, params, tokenizer, prompts, samples: 3, cot: trainingCotSettings(kind), maxCot: 6, maxAnswer: 4,
        answerSample: true, key: T.key(2),
      });
      expect(batch.rollouts).toHaveLength(6);
      for (const r of batch.rollouts) {
        expect(r.cotTokens.length).toBeGreaterThan(0);
        expect(r.cotTokens.length).toBeLessThanOrEqual(6);
        expect(r.entropies).toHaveLength(r.cotTokens.length);
        expect(tokenizer.decode(r.prefillIds)).toBe(chooseAnswerPrefill(r.cotText, r.stoppedEarly));
        expect(r.cotText).toBe(tokenizer.decode(r.cotTokens));
        expect(r.answerIds.length).toBeGreaterThan(0);
        expect(r.answerIds.length).toBeLessThanOrEqual(4);
      }
      if (kind === 'hard') {
        expect(batch.softInputs).toBeNull();
      } else {
        expect(batch.sigma).toBeGreaterThan(0);
        expect(batch.softInputs!.shape).toEqual([6, 6, 16]);
        expect(batch.softInputs!.dtype).toBe(params.embed.dtype);
        for (let r = 0; r < 6; r++) expect((await rolloutSoftInputs(batch, r)).length).toBe(batch.rollouts[r]!.cotTokens.length * 16);
      }
      const adv = rlooAdvantages([[0, 100, 10], [10, 0, 0]]);
      const [loss, g] = T.valueAndGrad((p: typeof params) => rlooLoss(config, p, batch, adv))(params);
      expect(Number.isFinite(await loss.item())).toBe(true);
      loss.dispose();
      T.treeDispose(g);
      disposeRolloutBatch(batch);
    }
    T.clearJitCaches(); // compiled programs keep constants (RoPE tables, masks) for the next call
    expect(T.getDefaultBackend().stats().liveBuffers).toBe(before);
    T.treeDispose(params);
  });

  it('shrinking the batch as rows finish changes nothing: tokens, answers, entropies and soft inputs match a full batch', async () => {
    // The shipped model's CoTs end at very different lengths, so the batch shrinks several times.
    const dir = builtinBaseModelDir();
    const shippedTokenizer = await loadHfTokenizer(dir);
    const { config, params } = await loadModel(dir);
    const questions = builtinProblems('train', 2, 3).map((p) => formatPrompt(p.question));
    for (const kind of ['hard', 'soft', 'fuzzy'] as const) {
      const steps: number[][] = [[], []];
      const run = (compactBatch: boolean, i: number) => rollout({
        config, params, tokenizer: shippedTokenizer, prompts: questions, samples: 12, cot: trainingCotSettings(kind), maxCot: 48, maxAnswer: 8,
        answerSample: true, key: T.key(7), compactBatch, onStep: (phase, _s, active) => phase === 'cot' && steps[i]!.push(active),
      });
      const full = await run(false, 0);
      const compact = await run(true, 1);
      // The batch did shrink: some rows were still generating after at least half had finished.
      expect(steps[1]!.some((a) => a > 0 && a <= 12)).toBe(true);
      expect(steps[1]).toEqual(steps[0]);
      for (let r = 0; r < 24; r++) {
        const [a, b] = [full.rollouts[r]!, compact.rollouts[r]!];
        expect(b.cotTokens).toEqual(a.cotTokens);
        expect(b.prefillIds).toEqual(a.prefillIds);
        expect(b.answerIds).toEqual(a.answerIds);
        b.entropies.forEach((e, t) => expect(e).toBeCloseTo(a.entropies[t]!, 5));
        if (kind !== 'hard') {
          const [ha, hb] = [await rolloutSoftInputs(full, r), await rolloutSoftInputs(compact, r)];
          expect(hb.length).toBe(ha.length);
          expect(Math.max(0, ...hb.map((x, i) => Math.abs(x - ha[i]!)))).toBeLessThan(1e-5);
        }
      }
      disposeRolloutBatch(full);
      disposeRolloutBatch(compact);
    }
    T.treeDispose(params);
  });

  it('fuzzy decoding with τ → 0 and σ = 0 reproduces hard greedy decoding token for token', async () => {
    const config = tinyConfig();
    const params = initParams(config, 3, { std: 0.5, dtype: 'float64' });
    const common = { config, params, tokenizer, prompts, samples: 1, maxCot: 12, maxAnswer: 6, answerSample: false, key: T.key(0) };
    const hard = await rollout({ ...common, cot: evalModeSettings('hard-greedy') });
    const fuzzy = await rollout({ ...common, cot: { ...evalModeSettings('fuzzy-greedy'), tau: 1e-6 }, keepSoftInputs: false });
    expect(fuzzy.softInputs).toBeNull();
    hard.rollouts.forEach((h, i) => {
      const f = fuzzy.rollouts[i]!;
      expect(f.cotTokens).toEqual(h.cotTokens);
      expect(f.answerIds).toEqual(h.answerIds);
      expect(f.answerText).toBe(h.answerText);
    });
    T.treeDispose(params);
  });

  it('soft greedy decoding is deterministic, and sampling depends only on the key', async () => {
    const config = tinyConfig();
    const params = initParams(config, 4, { std: 0.5 });
    const common = { config, params, tokenizer, prompts, samples: 2, maxCot: 8, maxAnswer: 4, answerSample: false };
    const inputs = async (b: RolloutBatch) => {
      const all = await Promise.all(b.rollouts.map((_, r) => rolloutSoftInputs(b, r)));
      disposeRolloutBatch(b);
      return all.map((x) => Array.from(x));
    };
    const a = await inputs(await rollout({ ...common, cot: evalModeSettings('soft-greedy'), key: T.key(1) }));
    const b = await inputs(await rollout({ ...common, cot: evalModeSettings('soft-greedy'), key: T.key(2) }));
    expect(b).toEqual(a);
    const s1 = await inputs(await rollout({ ...common, cot: evalModeSettings('soft-sample'), key: T.key(5) }));
    const s2 = await inputs(await rollout({ ...common, cot: evalModeSettings('soft-sample'), key: T.key(5) }));
    const s3 = await inputs(await rollout({ ...common, cot: evalModeSettings('soft-sample'), key: T.key(6) }));
    expect(s2).toEqual(s1);
    expect(s3).not.toEqual(s1);
    T.treeDispose(params);
  });

  it('re-scoring a hard rollout gives the log-probabilities of its sampled tokens', async () => {
    const config = tinyConfig();
    const params = initParams(config, 5, { std: 0.5, dtype: 'float64' });
    const batch = await rollout({ config, params, tokenizer, prompts, samples: 2, cot: trainingCotSettings('hard'), maxCot: 5, maxAnswer: 3, answerSample: true, key: T.key(9) });
    const lp = sequenceLogProbs(config, params, batch);
    const values = Array.from(await lp.data());
    // Scoring one rollout alone (no other rows beside it) gives the same number.
    for (let i = 0; i < batch.rollouts.length; i++) {
      const single = sequenceLogProbs(config, params, batch, [i]);
      expect(Math.abs((await single.item()) - values[i]!)).toBeLessThan(1e-10);
      single.dispose();
      expect(values[i]!).toBeLessThan(0);
    }
    lp.dispose();
    T.treeDispose(params);
  });
});
