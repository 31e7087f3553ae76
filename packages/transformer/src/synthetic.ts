/**
 * Checkpoints of a real model's shape with random weights: config.json plus safetensors (BF16
 * by default, sharded like transformers' save_pretrained), written by our own writer one
 * tensor at a time, so a model larger than memory can be written. For benchmarks and tests of
 * the loading, memory and throughput of real shapes where the real weights are not at hand.
 */
import { configToJson, parseConfig, writeConfig, type TransformerConfig } from './config.js';
import { writeCheckpointDirFrom, type HostTensor, type TensorSpec, type WriteFloatDtype } from './safetensors.js';
import { expectedTensorNames } from './weights.js';

export interface RandomCheckpointOptions {
  /** Seed of the weights (default 0): the same seed writes the same bytes. */
  seed?: number;
  /** How weights are stored (default BF16, as the published checkpoints are). */
  dtype?: WriteFloatDtype;
  /** Largest shard in bytes (default: one model.safetensors). */
  maxShardBytes?: number;
  /**
   * Standard deviation of matrix and bias entries (default the config's initializer_range,
   * else 0.02). Entries are uniform on [−√3·std, √3·std] (that standard deviation, cheap to
   * draw); norm weights are 1.
   */
  std?: number;
}

/** A small, fast, seedable generator (xoshiro128**): weights, not cryptography. */
function xoshiro128(seed: number): () => number {
  let a = 0x9e3779b9 ^ seed;
  let b = 0x243f6a88 + Math.imul(seed, 0x85ebca6b);
  let c = 0xb7e15162 ^ Math.imul(seed, 0xc2b2ae35);
  let d = 0x7f4a7c15;
  const next = (): number => {
    const r = Math.imul(rotl(Math.imul(b, 5), 7), 9);
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return r >>> 0;
  };
  for (let i = 0; i < 16; i++) next();
  return next;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** A stable per-name seed, so each tensor's values do not depend on the order they are written in. */
function nameSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The random weights of one tensor of a checkpoint (see `RandomCheckpointOptions`). */
export function randomWeight(name: string, shape: readonly number[], seed: number, std: number): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  if (name.endsWith('layernorm.weight') || name === 'model.norm.weight') {
    data.fill(1);
  } else {
    const next = xoshiro128(nameSeed(seed, name));
    const scale = (2 * Math.sqrt(3) * std) / 2 ** 32;
    const shift = Math.sqrt(3) * std;
    for (let i = 0; i < n; i++) data[i] = next() * scale - shift;
  }
  return { dtype: 'float32', shape: [...shape], data };
}

/**
 * Writes `config` (its torch_dtype set to the storage dtype) and random weights of its shape
 * into `dir`, one tensor in memory at a time. Returns the files written and the weights' size
 * on disk and as float32.
 */
export async function writeRandomCheckpoint(
  dir: string, config: TransformerConfig, options: RandomCheckpointOptions = {},
): Promise<{ files: string[]; storedBytes: number; float32Bytes: number }> {
  const seed = options.seed ?? 0;
  const dtype = options.dtype ?? 'BF16';
  const init = config.extra?.['initializer_range'];
  const std = options.std ?? (typeof init === 'number' && init > 0 ? init : 0.02);
  if (!Number.isSafeInteger(seed)) throw new Error(`writeRandomCheckpoint: seed must be an integer, got ${seed}`);
  if (!(std >= 0) || !Number.isFinite(std)) throw new Error(`writeRandomCheckpoint: std must be a finite number ≥ 0, got ${std}`);
  const torchDtype = dtype === 'BF16' ? 'bfloat16' : dtype === 'F32' ? 'float32' : 'float64';
  const withDtype = parseConfig({ ...configToJson(config), torch_dtype: torchDtype }, `${dir}/config.json`);
  const specs: TensorSpec[] = expectedTensorNames(config).map((e) => ({ name: e.name, dtype: 'float32', shape: e.shape }));
  const { files } = await writeCheckpointDirFrom(dir, specs, (spec) => randomWeight(spec.name, spec.shape, seed, std), {
    dtype, maxShardBytes: options.maxShardBytes,
  });
  await writeConfig(dir, withDtype);
  const elements = specs.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
  const width = dtype === 'BF16' ? 2 : dtype === 'F32' ? 4 : 8;
  return { files: [...files, 'config.json'], storedBytes: elements * width, float32Bytes: elements * 4 };
}
