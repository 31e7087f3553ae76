/**
 * The built-in task's tokenizer and base-model shape (docs/method.md, "The built-in task"). The tokenizer is
 * character-level with the prompt template's fixed pieces and the task's words as whole
 * tokens (added tokens in tokenizer.json terms), which keeps sequences short enough for
 * CPU training while every digit stays its own token.
 */
import { fileURLToPath } from 'node:url';
import { CharTokenizer, parseConfig, type TransformerConfig } from '@softgrad/transformer';
import type { ProblemItem } from './datasets.js';
import { gsm8kReference } from './rewards.js';
import { PREFILL_STOPPED, PROMPT_TEMPLATE, STOP_STRING, formatPrompt, formatSupervisedTarget } from './prompt.js';
import { generateChoiceTask, generateTask, TASK_SPLITS } from './task.js';

/** The template before and after the question. */
export function promptPieces(): [string, string] {
  const at = PROMPT_TEMPLATE.indexOf('QUESTION');
  return [PROMPT_TEMPLATE.slice(0, at), PROMPT_TEMPLATE.slice(at + 'QUESTION'.length)];
}

/** Texts of the task the tokenizer must cover: prompts, targets, choice items. */
function corpus(): string[] {
  const texts: string[] = [];
  for (const split of TASK_SPLITS) {
    for (const t of generateTask({ seed: 0, split, count: 400 })) texts.push(formatPrompt(t.question) + formatSupervisedTarget(t.answer));
  }
  for (const c of generateChoiceTask({ seed: 0, count: 200 })) texts.push(c.question, ...c.choices);
  return texts;
}

/** The built-in tokenizer; the same vocabulary on every machine (derived from seed-0 text). */
export function builtinTokenizer(): CharTokenizer {
  const texts = corpus();
  const counts = new Map<string, number>();
  for (const t of texts) for (const w of t.match(/[A-Za-z]{3,}/g) ?? []) counts.set(w, (counts.get(w) ?? 0) + 1);
  const words = [...counts].filter(([, n]) => n >= 20).map(([w]) => w).sort();
  const [before, after] = promptPieces();
  const phrases = [before, after, STOP_STRING, PREFILL_STOPPED];
  return new CharTokenizer({
    alphabet: ' 0123456789+-*/=.,:?!\'"()[]{}\\$%#\n',
    corpus: texts,
    extraSpecialTokens: [...phrases, ...words.filter((w) => !phrases.includes(w))],
  });
}

/** The base model's architecture: a ~0.1M-parameter Llama with tied embeddings and GQA. */
export function builtinModelConfig(vocabSize: number): TransformerConfig {
  return parseConfig(
    {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      vocab_size: vocabSize,
      hidden_size: 64,
      intermediate_size: 192,
      num_hidden_layers: 3,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 16,
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
      max_position_embeddings: 512,
      tie_word_embeddings: true,
      attention_bias: false,
      bos_token_id: 1,
      eos_token_id: 2,
      torch_dtype: 'float32',
    },
    'built-in model config',
  );
}

/** Problems of the built-in task as evaluation/training items. */
export function builtinProblems(split: 'train' | 'test' | 'ood', count: number, seed: number): ProblemItem[] {
  return generateTask({ seed, split, count }).map((t) => ({
    question: t.question,
    solution: t.answer.slice(0, t.answer.lastIndexOf('####')).trim(),
    reference: gsm8kReference(t.answer)!,
  }));
}

/**
 * Where the shipped base model lives (made by `softgrad pretrain`; see its pretrain.json).
 * Resolved from this module so it works from src/ (tests) and dist/ alike.
 */
export function builtinBaseModelDir(): string {
  return fileURLToPath(new URL('../assets/builtin-base', import.meta.url));
}
