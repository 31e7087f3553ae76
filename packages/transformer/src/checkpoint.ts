/**
 * Model checkpoints: parameter pytree ↔ Hugging Face tensor names, and whole model
 * directories (config.json + safetensors [+ tokenizer.json]) as transformers lays them out.
 */
import {
  type Backend, type DType, dynamicUpdateSlice, getDefaultBackend, jit, scalar, type Tensor, tensor, fmtShape, zeros,
} from '@softgrad/tensor';
import { readConfig, writeConfig, type TransformerConfig } from './config.js';
import type { LayerParams, ModelParams } from './model.js';
import { openCheckpointDir, SafetensorsReader, writeCheckpointDir, type HostTensor, type WriteFloatDtype } from './safetensors.js';
import { checkTiedCopy, expectedTensorNames, validateCheckpointTensors } from './weights.js';

const LAYER_NAMES: [keyof LayerParams, string][] = [
  ['q', 'self_attn.q_proj.weight'],
  ['k', 'self_attn.k_proj.weight'],
  ['v', 'self_attn.v_proj.weight'],
  ['o', 'self_attn.o_proj.weight'],
  ['qBias', 'self_attn.q_proj.bias'],
  ['kBias', 'self_attn.k_proj.bias'],
  ['vBias', 'self_attn.v_proj.bias'],
  ['gate', 'mlp.gate_proj.weight'],
  ['up', 'mlp.up_proj.weight'],
  ['down', 'mlp.down_proj.weight'],
  ['inputNorm', 'input_layernorm.weight'],
  ['postNorm', 'post_attention_layernorm.weight'],
];

/** The parameters under their Hugging Face names (the same tensor objects, not copies). */
export function paramsToNamed(params: ModelParams): Record<string, Tensor> {
  const out: Record<string, Tensor> = { 'model.embed_tokens.weight': params.embed, 'model.norm.weight': params.norm };
  params.layers.forEach((L, i) => {
    for (const [field, name] of LAYER_NAMES) {
      const t = L[field];
      if (t) out[`model.layers.${i}.${name}`] = t;
    }
  });
  if (params.lmHead) out['lm_head.weight'] = params.lmHead;
  return out;
}

export interface LoadOptions {
  /** Compute dtype of the loaded parameters (default float32; BF16/F16 weights are widened). */
  dtype?: DType;
  backend?: Backend;
  /**
   * Bytes of one tensor held on the host at a time while loading (default 8 MiB,
   * `DEFAULT_LOAD_PIECE_BYTES`). A larger tensor is read in pieces of rows, each written into
   * its place in the backend's buffer, so loading peaks at the parameters plus about this much.
   */
  pieceBytes?: number;
}

export const DEFAULT_LOAD_PIECE_BYTES = 8 << 20;

/**
 * Weights must be finite: one NaN or Inf poisons every activation after it, and a file
 * holding one is corrupt or was saved from a diverged run.
 */
function checkFinite(h: HostTensor, name: string, source: string): void {
  if (h.dtype !== 'float32' && h.dtype !== 'float64') return;
  checkFiniteData(h.data, 0, name, source);
}

/** `data` holds elements from `first` on of the named tensor. */
function checkFiniteData(data: Float32Array | Float64Array, first: number, name: string, source: string): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v - v !== 0) {
      throw new Error(`${source}: tensor ${JSON.stringify(name)}: element ${first + i} is ${v}; expected finite weights (corrupt file or diverged run?)`);
    }
  }
}

/** Writes rows into a preallocated parameter in place (the parameter is donated). */
const writeRows = jit((x: Tensor, rows: Tensor, at: Tensor) => dynamicUpdateSlice(x, rows, at, 0), {
  name: 'loadParams (rows into place)', donateArgnums: [0], maxCacheEntries: 8,
});

function hostToTensor(h: HostTensor, name: string, source: string, opts: LoadOptions): Tensor {
  if (h.dtype !== 'float32' && h.dtype !== 'float64') throw new Error(`${source}: ${name} is ${h.dtype}, expected a float tensor`);
  checkFinite(h, name, source);
  const dtype = opts.dtype ?? 'float32';
  const backend = opts.backend ?? getDefaultBackend();
  const data = dtype === 'float64' ? Float64Array.from(h.data) : h.data instanceof Float32Array ? h.data : Float32Array.from(h.data);
  return tensor(data, { shape: h.shape, dtype, backend });
}

/** The parameter tree from tensors under their Hugging Face names (`take` must give each once). */
function assembleParams(config: TransformerConfig, take: (name: string) => Tensor): ModelParams {
  const layers: LayerParams[] = [];
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const L: Partial<LayerParams> = {};
    for (const [field, name] of LAYER_NAMES) {
      if (field.endsWith('Bias') && !config.attention_bias) continue;
      L[field] = take(`model.layers.${i}.${name}`);
    }
    layers.push(L as LayerParams);
  }
  const params: ModelParams = { embed: take('model.embed_tokens.weight'), layers, norm: take('model.norm.weight') };
  if (!config.tie_word_embeddings) params.lmHead = take('lm_head.weight');
  return params;
}

/** Build parameters from named host tensors after validating them against the config. */
export function paramsFromHost(config: TransformerConfig, host: Record<string, HostTensor>, source: string, opts: LoadOptions = {}): ModelParams {
  validateCheckpointTensors(config, host, source);
  const lmHead = host['lm_head.weight'];
  if (config.tie_word_embeddings && lmHead) checkTiedCopy(host['model.embed_tokens.weight']!.data, lmHead.data, source);
  const created: Tensor[] = [];
  try {
    return assembleParams(config, (name) => {
      const h = host[name];
      if (!h) throw new Error(`${source}: missing tensor ${name}`);
      const t = hostToTensor(h, name, source, opts);
      created.push(t);
      return t;
    });
  } catch (e) {
    for (const t of created) t.dispose();
    throw e;
  }
}

/**
 * Reads the parameters for `config` from a checkpoint directory (one model.safetensors or
 * shards with an index). Every header is read and checked against the config first (names,
 * shapes, float dtypes), so a mismatched or hostile file is refused before any of its data
 * is read; then the weights stream in a piece at a time (`LoadOptions.pieceBytes`): a tensor
 * larger than a piece gets its buffer on the backend first and each piece of its rows is
 * written into place, so memory peaks at the parameters plus one piece (not one whole
 * tensor, raw and decoded: the embedding of a large vocabulary is a quarter of a small model).
 * Every piece is checked to be finite.
 */
export async function loadParams(config: TransformerConfig, dir: string, opts: LoadOptions = {}): Promise<ModelParams> {
  const pieceBytes = opts.pieceBytes ?? DEFAULT_LOAD_PIECE_BYTES;
  if (!Number.isSafeInteger(pieceBytes) || pieceBytes < 1) throw new Error(`loadParams: pieceBytes must be a positive integer, got ${pieceBytes}`);
  const reader = await openCheckpointDir(dir);
  const shapes: Record<string, { shape: number[]; dtype: string }> = Object.create(null);
  for (const [name, e] of reader.entries) shapes[name] = { shape: e.shape, dtype: e.dtype };
  validateCheckpointTensors(config, shapes, reader.source);
  const loaded = new Map<string, Tensor>();
  const names = expectedTensorNames(config).map((e) => e.name);
  const tiedCopy = config.tie_word_embeddings && reader.entries.has('lm_head.weight');
  const dtype = opts.dtype ?? 'float32';
  const backend = opts.backend ?? getDefaultBackend();
  const place = { dtype, backend };
  const asDtype = (data: Float32Array | Float64Array) => (dtype === 'float64' ? (data instanceof Float64Array ? data : Float64Array.from(data)) : data instanceof Float32Array ? data : Float32Array.from(data));
  // A tied model's lm_head.weight must be a copy of the embedding: it is compared piece by
  // piece with the embedding's rows, read again from its file, and never loaded.
  let embedFile: SafetensorsReader | undefined;
  // A device backend (no synchronous reads: WebGPU) stages every upload until its queue runs;
  // waiting for the queue every so often lets the staged copies go, or they would pile up to
  // a second copy of the model before the first read.
  const syncEvery = backend.readSync ? Infinity : 4 * pieceBytes;
  let unsynced = 0;
  const uploaded = async (bytes: number) => {
    unsynced += bytes;
    if (unsynced < syncEvery) return;
    unsynced = 0;
    const probe = scalar(0, { dtype: 'int32', backend });
    try {
      await probe.data();
    } finally {
      probe.dispose();
    }
  };
  try {
    await reader.readEachInRows(tiedCopy ? [...names, 'lm_head.weight'] : names, pieceBytes, async (name, entry, piece) => {
      const rowElems = entry.shape.length <= 1 ? 1 : entry.shape.slice(1).reduce((a, b) => a * b, 1);
      checkFiniteData(piece.data, piece.row * rowElems, name, entry.path);
      if (name === 'lm_head.weight' && tiedCopy) {
        embedFile ??= await SafetensorsReader.open(reader.entries.get('model.embed_tokens.weight')!.path);
        const embedRows = await embedFile.readRowRange('model.embed_tokens.weight', piece.row, piece.rows);
        checkTiedCopy(embedRows, piece.data, reader.source, piece.row * rowElems);
        return;
      }
      const totalRows = entry.shape.length === 0 ? 1 : entry.shape[0]!;
      if (piece.row === 0 && piece.rows === totalRows) {
        loaded.set(name, tensor(asDtype(piece.data), { shape: entry.shape, ...place }));
        await uploaded(piece.data.byteLength);
        return;
      }
      if (piece.row === 0) loaded.set(name, zeros(entry.shape, place));
      const rows = tensor(asDtype(piece.data), { shape: [piece.rows, ...entry.shape.slice(1)], ...place });
      const at = scalar(piece.row, { dtype: 'int32', backend });
      try {
        loaded.set(name, writeRows(loaded.get(name)!, rows, at));
      } finally {
        rows.dispose();
        at.dispose();
      }
      await uploaded(piece.data.byteLength);
    });
    return assembleParams(config, (name) => loaded.get(name)!);
  } catch (e) {
    for (const t of loaded.values()) if (!t.isDisposed) t.dispose();
    throw e;
  } finally {
    writeRows.dispose();
    await embedFile?.close();
  }
}

/** Read parameters back to the host as float32 (or float64) arrays under HF names. */
export async function paramsToHost(params: ModelParams): Promise<Record<string, HostTensor>> {
  const out: Record<string, HostTensor> = {};
  for (const [name, t] of Object.entries(paramsToNamed(params))) {
    const data = await t.data();
    if (data instanceof Float64Array) out[name] = { dtype: 'float64', shape: [...t.shape], data };
    else if (data instanceof Float32Array) out[name] = { dtype: 'float32', shape: [...t.shape], data };
    else throw new Error(`paramsToHost: ${name} has non-float dtype ${t.dtype} ${fmtShape(t.shape)}`);
  }
  return out;
}

export interface LoadedModel {
  config: TransformerConfig;
  params: ModelParams;
}

/** Load config.json and the safetensors checkpoint (single file or sharded) of a directory. */
export async function loadModel(dir: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const config = await readConfig(dir);
  return { config, params: await loadParams(config, dir, opts) };
}

export interface SaveOptions {
  /** Stored float type: F32 (default, exact) or BF16 (half the size). */
  dtype?: WriteFloatDtype;
  maxShardBytes?: number;
}

/** Write config.json and the weights; each file is written atomically. */
export async function saveModel(dir: string, config: TransformerConfig, params: ModelParams, opts: SaveOptions = {}): Promise<void> {
  const host = await paramsToHost(params);
  // Stored as F32/BF16 whatever the compute dtype: widen-narrow float64 on the way out.
  for (const [name, h] of Object.entries(host)) {
    if (h.dtype === 'float64' && opts.dtype !== 'F64') host[name] = { dtype: 'float32', shape: h.shape, data: Float32Array.from(h.data) };
  }
  const cfg: TransformerConfig = { ...config, torch_dtype: opts.dtype === 'BF16' ? 'bfloat16' : 'float32' };
  await writeCheckpointDir(dir, host, { dtype: opts.dtype ?? 'F32', maxShardBytes: opts.maxShardBytes });
  await writeConfig(dir, cfg);
}
