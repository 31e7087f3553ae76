import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createCharTokenizer, hfTokenizerFromJson, loadHfTokenizer, type Tokenizer } from '../src/tokenizer.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'softgrad-tok-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const ALPHABET = '0123456789+-*/=()#., \nabcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ?$';

describe('character tokenizer', () => {
  // Lenient, so that unknown characters exercise the unk path and the round trip below.
  const tok = createCharTokenizer({ alphabet: ALPHABET, corpus: ['é'], strict: false });

  it('gives special tokens the first ids and characters the rest in code-point order', () => {
    expect([tok.padId, tok.bosId, tok.eosId, tok.unkId]).toEqual([0, 1, 2, 3]);
    expect(tok.specialTokens.get('<|eos|>')).toBe(2);
    expect(tok.vocabSize).toBe(4 + new Set(ALPHABET).size + 1);
    expect(tok.idToToken(4)).toBe('\n');
    expect(tok.idToToken(tok.vocabSize - 1)).toBe('é');
  });

  it('encodes one id per character, recognises written special tokens and maps unknown characters to unk', () => {
    const ids = tok.encode('12+3<|eos|>%');
    expect(ids.map((i) => tok.idToToken(i))).toEqual(['1', '2', '+', '3', '<|eos|>', '<|unk|>']);
    expect(tok.encode('ab', { addSpecialTokens: true })[0]).toBe(tok.bosId);
    expect(tok.decode(tok.encode('What is 3+4?\n#### 7'))).toBe('What is 3+4?\n#### 7');
    expect(tok.decode([tok.bosId, ...tok.encode('x'), tok.eosId, tok.padId], { skipSpecialTokens: true })).toBe('x');
    expect(tok.decode([tok.bosId, 999, -1])).toBe('<|bos|>');
    expect(() => tok.decode([1.5])).toThrow(/not an integer/);
  });

  it('is strict by default: a character outside the vocabulary is an error naming it', () => {
    const strict = createCharTokenizer({ alphabet: ALPHABET });
    expect(strict.encode('7 apples and 77')).toHaveLength(15);
    expect(() => strict.encode('7 apples ☃ and 77')).toThrow(/cannot encode "☃" \(U\+2603\) at character 9 of "7 apples ☃ and 77": not in the vocabulary/);
    expect(() => strict.encode('a\u0000')).toThrow(/"\\u0000" \(U\+0000\)/);
  });

  it('saves as a Hugging Face tokenizer.json that loads back with identical encode and decode', async () => {
    await tok.save(dir);
    expect((await readdir(dir)).sort()).toEqual(['tokenizer.json', 'tokenizer_config.json']);
    const loaded = await loadHfTokenizer(dir, { strict: false });
    expect(loaded.vocabSize).toBe(tok.vocabSize);
    expect([loaded.padId, loaded.bosId, loaded.eosId, loaded.unkId]).toEqual([0, 1, 2, 3]);
    expect(new Map(loaded.specialTokens)).toEqual(new Map(tok.specialTokens));

    const piece = fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom(...ALPHABET, 'é') },
      { weight: 1, arbitrary: fc.constantFrom('<|bos|>', '<|eos|>', '<|pad|>', '<|unk|>', '<|', '|>', '<|eos', '%', '😀', '\u{10FFFF}', '\t') },
      { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 3 }) },
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 40 }), fc.boolean(), (pieces, addSpecialTokens) => {
        const text = pieces.join('');
        const ids = tok.encode(text, { addSpecialTokens });
        expect(loaded.encode(text, { addSpecialTokens })).toEqual(ids);
        expect(loaded.decode(ids)).toBe(tok.decode(ids));
        expect(loaded.decode(ids, { skipSpecialTokens: true })).toBe(tok.decode(ids, { skipSpecialTokens: true }));
      }),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -2, max: tok.vocabSize + 2 }), { maxLength: 30 }), fc.boolean(), (ids, skip) => {
        expect(loaded.decode(ids, { skipSpecialTokens: skip })).toBe(tok.decode(ids, { skipSpecialTokens: skip }));
      }),
      { numRuns: 200 },
    );
  });

  it('rejects clashing special tokens', () => {
    expect(() => createCharTokenizer({ alphabet: 'ab', specialTokens: { pad: 'a' } })).toThrow(/also a special token/);
    expect(() => createCharTokenizer({ specialTokens: { pad: '<|x|>', eos: '<|x|>' } })).toThrow(/given twice/);
  });
});

// A tiny Llama-3-style byte-level BPE tokenizer: 256 byte tokens, a few merges, the Llama 3
// split regex, ByteLevel pre-tokenizer and decoder, BOS added by a template.

function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const table: string[] = new Array(256);
  bs.forEach((b, i) => (table[b] = String.fromCharCode(cs[i])));
  return table;
}

const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function byteLevelFixture(): { json: Record<string, unknown>; config: Record<string, unknown> } {
  const byteChars = bytesToUnicode();
  const vocab: Record<string, number> = {};
  byteChars.forEach((c, b) => (vocab[c] = b));
  const merges = ['h e', 'l l', 'he ll', 'hell o', 'Ġ w', 'o r', 'Ġw or', 'Ġwor l', 'Ġworl d', '3 4', '1 2'];
  for (const m of merges) vocab[m.replace(' ', '')] = Object.keys(vocab).length;
  const bos = '<|begin_of_text|>';
  const eos = '<|end_of_text|>';
  const size = Object.keys(vocab).length;
  const added = [bos, eos].map((content, i) => ({
    id: size + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  }));
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: LLAMA3_SPLIT }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: 'Sequence',
      processors: [
        { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
          special_tokens: { [bos]: { id: bos, ids: [size], tokens: [bos] } },
        },
      ],
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: true, vocab, merges,
    },
  };
  const config = { bos_token: bos, eos_token: eos, clean_up_tokenization_spaces: false, tokenizer_class: 'PreTrainedTokenizerFast' };
  return { json, config };
}

describe('strict tokenizer.json loading', () => {
  // The character tokenizer's tokenizer.json without digits, and (optionally) without an unk token.
  function withoutDigits(unk: boolean): { json: Record<string, unknown>; config: Record<string, unknown> } {
    const tok = createCharTokenizer({ alphabet: 'abcdelnps ' });
    const json = tok.toTokenizerJson() as Record<string, unknown> & { model: Record<string, unknown> };
    if (!unk) {
      json.model = { ...json.model, unk_token: null };
    }
    const config = tok.toTokenizerConfigJson();
    if (!unk) delete config.unk_token;
    return { json, config };
  }

  it('refuses to drop or replace a character silently: the error names it', () => {
    for (const unk of [false, true]) {
      const { json, config } = withoutDigits(unk);
      const tok = hfTokenizerFromJson(json, config, 'mem/tokenizer.json');
      expect(tok.strict).toBe(true);
      expect(() => tok.encode('7 apples and 77')).toThrow(/mem\/tokenizer\.json: cannot encode "7" \(U\+0037\) at character 0 of "7 apples and 77"/);
      expect(tok.decode(tok.encode('apples and pans'))).toBe('apples and pans');
    }
    // Lenient: unk where there is one; without one, dropping text is still refused.
    const lenient = hfTokenizerFromJson(withoutDigits(true).json, withoutDigits(true).config, 'mem', { strict: false });
    expect(lenient.encode('7 a').map((i) => lenient.idToToken(i))).toEqual(['<|unk|>', ' ', 'a']);
    const noUnk = hfTokenizerFromJson(withoutDigits(false).json, withoutDigits(false).config, 'mem', { strict: false });
    expect(() => noUnk.encode('7 a')).toThrow(/cannot encode "7".*no token for it, and the tokenizer has no unknown token/);
  });

  it('names what is wrong with a malformed tokenizer.json instead of a raw TypeError', () => {
    const { json, config } = withoutDigits(true);
    const model = json.model as Record<string, unknown>;
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...json, model: null }, /"model" must be an object, got null/],
      [{ ...json, model: { ...model, type: undefined } }, /"model.type" is missing/],
      [{ ...json, model: { ...model, merges: 'a b' } }, /"model.merges" must be a list/],
      [{ ...json, model: { ...model, merges: ['a'] } }, /"model.merges\[0\]" must be two tokens separated by one space/],
      [{ ...json, model: { ...model, merges: ['a b'] } }, /"model.merges\[0\]" \("a b"\) needs token "ab", which is not in the vocabulary/],
      [{ ...json, model: { ...model, vocab: {}, unk_token: null } }, /"model.vocab" is empty/],
      [{ ...json, model: { ...model, vocab: { ...(model.vocab as object), a: -1 } } }, /token "a" has id -1; expected a non-negative integer/],
      [{ ...json, model: { ...model, vocab: { ...(model.vocab as object), a: 6 } } }, /"model.vocab": tokens "[ab]" and "[ab]" both have id 6/],
      [{ ...json, pre_tokenizer: { type: 'Mystery' } }, /"pre_tokenizer.type": unsupported "Mystery"/],
      [{ ...json, added_tokens: [{ id: 0, content: '<|pad|>', special: true }, { id: 0, content: '<|x|>' }] }, /"added_tokens\[1\]": id 0 is also the id of added token "<\|pad\|>"/],
    ];
    for (const [bad, message] of cases) expect(() => hfTokenizerFromJson(bad, config, 'mem/tokenizer.json')).toThrow(message);
    expect(() => hfTokenizerFromJson(json, { ...config, eos_token: '<|end|>' }, 'mem/tokenizer.json', { configSource: 'mem/tokenizer_config.json' }))
      .toThrow('mem/tokenizer_config.json: "eos_token" is "<|end|>", which is not in the vocabulary of mem/tokenizer.json');
  });
});

describe('Hugging Face tokenizer.json', () => {
  async function loadFixture(): Promise<Tokenizer> {
    const { json, config } = byteLevelFixture();
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(json));
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    return loadHfTokenizer(dir);
  }
  const tokens = (tok: Tokenizer, ids: number[]) => ids.map((i) => tok.idToToken(i));

  it('applies the pre-tokenizer split and the merges in rank order', async () => {
    const tok = await loadFixture();
    expect(tok.vocabSize).toBe(256 + 11 + 2);
    expect(tokens(tok, tok.encode('hello world'))).toEqual(['hello', 'Ġworld']);
    expect(tokens(tok, tok.encode('hello there'))).toEqual(['hello', 'Ġ', 't', 'he', 'r', 'e']);
    // The Llama 3 regex cuts digits into groups of at most three before BPE: "123" + "45",
    // so "3 4" (ranked above "1 2") cannot apply across the cut.
    expect(tokens(tok, tok.encode('12345'))).toEqual(['12', '3', '4', '5']);
    expect(tokens(tok, tok.encode('345'))).toEqual(['34', '5']);
  });

  it('knows its special tokens, adds BOS on request and skips specials on request', async () => {
    const tok = await loadFixture();
    expect(tok.bosId).toBe(267);
    expect(tok.eosId).toBe(268);
    expect(tok.specialTokens.get('<|end_of_text|>')).toBe(268);
    const ids = tok.encode('hello<|end_of_text|>', { addSpecialTokens: true });
    expect(tokens(tok, ids)).toEqual(['<|begin_of_text|>', 'hello', '<|end_of_text|>']);
    expect(tok.decode(ids)).toBe('<|begin_of_text|>hello<|end_of_text|>');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('hello');
    expect(tok.decode([])).toBe('');
    expect(tok.decode([259, 5000])).toBe('hello'); // ids past the vocabulary are skipped
  });

  it('round-trips any text through bytes', async () => {
    const tok = await loadFixture();
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (text) => {
        expect(tok.decode(tok.encode(text))).toBe(text);
      }),
      { numRuns: 200 },
    );
  });

  it('names the file when tokenizer.json is missing, not JSON or not a tokenizer', async () => {
    await expect(loadHfTokenizer(dir)).rejects.toThrow(join(dir, 'tokenizer.json'));
    await writeFile(join(dir, 'tokenizer.json'), '{"model": ');
    await expect(loadHfTokenizer(dir)).rejects.toThrow(/tokenizer\.json: not valid JSON/);
    await writeFile(join(dir, 'tokenizer.json'), '{"model": {"type": "Nonsense"}}');
    await expect(loadHfTokenizer(dir)).rejects.toThrow(/tokenizer\.json: "model.type": unsupported "Nonsense" \(supported: BPE, WordPiece, Unigram\)/);
    expect(() => hfTokenizerFromJson([], {}, 'mem')).toThrow('mem: tokenizer.json must be a JSON object');
  });

  it('works without a tokenizer_config.json', async () => {
    const { json } = byteLevelFixture();
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(json));
    const tok = await loadHfTokenizer(dir);
    expect(tok.bosId).toBeUndefined();
    expect(tokens(tok, tok.encode('hello'))).toEqual(['hello']);
    expect(tok.specialTokens.get('<|begin_of_text|>')).toBe(267);
  });
});
