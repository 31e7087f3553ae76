/**
 * Model checkpoints: parameter pytree ↔ Hugging Face tensor names, and whole model
 * directories (config.json + safetensors [+ tokenizer.json]) as transformers lays them out.
 */
import { type Backend, type DType, getDefaultBackend, type Tensor, tensor, fmtShape } from '@softgrad/tensor';
import { readConfig, writeConfig, type TransformerConfig } from './config.js';
import type { LayerParams, ModelParams } from './model.js';
import { readCheckpointDir, writeCheckpointDir, type HostTensor, type WriteFloatDtype } from './safetensors.js';
import { validateCheckpointTensors } from './weights.js';

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
}

/** Build parameters from named host tensors after validating them against the config. */
export function paramsFromHost(config: TransformerConfig, host: Record<string, HostTensor>, source: string, opts: LoadOptions = {}): ModelParams {
  validateCheckpointTensors(config, host, source);
  const dtype = opts.dtype ?? 'float32';
  const backend = opts.backend ?? getDefaultBackend();
  const created: Tensor[] = [];
  const load = (name: string): Tensor => {
    const h = host[name];
    if (!h) throw new Error(`${source}: missing tensor ${name}`);
    if (h.dtype !== 'float32' && h.dtype !== 'float64') throw new Error(`${source}: ${name} is ${h.dtype}, expected a float tensor`);
    const data = dtype === 'float64' ? Float64Array.from(h.data) : h.data instanceof Float32Array ? h.data : Float32Array.from(h.data);
    const t = tensor(data, { shape: h.shape, dtype, backend });
    created.push(t);
    return t;
  };
  try {
    const layers: LayerParams[] = [];
    for (let i = 0; i < config.num_hidden_layers; i++) {
      const L: Partial<LayerParams> = {};
      for (const [field, name] of LAYER_NAMES) {
        const full = `model.layers.${i}.${name}`;
        if (field.endsWith('Bias') && !config.attention_bias) continue;
        L[field] = load(full);
      }
      layers.push(L as LayerParams);
    }
    const params: ModelParams = { embed: load('model.embed_tokens.weight'), layers, norm: load('model.norm.weight') };
    if (!config.tie_word_embeddings) params.lmHead = load('lm_head.weight');
    return params;
  } catch (e) {
    for (const t of created) t.dispose();
    throw e;
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
  const host = await readCheckpointDir(dir);
  return { config, params: paramsFromHost(config, host, dir, opts) };
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
