import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as T from '@softgrad/tensor';
import { forward, initParams, parseConfig } from '@softgrad/transformer';
import { builtinTokenizer } from '../src/builtin.js';
import { trainingCotSettings } from '../src/modes.js';
import { disposeRolloutBatch, rollout, rolloutSoftInputs } from '../src/rollout.js';
import { gaussianLogDensity, rlooAdvantages, rlooLoss, rlooSurrogate, rlooValueAndGrad, sequenceLogProbs } from '../src/estimator.js';
import { formatPrompt } from '../src/prompt.js';

const f64 = { dtype: 'float64' as const };

/** Mean and standard error of per-batch gradient estimates (rows). */
function meanAndStderr(rows: number[][]): { mean: number[]; se: number[] } {
  const M = rows.length;
  const D = rows[0]!.length;
  const mean = Array.from({ length: D }, (_, j) => rows.reduce((a, r) => a + r[j]!, 0) / M);
  const se = mean.map((m, j) => Math.sqrt(rows.reduce((a, r) => a + (r[j]! - m) ** 2, 0) / (M - 1) / M));
  return { mean, se };
}

/** A seeded JS generator, independent of the engine's RNG. */
const rng = T.mulberry32;

describe('RLOO advantages', () => {
  it('sum to zero within every group and ignore a constant added to all rewards', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.double({ min: -100, max: 100, noNaN: true }), { minLength: 2, maxLength: 8 }), { minLength: 1, maxLength: 4 }),
        fc.double({ min: -50, max: 50, noNaN: true }),
        (groups, c) => {
          const a = rlooAdvantages(groups);
          const b = rlooAdvantages(groups.map((g) => g.map((r) => r + c)));
          a.forEach((g, i) => {
            expect(Math.abs(g.reduce((x, y) => x + y, 0))).toBeLessThan(1e-9 * (1 + Math.max(...groups[i]!.map(Math.abs))));
            g.forEach((v, j) => expect(Math.abs(v - b[i]![j]!)).toBeLessThan(1e-9 * (1 + Math.abs(c) + Math.abs(v))));
          });
        },
      ),
      { numRuns: 200 },
    );
  });

  it('equal the reward minus the mean of the other samples', () => {
    expect(rlooAdvantages([[100, 0, 10, 10]])).toEqual([[100 - 20 / 3, -40, 10 - 110 / 3, 10 - 110 / 3]]);
    expect(() => rlooAdvantages([[1]])).toThrow(/at least 2/);
  });
});

describe('the RLOO estimator is unbiased', () => {
  it('for a one-step Gaussian soft-token policy with a smooth reward', async () => {
    // Policy: h̃ = softmax(θ/τ)·E + σε. Reward R(h̃) = −‖h̃ − c‖², so
    // E[R] = −‖softmax(θ/τ)E − c‖² − dσ², whose gradient autodiff gives exactly.
    const V = 4, d = 3, tau = 0.5, sigma = 0.4, G = 8, M = 1500;
    const theta = T.tensor([0.3, -0.2, 0.5, 0.1], f64);
    const E = T.tensor([[1, 0, 0.5], [0, 1, -0.5], [-1, 0.5, 0], [0.2, -1, 1]], f64);
    const c = T.tensor([0.4, -0.3, 0.2], f64);
    const mu = (th: T.Tensor) => T.matmul(T.reshape(T.softmax(T.mul(th, 1 / tau)), [1, V]), E);
    const exact = Array.from(await T.grad((th: T.Tensor) => T.mul(T.sum(T.square(T.sub(mu(th), c))), -1))(theta).data() as Float64Array);
    const gen = rng(7);
    const normal = () => Math.sqrt(-2 * Math.log(1 - gen())) * Math.cos(2 * Math.PI * gen());
    const muH = Array.from(await mu(theta).data() as Float64Array);
    const cH = [0.4, -0.3, 0.2];
    const rows: number[][] = [];
    for (let m = 0; m < M; m++) {
      const samples = Array.from({ length: G }, () => muH.map((v) => v + sigma * normal()));
      const rewards = samples.map((h) => -h.reduce((a, v, j) => a + (v - cH[j]!) ** 2, 0));
      const adv = rlooAdvantages([rewards])[0]!;
      const x = T.tensor(samples, f64);
      const g = T.grad((th: T.Tensor) => rlooSurrogate(gaussianLogDensity(x, mu(th), sigma), adv))(theta);
      // The surrogate is a loss: its gradient estimates −∇E[R].
      rows.push(Array.from(await g.data() as Float64Array, (v) => -v));
      g.dispose();
      x.dispose();
    }
    const { mean, se } = meanAndStderr(rows);
    expect(Math.max(...exact.map(Math.abs))).toBeGreaterThan(5 * Math.max(...se)); // the test has power
    mean.forEach((m, j) => expect(Math.abs(m - exact[j]!)).toBeLessThan(4 * se[j]! + 1e-12));
    for (const t of [theta, E, c]) t.dispose();
  });

  it('for a two-token hard policy, against the exact gradient by enumeration', async () => {
    const V = 3, G = 6, M = 2000;
    const gen = rng(11);
    const r = Array.from({ length: V }, () => Array.from({ length: V }, () => Math.round(gen() * 100)));
    const params = { t1: T.tensor([0.2, -0.4, 0.1], f64), t2: T.tensor([[0.5, 0, -0.5], [0.1, 0.3, -0.2], [-0.3, 0.2, 0.4]], f64) };
    type P = typeof params;
    const rT = T.tensor(r, f64);
    // E[r] = Σ p(y1) p(y2|y1) r(y1, y2).
    const expected = (p: P) => T.sum(T.mul(T.mul(T.reshape(T.softmax(p.t1), [V, 1]), T.softmax(p.t2, -1)), rT));
    const exactTree = T.grad(expected)(params) as P;
    const exact = [...(await exactTree.t1.data()), ...(await exactTree.t2.data())];
    const p1 = Array.from(await T.softmax(params.t1).data());
    const p2 = (await T.softmax(params.t2, -1).toArray()) as number[][];
    const draw = (p: number[]) => {
      let u = gen();
      for (let i = 0; i < p.length; i++) if ((u -= p[i]!) < 0) return i;
      return p.length - 1;
    };
    const rows: number[][] = [];
    for (let m = 0; m < M; m++) {
      const y1 = Array.from({ length: G }, () => draw(p1));
      const y2 = y1.map((a) => draw(p2[a]!));
      const adv = rlooAdvantages([y1.map((a, g) => r[a]![y2[g]!]!)])[0]!;
      const i1 = T.tensor(y1, { dtype: 'int32' });
      const i2 = T.tensor(y2, { dtype: 'int32' });
      const ell = (p: P) => {
        const lp1 = T.gather(T.logSoftmax(p.t1), i1, 0);
        const lp2 = T.takeAlongLastAxis(T.gather(T.logSoftmax(p.t2, -1), i1, 0), i2);
        return T.add(lp1, lp2);
      };
      const g = T.grad((p: P) => rlooSurrogate(ell(p), adv))(params) as P;
      rows.push([...(await g.t1.data()), ...(await g.t2.data())].map((v) => -v));
      T.treeDispose(g);
      i1.dispose();
      i2.dispose();
    }
    const { mean, se } = meanAndStderr(rows);
    expect(Math.max(...exact.map(Math.abs))).toBeGreaterThan(5 * Math.max(...se));
    mean.forEach((m, j) => expect(Math.abs(m - exact[j]!)).toBeLessThan(4.5 * se[j]! + 1e-12));
    T.treeDispose(params);
    rT.dispose();
  });
});

describe('the RLOO loss of a transformer', () => {
  it('has a gradient that matches finite differences, through the recomputed soft mixtures (float64)', async () => {
    const tokenizer = builtinTokenizer();
    const config = parseConfig({
      model_type: 'llama', vocab_size: tokenizer.vocabSize, hidden_size: 8, intermediate_size: 12, num_hidden_layers: 1,
      num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 256, tie_word_embeddings: false,
    }, 'tiny');
    const params = initParams(config, 2, { std: 0.5, dtype: 'float64' });
    const prompts = [formatPrompt('Tom has 3 apples.'), formatPrompt('Ann has 2 pens.')];
    for (const kind of ['soft', 'hard'] as const) {
      const cot = trainingCotSettings(kind, kind === 'soft' ? 0.7 : 1);
      const batch = await rollout({ config, params, tokenizer, prompts, samples: 3, cot, maxCot: 4, maxAnswer: 3, answerSample: true, key: T.key(3) });
      const adv = rlooAdvantages([[100, 0, 10], [0, 10, 100]]);
      const loss = (p: typeof params) => rlooLoss(config, p, batch, adv);
      T.checkGrads(loss, [params], { rng: 5 });
      batch.softInputs?.dispose();
    }
    T.treeDispose(params);
  });

  it('rlooValueAndGrad (one jitted program) equals valueAndGrad of rlooLoss, in float64 and on the wasm backend in float32', async () => {
    const tokenizer = builtinTokenizer();
    const config = parseConfig({
      model_type: 'qwen2', vocab_size: tokenizer.vocabSize, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,
      num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 256, tie_word_embeddings: true, attention_bias: true,
    }, 'tiny');
    const prompts = [formatPrompt('Tom has 3 apples.'), formatPrompt('Ann has 2 pens and 4 more.')];
    for (const [dtype, tol] of [['float64', 1e-10], ['float32', 2e-4]] as const) {
      const params = initParams(config, 4, { std: 0.5, dtype });
      for (const kind of ['hard', 'soft', 'fuzzy'] as const) {
        const batch = await rollout({ config, params, tokenizer, prompts, samples: 4, cot: trainingCotSettings(kind), maxCot: 6, maxAnswer: 3, answerSample: true, key: T.key(8) });
        const adv = rlooAdvantages([[100, 0, 10, 0], [0, 10, 100, 100]]);
        const [l1, g1] = T.valueAndGrad((p: typeof params) => rlooLoss(config, p, batch, adv))(params);
        const [l2, g2] = rlooValueAndGrad(config, params, batch, adv);
        const a = [await l1.item(), ...(await Promise.all(T.treeLeaves(g1).map(async (t) => Array.from(await t.data())))).flat()];
        const b = [await l2.item(), ...(await Promise.all(T.treeLeaves(g2).map(async (t) => Array.from(await t.data())))).flat()];
        expect(b.length).toBe(a.length);
        const scale = Math.max(1, ...a.map(Math.abs));
        const worst = Math.max(...a.map((x, i) => Math.abs(x - b[i]!)));
        expect(worst / scale, `${dtype} ${kind}`).toBeLessThan(tol);
        T.treeDispose([l1, g1, l2, g2]);
        disposeRolloutBatch(batch);
      }
      T.treeDispose(params);
    }
  });

  it('packs rollouts so that every ℓ equals an independent computation on the unpacked sequence (hard and soft, float64)', async () => {
    const tokenizer = builtinTokenizer();
    const config = parseConfig({ model_type: 'llama', vocab_size: tokenizer.vocabSize, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 256, tie_word_embeddings: true }, 'tiny');
    const params = initParams(config, 3, { std: 0.5, dtype: 'float64' });
    for (const kind of ['soft', 'hard'] as const) {
      const cot = trainingCotSettings(kind);
      const batch = await rollout({ config, params, tokenizer, prompts: [formatPrompt('Tom has 3 apples.'), formatPrompt('Ann has 2 pens and more.')], samples: 2, cot, maxCot: 6, maxAnswer: 3, answerSample: true, key: T.key(3) });
      const lp = Array.from(await sequenceLogProbs(config, params, batch).data());
      for (let r = 0; r < batch.rollouts.length; r++) {
        const ro = batch.rollouts[r]!;
        const soft = kind === 'soft' ? await rolloutSoftInputs(batch, r) : null;
        const d = 16;
        const rows: number[][] = [];
        const E = (await params.embed.toArray()) as number[][];
        for (const id of ro.promptIds) rows.push(E[id]!);
        ro.cotTokens.forEach((tok, t) => rows.push(soft ? Array.from(soft.subarray(t * d, (t + 1) * d)) : E[tok]!));
        for (const id of [...ro.prefillIds, ...ro.answerIds]) rows.push(E[id]!);
        const embeds = T.tensor([rows], { dtype: 'float64' });
        const logits = (await forward(config, params, { embeds }).logits.toArray()) as number[][][];
        let total = 0;
        const P = ro.promptIds.length;
        const lsm = (z: number[], tau: number) => { const s = z.map((v) => v / tau); const m = Math.max(...s); const lse = m + Math.log(s.reduce((a, v) => a + Math.exp(v - m), 0)); return s.map((v) => v - lse); };
        ro.cotTokens.forEach((tok, t) => {
          const l = lsm(logits[0]![P + t - 1]!, cot.tau);
          if (kind === 'hard') total += l[tok]!;
          else {
            const p = l.map(Math.exp);
            const mix = Array.from({ length: d }, (_, j) => p.reduce((a, pv, v) => a + pv * E[v]![j]!, 0));
            const x = rows[P + t]!;
            total -= mix.reduce((a, mv, j) => a + (x[j]! - mv) ** 2, 0) / (2 * batch.sigma ** 2);
          }
        });
        const A0 = P + ro.cotTokens.length + ro.prefillIds.length;
        ro.answerIds.forEach((id, a) => { total += lsm(logits[0]![A0 + a - 1]!, 1)[id]!; });
        expect(Math.abs(lp[r]! - total)).toBeLessThan(1e-8 * Math.max(1, Math.abs(total)));
      }
      disposeRolloutBatch(batch);
    }
    T.treeDispose(params);
  });
});
