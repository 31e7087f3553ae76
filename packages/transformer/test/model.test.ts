import { describe, expect, it } from 'vitest';
import * as T from '@softgrad/tensor';
import { parseConfig, type TransformerConfig } from '../src/config.js';
import {
  createDecodeState, decodeStep, disposeCache, disposeDecodeParams, disposeDecodeState, emptyCache, forward, forwardPacked, initParams, packLayout,
  prepareDecodeParams,
  type ModelParams,
} from '../src/model.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel, saveModel, paramsToNamed } from '../src/checkpoint.js';

function tinyConfig(over: Record<string, unknown> = {}): TransformerConfig {
  return parseConfig(
    {
      model_type: 'llama', vocab_size: 11, hidden_size: 8, intermediate_size: 12, num_hidden_layers: 2,
      num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, rope_theta: 10000,
      max_position_embeddings: 64, tie_word_embeddings: false, ...over,
    },
    'test config',
  );
}

async function arr(t: T.Tensor): Promise<number[]> {
  return Array.from(await t.data());
}

function maxAbsDiff(a: number[], b: number[]): number {
  expect(a.length).toBe(b.length);
  return Math.max(0, ...a.map((x, i) => Math.abs(x - b[i]!)));
}

/** Directional derivative check: jvp along v vs central finite difference, and ⟨vjp(u),v⟩ = ⟨u,jvp(v)⟩. */
async function checkDirectional(f: (p: unknown) => T.Tensor, p: unknown, seed: number): Promise<void> {
  const k = T.key(seed);
  const leaves = T.treeLeaves(p);
  const dirs = leaves.map((l, i) => T.normal(T.foldIn(k, i), l.shape, { dtype: 'float64' }));
  const v = T.treeMap(p, (_l, i) => dirs[i]!);
  const eps = 1e-5;
  const plus = T.treeMap(p, (l, i) => T.add(l, T.mul(dirs[i]!, eps)));
  const minus = T.treeMap(p, (l, i) => T.sub(l, T.mul(dirs[i]!, eps)));
  const fp = await arr(f(plus));
  const fm = await arr(f(minus));
  const fd = fp.map((x, i) => (x - fm[i]!) / (2 * eps));
  const [out, tout] = T.jvp(f, [p], [v]);
  const jv = await arr(tout);
  const scaleRef = Math.max(1e-3, ...fd.map(Math.abs));
  expect(maxAbsDiff(fd, jv) / scaleRef).toBeLessThan(1e-6);
  const u = T.normal(T.foldIn(k, 999), out.shape, { dtype: 'float64' });
  const [, pull] = T.vjp(f, p);
  const [ct] = pull(u);
  pull.dispose();
  const lhs = (await Promise.all(T.treeLeaves(ct).map(async (c, i) => {
    const a = await arr(c);
    const b = await arr(dirs[i]!);
    return a.reduce((s, x, j) => s + x * b[j]!, 0);
  }))).reduce((a, b) => a + b, 0);
  const ua = await arr(u);
  const rhs = ua.reduce((s, x, j) => s + x * jv[j]!, 0);
  expect(Math.abs(lhs - rhs) / Math.max(1, Math.abs(rhs))).toBeLessThan(1e-9);
  for (const t of [...dirs, ...T.treeLeaves(plus), ...T.treeLeaves(minus), out, tout, u, ...T.treeLeaves(ct)]) t.dispose();
}

describe('transformer forward', () => {
  for (const tied of [false, true]) {
    it(`model loss gradient matches finite differences for parameters and input embeddings (GQA, ${tied ? 'tied' : 'untied'}, float64)`, async () => {
      const config = tinyConfig({ tie_word_embeddings: tied });
      const params = initParams(config, 1, { dtype: 'float64', std: 0.3 });
      const embeds = T.normal(T.key(7), [2, 5, 8], { dtype: 'float64' });
      const labels = T.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]], { dtype: 'int32' });
      const loss = (p: unknown) => {
        const { params: pp, embeds: e } = p as { params: ModelParams; embeds: T.Tensor };
        const { logits, hidden } = forward(config, pp, { embeds: e });
        hidden.dispose();
        const l = T.crossEntropy(logits, labels);
        logits.dispose();
        return l;
      };
      await checkDirectional(loss, { params, embeds }, 3);
      const g = T.grad(loss)({ params, embeds });
      // Every parameter receives a gradient of its own shape.
      expect(T.treeLeaves(g).map((t: T.Tensor) => t.shape)).toEqual(T.treeLeaves({ params, embeds }).map((t) => t.shape));
      T.treeDispose(g);
      T.treeDispose(params);
      embeds.dispose();
      labels.dispose();
    });
  }

  it('Qwen-style attention biases are used and differentiated', async () => {
    const config = tinyConfig({ model_type: 'qwen2', attention_bias: true });
    const params = initParams(config, 2, { dtype: 'float64', std: 0.3 });
    params.layers[0]!.qBias = T.normal(T.key(5), [8], { dtype: 'float64' });
    const ids = T.tensor([[1, 2, 3]], { dtype: 'int32' });
    const f = (p: unknown) => T.sum(forward(config, p as ModelParams, { ids }).logits);
    await checkDirectional(f, params, 11);
    T.treeDispose(params);
    ids.dispose();
  });

  it('KV-cache decoding reproduces the full forward logits, for ids and for embeddings', async () => {
    const config = tinyConfig();
    const params = initParams(config, 3, { dtype: 'float64', std: 0.3 });
    const idsData = [[3, 1, 4, 1, 5, 9], [2, 6, 5, 3, 5, 8]];
    const ids = T.tensor(idsData, { dtype: 'int32' });
    const full = forward(config, params, { ids });
    const fullLogits = await arr(full.logits);
    for (const useEmbeds of [false, true]) {
      let cache = emptyCache(2);
      const stepLogits: number[][] = [];
      // Prefill 2 positions, then one at a time.
      const chunks = [[0, 2], [2, 3], [3, 4], [4, 5], [5, 6]];
      for (const [a, b] of chunks) {
        const chunk = T.slice(ids, [0, a!], [-1, b! - a!]);
        const input = useEmbeds ? { embeds: T.gather(params.embed, chunk, 0) } : { ids: chunk };
        const out = forward(config, params, { ...input, cache, useCache: true });
        disposeCache(cache);
        cache = out.cache!;
        const l = await out.logits.toArray() as number[][][];
        for (let s = 0; s < b! - a!; s++) stepLogits.push([...l[0]![s]!, ...l[1]![s]!]);
        out.logits.dispose();
        out.hidden.dispose();
        chunk.dispose();
        if ('embeds' in input) input.embeds?.dispose();
      }
      disposeCache(cache);
      const fl = (await full.logits.toArray()) as number[][][];
      for (let s = 0; s < 6; s++) {
        const want = [...fl[0]![s]!, ...fl[1]![s]!];
        expect(maxAbsDiff(stepLogits[s]!, want)).toBeLessThan(1e-12);
      }
    }
    expect(fullLogits.length).toBe(2 * 6 * 11);
    full.logits.dispose();
    full.hidden.dispose();
    T.treeDispose(params);
    ids.dispose();
  });

  describe('decodeStep (preallocated cache, stacked weights) reproduces the full forward logits', () => {
    const cases: [string, () => T.Backend, T.DType, number][] = [
      ['js float64', () => T.createCpuBackend(), 'float64', 1e-12],
      ['wasm float32', () => T.createWasmBackend({ threads: 1 }), 'float32', 2e-4],
    ];
    for (const [name, makeBackend, dtype, tol] of cases) {
      for (const model_type of ['llama', 'qwen2']) {
        it(`${name}, ${model_type}: left-padded prefill, then a block of 2, then one token at a time`, async () => {
          const backend = makeBackend();
          const config = tinyConfig(model_type === 'qwen2' ? { model_type, attention_bias: true } : {});
          const p64 = initParams(config, 6, { dtype: 'float64', std: 0.3 });
          if (model_type === 'qwen2') {
            p64.layers[1]!.qBias = T.normal(T.key(8), p64.layers[1]!.qBias!.shape, { dtype: 'float64' });
            p64.layers[1]!.kBias = T.normal(T.key(9), p64.layers[1]!.kBias!.shape, { dtype: 'float64' });
          }
          const leaves = await Promise.all(T.treeLeaves(p64).map(async (l) => T.tensor(await l.data(), { shape: l.shape, dtype, backend })));
          const params = T.treeMap(p64, (_l, i) => leaves[i]!) as ModelParams;
          // Row 0: a 4-token prompt; row 1: a 2-token prompt, left-padded to 4.
          const prompts = [[5, 3, 2, 7], [9, 1]];
          const cont = [[4, 6, 1, 2, 8], [6, 2, 2, 9, 3]];
          const P = 4;
          const capacity = 16;
          const dp = prepareDecodeParams(config, params);
          let state = createDecodeState(config, 2, capacity, { dtype, backend });
          const io = { backend };
          const got: number[][][] = [[], []];
          const push = async (logits: T.Tensor) => {
            const l = (await logits.toArray()) as number[][];
            got[0]!.push(l[0]!);
            got[1]!.push(l[1]!);
            logits.dispose();
          };
          const step = async (ids: number[][], valid: number[][], at: number, attend?: number) => {
            const idsT = T.tensor(ids, { dtype: 'int32', ...io });
            const embeds = T.gather(dp.embed, idsT, 0);
            const nv = T.tensor(valid, { dtype, ...io });
            const w = T.scalar(at, { dtype: 'int32', ...io });
            const out = decodeStep(config, dp, state, embeds, nv, w, attend);
            disposeDecodeState(state);
            state = out.state;
            for (const t of [idsT, embeds, nv, w]) t.dispose();
            await push(out.logits);
          };
          await step([prompts[0]!, [0, 0, ...prompts[1]!]], [[1, 1, 1, 1], [0, 0, 1, 1]], 0, 8);
          await step([[cont[0]![0]!, cont[0]![1]!], [cont[1]![0]!, cont[1]![1]!]], [[1, 1], [1, 1]], P, 8);
          for (let i = 2; i < cont[0]!.length; i++) {
            await step([[cont[0]![i]!], [cont[1]![i]!]], [[1], [1]], P + i, i + P < 8 ? 8 : capacity);
          }
          // Which continuation positions' logits each step returned (the last new one).
          const lastIndex = [-1, 1, 2, 3, 4];
          for (let row = 0; row < 2; row++) {
            const seq = [...prompts[row]!, ...cont[row]!];
            const ids = T.tensor([seq], { dtype: 'int32' });
            const alone = forward(config, p64, { ids });
            const al = (await alone.logits.toArray()) as number[][][];
            lastIndex.forEach((ci, s) => {
              const want = al[0]![prompts[row]!.length + ci]!;
              expect(maxAbsDiff(got[row]![s]!, want)).toBeLessThan(tol);
            });
            alone.logits.dispose();
            alone.hidden.dispose();
            ids.dispose();
          }
          // RoPE positions advanced by real tokens only.
          expect(Array.from(await state.positions.data())).toEqual([9, 7]);
          disposeDecodeState(state);
          disposeDecodeParams(dp);
          T.treeDispose(params);
          T.treeDispose(p64);
        });
      }
    }
  });

  it('forwardPacked: rows packed end to end, grouped by length, give each row\'s logits as if run alone', async () => {
    const config = tinyConfig({ model_type: 'qwen2', attention_bias: true });
    const params = initParams(config, 9, { dtype: 'float64', std: 0.3 });
    const lengths = [5, 1, 9, 3, 7, 2, 12];
    const seqs = lengths.map((n, r) => Array.from({ length: n }, (_, i) => (r * 7 + i * 3 + 1) % 11));
    const alone = await Promise.all(seqs.map(async (ids) => {
      const out = forward(config, params, { ids: T.tensor([ids], { dtype: 'int32' }) });
      const l = ((await out.logits.toArray()) as number[][][])[0]!;
      out.logits.dispose();
      out.hidden.dispose();
      return l;
    }));
    // Tokens asked to lead are packed first, in row order; nothing else changes.
    const everyThird = (r: number, i: number) => (r + i) % 3 === 0;
    for (const [opts, leading] of [[{}, undefined], [{ groups: 1 }, undefined], [{ groups: 3, widthBucket: 4, tokenBucket: 8 }, undefined],
      [{ groups: 7, widthBucket: 1, tokenBucket: 1 }, undefined], [{ groups: 50 }, undefined], [{ groups: 3 }, everyThird]] as const) {
      const { layout, tokenIndex, tokens, leadingTokens } = packLayout(lengths, { dtype: 'float64', backend: T.getDefaultBackend() }, opts, undefined, leading);
      expect(tokens).toBeGreaterThanOrEqual(lengths.reduce((a, b) => a + b, 0));
      if (leading) {
        const want = seqs.flatMap((ids, r) => ids.flatMap((_, i) => (leading(r, i) ? [tokenIndex(r, i)] : [])));
        expect(want, 'leading tokens at the front, in row order').toEqual(want.map((_, k) => k));
        expect(leadingTokens).toBe(want.length);
      } else {
        expect(leadingTokens).toBe(0);
      }
      const flat = new Int32Array(tokens);
      seqs.forEach((ids, r) => ids.forEach((id, i) => (flat[tokenIndex(r, i)] = id)));
      const idsT = T.tensor(flat, { dtype: 'int32' });
      const embeds = T.gather(params.embed, idsT, 0);
      const logits = (await forwardPacked(config, params, embeds, layout).toArray()) as number[][];
      seqs.forEach((ids, r) => ids.forEach((_, i) => expect(maxAbsDiff(logits[tokenIndex(r, i)]!, alone[r]![i]!)).toBeLessThan(1e-12)));
      T.treeDispose([layout, idsT, embeds]);
    }
    // Wide groups attend in query bands (two or three, edges not always multiples of the width bucket).
    const wide = tinyConfig({ model_type: 'qwen2', attention_bias: true, max_position_embeddings: 160 });
    const long = [150, 97, 60, 3].map((n, r) => Array.from({ length: n }, (_, i) => (r * 5 + i * 7 + 2) % 11));
    const longAlone = await Promise.all(long.map(async (ids) => {
      const out = forward(wide, params, { ids: T.tensor([ids], { dtype: 'int32' }) });
      const l = ((await out.logits.toArray()) as number[][][])[0]!;
      T.treeDispose([out.logits, out.hidden]);
      return l;
    }));
    for (const opts of [{ groups: 4, widthBucket: 1, tokenBucket: 1 }, { groups: 2 }, { groups: 2, attentionBands: 2 }, { groups: 1, attentionBands: 1 }]) {
      const { layout, tokenIndex, tokens } = packLayout(long.map((x) => x.length), { dtype: 'float64', backend: T.getDefaultBackend() }, opts);
      const flat = new Int32Array(tokens);
      long.forEach((ids, r) => ids.forEach((id, i) => (flat[tokenIndex(r, i)] = id)));
      const idsT = T.tensor(flat, { dtype: 'int32' });
      const embeds = T.gather(params.embed, idsT, 0);
      const logits = (await forwardPacked(wide, params, embeds, layout).toArray()) as number[][];
      long.forEach((ids, r) => ids.forEach((_, i) => expect(maxAbsDiff(logits[tokenIndex(r, i)]!, longAlone[r]![i]!), `row ${r} token ${i}`).toBeLessThan(1e-12)));
      T.treeDispose([layout, idsT, embeds]);
    }
    // Rows that begin alike share their prefix: packed once, each row's logits still its own.
    const prefixA = [4, 2, 7];
    const prefixB = [9, 9];
    const rowsShared = [[...prefixA, 1, 5], [...prefixB, 3], [...prefixA, 6], [...prefixA, 8, 8, 2, 10], [...prefixB, 1, 1, 1]];
    const prefixOf = [0, 1, 0, 0, 1];
    const prefixLengths = [3, 2];
    const grads: number[][] = [];
    for (const share of [false, true]) {
      const lens = rowsShared.map((x) => x.length);
      const { layout, tokenIndex, tokens } = packLayout(lens, { dtype: 'float64', backend: T.getDefaultBackend() }, { tokenBucket: 1 }, share ? { prefixOf, prefixLengths } : undefined);
      expect(tokens).toBe(share ? lens.reduce((a, b) => a + b, 0) - 3 * 2 - 2 * 1 : lens.reduce((a, b) => a + b, 0));
      const flat = new Int32Array(tokens);
      rowsShared.forEach((ids, r) => ids.forEach((id, i) => (flat[tokenIndex(r, i)] = id)));
      const idsT = T.tensor(flat, { dtype: 'int32' });
      // A loss over each row's last position: the gradient must not depend on sharing either.
      const lastIdx = T.tensor(Int32Array.from(rowsShared, (x, r) => tokenIndex(r, x.length - 1)), { dtype: 'int32' });
      const loss = (p: ModelParams) => T.sum(T.square(T.gather(forwardPacked(config, p, T.gather(p.embed, idsT, 0), layout), lastIdx, 0)));
      const [value, g] = T.valueAndGrad(loss)(params);
      grads.push([await value.item(), ...Array.from(await g.layers[0]!.k.data()), ...Array.from(await g.embed.data())]);
      const embeds = T.gather(params.embed, idsT, 0);
      const logits = (await forwardPacked(config, params, embeds, layout).toArray()) as number[][];
      for (let r = 0; r < rowsShared.length; r++) {
        const out = forward(config, params, { ids: T.tensor([rowsShared[r]!], { dtype: 'int32' }) });
        const want = ((await out.logits.toArray()) as number[][][])[0]!;
        rowsShared[r]!.forEach((_, i) => expect(maxAbsDiff(logits[tokenIndex(r, i)]!, want[i]!)).toBeLessThan(1e-12));
        out.logits.dispose();
        out.hidden.dispose();
      }
      T.treeDispose([layout, idsT, embeds, lastIdx, value, g]);
    }
    expect(maxAbsDiff(grads[1]!, grads[0]!)).toBeLessThan(1e-12);
    expect(() => packLayout([3, 2], { dtype: 'float64', backend: T.getDefaultBackend() }, {}, { prefixOf: [0, 0], prefixLengths: [2] })).toThrow(/row 1 \(2 tokens\) must be longer than its shared prefix 0/);
    expect(() => packLayout([3, 0], { dtype: 'float64', backend: T.getDefaultBackend() })).toThrow(/row 1 has length 0/);
    expect(() => packLayout([3], { dtype: 'float64', backend: T.getDefaultBackend() }, { groups: 0 })).toThrow(/groups must be a positive integer/);
    expect(() => packLayout([3], { dtype: 'float64', backend: T.getDefaultBackend() }, { attentionBands: 0.5 })).toThrow(/attentionBands must be a positive integer/);
    T.treeDispose(params);
  });

  it('left-padded batch rows equal the same prompts run alone, also when decoding on', async () => {
    const config = tinyConfig();
    const params = initParams(config, 4, { dtype: 'float64', std: 0.3 });
    const a = [5, 3, 2, 7];
    const b = [9, 1];
    const batchIds = T.tensor([a, [0, 0, ...b]], { dtype: 'int32' });
    const mask = [[true, true, true, true], [false, false, true, true]];
    const batched = forward(config, params, { ids: batchIds, mask, useCache: true });
    const next = T.tensor([[4], [6]], { dtype: 'int32' });
    const step = forward(config, params, { ids: next, cache: batched.cache });
    const bl = (await batched.logits.toArray()) as number[][][];
    const sl = (await step.logits.toArray()) as number[][][];
    for (const [row, prompt, off] of [[0, a, 0], [1, b, 2]] as const) {
      const ids = T.tensor([[...prompt, row === 0 ? 4 : 6]], { dtype: 'int32' });
      const alone = forward(config, params, { ids });
      const al = (await alone.logits.toArray()) as number[][][];
      for (let s = 0; s < prompt.length; s++) expect(maxAbsDiff(bl[row]![off + s]!, al[0]![s]!)).toBeLessThan(1e-12);
      expect(maxAbsDiff(sl[row]![0]!, al[0]![prompt.length]!)).toBeLessThan(1e-12);
      alone.logits.dispose();
      alone.hidden.dispose();
      ids.dispose();
    }
    for (const t of [batched.logits, batched.hidden, step.logits, step.hidden, batchIds, next]) t.dispose();
    disposeCache(batched.cache);
    disposeCache(step.cache);
    T.treeDispose(params);
  });

  it('forward leaves no live buffers behind', async () => {
    const backend = T.getDefaultBackend();
    const config = tinyConfig();
    const params = initParams(config, 5);
    const before = backend.stats().liveBuffers;
    const ids = T.tensor([[1, 2, 3]], { dtype: 'int32' });
    const out = forward(config, params, { ids, useCache: true });
    for (const t of [out.logits, out.hidden, ids]) t.dispose();
    disposeCache(out.cache);
    expect(backend.stats().liveBuffers).toBe(before);
    T.treeDispose(params);
  });

  it('rejects bad inputs with clear errors', () => {
    const config = tinyConfig();
    const params = initParams(config, 6);
    const ids = T.tensor([[1, 2]], { dtype: 'float32' });
    expect(() => forward(config, params, { ids })).toThrow(/ids must be int32/);
    expect(() => forward(config, params, {})).toThrow(/exactly one of ids or embeds/);
    const e = T.zeros([1, 2, 5]);
    expect(() => forward(config, params, { embeds: e })).toThrow(/embeds must be \[batch, seq, 8\]/);
    for (const t of [ids, e]) t.dispose();
    T.treeDispose(params);
  });
});

describe('checkpoints', () => {
  it('save → load round trip is bit-exact in F32 and within bf16 rounding in BF16', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'softgrad-ckpt-'));
    try {
      const config = tinyConfig({ model_type: 'qwen2', attention_bias: true, tie_word_embeddings: true });
      const params = initParams(config, 8);
      await saveModel(join(dir, 'f32'), config, params);
      const loaded = await loadModel(join(dir, 'f32'));
      expect(loaded.config.attention_bias).toBe(true);
      const a = paramsToNamed(params);
      const b = paramsToNamed(loaded.params);
      expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
      for (const name of Object.keys(a)) expect(await b[name]!.data()).toEqual(await a[name]!.data());
      await saveModel(join(dir, 'bf16'), config, params, { dtype: 'BF16', maxShardBytes: 2000 });
      const half = await loadModel(join(dir, 'bf16'));
      const c = paramsToNamed(half.params);
      for (const name of Object.keys(a)) {
        const x = await arr(a[name]!);
        const y = await arr(c[name]!);
        x.forEach((v, i) => expect(Math.abs(v - y[i]!)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -8 + 1e-30));
      }
      T.treeDispose(params);
      T.treeDispose(loaded.params);
      T.treeDispose(half.params);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
