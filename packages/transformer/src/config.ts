// The model's config.json, in Hugging Face's own shape, so that a real Llama / Qwen2 /
// SmolLM checkpoint directory loads as it is and ours load in transformers.

import { readFile } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic.js';
import { parseJsonStrict } from './json.js';
import { MAX_ARRAY_BYTES } from './safetensors.js';

export type ModelType = 'llama' | 'qwen2';

export const SUPPORTED_MODEL_TYPES: readonly ModelType[] = ['llama', 'qwen2'];

export interface Llama3RopeScaling {
  rope_type: 'llama3';
  factor: number;
  low_freq_factor: number;
  high_freq_factor: number;
  original_max_position_embeddings: number;
}

export interface LinearRopeScaling {
  rope_type: 'linear';
  factor: number;
}

export type RopeScaling = Llama3RopeScaling | LinearRopeScaling;

export interface TransformerConfig {
  model_type: ModelType;
  architectures: string[];
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling: RopeScaling | null;
  max_position_embeddings: number;
  tie_word_embeddings: boolean;
  attention_bias: boolean;
  bos_token_id: number | null;
  eos_token_id: number | number[] | null;
  torch_dtype: string | null;
  /** Keys of config.json this layer does not interpret; written back unchanged. */
  extra?: Record<string, unknown>;
}

const ARCHITECTURE_OF: Record<ModelType, string> = {
  llama: 'LlamaForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
};

// Defaults are those of transformers' LlamaConfig / Qwen2Config, so that a config.json
// that omits a key means here what it means there.
const DEFAULTS: Record<ModelType, { rms_norm_eps: number; rope_theta: number; max_position_embeddings: number; attention_bias: boolean }> = {
  llama: { rms_norm_eps: 1e-6, rope_theta: 10000, max_position_embeddings: 2048, attention_bias: false },
  // Qwen2's q/k/v projections always carry biases; its config has no key for it.
  qwen2: { rms_norm_eps: 1e-6, rope_theta: 10000, max_position_embeddings: 32768, attention_bias: true },
};

const KNOWN_KEYS = new Set([
  'model_type', 'architectures', 'vocab_size', 'hidden_size', 'intermediate_size',
  'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim',
  'rms_norm_eps', 'rope_theta', 'rope_scaling', 'max_position_embeddings',
  'tie_word_embeddings', 'attention_bias', 'bos_token_id', 'eos_token_id', 'torch_dtype',
]);

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  try {
    const s = JSON.stringify(value);
    return s === undefined ? String(value) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
  } catch {
    return String(value);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export interface ConfigLimits {
  /**
   * Memory the parameters (as float32) must fit in; default this machine's total memory.
   * A config beyond it is refused at once, rather than after minutes of allocation.
   */
  memoryBytes?: number;
}

/**
 * At most this many tensors. Each one costs fixed bookkeeping on the host and the device,
 * so a corrupt `num_hidden_layers` could exhaust memory with tiny layers; the largest
 * published models have about 1,300 tensors.
 */
export const MAX_TENSOR_COUNT = 100_000;

/** Token ids are int32 throughout the engine. */
export const MAX_VOCAB_SIZE = 2 ** 31 - 1;

/** Parameter count of a config (a float: it may be astronomically large for a corrupt one). */
export function configParameterCount(c: Pick<TransformerConfig,
  'vocab_size' | 'hidden_size' | 'intermediate_size' | 'num_hidden_layers' | 'num_attention_heads' | 'num_key_value_heads' |
  'head_dim' | 'tie_word_embeddings' | 'attention_bias'>): number {
  const d = c.hidden_size;
  const q = c.num_attention_heads * c.head_dim;
  const kv = c.num_key_value_heads * c.head_dim;
  const perLayer = 2 * q * d + 2 * kv * d + 3 * c.intermediate_size * d + 2 * d + (c.attention_bias ? q + 2 * kv : 0);
  return c.vocab_size * d * (c.tie_word_embeddings ? 1 : 2) + c.num_hidden_layers * perLayer + d;
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toPrecision(3)} GiB`;
}

/**
 * Validates a parsed config.json. `source` (a path or a label) is named in every error.
 * All problems found are reported in one Error. Sizes are bounded by what this process
 * can hold (see `ConfigLimits`), so a corrupt config fails here and not in an allocation.
 */
/** Bytes of memory this machine has (Node), or 4 GiB where it cannot tell (a browser bundle has no node:os). */
function machineMemory(): number {
  try {
    return totalmem();
  } catch {
    return 4 * 2 ** 30;
  }
}

export function parseConfig(json: unknown, source: string, limits: ConfigLimits = {}): TransformerConfig {
  if (!isRecord(json)) throw new Error(`${source}: config must be a JSON object, got ${describe(json)}`);
  const problems: string[] = [];
  const bad = (field: string, expected: string, value: unknown) =>
    problems.push(`field "${field}": expected ${expected}, got ${describe(value)}`);

  let modelType: ModelType | undefined;
  const rawType = json.model_type;
  if (rawType === undefined) {
    const archs = Array.isArray(json.architectures) ? json.architectures : [];
    modelType = SUPPORTED_MODEL_TYPES.find((t) => archs.includes(ARCHITECTURE_OF[t]));
    if (modelType === undefined) {
      problems.push(`field "model_type" is missing (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
    }
  } else if (typeof rawType === 'string' && (SUPPORTED_MODEL_TYPES as readonly string[]).includes(rawType)) {
    modelType = rawType as ModelType;
  } else {
    problems.push(`field "model_type": unsupported model type ${describe(rawType)} (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
  }
  const defaults = DEFAULTS[modelType ?? 'llama'];

  const positiveInt = (field: string, fallback?: number): number => {
    const v = json[field];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      problems.push(`field "${field}" is missing (expected a positive integer)`);
      return 1;
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      bad(field, 'a positive integer', v);
      return 1;
    }
    return v;
  };
  const positiveNumber = (field: string, fallback: number): number => {
    const v = json[field];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      bad(field, 'a positive finite number', v);
      return fallback;
    }
    return v;
  };
  const boolean = (field: string, fallback: boolean): boolean => {
    const v = json[field];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') {
      bad(field, 'true or false', v);
      return fallback;
    }
    return v;
  };
  const tokenId = (field: string, allowList: boolean): number | number[] | null => {
    const v = json[field];
    if (v === undefined || v === null) return null;
    const ok = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
    if (ok(v)) return v;
    if (allowList && Array.isArray(v) && v.length > 0 && v.every(ok)) return [...v];
    bad(field, allowList ? 'a token id or a non-empty list of token ids' : 'a token id', v);
    return null;
  };

  const vocabSize = positiveInt('vocab_size');
  const hiddenSize = positiveInt('hidden_size');
  const intermediateSize = positiveInt('intermediate_size');
  const numLayers = positiveInt('num_hidden_layers');
  const numHeads = positiveInt('num_attention_heads');
  const numKvHeads = positiveInt('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    problems.push(`field "num_key_value_heads": ${numKvHeads} does not divide num_attention_heads ${numHeads}`);
  }
  let headDim: number;
  if (json.head_dim === undefined || json.head_dim === null) {
    if (hiddenSize % numHeads !== 0) {
      problems.push(`field "hidden_size": ${hiddenSize} is not a multiple of num_attention_heads ${numHeads} and "head_dim" is not given`);
    }
    headDim = Math.floor(hiddenSize / numHeads);
  } else {
    headDim = positiveInt('head_dim');
  }
  if (headDim % 2 !== 0) problems.push(`field "head_dim": rotary embeddings need an even head dimension, got ${headDim}`);

  // Both sources of the rotary settings: the classic keys, and transformers v5's
  // rope_parameters, which we read only where the classic keys are absent.
  const ropeParameters = isRecord(json.rope_parameters) ? json.rope_parameters : undefined;
  let ropeTheta: number;
  if ((json.rope_theta === undefined || json.rope_theta === null) && typeof ropeParameters?.rope_theta === 'number') {
    ropeTheta = ropeParameters.rope_theta;
    if (!Number.isFinite(ropeTheta) || ropeTheta <= 0) bad('rope_parameters.rope_theta', 'a positive finite number', ropeTheta);
  } else {
    ropeTheta = positiveNumber('rope_theta', defaults.rope_theta);
  }
  const rawScaling = json.rope_scaling === undefined && ropeParameters !== undefined ? ropeParameters : json.rope_scaling;
  const ropeScaling = parseRopeScaling(rawScaling, problems);

  const architectures = json.architectures;
  let archs: string[] = modelType ? [ARCHITECTURE_OF[modelType]] : [];
  if (architectures !== undefined && architectures !== null) {
    if (Array.isArray(architectures) && architectures.every((a) => typeof a === 'string')) archs = [...architectures];
    else bad('architectures', 'a list of strings', architectures);
  }

  const hiddenAct = json.hidden_act;
  if (hiddenAct !== undefined && hiddenAct !== 'silu') {
    problems.push(`field "hidden_act": only "silu" (SwiGLU) is supported, got ${describe(hiddenAct)}`);
  }
  if (json.mlp_bias === true) problems.push('field "mlp_bias": MLP biases are not supported');
  if (json.use_sliding_window === true) problems.push('field "use_sliding_window": sliding-window attention is not supported');

  let torchDtype: string | null = null;
  const rawDtype = json.torch_dtype ?? json.dtype;
  if (rawDtype !== undefined && rawDtype !== null) {
    if (typeof rawDtype === 'string') torchDtype = rawDtype;
    else bad('torch_dtype', 'a string', rawDtype);
  }

  const config: TransformerConfig = {
    model_type: modelType ?? 'llama',
    architectures: archs,
    vocab_size: vocabSize,
    hidden_size: hiddenSize,
    intermediate_size: intermediateSize,
    num_hidden_layers: numLayers,
    num_attention_heads: numHeads,
    num_key_value_heads: numKvHeads,
    head_dim: headDim,
    rms_norm_eps: positiveNumber('rms_norm_eps', defaults.rms_norm_eps),
    rope_theta: ropeTheta,
    rope_scaling: ropeScaling,
    max_position_embeddings: positiveInt('max_position_embeddings', defaults.max_position_embeddings),
    tie_word_embeddings: boolean('tie_word_embeddings', false),
    attention_bias: boolean('attention_bias', defaults.attention_bias),
    bos_token_id: tokenId('bos_token_id', false) as number | null,
    eos_token_id: tokenId('eos_token_id', true),
    torch_dtype: torchDtype,
  };
  if (problems.length === 0) checkSizes(config, problems, limits.memoryBytes ?? machineMemory());
  if (problems.length > 0) {
    throw new Error(`${source}: invalid config: ${problems.join('; ')}`);
  }
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(json)) {
    // "dtype" is transformers v5's name for torch_dtype; we write torch_dtype back.
    if (!KNOWN_KEYS.has(k) && !(k === 'dtype' && json.torch_dtype === undefined)) extra[k] = v;
  }
  if (Object.keys(extra).length > 0) config.extra = extra;
  return config;
}

function checkSizes(c: TransformerConfig, problems: string[], memoryBytes: number): void {
  if (c.vocab_size > MAX_VOCAB_SIZE) {
    problems.push(`field "vocab_size": ${c.vocab_size} is more than ${MAX_VOCAB_SIZE} (token ids are int32)`);
  }
  const eos = c.eos_token_id === null ? [] : Array.isArray(c.eos_token_id) ? c.eos_token_id : [c.eos_token_id];
  for (const [field, ids] of [['bos_token_id', c.bos_token_id === null ? [] : [c.bos_token_id]], ['eos_token_id', eos]] as const) {
    for (const id of ids) {
      if (id >= c.vocab_size) problems.push(`field "${field}": token ${id} is outside the vocabulary (vocab_size ${c.vocab_size})`);
    }
  }
  const perLayer = 9 + (c.attention_bias ? 3 : 0);
  const tensors = 2 + (c.tie_word_embeddings ? 0 : 1) + c.num_hidden_layers * perLayer;
  if (tensors > MAX_TENSOR_COUNT) {
    problems.push(`field "num_hidden_layers": ${c.num_hidden_layers} layers make ${tensors} tensors; at most ${MAX_TENSOR_COUNT} are supported`);
  }
  const q = c.num_attention_heads * c.head_dim;
  const largest: [string, number][] = [
    ['vocab_size × hidden_size (embedding)', c.vocab_size * c.hidden_size],
    ['intermediate_size × hidden_size (MLP)', c.intermediate_size * c.hidden_size],
    ['num_attention_heads × head_dim × hidden_size (attention)', q * c.hidden_size],
  ];
  for (const [what, elements] of largest) {
    if (4 * elements > MAX_ARRAY_BYTES) {
      problems.push(`${what} = ${elements} elements: ${gib(4 * elements)} as float32 is more than one array can hold (${gib(MAX_ARRAY_BYTES)})`);
    }
  }
  const bytes = 4 * configParameterCount(c);
  if (bytes > memoryBytes) {
    problems.push(
      `the config describes ${configParameterCount(c).toPrecision(3)} parameters, ${gib(bytes)} as float32, more than this machine's ${gib(memoryBytes)} of memory`,
    );
  }
}

function parseRopeScaling(raw: unknown, problems: string[]): RopeScaling | null {
  if (raw === undefined || raw === null) return null;
  if (!isRecord(raw)) {
    problems.push(`field "rope_scaling": expected null or an object, got ${describe(raw)}`);
    return null;
  }
  // Configs written before transformers 4.43 name the kind "type" rather than "rope_type".
  const kind = raw.rope_type ?? raw.type;
  const num = (key: string, check: (x: number) => boolean, expected: string): number => {
    const v = raw[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) {
      problems.push(`field "rope_scaling.${key}": expected ${expected}, got ${describe(v)}`);
      return 1;
    }
    return v;
  };
  if (kind === 'default') return null;
  if (kind === 'linear') {
    return { rope_type: 'linear', factor: num('factor', (x) => x > 0, 'a positive number') };
  }
  if (kind === 'llama3') {
    const s: Llama3RopeScaling = {
      rope_type: 'llama3',
      factor: num('factor', (x) => x > 0, 'a positive number'),
      low_freq_factor: num('low_freq_factor', (x) => x > 0, 'a positive number'),
      high_freq_factor: num('high_freq_factor', (x) => x > 0, 'a positive number'),
      original_max_position_embeddings: num('original_max_position_embeddings', (x) => Number.isSafeInteger(x) && x > 0, 'a positive integer'),
    };
    if (s.high_freq_factor <= s.low_freq_factor) {
      problems.push(`field "rope_scaling.high_freq_factor": must exceed low_freq_factor (${s.high_freq_factor} <= ${s.low_freq_factor})`);
    }
    return s;
  }
  problems.push(`field "rope_scaling.rope_type": unsupported ${describe(kind)} (supported: llama3, linear, default)`);
  return null;
}

/** The JSON object written to config.json: the known fields, then the preserved extra keys. */
export function configToJson(config: TransformerConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {
    architectures: config.architectures,
    model_type: config.model_type,
    vocab_size: config.vocab_size,
    hidden_size: config.hidden_size,
    intermediate_size: config.intermediate_size,
    num_hidden_layers: config.num_hidden_layers,
    num_attention_heads: config.num_attention_heads,
    num_key_value_heads: config.num_key_value_heads,
    head_dim: config.head_dim,
    rms_norm_eps: config.rms_norm_eps,
    rope_theta: config.rope_theta,
    rope_scaling: config.rope_scaling,
    max_position_embeddings: config.max_position_embeddings,
    tie_word_embeddings: config.tie_word_embeddings,
    attention_bias: config.attention_bias,
    bos_token_id: config.bos_token_id,
    eos_token_id: config.eos_token_id,
    torch_dtype: config.torch_dtype,
  };
  for (const [k, v] of Object.entries(config.extra ?? {})) {
    if (!KNOWN_KEYS.has(k)) out[k] = v;
  }
  return out;
}

export async function readConfig(dir: string): Promise<TransformerConfig> {
  const path = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new Error(`${path}: cannot read config: ${(e as Error).message}`, { cause: e });
  }
  return parseConfig(parseJsonStrict(text, path), path);
}

/** Writes dir/config.json atomically (temp file + rename); validates first. */
export async function writeConfig(dir: string, config: TransformerConfig): Promise<void> {
  const path = join(dir, 'config.json');
  const json = configToJson(config);
  parseConfig(json, `${path} (about to be written)`);
  await writeFileAtomic(path, `${JSON.stringify(json, null, 2)}\n`);
}

/**
 * RoPE inverse frequencies θ_i for i < head_dim/2, in float64, as transformers'
 * ROPE_INIT_FUNCTIONS compute them (default, linear, llama3). transformers does this
 * arithmetic in float32; cast the result where bit-parity with it matters.
 */
export function ropeInverseFrequencies(config: Pick<TransformerConfig, 'head_dim' | 'rope_theta' | 'rope_scaling'>): Float64Array {
  const d = config.head_dim;
  const half = Math.floor(d / 2);
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(config.rope_theta, (2 * i) / d);
  const s = config.rope_scaling;
  if (s === null) return inv;
  if (s.rope_type === 'linear') {
    for (let i = 0; i < half; i++) inv[i] = inv[i] / s.factor;
    return inv;
  }
  // transformers' _compute_llama3_parameters, element by element.
  const oldCtx = s.original_max_position_embeddings;
  const lowFreqWavelen = oldCtx / s.low_freq_factor;
  const highFreqWavelen = oldCtx / s.high_freq_factor;
  for (let i = 0; i < half; i++) {
    const f = inv[i];
    const wavelen = (2 * Math.PI) / f;
    if (wavelen > lowFreqWavelen) {
      inv[i] = f / s.factor;
    } else if (wavelen < highFreqWavelen) {
      inv[i] = f;
    } else {
      const smooth = (oldCtx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      inv[i] = ((1 - smooth) * f) / s.factor + smooth * f;
    }
  }
  return inv;
}
