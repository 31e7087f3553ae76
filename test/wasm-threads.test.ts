/**
 * The WebAssembly backend computes the same bits on any number of threads: work is split into
 * ranges of outputs, never of a reduction, so every element is summed in one fixed order.
 * Checked on a transformer's loss and gradients (every kernel family, large enough that the
 * matmuls and elementwise kernels really are split) and on one large matmul and reduction.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as T from '@softgrad/tensor';
import { forward, initParams, parseConfig, type ModelParams } from '@softgrad/transformer';

const one = T.createWasmBackend({ threads: 1 });
const two = T.createWasmBackend({ threads: 2 });
afterAll(() => {
  one.destroy();
  two.destroy();
});

async function bits(t: T.Tensor): Promise<Uint32Array> {
  const d = await t.data();
  return new Uint32Array(Float32Array.from(d).buffer);
}

describe('wasm backend: 1 and 2 threads agree bit for bit', () => {
  it('has two threads to compare with (worker threads are available)', () => {
    expect(one.threads).toBe(1);
    expect(two.threads).toBe(2);
  });

  it('a transformer loss and its gradients, jitted', async () => {
    const config = parseConfig({
      model_type: 'qwen2', vocab_size: 97, hidden_size: 96, intermediate_size: 256, num_hidden_layers: 2,
      num_attention_heads: 6, num_key_value_heads: 2, max_position_embeddings: 128, tie_word_embeddings: false, attention_bias: true,
    }, 'threads test');
    const results: Uint32Array[][] = [];
    for (const backend of [one, two]) {
      const params = initParams(config, 3, { backend, dtype: 'float32', std: 0.2 });
      const ids = T.tensor(Int32Array.from({ length: 16 * 48 }, (_, i) => (i * 31 + 7) % 97), { shape: [16, 48], dtype: 'int32', backend });
      const labels = T.tensor(Int32Array.from({ length: 16 * 48 }, (_, i) => (i * 17 + 3) % 97), { shape: [16, 48], dtype: 'int32', backend });
      const vg = T.jit(T.valueAndGrad((p: ModelParams, x: T.Tensor, y: T.Tensor) => T.crossEntropy(forward(config, p, { ids: x }).logits, y)));
      const [loss, grads] = vg(params, ids, labels) as [T.Tensor, ModelParams];
      results.push([await bits(loss), ...(await Promise.all(T.treeLeaves(grads).map(bits)))]);
      T.treeDispose([params, ids, labels, loss, grads]);
      vg.dispose();
    }
    expect(results[1]!.length).toBe(results[0]!.length);
    results[0]!.forEach((b, i) => expect(results[1]![i]!, `leaf ${i}`).toEqual(b));
  });

  it('a large matmul and a large reduction, eager', async () => {
    const out: Uint32Array[][] = [];
    for (const backend of [one, two]) {
      const a = T.uniform(T.key(1), [300, 257], { backend });
      const b = T.uniform(T.key(2), [257, 301], { backend });
      const c = T.matmul(a, b);
      const s = T.sum(T.exp(c), -1);
      out.push([await bits(c), await bits(s)]);
      T.treeDispose([a, b, c, s]);
    }
    expect(out[1]![0]).toEqual(out[0]![0]);
    expect(out[1]![1]).toEqual(out[0]![1]);
  });
});
