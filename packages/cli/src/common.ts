/** What the commands share: loading models, data and backends from flags. */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as T from '@softgrad/tensor';
import { loadHfTokenizer, loadModel, type LoadedModel, type Tokenizer } from '@softgrad/transformer';
import {
  builtinBaseModelDir, builtinProblems, generateChoiceTask, loadChoiceItems, loadProblems, type ChoiceItem, type ProblemItem,
} from '@softgrad/softtokens';
import { UsageError, type FlagSpecs } from './args.js';
import { log } from './progress.js';

const VALIDATION_SEED_OFFSET = 7919;

export const BACKEND_FLAG: FlagSpecs = {
  backend: { type: 'string', help: 'compute backend (webgpu: Dawn in Node, float32 only)', default: 'cpu', choices: ['cpu', 'webgpu'] },
};

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

/** A Hugging Face style model directory (config.json, safetensors, tokenizer.json), or `builtin`. */
export async function loadModelDir(spec: string, backend: T.Backend): Promise<ModelBundle> {
  const dir = spec === 'builtin' ? builtinBaseModelDir() : spec;
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`model directory not found: ${dir}`);
  if (!existsSync(join(dir, 'tokenizer.json'))) throw new UsageError(`${dir}: no tokenizer.json (a model directory needs config.json, weights and tokenizer.json)`);
  const model = await loadModel(dir, { backend, dtype: 'float32' });
  const tokenizer = await loadHfTokenizer(dir);
  if (tokenizer.vocabSize > model.config.vocab_size) {
    throw new Error(`${dir}: the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${model.config.vocab_size}`);
  }
  return { ...model, tokenizer, dir };
}

/**
 * `builtin:train|test|ood|val` (generated from the seed) or a GSM8K/MATH JSONL path.
 * `builtin:val` is a validation set drawn like the training problems but from another seed;
 * the train command removes any question it shares with the training set, so checkpoint
 * choice never looks at the test split.
 */
export function loadProblemSpec(spec: string, count: number | undefined, seed: number): ProblemItem[] {
  if (spec === 'builtin:val') return builtinProblems('train', count ?? 100, seed + VALIDATION_SEED_OFFSET);
  const m = /^builtin(?::(train|test|ood))?$/.exec(spec);
  if (m) return builtinProblems((m[1] as 'train' | 'test' | 'ood' | undefined) ?? 'train', count ?? 1000, seed);
  if (!existsSync(spec)) throw new UsageError(`data file not found: ${spec}`);
  const items = loadProblems(spec);
  if (items.length === 0) throw new UsageError(`${spec}: no problems`);
  return count === undefined ? items : items.slice(0, count);
}

/** `builtin` or a HellaSwag/ARC/MMLU JSONL path. */
export function loadChoiceSpec(spec: string, count: number | undefined, seed: number): ChoiceItem[] {
  if (spec === 'builtin') return generateChoiceTask({ seed, count: count ?? 100 });
  if (!existsSync(spec)) throw new UsageError(`multiple-choice file not found: ${spec}`);
  const items = loadChoiceItems(spec);
  return count === undefined ? items : items.slice(0, count);
}
