/**
 * Checkpoints written from specs one tensor at a time, and loaded in pieces of rows written
 * into place: the same parameters as a whole-tensor load, with every check (finite weights,
 * a tied lm_head copy, digests) still made, and errors naming the element at fault.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as T from '@softgrad/tensor';
import {
  configParameterCount, floatToBf16Bits, bf16BitsToFloat, loadParams, paramsToNamed, parseConfig, randomWeight, readCheckpointDir,
  writeCheckpointDir, writeCheckpointDirFrom, writeConfig, writeRandomCheckpoint, type HostTensor, type TensorSpec,
} from '../src/index.js';

let dir = '';
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'softgrad-stream-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const config = parseConfig({
  model_type: 'qwen2', vocab_size: 301, hidden_size: 24, intermediate_size: 40, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, tie_word_embeddings: true,
}, 'tiny qwen2');

async function hostOf(params: ReturnType<typeof paramsToNamed>): Promise<Record<string, Float32Array>> {
  const out: Record<string, Float32Array> = {};
  for (const [name, t] of Object.entries(params)) out[name] = (await t.data()) as Float32Array;
  return out;
}

describe('checkpoints written from specs', () => {
  it('asks for each tensor once, in name order, one at a time, and writes what writeCheckpointDir writes', async () => {
    const specs: TensorSpec[] = [
      { name: 'b', dtype: 'float32', shape: [3, 2] }, { name: 'a', dtype: 'float32', shape: [5] }, { name: 'c', dtype: 'int32', shape: [2] },
    ];
    const make = (s: TensorSpec): HostTensor => s.dtype === 'int32'
      ? { dtype: 'int32', shape: s.shape, data: Int32Array.of(7, -1) }
      : { dtype: 'float32', shape: s.shape, data: Float32Array.from({ length: s.shape.reduce((x, y) => x * y, 1) }, (_, i) => i / 3) };
    const asked: string[] = [];
    let inFlight = 0;
    await writeCheckpointDirFrom(join(dir, 'from'), specs, async (s) => {
      expect(inFlight).toBe(0);
      inFlight++;
      asked.push(s.name);
      await new Promise((r) => setTimeout(r, 1));
      inFlight--;
      return make(s);
    }, { dtype: 'BF16', maxShardBytes: 8 });
    expect(asked).toEqual(['a', 'b', 'c']);
    await writeCheckpointDir(join(dir, 'eager'), Object.fromEntries(specs.map((s) => [s.name, make(s)])), { dtype: 'BF16', maxShardBytes: 8 });
    for (const f of ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors', 'model.safetensors.index.json']) {
      expect(await readFile(join(dir, 'from', f))).toEqual(await readFile(join(dir, 'eager', f)));
    }
  });

  it('refuses a produced tensor that is not the one its spec announced, naming both', async () => {
    await expect(writeCheckpointDirFrom(dir, [{ name: 'w', dtype: 'float32', shape: [2, 2] }],
      () => ({ dtype: 'float32', shape: [4], data: new Float32Array(4) }))).rejects.toThrow(/"w": produced float32 \[4\], but the header was written for float32 \[2,2\]/);
    await expect(writeCheckpointDirFrom(dir, [{ name: 'w', dtype: 'float32', shape: [2] }, { name: 'w', dtype: 'float32', shape: [2] }],
      () => ({ dtype: 'float32', shape: [2], data: new Float32Array(2) }))).rejects.toThrow(/given twice/);
  });
});

describe('loading in pieces', () => {
  it('gives exactly the bf16 weights written, whatever the piece size, sharded or not', async () => {
    const written = await writeRandomCheckpoint(dir, config, { seed: 3, maxShardBytes: 4096 });
    expect(written.files.filter((f) => f.endsWith('.safetensors')).length).toBeGreaterThan(2);
    expect(written.float32Bytes).toBe(4 * configParameterCount(config));
    const whole = await loadParams(config, dir, { pieceBytes: 1 << 30 });
    const pieces = await loadParams(config, dir, { pieceBytes: 100 }); // the embedding in 25 pieces of one row
    const a = await hostOf(paramsToNamed(whole));
    const b = await hostOf(paramsToNamed(pieces));
    for (const [name, data] of Object.entries(a)) {
      expect(b[name], name).toEqual(data);
      const want = randomWeight(name, [data.length], 3, 0.02).data.map((v) => bf16BitsToFloat(floatToBf16Bits(v)));
      expect(data, name).toEqual(want);
    }
    // The on-disk reader agrees too.
    const host = await readCheckpointDir(dir);
    expect(host['model.embed_tokens.weight']!.data).toEqual(a['model.embed_tokens.weight']);
    T.treeDispose([whole, pieces]);
  });

  it('names the element of a non-finite weight found in a later piece', async () => {
    const tensors: Record<string, HostTensor> = {};
    for (const e of (await import('../src/weights.js')).expectedTensorNames(config)) tensors[e.name] = randomWeight(e.name, e.shape, 1, 0.02);
    const embed = tensors['model.embed_tokens.weight']!.data as Float32Array;
    embed[200 * 24 + 5] = Number.POSITIVE_INFINITY;
    await writeCheckpointDir(dir, tensors, { dtype: 'F32' });
    await writeConfig(dir, config);
    const before = T.getDefaultBackend().stats().liveBuffers;
    await expect(loadParams(config, dir, { pieceBytes: 24 * 4 * 16 })).rejects.toThrow(
      new RegExp(`"model\\.embed_tokens\\.weight": element ${200 * 24 + 5} is Infinity`));
    expect(T.getDefaultBackend().stats().liveBuffers).toBe(before);
  });

  it('checks a tied lm_head copy piece by piece: accepted when equal, refused at the first differing element', async () => {
    const tensors: Record<string, HostTensor> = {};
    for (const e of (await import('../src/weights.js')).expectedTensorNames(config)) tensors[e.name] = randomWeight(e.name, e.shape, 2, 0.02);
    const embed = tensors['model.embed_tokens.weight']!;
    tensors['lm_head.weight'] = { dtype: 'float32', shape: [...embed.shape], data: (embed.data as Float32Array).slice() };
    await writeCheckpointDir(dir, tensors, { dtype: 'BF16', maxShardBytes: 20_000 });
    await writeConfig(dir, config);
    const ok = await loadParams(config, dir, { pieceBytes: 24 * 4 * 10 });
    expect(ok.lmHead).toBeUndefined();
    T.treeDispose(ok);
    (tensors['lm_head.weight']!.data as Float32Array)[250 * 24 + 1] += 0.5;
    await writeCheckpointDir(dir, tensors, { dtype: 'BF16', maxShardBytes: 20_000 });
    await expect(loadParams(config, dir, { pieceBytes: 24 * 4 * 10 })).rejects.toThrow(
      new RegExp(`lm_head\\.weight differs from model\\.embed_tokens\\.weight \\(element ${250 * 24 + 1}\\)`));
  });

  it('refuses a piece size that is not a positive integer', async () => {
    await writeRandomCheckpoint(dir, config);
    await expect(loadParams(config, dir, { pieceBytes: 0 })).rejects.toThrow(/pieceBytes must be a positive integer, got 0/);
  });
});
