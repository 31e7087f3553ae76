/** What the commands share: loading models, data and backends from flags, checking outputs, Ctrl-C. */
import { accessSync, constants, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as T from '@softgrad/tensor';
import { loadHfTokenizer, loadModel, type LoadedModel, type Tokenizer } from '@softgrad/transformer';
import {
  builtinBaseModelDir, builtinProblems, generateChoiceTask, loadChoiceSet, loadProblemSet, type ChoiceItem, type Located,
  type ProblemItem,
} from '@softgrad/softtokens';
import { UsageError, type FlagSpecs } from './args.js';
import { log } from './progress.js';

const VALIDATION_SEED_OFFSET = 7919;

export const BACKEND_FLAG: FlagSpecs = {
  backend: { type: 'string', help: 'compute backend (webgpu: Dawn in Node, float32 only)', default: 'cpu', choices: ['cpu', 'webgpu'] },
};

export const TOKENIZER_FLAG: FlagSpecs = {
  'lenient-tokenizer': {
    type: 'boolean',
    help: 'map characters the tokenizer cannot encode to its unknown token (default: stop with an error naming the character and line)',
  },
};

/** The version of this command, from its package.json. */
export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export async function selectBackend(name: string): Promise<T.Backend> {
  if (name === 'cpu') return T.getDefaultBackend();
  const { createWebGpuBackend } = await import('@softgrad/webgpu');
  const b = await createWebGpuBackend();
  T.setDefaultBackend(b);
  const info = (b as unknown as { adapterInfo?: { vendor?: string; architecture?: string; description?: string } }).adapterInfo;
  if (info) log(`webgpu: ${info.vendor ?? '?'} ${info.architecture ?? ''} ${info.description ?? ''}`.trim());
  return b;
}

export interface ModelBundle extends LoadedModel {
  tokenizer: Tokenizer;
  dir: string;
}

/** The directory a --model flag names (`builtin`: the shipped base model), checked to be a model directory. */
export function modelDirOf(spec: string): string {
  const dir = spec === 'builtin' ? builtinBaseModelDir() : spec;
  if (!existsSync(dir)) throw new UsageError(`--model ${spec}: model directory not found`);
  if (!statSync(dir).isDirectory()) throw new UsageError(`--model ${spec}: not a directory (a model directory holds config.json, weights and tokenizer.json)`);
  for (const f of ['config.json', 'tokenizer.json']) {
    if (!existsSync(join(dir, f))) throw new UsageError(`--model ${spec}: no ${f} in ${dir} (a model directory holds config.json, weights and tokenizer.json)`);
  }
  return dir;
}

/** A Hugging Face style model directory (config.json, safetensors, tokenizer.json), or `builtin`. */
export async function loadModelDir(spec: string, backend: T.Backend, options: { strictTokenizer?: boolean } = {}): Promise<ModelBundle> {
  const dir = modelDirOf(spec);
  // The tokenizer first: it is small, and a model that cannot be used is refused before gigabytes are read.
  const tokenizer = await loadHfTokenizer(dir, { strict: options.strictTokenizer ?? true });
  const model = await loadModel(dir, { backend, dtype: 'float32' });
  if (tokenizer.vocabSize > model.config.vocab_size) {
    T.treeDispose(model.params);
    throw new Error(`${join(dir, 'tokenizer.json')}: the tokenizer has ${tokenizer.vocabSize} tokens but the model (config.json) only ${model.config.vocab_size}`);
  }
  return { ...model, tokenizer, dir };
}

/** A data file named by a flag: it must exist and be a file (usage errors otherwise). */
function dataFile(flag: string, path: string): string {
  if (!existsSync(path)) throw new UsageError(`--${flag} ${path}: file not found`);
  if (statSync(path).isDirectory()) throw new UsageError(`--${flag} ${path}: is a directory; expected a JSONL file`);
  return path;
}

/**
 * `builtin:train|test|ood|val` (generated from the seed) or a GSM8K/MATH JSONL path, with
 * where each problem came from. `builtin:val` is drawn like the training problems but from
 * another seed; the train command removes any question it shares with the training set, so
 * checkpoint choice never looks at the test split.
 */
export function loadProblemSpec(flag: string, spec: string, count: number | undefined, seed: number): Located<ProblemItem> {
  if (spec === 'builtin:val') return { source: spec, items: builtinProblems('train', count ?? 100, seed + VALIDATION_SEED_OFFSET) };
  const m = /^builtin(?::(train|test|ood))?$/.exec(spec);
  if (m) return { source: spec, items: builtinProblems((m[1] as 'train' | 'test' | 'ood' | undefined) ?? 'train', count ?? 1000, seed) };
  if (spec.startsWith('builtin')) throw new UsageError(`--${flag} ${spec}: unknown built-in set (expected builtin:train, builtin:test, builtin:ood or builtin:val)`);
  const set = loadProblemSet(dataFile(flag, spec));
  if (set.items.length === 0) throw new Error(`${spec}: no problems (the file is empty); expected GSM8K or MATH JSONL records`);
  return count === undefined ? set : { source: set.source, items: set.items.slice(0, count), lines: set.lines.slice(0, count) };
}

/** `builtin` or a HellaSwag/ARC/MMLU JSONL path. */
export function loadChoiceSpec(spec: string, count: number | undefined, seed: number): Located<ChoiceItem> {
  if (spec === 'builtin') return { source: 'builtin choices', items: generateChoiceTask({ seed, count: count ?? 100 }) };
  const set = loadChoiceSet(dataFile('choices', spec));
  if (set.items.length === 0) throw new Error(`${spec}: no multiple-choice items (the file is empty); expected HellaSwag, ARC or MMLU JSONL records`);
  return count === undefined ? set : { source: set.source, items: set.items.slice(0, count), lines: set.lines.slice(0, count) };
}

/**
 * Makes sure `path` is (or can be made) a writable directory, before any work: an --out
 * under a file must fail now, not after an hour of evaluation.
 */
export function prepareOutputDir(flag: string, path: string): void {
  if (existsSync(path) && !statSync(path).isDirectory()) throw new UsageError(`--${flag} ${path}: is a file; expected a directory`);
  try {
    mkdirSync(path, { recursive: true });
    accessSync(path, constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOTDIR' ? 'a part of the path is a file' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
    throw new UsageError(`--${flag} ${path}: cannot create or write this directory (${why})`);
  }
}

/**
 * Ctrl-C handling for long commands: the first SIGINT asks the command to stop at its next
 * safe point (it says so), a second one exits at once (what is on disk is consistent
 * either way: files and checkpoints are replaced atomically).
 */
export function interruptOnSigint(what: string): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const handler = () => {
    if (controller.signal.aborted) {
      log(`\n${what}: stopping now`);
      process.exit(130);
    }
    log(`\n${what}: interrupted; stopping at the next safe point (Ctrl-C again to stop at once)`);
    controller.abort();
  };
  process.on('SIGINT', handler);
  return { signal: controller.signal, dispose: () => process.off('SIGINT', handler) };
}

/** The command line as the user could type it again, with `extra` flags added. */
export function commandLine(command: string, argv: readonly string[], extra: readonly string[] = []): string {
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  return ['softgrad', command, ...argv.filter((a) => !extra.includes(a)), ...extra].map(quote).join(' ');
}
