// Hugging Face parameter names and shapes for a Llama / Qwen2 config, and the check
// that a loaded checkpoint matches them before any tensor reaches the model.

import type { TransformerConfig } from './config.js';

export interface ExpectedTensor {
  name: string;
  shape: number[];
}

type ShapeConfig = Pick<
  TransformerConfig,
  | 'vocab_size' | 'hidden_size' | 'intermediate_size' | 'num_hidden_layers' | 'num_attention_heads'
  | 'num_key_value_heads' | 'head_dim' | 'tie_word_embeddings' | 'attention_bias'
>;

/** Every parameter a checkpoint for `config` holds, in transformers' order. */
export function expectedTensorNames(config: ShapeConfig): ExpectedTensor[] {
  const d = config.hidden_size;
  const q = config.num_attention_heads * config.head_dim;
  const kv = config.num_key_value_heads * config.head_dim;
  const ff = config.intermediate_size;
  const out: ExpectedTensor[] = [{ name: 'model.embed_tokens.weight', shape: [config.vocab_size, d] }];
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const p = `model.layers.${i}`;
    out.push({ name: `${p}.self_attn.q_proj.weight`, shape: [q, d] });
    if (config.attention_bias) out.push({ name: `${p}.self_attn.q_proj.bias`, shape: [q] });
    out.push({ name: `${p}.self_attn.k_proj.weight`, shape: [kv, d] });
    if (config.attention_bias) out.push({ name: `${p}.self_attn.k_proj.bias`, shape: [kv] });
    out.push({ name: `${p}.self_attn.v_proj.weight`, shape: [kv, d] });
    if (config.attention_bias) out.push({ name: `${p}.self_attn.v_proj.bias`, shape: [kv] });
    out.push({ name: `${p}.self_attn.o_proj.weight`, shape: [d, q] });
    out.push({ name: `${p}.mlp.gate_proj.weight`, shape: [ff, d] });
    out.push({ name: `${p}.mlp.up_proj.weight`, shape: [ff, d] });
    out.push({ name: `${p}.mlp.down_proj.weight`, shape: [d, ff] });
    out.push({ name: `${p}.input_layernorm.weight`, shape: [d] });
    out.push({ name: `${p}.post_attention_layernorm.weight`, shape: [d] });
  }
  out.push({ name: 'model.norm.weight', shape: [d] });
  if (!config.tie_word_embeddings) out.push({ name: 'lm_head.weight', shape: [config.vocab_size, d] });
  return out;
}

// Older transformers versions saved RoPE's inverse frequencies as a buffer; they are
// recomputed from the config, never loaded.
function isRotaryBuffer(name: string): boolean {
  return name === 'rotary_emb.inv_freq' || name.endsWith('.rotary_emb.inv_freq');
}

const MAX_LISTED = 10;

// Weights are floating point; an integer tensor under a weight's name is a different file.
// Both spellings: safetensors dtypes (from headers) and host dtypes (from memory).
const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64', 'float32', 'float64']);

/**
 * Checks names and shapes of a checkpoint's tensors against `config`, reporting every
 * missing tensor, unexpected tensor and shape mismatch in one Error (the first ten
 * listed). Returns the names present but deliberately not used:
 * - rotary `inv_freq` buffers of old checkpoints;
 * - `lm_head.weight` of a model with tie_word_embeddings, which transformers also
 *   ignores (the output projection is the embedding matrix). Its shape is still checked,
 *   and the loaders check that it is a copy of the embedding (see `checkTiedCopy`).
 */
export function validateCheckpointTensors(
  config: ShapeConfig,
  tensors: Readonly<Record<string, { readonly shape: readonly number[]; readonly dtype?: string }>>,
  source: string,
): { ignored: string[] } {
  const expected = expectedTensorNames(config);
  const expectedNames = new Set(expected.map((e) => e.name));
  // Only the first few are listed, but all are counted; the list must not grow with a
  // corrupt file (a config with a million layers would otherwise list millions).
  const problems: string[] = [];
  let problemCount = 0;
  const problem = (text: string) => {
    problemCount++;
    if (problems.length < MAX_LISTED) problems.push(text);
  };
  const ignored: string[] = [];
  const shapeText = (s: readonly number[]) => `[${s.join(', ')}]`;
  const checkShape = (name: string, want: readonly number[]) => {
    const { shape: got, dtype } = tensors[name];
    if (got.length !== want.length || got.some((v, i) => v !== want[i])) {
      problem(`${name}: shape ${shapeText(got)}, expected ${shapeText(want)}`);
    }
    if (dtype !== undefined && !FLOAT_DTYPES.has(dtype)) {
      problem(`${name}: dtype ${dtype}, expected a floating-point dtype (${[...FLOAT_DTYPES].filter((d) => d === d.toUpperCase()).join(', ')})`);
    }
  };

  for (const e of expected) {
    if (!Object.hasOwn(tensors, e.name)) problem(`missing ${e.name} ${shapeText(e.shape)}`);
    else checkShape(e.name, e.shape);
  }
  for (const name of Object.keys(tensors).sort()) {
    if (expectedNames.has(name)) continue;
    if (isRotaryBuffer(name)) {
      ignored.push(name);
    } else if (name === 'lm_head.weight' && config.tie_word_embeddings) {
      checkShape(name, [config.vocab_size, config.hidden_size]);
      ignored.push(name);
    } else {
      problem(`unexpected ${name} ${shapeText(tensors[name].shape)}`);
    }
  }
  if (problemCount > 0) {
    const listed = problems.map((p) => `  - ${p}`).join('\n');
    const more = problemCount > MAX_LISTED ? `\n  ... and ${problemCount - MAX_LISTED} more` : '';
    throw new Error(
      `${source}: checkpoint does not match the config (${config.num_hidden_layers} layers, hidden ${config.hidden_size}, ` +
        `vocab ${config.vocab_size}): ${problemCount} problem(s):\n${listed}${more}`,
    );
  }
  return { ignored };
}

/**
 * A tied model's checkpoint may carry `lm_head.weight` as a second copy of the embedding;
 * one that differs was saved from an untied model, and loading it tied would silently
 * drop its output layer. The arrays may be a piece of both, starting at element `firstElement`.
 */
export function checkTiedCopy(embed: ArrayLike<number>, lmHead: ArrayLike<number>, source: string, firstElement = 0): void {
  for (let i = 0; i < embed.length; i++) {
    if (!Object.is(embed[i], lmHead[i])) {
      throw new Error(
        `${source}: config.json says tie_word_embeddings, but lm_head.weight differs from model.embed_tokens.weight (element ${firstElement + i}); ` +
          'the checkpoint is of an untied model (set tie_word_embeddings to false)',
      );
    }
  }
}
