import { describe, expect, it } from 'vitest';
import { parseConfig, type TransformerConfig } from '../src/config.js';
import { expectedTensorNames, validateCheckpointTensors } from '../src/weights.js';

const tinyLlama = (over: Record<string, unknown> = {}): TransformerConfig =>
  parseConfig(
    {
      model_type: 'llama', vocab_size: 50, hidden_size: 16, intermediate_size: 40, num_hidden_layers: 2,
      num_attention_heads: 4, num_key_value_heads: 2, head_dim: 6, tie_word_embeddings: false, ...over,
    },
    'tiny/config.json',
  );

const shapesOf = (config: TransformerConfig): Record<string, { shape: number[] }> =>
  Object.fromEntries(expectedTensorNames(config).map((e) => [e.name, { shape: e.shape }]));

function errorOf(run: () => unknown): string {
  try {
    run();
  } catch (e) {
    expect((e as object).constructor).toBe(Error);
    return (e as Error).message;
  }
  throw new Error('expected an error');
}

describe('expectedTensorNames', () => {
  it('lists Hugging Face names and shapes, with grouped-query k/v and a head_dim apart from hidden/heads', () => {
    const list = expectedTensorNames(tinyLlama());
    const map = new Map(list.map((e) => [e.name, e.shape]));
    expect(list.length).toBe(1 + 2 * 9 + 1 + 1);
    expect(map.get('model.embed_tokens.weight')).toEqual([50, 16]);
    expect(map.get('model.layers.1.self_attn.q_proj.weight')).toEqual([24, 16]);
    expect(map.get('model.layers.1.self_attn.k_proj.weight')).toEqual([12, 16]);
    expect(map.get('model.layers.1.self_attn.v_proj.weight')).toEqual([12, 16]);
    expect(map.get('model.layers.1.self_attn.o_proj.weight')).toEqual([16, 24]);
    expect(map.get('model.layers.0.mlp.gate_proj.weight')).toEqual([40, 16]);
    expect(map.get('model.layers.0.mlp.up_proj.weight')).toEqual([40, 16]);
    expect(map.get('model.layers.0.mlp.down_proj.weight')).toEqual([16, 40]);
    expect(map.get('model.layers.0.input_layernorm.weight')).toEqual([16]);
    expect(map.get('model.layers.0.post_attention_layernorm.weight')).toEqual([16]);
    expect(map.get('model.norm.weight')).toEqual([16]);
    expect(map.get('lm_head.weight')).toEqual([50, 16]);
    expect([...map.keys()].some((n) => n.endsWith('.bias'))).toBe(false);
  });

  it('adds q/k/v biases for Qwen2 and drops lm_head when tied', () => {
    const qwen = tinyLlama({ model_type: 'qwen2', tie_word_embeddings: true });
    const map = new Map(expectedTensorNames(qwen).map((e) => [e.name, e.shape]));
    expect(map.get('model.layers.0.self_attn.q_proj.bias')).toEqual([24]);
    expect(map.get('model.layers.0.self_attn.k_proj.bias')).toEqual([12]);
    expect(map.get('model.layers.0.self_attn.v_proj.bias')).toEqual([12]);
    expect(map.has('model.layers.0.self_attn.o_proj.bias')).toBe(false);
    expect(map.has('lm_head.weight')).toBe(false);
    expect(map.size).toBe(1 + 2 * 12 + 1);
  });
});

describe('validateCheckpointTensors', () => {
  it('accepts a matching checkpoint', () => {
    expect(validateCheckpointTensors(tinyLlama(), shapesOf(tinyLlama()), 'ckpt')).toEqual({ ignored: [] });
  });

  it('reports missing, unexpected and mis-shaped tensors together, naming the source', () => {
    const t = shapesOf(tinyLlama());
    delete t['model.norm.weight'];
    t['model.layers.0.self_attn.k_proj.weight'] = { shape: [16, 16] };
    t['model.layers.9.mlp.up_proj.weight'] = { shape: [40, 16] };
    const message = errorOf(() => validateCheckpointTensors(tinyLlama(), t, 'ckpt/model.safetensors'));
    expect(message).toContain('ckpt/model.safetensors');
    expect(message).toContain('3 problem(s)');
    expect(message).toContain('missing model.norm.weight [16]');
    expect(message).toContain('model.layers.0.self_attn.k_proj.weight: shape [16, 16], expected [12, 16]');
    expect(message).toContain('unexpected model.layers.9.mlp.up_proj.weight [40, 16]');
  });

  it('lists at most ten problems and counts the rest', () => {
    const message = errorOf(() => validateCheckpointTensors(tinyLlama(), {}, 'empty'));
    expect(message).toContain('21 problem(s)');
    expect(message.split('\n  - ').length - 1).toBe(10);
    expect(message).toContain('... and 11 more');
  });

  it('ignores rotary inv_freq buffers of old checkpoints', () => {
    const t = { ...shapesOf(tinyLlama()), 'model.layers.0.self_attn.rotary_emb.inv_freq': { shape: [3] } };
    expect(validateCheckpointTensors(tinyLlama(), t, 'ckpt').ignored).toEqual(['model.layers.0.self_attn.rotary_emb.inv_freq']);
  });

  it('ignores lm_head.weight in a tied checkpoint, as transformers does, but still checks its shape', () => {
    const tied = tinyLlama({ tie_word_embeddings: true });
    const t = { ...shapesOf(tied), 'lm_head.weight': { shape: [50, 16] } };
    expect(validateCheckpointTensors(tied, t, 'ckpt').ignored).toEqual(['lm_head.weight']);
    t['lm_head.weight'] = { shape: [51, 16] };
    expect(errorOf(() => validateCheckpointTensors(tied, t, 'ckpt'))).toContain('lm_head.weight: shape [51, 16], expected [50, 16]');
  });

  it('treats names like "constructor" as ordinary tensors', () => {
    const t = { ...shapesOf(tinyLlama()), constructor: { shape: [1] } };
    expect(errorOf(() => validateCheckpointTensors(tinyLlama(), t, 'ckpt'))).toContain('unexpected constructor [1]');
  });
});
