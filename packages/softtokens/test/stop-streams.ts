/**
 * Random token streams for testing the stop detector against its definition, shared by the
 * built-in tokenizer's tests and the real-tokenizer tests. Uniformly random ids almost never
 * spell the stop phrase, so streams are built from pieces that do: encodings of the phrase and
 * its parts, with and without the space, the phrase spelled one character per token, special tokens, single UTF-8 bytes that split a
 * character across tokens, ids outside the vocabulary, and random ids in between.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import type { Tokenizer } from '@softgrad/transformer';
import { StopDetector, naiveStopMatch, type StopMatch } from '../src/stop.js';

const FRAGMENTS = [
  ' The final answer is:', 'The final answer is: ', ' The final answer is: \\boxed{', 'The final answer', ' final answer',
  ' answer', ' is', 'is', ':', ': ', ' ', '  ', 'is:', 'answer is:', '.', ' .', " 's", " ' ", ' n\'t', ',', '\n', ' So 3 * 5 = 15',
  ' é', '日本', '😀', 'ü:', ' \\boxed{', '}',
];

/** GPT-2's byte → printable character table, used by byte-level BPE vocabularies (Llama 3, Qwen). */
function byteLevelChars(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const table: string[] = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCharCode(printable.includes(b) ? b : 256 + extra++);
  return table;
}

/** Ids of single-byte tokens for bytes ≥ 0x80 (pieces of multi-byte characters), where the vocabulary has them. */
function highByteIds(tokenizer: Tokenizer): number[] {
  const chars = byteLevelChars();
  const ids: number[] = [];
  for (let b = 0x80; b < 0x100; b++) {
    const id = tokenizer.tokenToId(chars[b]!);
    if (id !== undefined) ids.push(id);
  }
  return ids;
}

/** An arbitrary stream of token ids for `tokenizer`, rich in (near-)occurrences of the stop phrase. */
export function stopStream(tokenizer: Tokenizer, maxPieces = 30): fc.Arbitrary<number[]> {
  // Fragments a (strict) tokenizer cannot encode, such as 'é' for the built-in one, are left out.
  const fragmentIds = FRAGMENTS.flatMap((f) => {
    try {
      return [tokenizer.encode(f)];
    } catch {
      return [];
    }
  });
  // The phrase one character per token: the longest spelling the detector's tail must hold.
  fragmentIds.push([...' The final answer is: '].flatMap((ch) => tokenizer.encode(ch)));
  const specials = [tokenizer.bosId, tokenizer.eosId, tokenizer.padId].filter((id): id is number => id !== undefined);
  const bytes = highByteIds(tokenizer);
  const pieces: fc.Arbitrary<number[]>[] = [
    fc.constantFrom(...fragmentIds),
    fc.integer({ min: 0, max: tokenizer.vocabSize - 1 }).map((id) => [id]),
    fc.constant([tokenizer.vocabSize + 3]),
  ];
  if (specials.length > 0) pieces.push(fc.constantFrom(...specials).map((id) => [id]));
  if (bytes.length > 0) pieces.push(fc.array(fc.constantFrom(...bytes), { minLength: 1, maxLength: 4 }));
  return fc
    .array(fc.oneof({ weight: 5, arbitrary: pieces[0]! }, ...pieces.slice(1).map((arbitrary) => ({ weight: 1, arbitrary }))), { maxLength: maxPieces })
    .map((parts) => parts.flat());
}

/** What the detector said at each boundary of `ids`. */
export function detectorMatches(tokenizer: Tokenizer, ids: readonly number[]): StopMatch[] {
  const detector = new StopDetector(tokenizer);
  return ids.map((id) => detector.push(id));
}

/** The definition at each boundary: decode everything so far and look at its end. */
export function naiveMatches(tokenizer: Tokenizer, ids: readonly number[]): StopMatch[] {
  return ids.map((_, i) => naiveStopMatch(tokenizer, ids.slice(0, i + 1)));
}

/**
 * Property: the detector and the definition agree at every boundary of every stream. Returns
 * how many boundaries matched each way, so callers can check the streams were not vacuous.
 */
export function checkDetectorAgainstNaive(tokenizer: Tokenizer, numRuns: number): { withSpace: number; withoutSpace: number } {
  const seen = { withSpace: 0, withoutSpace: 0 };
  fc.assert(
    fc.property(stopStream(tokenizer), (ids) => {
      const expected = naiveMatches(tokenizer, ids);
      expect(detectorMatches(tokenizer, ids)).toEqual(expected);
      for (const m of expected) {
        if (m === 'with-space') seen.withSpace++;
        if (m === 'without-space') seen.withoutSpace++;
      }
    }),
    { numRuns },
  );
  return seen;
}
