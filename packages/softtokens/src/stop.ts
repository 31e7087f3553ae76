/**
 * When a chain of thought stops, and which answer prefill follows it (docs/method.md, "Rollouts"
 * explains the rule).
 *
 * The CoT stops at the first token boundary where the decoded (shadow) text ends with
 * `The final answer is:`, with or without the trailing space. Both forms are needed: with
 * byte-level BPE (Llama 3, Qwen) the space belongs to the next token — `" is" ":" " \\" "boxed"` —
 * so a text ending in `The final answer is: ` never occurs there, while the built-in tokenizer
 * has the whole phrase, space included, as one token.
 *
 * `StopDetector` answers that question one token at a time without re-decoding the CoT: it keeps
 * the last few token ids, and decodes them only after a token that can end the phrase.
 * `naiveStopMatch` is the definition it must agree with.
 */
import type { Tokenizer } from '@softgrad/transformer';
import { PREFILL_AT_LIMIT, PREFILL_STOPPED, STOP_STRING } from './prompt.js';

/** The stop phrase without its trailing space: `The final answer is:`. */
export const STOP_PHRASE = STOP_STRING.trimEnd();

/** How a decoded CoT ends: on the phrase with its trailing space, on the phrase alone, or neither. */
export type StopMatch = 'with-space' | 'without-space' | null;

/** The definition: how `text` (a whole decoded CoT, or enough of its end) ends. */
export function stopMatchOf(text: string): StopMatch {
  if (text.endsWith(STOP_STRING)) return 'with-space';
  if (text.endsWith(STOP_PHRASE)) return 'without-space';
  return null;
}

/**
 * The same question answered the slow way — decode every id so far — as the reference the
 * detector is tested against. Quadratic over a CoT when called at every step.
 */
export function naiveStopMatch(tokenizer: Tokenizer, ids: readonly number[]): StopMatch {
  return stopMatchOf(tokenizer.decode(ids));
}

/**
 * Tokens kept at the end of the CoT. Every token in a vocabulary decodes to at least one byte,
 * so the phrase and its space (21 ASCII bytes) lie within the last 21 tokens; the margin covers
 * what may come out differently at the start of a decoded tail than in the whole text: up to
 * three U+FFFD for continuation bytes of a UTF-8 character whose first byte was cut off, a
 * leading space that SentencePiece-style decoders strip from the first token, a space that
 * `clean_up_tokenization_spaces` removes before punctuation. After them the tail decodes to
 * exactly the end of the whole text, because UTF-8 resynchronises on the next ASCII or lead byte.
 */
const TAIL_TOKENS = STOP_STRING.length + 8;

/**
 * Each token's text decoded alone, per tokenizer. A token contributes the same characters
 * wherever it stands (a decoder may only strip the very first token's leading space, and the
 * space clean-up only deletes spaces that come before punctuation), so the last characters of
 * the whole text are those of the last tokens decoded alone: that tells, without decoding the
 * tail, whether the text can end in `:` or `: ` right now.
 */
const decodedAloneCache = new WeakMap<Tokenizer, Map<number, string>>();

function decodedAlone(tokenizer: Tokenizer, id: number): string {
  let byId = decodedAloneCache.get(tokenizer);
  if (!byId) {
    byId = new Map();
    decodedAloneCache.set(tokenizer, byId);
  }
  let text = byId.get(id);
  if (text === undefined) {
    text = tokenizer.decode([id]);
    byId.set(id, text);
  }
  return text;
}

const PHRASE_END = STOP_PHRASE.at(-1)!; // ':'
const SPACE = STOP_STRING.at(-1)!; // ' '

/**
 * The stop test for one row, fed one token id at a time. A push costs a map look-up, plus, when
 * the text may now end in `:` or `: `, one decode of the last TAIL_TOKENS ids: never a decode of
 * the whole CoT.
 */
export class StopDetector {
  private readonly tail: number[] = [];
  private lastMatch: StopMatch = null;
  /** The text's last character so far, or null when unknown (no token yet, or one that decodes to nothing alone). */
  private lastChar: string | null = '';
  private pushed = 0;
  private firstStop = -1;
  private firstMatch: StopMatch = null;

  constructor(private readonly tokenizer: Tokenizer) {}

  /** Feeds the next CoT token; returns how the text ends at the boundary after it (null: go on). */
  push(id: number): StopMatch {
    // Ids outside the vocabulary decode to nothing (Tokenizer.decode skips them): the text, and
    // so the answer, stay as they were.
    if (this.tokenizer.idToToken(id) !== undefined) {
      this.tail.push(id);
      if (this.tail.length > TAIL_TOKENS) this.tail.shift();
      const alone = decodedAlone(this.tokenizer, id);
      const before = alone.length >= 2 ? alone.at(-2)! : this.lastChar;
      const mayEnd = alone === '' || alone.endsWith(PHRASE_END) || (alone.endsWith(SPACE) && (before === null || before === PHRASE_END));
      this.lastMatch = mayEnd ? stopMatchOf(this.tokenizer.decode(this.tail)) : null;
      this.lastChar = alone === '' ? null : alone.at(-1)!;
    }
    if (this.lastMatch !== null && this.firstStop < 0) {
      this.firstStop = this.pushed;
      this.firstMatch = this.lastMatch;
    }
    this.pushed++;
    return this.lastMatch;
  }

  /** The end of the decoded CoT so far (its first few characters may differ from the whole text's). */
  get text(): string {
    return this.tokenizer.decode(this.tail);
  }

  /** Tokens pushed so far. */
  get length(): number {
    return this.pushed;
  }

  /** Index of the first token after which the text ended on the phrase, or -1. */
  get stoppedAt(): number {
    return this.firstStop;
  }

  /** How the text ended at that first stop (null when it has not stopped). */
  get stopMatch(): StopMatch {
    return this.firstMatch;
  }

  /** Ids held in the tail now (at most TAIL_TOKENS). */
  get tailLength(): number {
    return this.tail.length;
  }
}

/**
 * The answer prefill for a finished CoT, so that the text always reads
 * `… The final answer is: \boxed{`:
 * - stopped on the phrase with its space → `\boxed{`;
 * - stopped on the phrase without it → ` \boxed{` (a byte-level tokenizer then gets its usual
 *   `" \\" "boxed" "{"`, the same ids as if the model had written them);
 * - reached the length limit → `The final answer is: \boxed{`, after a space unless the CoT
 *   already ends in whitespace (the prompt itself ends in `Assistant:` with no space).
 *
 * `cotText` is the decoded CoT, or any end of it that holds the phrase (`StopDetector.text`).
 */
export function chooseAnswerPrefill(cotText: string, stoppedEarly: boolean): string {
  if (stoppedEarly) {
    const match = stopMatchOf(cotText);
    if (match === null) throw new Error(`chooseAnswerPrefill: the CoT is marked stopped but does not end with ${JSON.stringify(STOP_PHRASE)}`);
    return match === 'with-space' ? PREFILL_STOPPED : ` ${PREFILL_STOPPED}`;
  }
  return /\s$/.test(cotText) ? PREFILL_AT_LIMIT : ` ${PREFILL_AT_LIMIT}`;
}
