/**
 * The loaders' own fuzz suite (seeded, so every run tries the same inputs): corrupted
 * model directories (model.safetensors, config.json, tokenizer.json, tokenizer_config.json)
 * and data files (GSM8K and multiple-choice JSONL), generated here from valid ones.
 *
 * Each variant is built to be either a corruption, which must give a clean error (an
 * Error, not a TypeError/RangeError from deep inside, whose message names the file and,
 * for data, the line), or harmless, which must load exactly as the original. Random byte
 * flips are also tried; they may give a valid but different file (a changed digit in
 * rope_theta, a changed letter in a question), which no loader can tell from an intended
 * edit: those are counted and printed, never accepted for what must match (weight shapes,
 * weights, references' numeric form).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@softgrad/tensor';
import {
  configToJson, initParams, loadHfTokenizer, loadModel, paramsToHost, parseConfig, saveModel, serializeSafetensors,
  type HostTensor, type TransformerConfig,
} from '@softgrad/transformer';
import { DataFileError, builtinTokenizer, loadChoiceSet, loadProblemSet, type ChoiceItem, type ProblemItem } from '@softgrad/softtokens';

const SEED = 20_251_201;
const rand = T.mulberry32(SEED);
const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const pick = <V>(xs: readonly V[]): V => xs[int(0, xs.length - 1)]!;

type Expectation = 'error' | 'harmless' | 'error or harmless' | 'anything clean';
type Verdict = 'clean error' | 'loaded correctly' | 'valid but different';

interface Tally {
  tried: number;
  'clean error': number;
  'loaded correctly': number;
  'valid but different': number;
  failures: string[];
  differences: Map<string, number>;
}

const tallies = new Map<string, Tally>();
function tally(kind: string): Tally {
  let t = tallies.get(kind);
  if (!t) tallies.set(kind, (t = { tried: 0, 'clean error': 0, 'loaded correctly': 0, 'valid but different': 0, failures: [], differences: new Map() }));
  return t;
}

// Errors from deep inside (a missing field read, a typed array too long) are not clean.
function cleanError(e: unknown, mustName: string): string | null {
  if (!(e instanceof Error)) return `threw a non-Error: ${String(e)}`;
  if (e instanceof TypeError || e instanceof RangeError || e instanceof SyntaxError || e instanceof ReferenceError) {
    return `raw ${e.constructor.name}: ${e.message}`;
  }
  if (!e.message.includes(mustName)) return `error does not name ${mustName}: ${e.message}`;
  return null;
}

function record(kind: string, label: string, expectation: Expectation, verdict: Verdict | { failure: string }, difference?: string): void {
  const t = tally(kind);
  t.tried++;
  if (typeof verdict !== 'string') {
    t.failures.push(`${label}: ${verdict.failure}`);
    return;
  }
  t[verdict]++;
  if (verdict === 'valid but different' && difference) t.differences.set(difference, (t.differences.get(difference) ?? 0) + 1);
  const allowed: Record<Expectation, Verdict[]> = {
    error: ['clean error'],
    harmless: ['loaded correctly'],
    'error or harmless': ['clean error', 'loaded correctly'],
    'anything clean': ['clean error', 'loaded correctly', 'valid but different'],
  };
  if (!allowed[expectation].includes(verdict)) t.failures.push(`${label}: expected ${expectation}, got ${verdict}${difference ? ` (${difference})` : ''}`);
}

// ---------------------------------------------------------------------------------------
// Model directories

let root = '';
const FILES = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'] as const;
type ModelFile = (typeof FILES)[number];
const base: Partial<Record<ModelFile, Uint8Array>> = {};
let baseLoaded: Loaded;
let variantDir = '';
const PROBES = ['Tom has 3 apples. How many?', '12+34=46', '<|eos|> ok', ''];

interface Loaded {
  config: TransformerConfig;
  host: Record<string, HostTensor>;
  vocabSize: number;
  ids: number[][];
  specials: (number | undefined)[];
}

async function loadDir(dir: string): Promise<Loaded> {
  const tokenizer = await loadHfTokenizer(dir);
  const { config, params } = await loadModel(dir);
  try {
    if (tokenizer.vocabSize > config.vocab_size) throw new Error(`${dir}/tokenizer.json: ${tokenizer.vocabSize} tokens but the model has ${config.vocab_size}`);
    const host = await paramsToHost(params);
    return { config, host, vocabSize: tokenizer.vocabSize, ids: PROBES.map((p) => tokenizer.encode(p, { addSpecialTokens: true })), specials: [tokenizer.bosId, tokenizer.eosId, tokenizer.padId] };
  } finally {
    T.treeDispose(params);
  }
}

const SHAPE_FIELDS = ['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'tie_word_embeddings', 'attention_bias'] as const;

/** What differs from the original model directory, or null when it loaded as the same model. */
function difference(a: Loaded, b: Loaded): string | null {
  // torch_dtype and unknown keys are informational: they change nothing that is computed.
  const cfg = (c: TransformerConfig) => {
    const j = configToJson({ ...c, torch_dtype: null, extra: undefined });
    return j;
  };
  const ca = cfg(a.config);
  const cb = cfg(b.config);
  for (const k of Object.keys(ca)) if (JSON.stringify(ca[k]) !== JSON.stringify(cb[k])) return `config ${k}`;
  const names = Object.keys(a.host).sort();
  if (JSON.stringify(names) !== JSON.stringify(Object.keys(b.host).sort())) return 'tensor names';
  for (const n of names) {
    const x = a.host[n]!;
    const y = b.host[n]!;
    if (JSON.stringify(x.shape) !== JSON.stringify(y.shape)) return `shape of ${n}`;
    const bx = new Uint8Array(x.data.buffer, x.data.byteOffset, x.data.byteLength);
    const by = new Uint8Array(y.data.buffer, y.data.byteOffset, y.data.byteLength);
    if (bx.length !== by.length || bx.some((v, i) => v !== by[i])) return `weights of ${n}`;
  }
  if (a.vocabSize !== b.vocabSize) return 'vocabulary size';
  if (JSON.stringify(a.ids) !== JSON.stringify(b.ids)) return 'tokenization';
  if (JSON.stringify(a.specials) !== JSON.stringify(b.specials)) return 'special token ids';
  return null;
}

async function tryModelVariant(kind: string, label: string, file: ModelFile, bytes: Uint8Array | null, expectation: Expectation): Promise<void> {
  for (const f of FILES) {
    const path = join(variantDir, f);
    if (f === file && bytes === null) rmSync(path, { force: true });
    else writeFileSync(path, f === file ? bytes! : base[f]!);
  }
  let loaded: Loaded;
  try {
    loaded = await loadDir(variantDir);
  } catch (e) {
    const bad = cleanError(e, variantDir);
    record(kind, label, expectation, bad === null ? 'clean error' : { failure: bad });
    return;
  }
  const diff = difference(baseLoaded, loaded);
  if (diff === null) return record(kind, label, expectation, 'loaded correctly');
  // A valid but different file may never pass as the same model where the checks can see it.
  if (kind === 'safetensors (ours)' || SHAPE_FIELDS.some((f) => diff === `config ${f}`) || diff.startsWith('shape') || diff === 'tensor names') {
    return record(kind, label, expectation, { failure: `silently loaded a different model (${diff})` });
  }
  record(kind, label, expectation, 'valid but different', diff);
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const bytesOf = (s: string) => new TextEncoder().encode(s);

function flipByte(b: Uint8Array, from: number, to: number): { out: Uint8Array; at: number } {
  const out = b.slice();
  const at = int(from, to - 1);
  out[at] = out[at]! ^ int(1, 255);
  return { out, at };
}

function shuffled<V>(xs: V[]): V[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = int(0, i);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

function reorderKeys(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of shuffled(Object.keys(o))) out[k] = o[k];
  return out;
}

// safetensors pieces
function headerOf(file: Uint8Array): { header: Record<string, { dtype: string; shape: number[]; data_offsets: number[] } | Record<string, string>>; data: Uint8Array } {
  const n = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  return { header: JSON.parse(text(file.subarray(8, 8 + n))), data: file.slice(8 + n) };
}

function assemble(headerText: string, data: Uint8Array, lengthDelta = 0): Uint8Array {
  const json = bytesOf(headerText);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length + lengthDelta), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

type Entry = { dtype: string; shape: number[]; data_offsets: number[] };
const tensorNames = (h: Record<string, unknown>) => Object.keys(h).filter((k) => k !== '__metadata__');

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'softgrad-fuzz-'));
  const dir = join(root, 'base');
  const tokenizer = builtinTokenizer();
  const config = parseConfig({
    model_type: 'llama', vocab_size: tokenizer.vocabSize, hidden_size: 8, intermediate_size: 12, num_hidden_layers: 2,
    num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64, tie_word_embeddings: false,
  }, 'fuzz base');
  const params = initParams(config, 3, { std: 0.2 });
  await saveModel(dir, config, params);
  T.treeDispose(params);
  await tokenizer.save(dir);
  for (const f of FILES) base[f] = new Uint8Array(readFileSync(join(dir, f)));
  baseLoaded = await loadDir(dir);
  variantDir = join(root, 'variant');
  mkdirSync(variantDir);
});

afterAll(() => {
  const rows = [...tallies].map(([k, t]) => {
    const diffs = [...t.differences].map(([d, n]) => `${d} ×${n}`).join(', ');
    return `  ${k.padEnd(26)} tried ${String(t.tried).padStart(4)}  clean errors ${String(t['clean error']).padStart(4)}  loaded correctly ${String(t['loaded correctly']).padStart(3)}  valid but different ${String(t['valid but different']).padStart(3)}${diffs ? ` (${diffs})` : ''}  failures ${t.failures.length}`;
  });
  const total = [...tallies.values()].reduce((a, t) => a + t.tried, 0);
  console.log(`loader fuzz (seed ${SEED}): ${total} inputs\n${rows.join('\n')}`);
  if (root) rmSync(root, { recursive: true, force: true });
});

function expectNoFailures(kind: string | string[]): void {
  for (const k of Array.isArray(kind) ? kind : [kind]) {
    const t = tally(k);
    expect(t.tried, k).toBeGreaterThan(0);
    expect(t.failures, k).toEqual([]);
  }
}

describe('model directory fuzz', () => {
  it('model.safetensors: corruptions are clean errors naming the file, harmless changes load the same weights', async () => {
    const K = 'safetensors (ours)';
    const file = base['model.safetensors']!;
    const { header, data } = headerOf(file);
    const headerText = JSON.stringify(header);
    const n = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
    const names = tensorNames(header);
    const entry = (name: string) => header[name] as Entry;
    const rewrite = (h: Record<string, unknown>, d = data, space = 0) => assemble(JSON.stringify(h) + ' '.repeat(space), d);
    const edit = (change: (h: Record<string, Entry>) => void) => {
      const h = structuredClone(header) as Record<string, Entry>;
      change(h);
      return rewrite(h);
    };
    const v = (label: string, bytes: Uint8Array, e: Expectation) => tryModelVariant(K, label, 'model.safetensors', bytes, e);

    for (let i = 0; i < 20; i++) {
      const cut = int(0, file.length - 1);
      await v(`truncated to ${cut} bytes`, file.slice(0, cut), 'error');
    }
    for (const extra of [1, 4, 8, 64]) await v(`${extra} bytes appended`, new Uint8Array([...file, ...new Uint8Array(extra).fill(7)]), 'error');
    for (const d of [-16, -8, -7, -3, -2, -1, 1, 2, 3, 7, 8, 16]) await v(`header length ${d > 0 ? '+' : ''}${d}`, assemble(text(file.subarray(8, 8 + n)), data, d), 'error');
    for (const huge of [2n ** 33n, 10n ** 11n, 2n ** 63n]) {
      const b = file.slice();
      new DataView(b.buffer).setBigUint64(0, huge, true);
      await v(`header length ${huge}`, b, 'error');
    }
    for (let i = 0; i < 30; i++) {
      const { out, at } = flipByte(file, 8 + n, file.length);
      await v(`data byte ${at} flipped`, out, 'error');
    }
    for (let i = 0; i < 5; i++) {
      const victim = pick(names);
      await v(`tensor ${victim} dropped from the header`, edit((h) => void delete h[victim]), 'error');
    }
    for (let i = 0; i < 5; i++) {
      const victim = pick(names);
      const dup = headerText.replace('{', `{${JSON.stringify(victim)}:${JSON.stringify(entry(victim))},`);
      await v(`tensor ${victim} listed twice`, assemble(dup, data), 'error');
    }
    for (let i = 0; i < 6; i++) {
      const victim = pick(names);
      const dtype = pick(['F16', 'BF16', 'I32', 'F64', 'U8', 'BOOL']);
      await v(`dtype of ${victim} → ${dtype}`, edit((h) => void (h[victim]!.dtype = dtype)), 'error');
    }
    for (let i = 0; i < 6; i++) {
      const victim = pick(names);
      await v(`shape of ${victim} reversed or grown`, edit((h) => {
        const s = h[victim]!.shape;
        h[victim]!.shape = s.length > 1 && s[0] !== s[1] ? [...s].reverse() : [...s.slice(0, -1), s[s.length - 1]! + 1];
      }), 'error');
    }
    // Same-sized tensors trading places: offsets stay a valid tiling, only the digest can tell.
    const bySize = new Map<number, string[]>();
    for (const name of names) {
      const e = entry(name);
      const size = e.data_offsets[1]! - e.data_offsets[0]!;
      bySize.set(size, [...(bySize.get(size) ?? []), name]);
    }
    for (const group of [...bySize.values()].filter((g) => g.length > 1).slice(0, 6)) {
      const [a, b] = group;
      // Norm weights start as ones: trading two equal tensors changes nothing.
      const same = JSON.stringify([...baseLoaded.host[a!]!.data]) === JSON.stringify([...baseLoaded.host[b!]!.data]);
      await v(`${a} and ${b} swap data${same ? ' (equal tensors)' : ''}`, edit((h) => {
        [h[a!]!.data_offsets, h[b!]!.data_offsets] = [h[b!]!.data_offsets, h[a!]!.data_offsets];
      }), same ? 'harmless' : 'error');
    }
    await v('a shape claiming 10^12 elements', edit((h) => void (h['model.embed_tokens.weight']!.shape = [1_000_000, 1_000_000])), 'error');
    await v('offsets claiming 100 GB', edit((h) => void (h['model.norm.weight']!.data_offsets = [0, 100e9])), 'error');
    for (const value of ['0'.repeat(64), 'f'.repeat(64), 'not a digest']) {
      await v(`digest set to ${value.slice(0, 8)}…`, rewrite({ ...header, __metadata__: { ...(header.__metadata__ as object), softgrad_sha256: value } }), 'error');
    }
    // A file that is valid in every way but holds non-finite weights (written by our writer, digest and all).
    for (const bad of [NaN, Infinity, -Infinity]) {
      const tensors: Record<string, HostTensor> = {};
      for (const [name, t] of Object.entries(baseLoaded.host)) tensors[name] = { ...t, data: (t.data as Float32Array).slice() } as HostTensor;
      (tensors[pick(names)]!.data as Float32Array)[0] = bad;
      await v(`a weight set to ${bad}`, serializeSafetensors(tensors), 'error');
    }
    // An extra tensor, with its bytes: a valid file for some other model.
    for (const extra of ['model.layers.0.self_attn.rotary_emb.extra', 'lm_head.bias']) {
      const tensors: Record<string, HostTensor> = { ...baseLoaded.host, [extra]: { dtype: 'float32', shape: [8], data: new Float32Array(8) } };
      await v(`extra tensor ${extra}`, serializeSafetensors(tensors), 'error');
    }

    // Harmless: metadata, padding, key order, layout of the JSON; a file without our digest.
    await v('metadata format changed', rewrite({ ...header, __metadata__: { ...(header.__metadata__ as object), format: 'np' } }), 'harmless');
    await v('metadata key added', rewrite({ ...header, __metadata__: { ...(header.__metadata__ as object), note: 'hello' } }), 'harmless');
    for (const space of [1, 8, 100]) await v(`header padded by ${space} spaces`, rewrite(header, data, space), 'harmless');
    for (let i = 0; i < 3; i++) await v('header keys reordered', rewrite(reorderKeys(header)), 'harmless');
    await v('header pretty-printed', assemble(JSON.stringify(header, null, 2), data), 'harmless');
    const foreign = { ...header, __metadata__: { format: 'pt' } };
    await v('no digest (as other writers leave it)', rewrite(foreign), 'harmless');
    // Random flips anywhere in the header: a clean error or, when they hit padding or
    // metadata, the same weights; never different weights.
    for (let i = 0; i < 150; i++) {
      const { out, at } = flipByte(file, 0, 8 + n);
      await v(`header byte ${at} flipped`, out, 'error or harmless');
    }
    expectNoFailures(K);
  });

  it('model.safetensors without a digest (as other writers make it): flips in the data are counted', async () => {
    const K = 'safetensors (no digest)';
    const { header, data } = headerOf(base['model.safetensors']!);
    const foreign = assemble(JSON.stringify({ ...header, __metadata__: { format: 'pt' } }), data);
    const n = foreign.length - data.length - 8;
    for (let i = 0; i < 30; i++) {
      const { out, at } = flipByte(foreign, 8 + n, foreign.length);
      // Undetectable unless the flip makes a NaN or an Inf: the format has no checksum.
      await tryModelVariant(K, `data byte ${at} flipped`, 'model.safetensors', out, 'anything clean');
    }
    expectNoFailures(K);
  });

  it('config.json: corruptions are clean errors naming the file, harmless changes load the same model', async () => {
    const K = 'config.json';
    const original = JSON.parse(text(base['config.json']!)) as Record<string, unknown>;
    const v = (label: string, value: unknown, e: Expectation) =>
      tryModelVariant(K, label, 'config.json', bytesOf(typeof value === 'string' ? value : JSON.stringify(value)), e);
    const withField = (k: string, value: unknown) => {
      const o = { ...original };
      if (value === undefined) delete o[k];
      else o[k] = value;
      return o;
    };
    const BAD_VALUES: unknown[] = [undefined, null, 0, -1, 1.5, '8', 1e9, 1e300, true, []];
    for (const field of ['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads']) {
      for (const value of BAD_VALUES) await v(`${field} = ${JSON.stringify(value) ?? 'missing'}`, withField(field, value), 'error');
    }
    // Valid numbers that do not describe these weights.
    for (const [field, value] of [['hidden_size', 16], ['num_hidden_layers', 1], ['num_hidden_layers', 3], ['vocab_size', 143], ['vocab_size', 200],
      ['intermediate_size', 8], ['num_key_value_heads', 2], ['tie_word_embeddings', true], ['attention_bias', true], ['head_dim', 8]] as const) {
      await v(`${field} = ${value} (valid, not these weights)`, withField(field, value), 'error');
    }
    for (const field of ['eos_token_id', 'bos_token_id']) {
      for (const value of [144, 1e9, -1, 1.5, 'x']) await v(`${field} = ${value}`, withField(field, value), 'error');
    }
    await v('eos_token_id list with one beyond the vocabulary', withField('eos_token_id', [2, 500]), 'error');
    for (const value of ['gpt2', 5, undefined]) await v(`model_type = ${value}`, { ...withField('model_type', value), architectures: undefined }, 'error');
    await v('num_key_value_heads does not divide', withField('num_key_value_heads', 3), 'error');
    await v('odd head_dim', withField('head_dim', 3), 'error');
    await v('hidden_act gelu', withField('hidden_act', 'gelu'), 'error');
    await v('mlp_bias', withField('mlp_bias', true), 'error');
    await v('rope_scaling yarn', withField('rope_scaling', { rope_type: 'yarn', factor: 2 }), 'error');
    await v('rms_norm_eps negative', withField('rms_norm_eps', -1e-5), 'error');
    const compact = JSON.stringify(original);
    await v('hidden_size twice, differently', compact.replace('{', '{"hidden_size":16,'), 'error');
    await v('a trailing comma', compact.replace(/}$/, ',}'), 'error');
    for (const top of ['[]', '1', '"config"', 'null']) await v(`top level ${top}`, top, 'error');
    for (let i = 0; i < 5; i++) {
      const cut = int(1, compact.length - 1);
      await v(`truncated to ${cut} characters`, compact.slice(0, cut), 'error');
    }
    await tryModelVariant(K, 'missing', 'config.json', null, 'error');

    // Harmless.
    for (let i = 0; i < 3; i++) await v('keys reordered', reorderKeys(original), 'harmless');
    await v('compact', compact, 'harmless');
    await v('an unknown key', withField('use_cache', true), 'harmless');
    await v('8 written as 8.0', JSON.stringify(original).replace('"hidden_size":8', '"hidden_size":8.0'), 'harmless');
    await v('default attention_bias left out', withField('attention_bias', undefined), 'harmless');
    await v('torch_dtype bfloat16 (informational)', withField('torch_dtype', 'bfloat16'), 'harmless');

    // Random flips: clean errors, the same model, or a different valid config that does
    // not touch the weights' shapes (checked in tryModelVariant).
    const bytes = base['config.json']!;
    for (let i = 0; i < 60; i++) {
      const { out, at } = flipByte(bytes, 0, bytes.length);
      await tryModelVariant(K, `byte ${at} flipped`, 'config.json', out, 'anything clean');
    }
    expectNoFailures(K);
  });

  it('tokenizer.json and tokenizer_config.json: corruptions are clean errors naming the file', async () => {
    const K = 'tokenizer files';
    const tj = JSON.parse(text(base['tokenizer.json']!)) as Record<string, unknown> & { model: Record<string, unknown>; added_tokens: Record<string, unknown>[] };
    const tc = JSON.parse(text(base['tokenizer_config.json']!)) as Record<string, unknown>;
    const v = (label: string, value: unknown, e: Expectation) =>
      tryModelVariant(K, label, 'tokenizer.json', bytesOf(typeof value === 'string' ? value : JSON.stringify(value)), e);
    const vc = (label: string, value: unknown, e: Expectation) =>
      tryModelVariant(K, label, 'tokenizer_config.json', bytesOf(typeof value === 'string' ? value : JSON.stringify(value)), e);
    const withModel = (change: (m: Record<string, unknown>) => void) => {
      const j = structuredClone(tj);
      change(j.model);
      return j;
    };
    const vocab = tj.model.vocab as Record<string, number>;
    const tokens = Object.keys(vocab);
    for (const value of [null, undefined, 5, []]) {
      const j = structuredClone(tj) as Record<string, unknown>;
      if (value === undefined) delete j.model;
      else j.model = value;
      await v(`model = ${JSON.stringify(value) ?? 'missing'}`, j, 'error');
    }
    for (const value of [undefined, 'Nonsense', 5]) await v(`model.type = ${value}`, withModel((m) => (value === undefined ? delete m.type : (m.type = value))), 'error');
    for (const value of [{}, [], null, 'x']) await v(`model.vocab = ${JSON.stringify(value)}`, withModel((m) => (m.vocab = value)), 'error');
    for (let i = 0; i < 3; i++) {
      for (const value of [-1, 1.5, '3', null, 1e20]) {
        const t = pick(tokens);
        await v(`id of ${JSON.stringify(t)} = ${JSON.stringify(value)}`, withModel((m) => void ((m.vocab as Record<string, unknown>)[t] = value)), 'error');
      }
      const [a, b] = [pick(tokens), pick(tokens)];
      if (a !== b) await v(`${JSON.stringify(a)} given the id of ${JSON.stringify(b)}`, withModel((m) => void ((m.vocab as Record<string, number>)[a] = vocab[b]!)), 'error');
    }
    for (const value of [null, {}, 'a b', ['a'], ['zz qq'], [['a']]]) await v(`model.merges = ${JSON.stringify(value)}`, withModel((m) => (m.merges = value)), 'error');
    for (const value of ['<|not-here|>', 5]) await v(`model.unk_token = ${JSON.stringify(value)}`, withModel((m) => (m.unk_token = value)), 'error');
    const added = (change: (a: Record<string, unknown>[]) => unknown) => {
      const j = structuredClone(tj);
      const r = change(j.added_tokens);
      if (r !== undefined) (j as Record<string, unknown>).added_tokens = r;
      return j;
    };
    await v('added_tokens = {}', added(() => ({})), 'error');
    await v('an added token without id', added((a) => void delete a[1]!.id), 'error');
    await v('an added token with id -1', added((a) => void (a[1]!.id = -1)), 'error');
    await v('an added token with empty content', added((a) => void (a[2]!.content = '')), 'error');
    await v('an added token on a character’s id', added((a) => void (a[2]!.id = vocab['7']!)), 'error');
    await v('an added token twice', added((a) => [...a, { ...a[1]!, id: 500 }]), 'error');
    await v('an added token with special "yes"', added((a) => void (a[0]!.special = 'yes')), 'error');
    for (const [key, value] of [['pre_tokenizer', { type: 'Foo' }], ['pre_tokenizer', 'x'], ['pre_tokenizer', {}], ['decoder', { type: 'Foo' }],
      ['normalizer', { type: 'Sequence', normalizers: 5 }], ['post_processor', { type: 'Bar' }], ['normalizer', { type: 'Sequence', normalizers: [{ type: 'Lowercase' }, { type: 'Zap' }] }]] as const) {
      await v(`${key} = ${JSON.stringify(value)}`, { ...tj, [key]: value }, 'error');
    }
    const compact = JSON.stringify(tj);
    await v('a token twice in the vocabulary', compact.replace('"vocab":{', '"vocab":{"7":99,'), 'error');
    for (let i = 0; i < 5; i++) {
      const cut = int(1, compact.length - 1);
      await v(`truncated to ${cut} characters`, compact.slice(0, cut), 'error');
    }
    for (const top of ['[]', '1', 'null']) await v(`top level ${top}`, top, 'error');
    // Valid, but larger than the model's vocabulary.
    await v('vocabulary beyond the model', withModel((m) => void ((m.vocab as Record<string, number>)['@@'] = 300)), 'error');
    await tryModelVariant(K, 'tokenizer.json missing', 'tokenizer.json', null, 'error');
    for (const [label, value] of [['eos_token unknown', { ...tc, eos_token: '<|nope|>' }], ['bos_token a number', { ...tc, bos_token: 5 }],
      ['not an object', []], ['not JSON', '{"eos_token": '], ['eos_token twice', JSON.stringify(tc).replace('{', '{"eos_token":"<|pad|>",')]] as const) {
      await vc(`tokenizer_config: ${label}`, value, 'error');
    }

    // Harmless.
    for (let i = 0; i < 2; i++) await v('keys reordered', reorderKeys(tj), 'harmless');
    await v('compact', compact, 'harmless');
    await v('an unknown top-level key', { ...tj, comment: 'hello' }, 'harmless');
    await vc('tokenizer_config: an unknown key', { ...tc, padding_side: 'left' }, 'harmless');

    // Random flips: a flip inside a token's text gives another valid tokenizer (counted).
    const bytes = base['tokenizer.json']!;
    for (let i = 0; i < 60; i++) {
      const { out, at } = flipByte(bytes, 0, bytes.length);
      await tryModelVariant(K, `tokenizer.json byte ${at} flipped`, 'tokenizer.json', out, 'anything clean');
    }
    expectNoFailures(K);
  });
});

// ---------------------------------------------------------------------------------------
// Data files

describe('data file fuzz', () => {
  const RECORDS = Array.from({ length: 6 }, (_, i) => ({ question: `Tom has ${i + 2} apples and buys ${i}. How many?`, answer: `He has ${i + 2} + ${i}.\n#### ${2 * i + 2}` }));

  function tryJsonl<I>(kind: string, label: string, content: string | Uint8Array, expectation: Expectation, load: (p: string) => { items: readonly I[] }, original: readonly I[], line?: number): void {
    const path = join(root, `${kind.replace(/\W+/g, '-')}.jsonl`);
    writeFileSync(path, content);
    let items: readonly I[];
    try {
      items = load(path).items;
    } catch (e) {
      let bad = cleanError(e, path);
      // A line-level problem must name its line; file-level ones (encoding) the file.
      if (bad === null && line !== undefined && e instanceof DataFileError && e.line !== line) bad = `named line ${e.line}, the problem is on line ${line}`;
      if (bad === null && e instanceof Error && !(e instanceof DataFileError) && !/not UTF-8/.test(e.message)) bad = `not a file:line error: ${e.message}`;
      record(kind, label, expectation, bad === null ? 'clean error' : { failure: bad });
      return;
    }
    if (JSON.stringify(items) === JSON.stringify(original)) return record(kind, label, expectation, 'loaded correctly');
    record(kind, label, expectation, 'valid but different', items.length !== original.length ? 'number of records' : 'record contents');
  }

  it('GSM8K JSONL: corrupt lines are errors naming file:line, harmless changes load the same problems', () => {
    const K = 'GSM8K JSONL';
    const lines = RECORDS.map((r) => JSON.stringify(r));
    const original = loadProblemSet(((p) => (writeFileSync(p, `${lines.join('\n')}\n`), p))(join(root, 'gsm8k-base.jsonl'))).items as ProblemItem[];
    const v = (label: string, ls: string[], e: Expectation, line?: number) => tryJsonl(K, label, `${ls.join('\n')}\n`, e, loadProblemSet, original, line);
    const at = (i: number, replacement: string) => lines.map((l, j) => (j === i ? replacement : l));
    for (let n = 0; n < 40; n++) {
      const i = int(0, lines.length - 1);
      const r = RECORDS[i]!;
      const cases: [string, string][] = [
        ['cut inside the line', lines[i]!.slice(0, int(1, lines[i]!.length - 2))],
        ['no question', JSON.stringify({ answer: r.answer })],
        ['no answer', JSON.stringify({ question: r.question })],
        ['answer a number', JSON.stringify({ ...r, answer: 5 })],
        ['answer null', JSON.stringify({ ...r, answer: null })],
        ['answer without ####', JSON.stringify({ ...r, answer: 'no marker' })],
        [`reference "${['abc', 'NaN', '1e400', '0x10', 'Infinity', ''][n % 6]}"`, JSON.stringify({ ...r, answer: `#### ${['abc', 'NaN', '1e400', '0x10', 'Infinity', ''][n % 6]}` })],
        ['a key twice', lines[i]!.replace('{', '{"question":"other",')],
        ['not an object', pick(['[1]', '5', '"x"', 'null', 'true'])],
        ['garbage', 'hello'],
        ['trailing comma', lines[i]!.replace(/}$/, ',}')],
        ['unterminated string', lines[i]!.replace(/"}$/, '}')],
      ];
      const [label, replacement] = pick(cases);
      v(`line ${i + 1}: ${label}`, at(i, replacement), 'error', i + 1);
    }
    tryJsonl(K, 'invalid UTF-8', new Uint8Array([...bytesOf(lines[0]!), 10, 0x7b, 0x22, 0xff, 0x22, 0x7d, 10]), 'error', loadProblemSet, original);

    // Harmless.
    v('blank lines', [lines[0]!, '', ...lines.slice(1), '', ''], 'harmless');
    tryJsonl(K, 'CRLF', lines.join('\r\n'), 'harmless', loadProblemSet, original);
    tryJsonl(K, 'BOM, no final newline', `\uFEFF${lines.join('\n')}`, 'harmless', loadProblemSet, original);
    v('keys swapped', RECORDS.map((r) => JSON.stringify({ answer: r.answer, question: r.question })), 'harmless');
    v('extra fields', RECORDS.map((r) => JSON.stringify({ ...r, id: 7, source: 'x' })), 'harmless');
    v('spaces inside JSON', RECORDS.map((r) => JSON.stringify(r, null, 1).replace(/\n/g, ' ')), 'harmless');
    v('escaped letters', lines.map((l) => l.replace('"Tom', '"\\u0054om')), 'harmless');

    // Random flips: either a file:line error or different (valid) text.
    const bytes = bytesOf(`${lines.join('\n')}\n`);
    for (let n = 0; n < 80; n++) {
      const { out, at: pos } = flipByte(bytes, 0, bytes.length);
      const line = text(bytes.subarray(0, pos)).split('\n').length;
      tryJsonl(K, `byte ${pos} flipped`, out, 'anything clean', loadProblemSet, original, out[pos] === 10 || bytes[pos] === 10 ? undefined : line);
    }
    expectNoFailures(K);
  });

  it('multiple-choice JSONL: corrupt lines are errors naming file:line', () => {
    const K = 'choice JSONL';
    const recs = [
      { question: 'Pick the sum of 2 and 3.', choices: ['4', '5', '6'], answerIndex: 1 },
      { question: 'Pick the larger.', choices: ['7', '9'], answerIndex: 1 },
      { ctx: 'A man', endings: ['runs', 'sits', 'eats', 'flies'], label: 2 },
      { question: 'Capital?', choices: ['A', 'B'], answer: 'B' },
    ];
    const lines = recs.map((r) => JSON.stringify(r));
    const original = loadChoiceSet(((p) => (writeFileSync(p, `${lines.join('\n')}\n`), p))(join(root, 'choice-base.jsonl'))).items as ChoiceItem[];
    const v = (label: string, i: number, replacement: unknown, e: Expectation) =>
      tryJsonl(K, label, `${lines.map((l, j) => (j === i ? (typeof replacement === 'string' ? replacement : JSON.stringify(replacement)) : l)).join('\n')}\n`, e, loadChoiceSet, original, e === 'error' ? i + 1 : undefined);
    for (const idx of [3, -1, 1.5, '9', 'Z', null]) v(`answerIndex ${JSON.stringify(idx)}`, 0, { ...recs[0], answerIndex: idx }, 'error');
    v('one choice', 1, { ...recs[1], choices: ['7'] }, 'error');
    v('a choice not a string', 1, { ...recs[1], choices: ['7', 9] }, 'error');
    v('label out of range', 2, { ...recs[2], label: 4 }, 'error');
    v('endings not a list', 2, { ...recs[2], endings: 'runs' }, 'error');
    v('answer letter beyond the choices', 3, { ...recs[3], answer: 'C' }, 'error');
    v('unknown format', 0, { text: 'x' }, 'error');
    v('not JSON', 1, '{"question": ', 'error');
    v('an extra field', 0, { ...recs[0], id: 3 }, 'harmless');
    v('answerIndex as a string digit', 0, { ...recs[0], answerIndex: '1' }, 'harmless');
    expectNoFailures(K);
  });
});

it('the fuzz base files are what the suite thinks they are', () => {
  // Guards the generators: the base directory must load, and its safetensors carry our digest.
  expect(existsSync(variantDir)).toBe(true);
  expect(text(base['model.safetensors']!.subarray(8, 200))).toContain('softgrad_sha256');
  expect(baseLoaded.vocabSize).toBe(builtinTokenizer().vocabSize);
});
