/**
 * Checks a command runs before any work: every prompt it will build must encode with the
 * model's tokenizer and fit the model's context together with the CoT and answer budget.
 * Found here, a problem names its file and line; found mid-run, it would surface after
 * minutes (or hours) of work as an error about a tensor shape.
 */
import type { Tokenizer, TransformerConfig } from '@softgrad/transformer';
import type { ChoiceItem, ProblemItem } from './datasets.js';
import { choicePrompt } from './evaluate.js';
import { DataFileError } from './io.js';
import { PREFILL_AT_LIMIT, PREFILL_STOPPED, formatPrompt } from './prompt.js';

/** Settings that cannot work with this model whatever the data (e.g. a CoT budget beyond its context). */
export class SettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SettingsError';
  }
}

/** Items with where they came from: a JSONL file and lines, or a generated set (numbered from 1). */
export interface Located<I> {
  readonly source: string;
  readonly items: readonly I[];
  readonly lines?: readonly number[];
}

export interface RolloutBudget {
  maxCot: number;
  maxAnswer: number;
}

function where<I>(set: Located<I>, i: number): { file: string; line: number } {
  return { file: set.source, line: set.lines?.[i] ?? i + 1 };
}

function encodeOrFail(tokenizer: Tokenizer, text: string, file: string, line: number, what: string, special = false): number[] {
  try {
    return tokenizer.encode(text, { addSpecialTokens: special });
  } catch (e) {
    throw new DataFileError(file, line, `${what} cannot be encoded: ${(e as Error).message}`);
  }
}

/**
 * Positions a rollout takes at most beyond its prompt: the CoT, the longer of the two
 * answer prefills, and the answer tokens (training scores the whole sequence in one pass).
 */
export function positionsAfterPrompt(tokenizer: Tokenizer, budget: RolloutBudget): number {
  const prefill = Math.max(tokenizer.encode(PREFILL_AT_LIMIT).length, tokenizer.encode(PREFILL_STOPPED).length);
  return budget.maxCot + prefill + budget.maxAnswer;
}

/**
 * Every problem's prompt encodes and fits `config.max_position_embeddings` with `budget`.
 * Throws SettingsError when even an empty question would not fit (the budget is the
 * problem), else a DataFileError for the first problem that does not.
 */
export function checkProblemsFit(set: Located<ProblemItem>, tokenizer: Tokenizer, config: TransformerConfig, budget: RolloutBudget): void {
  const context = config.max_position_embeddings;
  const after = positionsAfterPrompt(tokenizer, budget);
  const template = tokenizer.encode(formatPrompt(''), { addSpecialTokens: true }).length;
  if (template + after > context) {
    throw new SettingsError(
      `a CoT of ${budget.maxCot} and an answer of ${budget.maxAnswer} tokens need ${template + after} positions with the prompt template alone ` +
        `(${template} tokens), more than the model's context of ${context} (max_position_embeddings)`,
    );
  }
  set.items.forEach((p, i) => {
    const { file, line } = where(set, i);
    const n = encodeOrFail(tokenizer, formatPrompt(p.question), file, line, 'the question', true).length;
    if (n + after > context) {
      throw new DataFileError(file, line,
        `the prompt is ${n} tokens; with a CoT of ${budget.maxCot} and an answer of ${budget.maxAnswer} it needs ${n + after} positions, ` +
          `more than the model's context of ${context} (max_position_embeddings)`);
    }
  });
}

/** Every multiple-choice question and choice encodes, and each scored sequence fits the context. */
export function checkChoicesFit(set: Located<ChoiceItem>, tokenizer: Tokenizer, config: TransformerConfig): void {
  const context = config.max_position_embeddings;
  set.items.forEach((item, i) => {
    const { file, line } = where(set, i);
    const prompt = encodeOrFail(tokenizer, choicePrompt(item.question), file, line, 'the question', true).length;
    item.choices.forEach((c, j) => {
      const n = prompt + encodeOrFail(tokenizer, ` ${c}`, file, line, `choice ${j}`).length;
      if (n > context) {
        throw new DataFileError(file, line, `question and choice ${j} are ${n} tokens, more than the model's context of ${context} (max_position_embeddings)`);
      }
    });
  });
}
