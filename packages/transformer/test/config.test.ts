import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig, readConfig, ropeInverseFrequencies, writeConfig, type TransformerConfig } from '../src/config.js';

// The config.json of meta-llama/Llama-3.2-1B-Instruct, as published.
const LLAMA_32_1B = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  head_dim: 64,
  hidden_act: 'silu',
  hidden_size: 2048,
  initializer_range: 0.02,
  intermediate_size: 8192,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 16,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    factor: 32.0,
    high_freq_factor: 4.0,
    low_freq_factor: 1.0,
    original_max_position_embeddings: 8192,
    rope_type: 'llama3',
  },
  rope_theta: 500000.0,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.45.0.dev0',
  use_cache: true,
  vocab_size: 128256,
};

// The config.json of Qwen/Qwen2.5-0.5B-Instruct: no head_dim, no attention_bias.
const QWEN_25_05B = {
  architectures: ['Qwen2ForCausalLM'],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  hidden_act: 'silu',
  hidden_size: 896,
  initializer_range: 0.02,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  max_window_layers: 21,
  model_type: 'qwen2',
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.43.1',
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

const SRC = '/models/x/config.json';

function expectConfigError(json: unknown, ...fragments: string[]): void {
  let error: unknown;
  try {
    parseConfig(json, SRC);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(Error);
  const message = (error as Error).message;
  expect(message).toContain(SRC);
  for (const f of fragments) expect(message).toContain(f);
}

describe('parseConfig', () => {
  it('reads a published Llama 3.2 config with its llama3 rope scaling', () => {
    const c = parseConfig(LLAMA_32_1B, SRC);
    expect(c.model_type).toBe('llama');
    expect(c.head_dim).toBe(64);
    expect(c.num_key_value_heads).toBe(8);
    expect(c.rope_scaling).toEqual({
      rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192,
    });
    expect(c.tie_word_embeddings).toBe(true);
    expect(c.attention_bias).toBe(false);
    expect(c.eos_token_id).toEqual([128001, 128008, 128009]);
    expect(c.extra).toMatchObject({ transformers_version: '4.45.0.dev0', pretraining_tp: 1, hidden_act: 'silu' });
  });

  it('gives Qwen2 q/k/v biases and derives head_dim when the config leaves them out', () => {
    const c = parseConfig(QWEN_25_05B, SRC);
    expect(c.model_type).toBe('qwen2');
    expect(c.attention_bias).toBe(true);
    expect(c.head_dim).toBe(64);
    expect(c.rope_scaling).toBeNull();
    expect(c.extra).toMatchObject({ sliding_window: 32768, max_window_layers: 21 });
  });

  it('fills transformers defaults for absent optional keys', () => {
    const c = parseConfig(
      { model_type: 'llama', vocab_size: 10, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2 },
      SRC,
    );
    expect(c.num_key_value_heads).toBe(2);
    expect(c.head_dim).toBe(4);
    expect(c.rope_theta).toBe(10000);
    expect(c.rms_norm_eps).toBe(1e-6);
    expect(c.tie_word_embeddings).toBe(false);
    expect(c.architectures).toEqual(['LlamaForCausalLM']);
    expect(c.rope_scaling).toBeNull();
    expect(c.bos_token_id).toBeNull();
  });

  it('accepts the pre-4.43 spelling "type" for the rope scaling kind, and linear scaling', () => {
    const c = parseConfig({ ...LLAMA_32_1B, rope_scaling: { ...LLAMA_32_1B.rope_scaling, rope_type: undefined, type: 'llama3' } }, SRC);
    expect(c.rope_scaling?.rope_type).toBe('llama3');
    const lin = parseConfig({ ...LLAMA_32_1B, rope_scaling: { type: 'linear', factor: 2 } }, SRC);
    expect(lin.rope_scaling).toEqual({ rope_type: 'linear', factor: 2 });
  });

  it('reads transformers v5 spellings: "dtype" and rope_parameters, and infers model_type from architectures', () => {
    const { rope_theta: _t, rope_scaling: _s, torch_dtype: _d, model_type: _m, ...rest } = LLAMA_32_1B;
    const c = parseConfig({ ...rest, dtype: 'bfloat16', rope_parameters: { rope_theta: 500000, ...LLAMA_32_1B.rope_scaling } }, SRC);
    expect(c.model_type).toBe('llama');
    expect(c.torch_dtype).toBe('bfloat16');
    expect(c.rope_theta).toBe(500000);
    expect(c.rope_scaling).toEqual(parseConfig(LLAMA_32_1B, SRC).rope_scaling);
    expect(c.extra?.dtype).toBeUndefined();
  });

  it('names an unknown model type and the supported ones', () => {
    expectConfigError({ ...LLAMA_32_1B, model_type: 'mistral' }, '"mistral"', 'llama', 'qwen2', 'model_type');
  });

  it('names each missing or invalid required field', () => {
    const { hidden_size: _h, ...noHidden } = LLAMA_32_1B;
    expectConfigError(noHidden, 'hidden_size', 'missing');
    expectConfigError({ ...LLAMA_32_1B, num_hidden_layers: -2 }, 'num_hidden_layers', '-2');
    expectConfigError({ ...LLAMA_32_1B, vocab_size: '128256' }, 'vocab_size', 'positive integer');
    expectConfigError({ ...LLAMA_32_1B, rms_norm_eps: 0 }, 'rms_norm_eps');
    expectConfigError({ ...LLAMA_32_1B, tie_word_embeddings: 'yes' }, 'tie_word_embeddings');
    expectConfigError({ ...LLAMA_32_1B, eos_token_id: [1, 'x'] }, 'eos_token_id');
    expectConfigError([1, 2], 'JSON object');
  });

  it('bounds sizes by what this process can hold, at once and saying so', () => {
    const t0 = performance.now();
    expectConfigError({ ...LLAMA_32_1B, num_hidden_layers: 1e9 }, 'num_hidden_layers', '1000000000 layers make', 'at most 100000');
    expectConfigError({ ...LLAMA_32_1B, num_hidden_layers: 1e6 }, 'num_hidden_layers', 'at most 100000');
    expectConfigError({ ...LLAMA_32_1B, hidden_size: 2 ** 40, head_dim: 64 }, 'more than one array can hold');
    expect(performance.now() - t0).toBeLessThan(200);
    // 1.2 billion parameters do not fit in 1 GiB.
    expect(() => parseConfig(LLAMA_32_1B, 'small machine', { memoryBytes: 2 ** 30 })).toThrow(
      /small machine: invalid config: the config describes 1\.24e\+9 parameters, 4\.6\d GiB as float32, more than this machine's 1\.00 GiB of memory/,
    );
    expect(parseConfig(LLAMA_32_1B, 'big machine', { memoryBytes: 2 ** 40 }).num_hidden_layers).toBe(16);
  });

  it('keeps bos and eos ids inside the vocabulary', () => {
    expectConfigError({ ...LLAMA_32_1B, eos_token_id: [128001, 128256] }, 'eos_token_id', 'token 128256 is outside the vocabulary (vocab_size 128256)');
    expectConfigError({ ...LLAMA_32_1B, bos_token_id: 1e6 }, 'bos_token_id', 'outside the vocabulary');
  });

  it('reports all problems of one config together', () => {
    expectConfigError({ ...LLAMA_32_1B, vocab_size: 0, intermediate_size: 1.5 }, 'vocab_size', 'intermediate_size');
  });

  it('rejects head counts that do not group', () => {
    expectConfigError({ ...LLAMA_32_1B, num_key_value_heads: 5 }, 'num_key_value_heads', '5', '32');
  });

  it('rejects hidden_size not divisible by the head count when head_dim is absent', () => {
    expectConfigError({ ...QWEN_25_05B, num_attention_heads: 15, num_key_value_heads: 5 }, 'hidden_size', '896', '15');
    // With an explicit head_dim, hidden_size need not equal heads × head_dim (as in transformers).
    expect(parseConfig({ ...QWEN_25_05B, num_attention_heads: 15, num_key_value_heads: 5, head_dim: 64 }, SRC).head_dim).toBe(64);
  });

  it('rejects unsupported rope scaling and architecture features', () => {
    expectConfigError({ ...LLAMA_32_1B, rope_scaling: { rope_type: 'yarn', factor: 4 } }, 'yarn', 'llama3');
    expectConfigError({ ...LLAMA_32_1B, rope_scaling: { ...LLAMA_32_1B.rope_scaling, high_freq_factor: 1 } }, 'high_freq_factor');
    expectConfigError({ ...LLAMA_32_1B, hidden_act: 'gelu' }, 'hidden_act');
    expectConfigError({ ...LLAMA_32_1B, mlp_bias: true }, 'mlp_bias');
  });
});

describe('readConfig / writeConfig', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'softgrad-config-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('round-trips a config, unknown keys included, leaving no temporary files', async () => {
    for (const raw of [LLAMA_32_1B, QWEN_25_05B]) {
      const c = parseConfig(raw, SRC);
      await writeConfig(dir, c);
      expect(await readdir(dir)).toEqual(['config.json']);
      const back = await readConfig(dir);
      expect(back).toEqual(c);
      const written = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
      for (const [k, v] of Object.entries(raw)) expect(written[k]).toEqual(v);
    }
  });

  it('refuses a key given twice, naming its line', async () => {
    await writeFile(join(dir, 'config.json'), '{\n "model_type": "llama",\n "hidden_size": 64,\n "hidden_size": 128\n}');
    await expect(readConfig(dir)).rejects.toThrow(/config\.json: line 4, column 2: key "hidden_size" appears twice in the top-level object/);
  });

  it('names the file when it is missing or not JSON', async () => {
    await expect(readConfig(dir)).rejects.toThrow(join(dir, 'config.json'));
    await writeFile(join(dir, 'config.json'), '{"model_type": ');
    await expect(readConfig(dir)).rejects.toThrow(/config\.json: not valid JSON/);
  });

  it('refuses to write an invalid config', async () => {
    const bad: TransformerConfig = { ...parseConfig(LLAMA_32_1B, SRC), num_key_value_heads: 7 };
    await expect(writeConfig(dir, bad)).rejects.toThrow('num_key_value_heads');
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('ropeInverseFrequencies', () => {
  it('is 1/θ^(2i/d) without scaling', () => {
    const inv = ropeInverseFrequencies({ head_dim: 8, rope_theta: 10000, rope_scaling: null });
    expect([...inv]).toEqual([1, 10000 ** -0.25, 10000 ** -0.5, 10000 ** -0.75].map((x) => expect.closeTo(x, 15)));
  });

  it('divides every frequency by the factor with linear scaling', () => {
    const plain = ropeInverseFrequencies({ head_dim: 16, rope_theta: 10000, rope_scaling: null });
    const lin = ropeInverseFrequencies({ head_dim: 16, rope_theta: 10000, rope_scaling: { rope_type: 'linear', factor: 4 } });
    plain.forEach((f, i) => expect(lin[i]).toBeCloseTo(f / 4, 15));
  });

  it('matches the llama3 formula by hand for a high, a middle and a low frequency', () => {
    const config = parseConfig(LLAMA_32_1B, SRC); // θ 500000, head_dim 64, factor 32, low 1, high 4, old ctx 8192
    const inv = ropeInverseFrequencies(config);
    expect(inv.length).toBe(32);

    // i = 0: wavelength 2π, far below 8192/4 = 2048, so unchanged.
    expect(inv[0]).toBe(1);
    // i = 31: θ^(-62/64) ≈ 3.0139e-6, wavelength ≈ 2.08e6 > 8192, so divided by 32.
    const f31 = 500000 ** (-62 / 64);
    expect(inv[31]).toBeCloseTo(f31 / 32, 20);
    expect(inv[31]).toBeCloseTo(9.418306725434909e-8, 20);
    // i = 16: θ^(-1/2) = 1/√500000, wavelength 2π√500000 ≈ 4442.88, between 2048 and 8192:
    // smooth = (8192/4442.88 − 1)/(4 − 1) ≈ 0.28127, blend of f/32 and f.
    const f16 = 1 / Math.sqrt(500000);
    const wavelen = 2 * Math.PI * Math.sqrt(500000);
    expect(wavelen).toBeCloseTo(4442.882938158366, 9);
    const smooth = (8192 / wavelen - 1) / 3;
    expect(inv[16]).toBeCloseTo((1 - smooth) * (f16 / 32) + smooth * f16, 18);
    expect(inv[16]).toBeCloseTo(4.2955679655936815e-4, 15);
    // Scaling never raises a frequency, and keeps them decreasing.
    for (let i = 1; i < 32; i++) expect(inv[i]).toBeLessThan(inv[i - 1]);
  });
});
