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
// More threads than this machine may have cores: two workers claim chunks of one call at once.
const three = T.createWasmBackend({ threads: 3 });
afterAll(() => {
  one.destroy();
  two.destroy();
  three.destroy();
});

async function bits(t: T.Tensor): Promise<Uint32Array> {
  const d = await t.data();
  return new Uint32Array(Float32Array.from(d).buffer);
}

describe('wasm backend: 1 and 2 threads agree bit for bit', () => {
  it('has two and three threads to compare with (worker threads are available), and names a thread count it cannot run', () => {
    expect(one.threads).toBe(1);
    expect(two.threads).toBe(2);
    expect(three.threads).toBe(3);
    expect(() => T.createWasmBackend({ threads: 33 })).toThrow(/threads must be an integer from 1 to 32, got 33/);
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
    for (const backend of [one, two, three]) {
      const a = T.uniform(T.key(1), [300, 257], { backend });
      const b = T.uniform(T.key(2), [257, 301], { backend });
      const c = T.matmul(a, b);
      const s = T.sum(T.exp(c), -1);
      out.push([await bits(c), await bits(s)]);
      T.treeDispose([a, b, c, s]);
    }
    for (const o of out.slice(1)) {
      expect(o[0]).toEqual(out[0]![0]);
      expect(o[1]).toEqual(out[0]![1]);
    }
  });

  it('sums and maxima over outer axes (kept in registers per block of columns) add in loop order on any thread count', async () => {
    // [N, H, hd, A] · [N, H, hd, 1] summed over hd, as a decoding step's attention scores are;
    // columns of a [rows, cols] matrix; a max over rows with NaNs. Each output element must be
    // exactly the float32 sum of its terms in loop order, whichever block or thread it fell in.
    const [N, H, hd, A] = [9, 3, 16, 103];
    const q = T.uniform(T.key(3), [N, H, hd, 1], { backend: one });
    const k = T.uniform(T.key(4), [N, H, hd, A], { backend: one });
    const m = T.uniform(T.key(5), [1201, 70], { backend: one });
    const [qd, kd, md] = [await q.data(), await k.data(), await m.data()];
    md[70 * 600 + 3] = NaN;
    const want = { scores: new Float32Array(N * H * A), cols: new Float32Array(70), max: new Float32Array(70) };
    for (let r = 0; r < N * H; r++) {
      for (let a = 0; a < A; a++) {
        let acc = 0;
        for (let t = 0; t < hd; t++) acc = Math.fround(acc + Math.fround(qd[r * hd + t]! * kd[(r * hd + t) * A + a]!));
        want.scores[r * A + a] = acc;
      }
    }
    for (let c = 0; c < 70; c++) {
      let acc = 0;
      let mx = -Infinity;
      for (let r = 0; r < 1201; r++) {
        acc = Math.fround(acc + md[r * 70 + c]!);
        mx = Number.isNaN(mx) || Number.isNaN(md[r * 70 + c]!) ? NaN : Math.max(mx, md[r * 70 + c]!);
      }
      want.cols[c] = acc;
      want.max[c] = mx;
    }
    for (const backend of [one, two, three]) {
      const [qb, kb, mb] = [T.tensor(qd, { shape: [N, H, hd, 1], backend }), T.tensor(kd, { shape: [N, H, hd, A], backend }), T.tensor(md, { shape: [1201, 70], backend })];
      const f = T.jit((x: T.Tensor, y: T.Tensor, z: T.Tensor) => [T.sum(T.mul(x, y), 2), T.sum(z, 0), T.max(z, 0)]);
      const [scores, cols, max] = f(qb, kb, mb) as T.Tensor[];
      expect(await bits(scores!), `scores, ${backend.threads} thread(s)`).toEqual(new Uint32Array(want.scores.buffer));
      expect(await bits(cols!), `column sums, ${backend.threads} thread(s)`).toEqual(new Uint32Array(want.cols.buffer));
      expect(await bits(max!), `column maxima, ${backend.threads} thread(s)`).toEqual(new Uint32Array(want.max.buffer));
      T.treeDispose([qb, kb, mb, scores, cols, max]);
      f.dispose();
    }
    T.treeDispose([q, k, m]);
  });
});
