// Tokenizers behind one interface: a real checkpoint's tokenizer.json through
// @huggingface/tokenizers, and the built-in character-level tokenizer of the arithmetic
// task, which saves itself as a tokenizer.json so that it loads through the same path.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as hfTokenizers from '@huggingface/tokenizers';
import { writeFileAtomic } from './safetensors.js';

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

export interface Tokenizer {
  /** One more than the largest token id (the embedding needs at least this many rows). */
  readonly vocabSize: number;
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

class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosId?: number;
  readonly padId?: number;
  readonly unkId?: number;
  readonly specialTokens: ReadonlyMap<string, number>;

  constructor(private readonly lib: HfLibraryTokenizer, tokenizerConfig: Record<string, unknown>, private readonly source: string) {
    this.vocabSize = lib.model?.vocab.length ?? 0;
    const specials = new Map<string, number>();
    for (const [id, token] of lib.get_added_tokens_decoder()) {
      if (token.special) specials.set(token.content, id);
    }
    const idOf = (key: string): number | undefined => {
      const text = specialTokenText(tokenizerConfig[key]);
      if (text === undefined) return undefined;
      const id = lib.token_to_id(text);
      if (id !== undefined && !specials.has(text)) specials.set(text, id);
      return id;
    };
    this.bosId = idOf('bos_token');
    this.eosId = idOf('eos_token');
    this.padId = idOf('pad_token');
    this.unkId = idOf('unk_token');
    this.specialTokens = specials;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const { ids } = this.lib.encode(text, { add_special_tokens: options.addSpecialTokens ?? false });
    // The library maps a token it cannot place to the model's unk id, which is undefined
    // when the model has none; an id list with holes would corrupt everything downstream.
    const hole = ids.findIndex((id) => typeof id !== 'number');
    if (hole >= 0) throw new Error(`${this.source}: cannot encode ${JSON.stringify(text.slice(0, 40))}: no id for a token and no unk token`);
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

/** Builds a tokenizer from parsed tokenizer.json / tokenizer_config.json objects. */
export function hfTokenizerFromJson(tokenizerJson: unknown, tokenizerConfig: unknown, source: string): Tokenizer {
  if (!isRecord(tokenizerJson)) throw new Error(`${source}: tokenizer.json must be a JSON object`);
  const config = tokenizerConfig === undefined || tokenizerConfig === null ? {} : tokenizerConfig;
  if (!isRecord(config)) throw new Error(`${source}: tokenizer_config.json must be a JSON object`);
  let lib: HfLibraryTokenizer;
  try {
    lib = new HfLibraryTokenizer(tokenizerJson, config);
  } catch (e) {
    throw new Error(`${source}: unsupported or invalid tokenizer: ${(e as Error).message}`, { cause: e });
  }
  if (!lib.model) throw new Error(`${source}: tokenizer.json has no model`);
  return new HfTokenizer(lib, config, source);
}

async function readJson(path: string, optional: boolean): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if (optional && (e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`${path}: cannot read: ${(e as Error).message}`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
}

/** Loads `dir/tokenizer.json` (and `dir/tokenizer_config.json` when present). */
export async function loadHfTokenizer(dir: string): Promise<Tokenizer> {
  const path = join(dir, 'tokenizer.json');
  const json = await readJson(path, false);
  const config = await readJson(join(dir, 'tokenizer_config.json'), true);
  return hfTokenizerFromJson(json, config, path);
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
}

/**
 * One token per Unicode code point; special tokens written out in the text are
 * recognised as such (longest match first, like Hugging Face's added tokens); a
 * character outside the vocabulary becomes unk. Ids: pad, bos, eos, unk, extra special
 * tokens, then the characters in code-point order, so the same alphabet always gives
 * the same ids.
 */
export class CharTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number;
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
      ids.push(this.charIds.get(ch) ?? this.unkId);
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
