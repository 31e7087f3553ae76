import { describe, expect, it } from 'vitest';
import * as T from '@softgrad/tensor';
import { initParams, parseConfig, type TransformerConfig } from '@softgrad/transformer';
import { builtinTokenizer } from '../src/builtin.js';
import { trainingCotSettings } from '../src/modes.js';
import { formatPrompt } from '../src/prompt.js';
import { rollout, type CotStepTrace, disposeRolloutBatch } from '../src/rollout.js';

const tokenizer = builtinTokenizer();
function tinyConfig(): TransformerConfig {
  return parseConfig({
    model_type: 'llama', vocab_size: tokenizer.vocabSize, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1,
    num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 256, tie_word_embeddings: true,
  }, 'tiny');
}
const prompts = [formatPrompt('Tom has 3 apples. He buys 4 more. How many apples does Tom have now?'), formatPrompt('Ann has 9 pens.')];

describe('rollout CoT trace', () => {
  it('reports every CoT step of every row, and the traced row’s largest mixture weights, without changing the rollout', async () => {
    const config = tinyConfig();
    const params = initParams(config, 7, { std: 0.5 });
    T.clearJitCaches();
    const before = T.getDefaultBackend().stats().liveBuffers;
    for (const kind of ['hard', 'soft', 'fuzzy'] as const) {
      const common = { config, params, tokenizer, prompts, samples: 2, cot: trainingCotSettings(kind), maxCot: 7, maxAnswer: 3, answerSample: true, key: T.key(11) };
      const traces: CotStepTrace[] = [];
      const traced = await rollout({ ...common, cotTrace: { row: 3, topK: 4, onCotStep: (t) => traces.push(t) } });
      const plain = await rollout(common);
      expect(traced.rollouts.map((r) => r.cotTokens)).toEqual(plain.rollouts.map((r) => r.cotTokens));
      expect(traced.rollouts.map((r) => r.answerIds)).toEqual(plain.rollouts.map((r) => r.answerIds));
      const longest = Math.max(...traced.rollouts.map((r) => r.cotTokens.length));
      expect(traces.map((t) => t.step)).toEqual(Array.from({ length: longest }, (_, t) => t));
      traced.rollouts.forEach((r, row) => {
        const seen = traces.map((t) => t.tokens[row]!).filter((id) => id >= 0);
        expect(seen).toEqual(r.cotTokens);
        expect(traces.map((t) => t.entropies[row]!).filter((e) => !Number.isNaN(e))).toEqual(r.entropies);
        expect(traces.some((t) => t.stopped[row])).toBe(r.stoppedEarly);
      });
      for (const t of traces) {
        if (kind === 'hard' || t.tokens[3] === -1) {
          expect(t.topMixture).toBeNull();
          continue;
        }
        const top = t.topMixture!;
        expect(top).toHaveLength(4);
        for (let i = 1; i < top.length; i++) expect(top[i]!.weight).toBeLessThanOrEqual(top[i - 1]!.weight);
        expect(top.reduce((a, w) => a + w.weight, 0)).toBeLessThanOrEqual(1 + 1e-5);
        // The shadow token is the argmax of the logits, hence the largest mixture weight.
        expect(top[0]!.id).toBe(t.tokens[3]);
        if (kind === 'fuzzy') expect(top[0]!.weight).toBeGreaterThan(0.99);
      }
      disposeRolloutBatch(traced);
      disposeRolloutBatch(plain);
    }
    T.clearJitCaches(); // compiled programs keep constants for the next call
    expect(T.getDefaultBackend().stats().liveBuffers).toBe(before);
    await expect(rollout({ config, params, tokenizer, prompts, samples: 1, cot: trainingCotSettings('soft'), maxCot: 2, answerSample: false, key: T.key(1), cotTrace: { row: 2, onCotStep: () => {} } }))
      .rejects.toThrow('cotTrace.row must be a row index below 2, got 2');
    T.treeDispose(params);
  });
});
