import { describe, expect, it } from 'vitest';
import { hfTokenizerFromJson, type Tokenizer } from '@softgrad/transformer';
import { builtinTokenizer } from '../src/builtin.js';
import { PREFILL_AT_LIMIT, PREFILL_STOPPED, STOP_STRING, formatSupervisedTarget } from '../src/prompt.js';
import { STOP_PHRASE, StopDetector, chooseAnswerPrefill, stopMatchOf } from '../src/stop.js';
import { generateTask } from '../src/task.js';
import { checkDetectorAgainstNaive, detectorMatches } from './stop-streams.js';

const builtin = builtinTokenizer();
// The same vocabulary through the tokenizer.json path a saved model directory loads by.
const builtinFromJson = hfTokenizerFromJson(builtin.toTokenizerJson(), builtin.toTokenizerConfigJson(), 'built-in tokenizer.json');

/** A tokenizer that counts how many ids it was asked to decode. */
function countingDecodes(inner: Tokenizer): { tokenizer: Tokenizer; decodedIds: () => number; longestDecode: () => number } {
  let total = 0;
  let longest = 0;
  const tokenizer: Tokenizer = Object.assign(Object.create(inner) as Tokenizer, {
    decode(ids: readonly number[], options?: Parameters<Tokenizer['decode']>[1]) {
      total += ids.length;
      longest = Math.max(longest, ids.length);
      return inner.decode(ids, options);
    },
  });
  return { tokenizer, decodedIds: () => total, longestDecode: () => longest };
}

describe('stop rule', () => {
  it('is the phrase with or without its trailing space, at the very end of the text', () => {
    expect(STOP_PHRASE).toBe('The final answer is:');
    expect(stopMatchOf('x = 7. The final answer is: ')).toBe('with-space');
    expect(stopMatchOf('x = 7. The final answer is:')).toBe('without-space');
    expect(stopMatchOf('x = 7. The final answer is: \\')).toBeNull();
    expect(stopMatchOf('x = 7. The final answer is:  ')).toBeNull();
    expect(stopMatchOf('The final answer is')).toBeNull();
    expect(stopMatchOf('')).toBeNull();
  });

  it('chooses the prefill that makes the text read "The final answer is: \\boxed{"', () => {
    expect(chooseAnswerPrefill('So 7. The final answer is: ', true)).toBe(PREFILL_STOPPED);
    expect(chooseAnswerPrefill('So 7. The final answer is:', true)).toBe(` ${PREFILL_STOPPED}`);
    expect(chooseAnswerPrefill(' So 7.', false)).toBe(` ${PREFILL_AT_LIMIT}`);
    expect(chooseAnswerPrefill(' So 7.\n', false)).toBe(PREFILL_AT_LIMIT);
    expect(chooseAnswerPrefill(' So 7. ', false)).toBe(PREFILL_AT_LIMIT);
    // An empty CoT follows the prompt's "Assistant:", which has no space after it.
    expect(chooseAnswerPrefill('', false)).toBe(` ${PREFILL_AT_LIMIT}`);
    for (const [cot, stopped] of [['So 7. The final answer is: ', true], ['So 7. The final answer is:', true], ['So 7.', false]] as const) {
      expect((cot + chooseAnswerPrefill(cot, stopped)).endsWith('7. The final answer is: \\boxed{')).toBe(true);
    }
    expect(() => chooseAnswerPrefill('So 7.', true)).toThrow(/marked stopped but does not end with "The final answer is:"/);
  });
});

describe('stop detector with the built-in tokenizer', () => {
  it('stops on the one-token stop string and on the phrase spelled out without the space', () => {
    for (const tok of [builtin, builtinFromJson]) {
      const stopToken = tok.encode(STOP_STRING);
      expect(stopToken).toHaveLength(1);
      const cot = tok.encode(' 3 + 4 = 7.');
      expect(detectorMatches(tok, [...cot, ...stopToken]).at(-1)).toBe('with-space');
      const spelled = tok.encode(' 3 + 4 = 7. The final answer is:');
      const matches = detectorMatches(tok, spelled);
      expect(matches.at(-1)).toBe('without-space');
      expect(matches.slice(0, -1).every((m) => m === null)).toBe(true);
      const text = tok.decode(spelled);
      const prefill = chooseAnswerPrefill(text, true);
      expect(tok.decode(tok.encode(prefill))).toBe(' \\boxed{');
      expect(text + prefill).toBe(' 3 + 4 = 7. The final answer is: \\boxed{');
    }
  });

  it('stops every supervised target exactly where its CoT ends, as the old end-of-text test did', () => {
    for (const item of generateTask({ seed: 3, split: 'train', count: 40 })) {
      const target = formatSupervisedTarget(item.answer);
      const cot = target.slice(0, target.indexOf(STOP_STRING) + STOP_STRING.length);
      const ids = builtin.encode(cot);
      const detector = new StopDetector(builtin);
      ids.forEach((id) => detector.push(id));
      expect(detector.stoppedAt).toBe(ids.length - 1);
      expect(detector.stopMatch).toBe('with-space');
      expect(chooseAnswerPrefill(detector.text, true)).toBe(PREFILL_STOPPED);
    }
  });

  it('agrees with decoding the whole text at every token boundary (random streams)', () => {
    for (const tok of [builtin, builtinFromJson]) {
      const seen = checkDetectorAgainstNaive(tok, 300);
      // The streams really do reach the phrase, both ways.
      expect(seen.withSpace).toBeGreaterThan(20);
      expect(seen.withoutSpace).toBeGreaterThan(20);
    }
  });

  it('decodes at most the last 29 tokens, and only after tokens that can end the phrase', () => {
    const { tokenizer, decodedIds, longestDecode } = countingDecodes(builtin);
    const ids: number[] = [];
    for (const item of generateTask({ seed: 4, split: 'train', count: 100 })) ids.push(...builtin.encode(formatSupervisedTarget(item.answer)));
    for (let i = 0; i < 500; i++) ids.push(builtin.vocabSize + 7); // ids outside the vocabulary decode to nothing
    const detector = new StopDetector(tokenizer);
    let maxTail = 0;
    let stops = 0;
    for (const id of ids) {
      if (detector.push(id) !== null) stops++;
      maxTail = Math.max(maxTail, detector.tailLength);
    }
    expect(ids.length).toBeGreaterThan(3000);
    expect(detector.length).toBe(ids.length);
    expect(stops).toBeGreaterThanOrEqual(100);
    expect(maxTail).toBe(STOP_STRING.length + 8);
    expect(longestDecode()).toBe(STOP_STRING.length + 8);
    // Most tokens need no decode at all: far under one tail's worth of ids per token.
    expect(decodedIds() / ids.length).toBeLessThan(5);
  });
});
