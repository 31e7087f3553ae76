// Tokenizers behind one interface: a real checkpoint's tokenizer.json through
// @huggingface/tokenizers, and the built-in character-level tokenizer of the arithmetic
// task, which saves itself as a tokenizer.json so that it loads through the same path.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as hfTokenizers from '@huggingface/tokenizers';
import { writeFileAtomic } from './atomic.js';
import { parseJsonStrict } from './json.js';

// The package's .d.ts files import each other without extensions, which NodeNext
// resolution cannot follow, so its types arrive as `any`; this is the part we use.
interface HfLibraryTokenizer {
  model: { vocab: string[] } | null;
  encode(text: string, options?: { add_special_tokens?: boolean }): { ids: number[] };
  decode(ids: number[], options?: { skip_special_tokens?: boolean }): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
  get_added_tokens_decoder(): Map<number, { content: string; special: boolean }>;
}
const HfLibraryTokenizer = hfTokenizers.Tokenizer as new (tokenizer: object, config: object) => HfLibraryTokenizer;

export interface EncodeOptions {
  /**
   * Apply the tokenizer's post-processor (for Llama 3 and the character tokenizer: put
   * BOS in front). Default false: callers assemble prompts from `bosId` etc. themselves.
   */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave out special tokens (pad, bos, eos, unk, ...). Default false. */
  skipSpecialTokens?: boolean;
}

export interface TokenizerOptions {
  /**
   * Strict (the default): a character the tokenizer cannot encode is an error naming it.
   * Otherwise it becomes the unknown token, where the tokenizer has one; a tokenizer
   * without one still refuses, since the only alternative is dropping text silently.
   */
  strict?: boolean;
}

export interface Tokenizer {
  /** One more than the largest token id (the embedding needs at least this many rows). */
  readonly vocabSize: number;
  /** Whether unencodable characters are errors (see `TokenizerOptions`). */
  readonly strict: boolean;
  /** Throws, naming the character, when text cannot be encoded (see `strict`). */
  encode(text: string, options?: EncodeOptions): number[];
  /** Ids the tokenizer does not know (e.g. padding rows of a larger embedding) are skipped. */
  decode(ids: readonly number[], options?: DecodeOptions): string;
  readonly bosId?: number;
  readonly eosId?: number;
  readonly padId?: number;
  readonly unkId?: number;
  /** Special token text → id. */
  readonly specialTokens: ReadonlyMap<string, number>;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `"☃" (U+2603)`: a character as a reader can find it, control characters included. */
export function describeCharacter(ch: string): string {
  const cp = ch.codePointAt(0) ?? 0;
  return `${JSON.stringify(ch)} (U+${cp.toString(16).toUpperCase().padStart(4, '0')})`;
}

function unencodable(source: string, text: string, index: number, ch: string, why: string): Error {
  const from = Math.max(0, index - 20);
  const context = `${from > 0 ? '…' : ''}${text.slice(from, index + 20)}${index + 20 < text.length ? '…' : ''}`;
  return new Error(
    `${source}: cannot encode ${describeCharacter(ch)} at character ${index} of ${JSON.stringify(context)}: ${why}`,
  );
}

function checkIds(ids: readonly number[], where: string): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isSafeInteger(id)) throw new Error(`${where}: token id at position ${i} is not an integer: ${String(id)}`);
  }
}

// ---------------------------------------------------------------------------------------
// Hugging Face tokenizer.json

/** tokenizer_config.json names special tokens as strings or as AddedToken objects. */
function specialTokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (isRecord(value) && typeof value.content === 'string') return value.content;
  return undefined;
}

type Probe = 'ok' | 'unknown' | 'missing';

class HfTokenizer implements Tokenizer {
  readonly bosId?: number;
  readonly eosId?: number;
  readonly padId?: number;
  readonly unkId?: number;
  readonly specialTokens: ReadonlyMap<string, number>;
  private readonly unkText: string | undefined;
  // Added tokens by first UTF-16 unit, longest first (the library matches them that way).
  private readonly addedByFirst = new Map<string, string[]>();
  // Each distinct character is probed once.
  private readonly probed = new Map<string, Probe>();

  constructor(
    private readonly lib: HfLibraryTokenizer,
    tokenizerConfig: Record<string, unknown>,
    readonly vocabSize: number,
    unkText: string | undefined,
    private readonly source: string,
    configSource: string,
    readonly strict: boolean,
  ) {
    const specials = new Map<string, number>();
    for (const [id, token] of lib.get_added_tokens_decoder()) {
      if (token.special) specials.set(token.content, id);
    }
    for (const t of [...lib.get_added_tokens_decoder().values()].map((a) => a.content).sort((x, y) => y.length - x.length)) {
      const list = this.addedByFirst.get(t[0]!) ?? [];
      list.push(t);
      this.addedByFirst.set(t[0]!, list);
    }
    const idOf = (key: string): number | undefined => {
      const raw = tokenizerConfig[key];
      if (raw === undefined || raw === null) return undefined;
      const text = specialTokenText(raw);
      if (text === undefined) throw new Error(`${configSource}: "${key}" must be a token string or an AddedToken object, got ${JSON.stringify(raw)}`);
      const id = lib.token_to_id(text);
      if (id === undefined) throw new Error(`${configSource}: "${key}" is ${JSON.stringify(text)}, which is not in the vocabulary of ${source}`);
      if (!specials.has(text)) specials.set(text, id);
      return id;
    };
    this.bosId = idOf('bos_token');
    this.eosId = idOf('eos_token');
    this.padId = idOf('pad_token');
    this.unkText = unkText ?? specialTokenText(tokenizerConfig.unk_token);
    this.unkId = idOf('unk_token') ?? (this.unkText === undefined ? undefined : lib.token_to_id(this.unkText));
    this.specialTokens = specials;
  }

  /** How `ch` encodes on its own: fine, as the unknown token, or not at all. */
  private probe(ch: string): Probe {
    let result = this.probed.get(ch);
    if (result !== undefined) return result;
    const { ids } = this.lib.encode(ch, { add_special_tokens: false });
    if (ids.some((id) => typeof id !== 'number')) result = 'missing';
    else if (this.unkId !== undefined && ids.includes(this.unkId)) result = 'unknown';
    // Tokenizers that split on whitespace drop it by design; any other character that
    // vanishes was dropped for want of a token.
    else if (ids.length === 0 && !/^\s$/u.test(ch)) result = 'missing';
    else result = 'ok';
    this.probed.set(ch, result);
    return result;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const { ids } = this.lib.encode(text, { add_special_tokens: options.addSpecialTokens ?? false });
    // Added tokens written out in the text (special tokens) are encoded as such; the
    // characters between them must each be encodable.
    for (let i = 0; i < text.length;) {
      const added = this.addedByFirst.get(text[i]!)?.find((t) => text.startsWith(t, i));
      if (added !== undefined) {
        i += added.length;
        continue;
      }
      const ch = String.fromCodePoint(text.codePointAt(i)!);
      const result = this.probe(ch);
      if (result === 'missing') throw unencodable(this.source, text, i, ch, 'no token for it, and the tokenizer has no unknown token');
      if (result === 'unknown' && this.strict) {
        throw unencodable(this.source, text, i, ch, 'not in the vocabulary (strict tokenizer; opt out to map it to the unknown token)');
      }
      i += ch.length;
    }
    // A text can fail where each character alone encodes (a WordPiece word too long).
    if (ids.some((id) => typeof id !== 'number')) {
      throw new Error(`${this.source}: cannot encode ${JSON.stringify(text.slice(0, 40))}: part of it has no token and the tokenizer has no unknown token`);
    }
    if (this.strict && this.unkId !== undefined && ids.includes(this.unkId) && (this.unkText === undefined || !text.includes(this.unkText))) {
      throw new Error(`${this.source}: cannot encode ${JSON.stringify(text.slice(0, 40))}: part of it became the unknown token (strict tokenizer)`);
    }
    return ids;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    checkIds(ids, `${this.source}: decode`);
    const known = ids.filter((id) => this.lib.id_to_token(id) !== undefined);
    if (known.length === 0) return '';
    return this.lib.decode(known, { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  tokenToId(token: string): number | undefined {
    return this.lib.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return Number.isSafeInteger(id) ? this.lib.id_to_token(id) : undefined;
  }
}

// What the library can build (its create_* functions); anything else it would reject with
// a bare "Unknown ... type", or worse, accept and misread.
const MODEL_TYPES = ['BPE', 'WordPiece', 'Unigram'] as const;
const COMPONENTS = {
  normalizer: {
    sequence: 'normalizers',
    types: ['BertNormalizer', 'Precompiled', 'Sequence', 'Replace', 'NFC', 'NFD', 'NFKC', 'NFKD', 'Strip', 'StripAccents', 'Lowercase', 'Prepend'],
  },
  pre_tokenizer: {
    sequence: 'pretokenizers',
    types: ['BertPreTokenizer', 'Sequence', 'Whitespace', 'WhitespaceSplit', 'Metaspace', 'ByteLevel', 'Split', 'Punctuation', 'Digits', 'Replace', 'FixedLength'],
  },
  post_processor: {
    sequence: 'processors',
    types: ['TemplateProcessing', 'ByteLevel', 'BertProcessing', 'RobertaProcessing', 'Sequence'],
  },
  decoder: {
    sequence: 'decoders',
    types: ['ByteLevel', 'WordPiece', 'Metaspace', 'BPEDecoder', 'CTC', 'Sequence', 'Replace', 'Fuse', 'Strip', 'ByteFallback'],
  },
} as const;

function short(value: unknown): string {
  let s: string | undefined;
  try {
    s = JSON.stringify(value);
  } catch {
    s = undefined;
  }
  s ??= String(value);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function checkComponent(kind: keyof typeof COMPONENTS, value: unknown, path: string, fail: (m: string) => never): void {
  if (value === undefined || value === null) return;
  if (!isRecord(value)) fail(`"${path}" must be an object or null, got ${short(value)}`);
  const { types, sequence } = COMPONENTS[kind];
  if (typeof value.type !== 'string') fail(`"${path}" has no "type" (expected one of ${types.join(', ')})`);
  if (!(types as readonly string[]).includes(value.type)) fail(`"${path}.type": unsupported ${short(value.type)} (supported: ${types.join(', ')})`);
  if (value.type === 'Sequence') {
    const list = value[sequence];
    if (!Array.isArray(list)) fail(`"${path}.${sequence}" must be a list, got ${short(list)}`);
    list.forEach((c, i) => checkComponent(kind, c, `${path}.${sequence}[${i}]`, fail));
  }
}

const isTokenId = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * Checks the parts of a tokenizer.json the library would otherwise trip over with a raw
 * TypeError or silently misread (duplicate or negative ids, an empty vocabulary, merges
 * of unknown tokens, unknown component types). Returns the vocabulary size (largest id + 1)
 * and the model's unknown token.
 */
function validateTokenizerJson(json: Record<string, unknown>, fail: (m: string) => never): { vocabSize: number; unk: string | undefined } {
  const model = json.model;
  if (!isRecord(model)) fail(`"model" must be an object, got ${short(model)}`);
  const type = model.type;
  if (type === undefined) fail(`"model.type" is missing (expected one of ${MODEL_TYPES.join(', ')})`);
  if (!(MODEL_TYPES as readonly unknown[]).includes(type)) fail(`"model.type": unsupported ${short(type)} (supported: ${MODEL_TYPES.join(', ')})`);
  const tokenOf = new Map<number, string>();
  const ids = new Map<string, number>();
  const add = (token: string, id: number, where: string) => {
    const other = tokenOf.get(id);
    if (other !== undefined) fail(`${where}: tokens ${JSON.stringify(other)} and ${JSON.stringify(token)} both have id ${id}`);
    tokenOf.set(id, token);
    ids.set(token, id);
  };
  let unk: string | undefined;
  if (type === 'Unigram') {
    const vocab = model.vocab;
    if (!Array.isArray(vocab)) fail(`"model.vocab" must be a list of [token, score] pairs, got ${short(vocab)}`);
    vocab.forEach((entry, i) => {
      if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[0] !== 'string' || typeof entry[1] !== 'number' || !Number.isFinite(entry[1])) {
        fail(`"model.vocab[${i}]" must be a [token, finite score] pair, got ${short(entry)}`);
      }
      if (ids.has(entry[0])) fail(`"model.vocab[${i}]": token ${JSON.stringify(entry[0])} appears twice`);
      add(entry[0], i, `"model.vocab[${i}]"`);
    });
    const unkId = model.unk_id;
    if (unkId !== undefined && unkId !== null) {
      if (!isTokenId(unkId) || unkId >= vocab.length) fail(`"model.unk_id" must be an id below ${vocab.length}, got ${short(unkId)}`);
      unk = tokenOf.get(unkId);
    }
  } else {
    const vocab = model.vocab;
    if (!isRecord(vocab)) fail(`"model.vocab" must be an object of token → id, got ${short(vocab)}`);
    for (const [token, id] of Object.entries(vocab)) {
      if (!isTokenId(id)) fail(`"model.vocab": token ${JSON.stringify(token)} has id ${short(id)}; expected a non-negative integer`);
      add(token, id, '"model.vocab"');
    }
    const unkToken = model.unk_token;
    if (unkToken !== undefined && unkToken !== null) {
      if (typeof unkToken !== 'string') fail(`"model.unk_token" must be a string or null, got ${short(unkToken)}`);
      if (!ids.has(unkToken)) fail(`"model.unk_token" ${JSON.stringify(unkToken)} is not in the vocabulary`);
      unk = unkToken;
    } else if (type === 'WordPiece') {
      fail('"model.unk_token" is missing (WordPiece needs one)');
    }
    if (type === 'BPE') {
      const merges = model.merges;
      if (!Array.isArray(merges)) fail(`"model.merges" must be a list, got ${short(merges)}`);
      const prefix = typeof model.continuing_subword_prefix === 'string' ? model.continuing_subword_prefix : '';
      merges.forEach((m, i) => {
        let pair: [string, string];
        if (typeof m === 'string') {
          const parts = m.split(' ');
          if (parts.length !== 2 || parts[0] === '' || parts[1] === '') fail(`"model.merges[${i}]" must be two tokens separated by one space, got ${short(m)}`);
          pair = [parts[0]!, parts[1]!];
        } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') {
          pair = [m[0], m[1]];
        } else {
          fail(`"model.merges[${i}]" must be "a b" or ["a", "b"], got ${short(m)}`);
        }
        const merged = pair[0] + (prefix && pair[1].startsWith(prefix) ? pair[1].slice(prefix.length) : pair[1]);
        for (const t of [...pair, merged]) {
          if (!ids.has(t)) fail(`"model.merges[${i}]" (${short(m)}) needs token ${JSON.stringify(t)}, which is not in the vocabulary`);
        }
      });
    }
  }
  if (ids.size === 0) fail('"model.vocab" is empty');

  const added = json.added_tokens;
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added)) fail(`"added_tokens" must be a list, got ${short(added)}`);
    const addedIds = new Map<number, string>();
    const addedTexts = new Set<string>();
    added.forEach((t, i) => {
      const where = `"added_tokens[${i}]"`;
      if (!isRecord(t)) fail(`${where} must be an object, got ${short(t)}`);
      if (!isTokenId(t.id)) fail(`${where}: "id" must be a non-negative integer, got ${short(t.id)}`);
      if (typeof t.content !== 'string' || t.content === '') fail(`${where}: "content" must be a non-empty string, got ${short(t.content)}`);
      if (t.special !== undefined && typeof t.special !== 'boolean') fail(`${where}: "special" must be true or false, got ${short(t.special)}`);
      if (addedIds.has(t.id)) fail(`${where}: id ${t.id} is also the id of added token ${JSON.stringify(addedIds.get(t.id))}`);
      if (addedTexts.has(t.content)) fail(`${where}: ${JSON.stringify(t.content)} is added twice`);
      const inVocab = tokenOf.get(t.id);
      if (inVocab !== undefined && inVocab !== t.content) fail(`${where}: ${JSON.stringify(t.content)} has id ${t.id}, which the vocabulary gives to ${JSON.stringify(inVocab)}`);
      const vocabId = ids.get(t.content);
      if (vocabId !== undefined && vocabId !== t.id) fail(`${where}: ${JSON.stringify(t.content)} has id ${t.id} but ${vocabId} in the vocabulary`);
      addedIds.set(t.id, t.content);
      addedTexts.add(t.content);
      tokenOf.set(t.id, t.content);
    });
  }
  for (const kind of Object.keys(COMPONENTS) as (keyof typeof COMPONENTS)[]) checkComponent(kind, json[kind], kind, fail);
  let largest = -1;
  for (const id of tokenOf.keys()) if (id > largest) largest = id; // a spread of 150k ids overflows the stack
  return { vocabSize: largest + 1, unk };
}

/** Builds a tokenizer from parsed tokenizer.json / tokenizer_config.json objects. */
export function hfTokenizerFromJson(
  tokenizerJson: unknown,
  tokenizerConfig: unknown,
  source: string,
  options: TokenizerOptions & { configSource?: string } = {},
): Tokenizer {
  if (!isRecord(tokenizerJson)) throw new Error(`${source}: tokenizer.json must be a JSON object`);
  const configSource = options.configSource ?? `${source} (tokenizer_config.json)`;
  const config = tokenizerConfig === undefined || tokenizerConfig === null ? {} : tokenizerConfig;
  if (!isRecord(config)) throw new Error(`${configSource}: tokenizer_config.json must be a JSON object`);
  const fail = (message: string): never => {
    throw new Error(`${source}: ${message}`);
  };
  const { vocabSize, unk } = validateTokenizerJson(tokenizerJson, fail);
  let lib: HfLibraryTokenizer;
  try {
    // The library iterates added_tokens unconditionally; absent means none.
    lib = new HfLibraryTokenizer({ added_tokens: [], ...tokenizerJson }, config);
  } catch (e) {
    throw new Error(`${source}: unsupported or invalid tokenizer: ${(e as Error).message}`, { cause: e });
  }
  if (!lib.model) throw new Error(`${source}: tokenizer.json has no model`);
  return new HfTokenizer(lib, config, vocabSize, unk, source, configSource, options.strict ?? true);
}

async function readJson(path: string, optional: boolean): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if (optional && (e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`${path}: cannot read: ${(e as Error).message}`, { cause: e });
  }
  return parseJsonStrict(text, path);
}

/** Loads `dir/tokenizer.json` (and `dir/tokenizer_config.json` when present). */
export async function loadHfTokenizer(dir: string, options: TokenizerOptions = {}): Promise<Tokenizer> {
  const path = join(dir, 'tokenizer.json');
  const configPath = join(dir, 'tokenizer_config.json');
  const json = await readJson(path, false);
  const config = await readJson(configPath, true);
  return hfTokenizerFromJson(json, config, path, { ...options, configSource: configPath });
}

// ---------------------------------------------------------------------------------------
// Built-in character-level tokenizer

export interface CharSpecialTokens {
  pad: string;
  bos: string;
  eos: string;
  unk: string;
}

export const DEFAULT_CHAR_SPECIAL_TOKENS: Readonly<CharSpecialTokens> = {
  pad: '<|pad|>',
  bos: '<|bos|>',
  eos: '<|eos|>',
  unk: '<|unk|>',
};

export interface CharTokenizerOptions {
  /** Characters of the vocabulary. */
  alphabet?: string | Iterable<string>;
  /** Texts whose characters join the vocabulary. */
  corpus?: Iterable<string>;
  specialTokens?: Partial<CharSpecialTokens>;
  /** Further special tokens, after pad/bos/eos/unk and before the characters. */
  extraSpecialTokens?: readonly string[];
  /** Default true: a character outside the vocabulary is an error, not unk (see `TokenizerOptions`). */
  strict?: boolean;
}

/**
 * One token per Unicode code point; special tokens written out in the text are
 * recognised as such (longest match first, like Hugging Face's added tokens); a
 * character outside the vocabulary is an error (strict, the default) or becomes unk. Ids: pad, bos, eos, unk, extra special
 * tokens, then the characters in code-point order, so the same alphabet always gives
 * the same ids.
 */
export class CharTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number;
  readonly strict: boolean;
  readonly specialTokens: ReadonlyMap<string, number>;
  readonly names: Readonly<CharSpecialTokens>;
  /** Token text by id. */
  readonly vocab: readonly string[];
  private readonly charIds: Map<string, number>;
  // Specials by first UTF-16 unit, longest first, for leftmost-longest matching.
  private readonly specialsByFirst: Map<string, string[]>;

  constructor(options: CharTokenizerOptions = {}) {
    const names: CharSpecialTokens = { ...DEFAULT_CHAR_SPECIAL_TOKENS, ...(options.specialTokens ?? {}) };
    const specialList = [names.pad, names.bos, names.eos, names.unk, ...(options.extraSpecialTokens ?? [])];
    const seen = new Set<string>();
    for (const s of specialList) {
      if (typeof s !== 'string' || s.length === 0) throw new Error(`CharTokenizer: special tokens must be non-empty strings, got ${JSON.stringify(s)}`);
      if (seen.has(s)) throw new Error(`CharTokenizer: special token ${JSON.stringify(s)} given twice`);
      seen.add(s);
    }
    const chars = new Set<string>();
    const addChars = (text: string | Iterable<string>) => {
      for (const piece of text) for (const ch of piece) chars.add(ch);
    };
    if (options.alphabet !== undefined) addChars(options.alphabet);
    for (const text of options.corpus ?? []) addChars(text);
    for (const ch of chars) {
      if (seen.has(ch)) throw new Error(`CharTokenizer: character ${JSON.stringify(ch)} is also a special token`);
    }
    const sortedChars = [...chars].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
    this.vocab = [...specialList, ...sortedChars];
    this.vocabSize = this.vocab.length;
    this.names = names;
    this.specialTokens = new Map(specialList.map((s, i) => [s, i]));
    this.padId = 0;
    this.bosId = 1;
    this.eosId = 2;
    this.unkId = 3;
    this.strict = options.strict ?? true;
    this.charIds = new Map(sortedChars.map((c, i) => [c, specialList.length + i]));
    this.specialsByFirst = new Map();
    for (const s of [...specialList].sort((a, b) => b.length - a.length)) {
      const list = this.specialsByFirst.get(s[0]) ?? [];
      list.push(s);
      this.specialsByFirst.set(s[0], list);
    }
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids: number[] = options.addSpecialTokens ? [this.bosId] : [];
    let i = 0;
    while (i < text.length) {
      const candidates = this.specialsByFirst.get(text[i]);
      const special = candidates?.find((s) => text.startsWith(s, i));
      if (special !== undefined) {
        ids.push(this.specialTokens.get(special)!);
        i += special.length;
        continue;
      }
      const cp = text.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      // A lone surrogate is one unit; String.fromCodePoint gives it back unchanged.
      const width = cp > 0xffff ? 2 : 1;
      const id = this.charIds.get(ch);
      if (id === undefined && this.strict) {
        throw unencodable('character tokenizer', text, i, ch, 'not in the vocabulary (strict tokenizer; opt out to map it to the unknown token)');
      }
      ids.push(id ?? this.unkId);
      i += width;
    }
    return ids;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    checkIds(ids, 'CharTokenizer.decode');
    let out = '';
    for (const id of ids) {
      const token = this.vocab[id];
      if (token === undefined || id < 0) continue;
      if (options.skipSpecialTokens && this.specialTokens.has(token)) continue;
      out += token;
    }
    return out;
  }

  tokenToId(token: string): number | undefined {
    return this.specialTokens.get(token) ?? this.charIds.get(token);
  }

  idToToken(id: number): string | undefined {
    return Number.isSafeInteger(id) && id >= 0 ? this.vocab[id] : undefined;
  }

  /**
   * This tokenizer as a Hugging Face tokenizer.json: a BPE model with no merges (so each
   * character is its own token), a pre-tokenizer isolating every character, special
   * tokens as added tokens, BOS added by a template post-processor, and a Fuse decoder
   * that concatenates token texts.
   */
  toTokenizerJson(): Record<string, unknown> {
    const vocab: Record<string, number> = Object.create(null);
    this.vocab.forEach((t, i) => (vocab[t] = i));
    const specials = [...this.specialTokens];
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: specials.map(([content, id]) => ({
        id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
      })),
      normalizer: null,
      pre_tokenizer: { type: 'Split', pattern: { Regex: '[\\s\\S]' }, behavior: 'Isolated', invert: false },
      post_processor: {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: this.names.bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [
          { SpecialToken: { id: this.names.bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
          { SpecialToken: { id: this.names.bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } },
        ],
        special_tokens: { [this.names.bos]: { id: this.names.bos, ids: [this.bosId], tokens: [this.names.bos] } },
      },
      decoder: { type: 'Fuse' },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: this.names.unk,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: false,
        vocab,
        merges: [],
      },
    };
  }

  toTokenizerConfigJson(): Record<string, unknown> {
    return {
      tokenizer_class: 'PreTrainedTokenizerFast',
      bos_token: this.names.bos,
      eos_token: this.names.eos,
      pad_token: this.names.pad,
      unk_token: this.names.unk,
      // Character tokens must come back exactly; the default clean-up would turn "a ." into "a.".
      clean_up_tokenization_spaces: false,
      model_max_length: 1_000_000,
    };
  }

  /** Writes dir/tokenizer.json and dir/tokenizer_config.json, each atomically. */
  async save(dir: string): Promise<void> {
    await writeFileAtomic(join(dir, 'tokenizer.json'), `${JSON.stringify(this.toTokenizerJson(), null, 2)}\n`);
    await writeFileAtomic(join(dir, 'tokenizer_config.json'), `${JSON.stringify(this.toTokenizerConfigJson(), null, 2)}\n`);
  }
}

export function createCharTokenizer(options: CharTokenizerOptions = {}): CharTokenizer {
  return new CharTokenizer(options);
}
