/**
 * Evaluation's per-problem and per-item numbers, which the demo's paired comparisons read:
 * the NLL of a choice is per token, and a problem's mean entropy pools its samples' CoT steps.
 */
import { describe, expect, it } from 'vitest';
import * as T from '@softgrad/tensor';
import { initParams } from '@softgrad/transformer';
import { builtinModelConfig, builtinProblems, builtinTokenizer } from '../src/builtin.js';
import { choicePrompt, evaluateChoices, evaluateMode } from '../src/evaluate.js';
import { completionLogProbs } from '../src/sft.js';

const tokenizer = builtinTokenizer();
const config = builtinModelConfig(tokenizer.vocabSize);

describe('evaluateChoices', () => {
  it('reports the correct choice’s NLL per token, per item and on average', async () => {
    const params = initParams(config, 3, { std: 0.2 });
    const items = [
      { question: 'What is 2 + 3?', choices: ['5', '123', '7'], answerIndex: 1 },
      { question: 'Who has more?', choices: ['Tom', 'Ann'], answerIndex: 0 },
    ];
    const res = await evaluateChoices(config, params, tokenizer, items);
    for (const [i, it] of items.entries()) {
      const p = tokenizer.encode(choicePrompt(it.question), { addSpecialTokens: true });
      const c = tokenizer.encode(` ${it.choices[it.answerIndex]}`);
      const { logProbs, tokens } = completionLogProbs(config, params, [{ ids: [...p, ...c], start: p.length }]);
      const total = -(await logProbs.item());
      logProbs.dispose();
      expect(tokens).toBe(c.length);
      expect(c.length).toBeGreaterThan(1); // per token ≠ total, so the test tells them apart
      expect(res.itemNll[i]!).toBeCloseTo(total / c.length, 4);
    }
    expect(res.meanNll).toBeCloseTo((res.itemNll[0]! + res.itemNll[1]!) / 2, 10);
    expect(res.itemCorrect).toHaveLength(2);
    expect(res.accuracy).toBe(res.itemCorrect.filter(Boolean).length / 2);
    T.treeDispose(params);
  });
});

describe('evaluateMode', () => {
  it('gives each problem the mean entropy of its samples’ CoT steps', async () => {
    const params = initParams(config, 4, { std: 0.2 });
    const problems = builtinProblems('test', 3, 0);
    const res = await evaluateMode({ config, params, tokenizer, problems, mode: 'hard-sample', samples: 3, maxCot: 6, maxAnswer: 4, seed: 1 });
    expect(res.outcomes).toHaveLength(3);
    for (const o of res.outcomes) {
      expect(o.rewards).toHaveLength(3);
      expect(Number.isFinite(o.meanEntropy)).toBe(true);
      expect(o.meanEntropy).toBeGreaterThan(0);
      expect(o.meanEntropy).toBeLessThanOrEqual(Math.log(config.vocab_size) + 1e-6);
    }
    // Every CoT of this random model runs to the limit, so each problem has 3 × 6 steps and the
    // mean of the per-problem means is the mean of the per-position profile.
    expect(res.meanCotLength).toBe(6);
    expect(res.entropyCounts).toEqual([9, 9, 9, 9, 9, 9]);
    const profileMean = res.entropyByPosition.reduce((a, b) => a + b, 0) / 6;
    expect(res.outcomes.reduce((a, o) => a + o.meanEntropy, 0) / 3).toBeCloseTo(profileMean, 5);
    // The mode's mean entropy is over every step; with equal counts, the profile's mean.
    expect(res.meanEntropy).toBeCloseTo(profileMean, 5);
    T.treeDispose(params);
  });
});
