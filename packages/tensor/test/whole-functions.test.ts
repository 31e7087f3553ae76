/**
 * Gradient checks of whole functions (float64, CPU): a 2-layer MLP with softmax
 * cross-entropy w.r.t. all its parameters as a pytree, one causal self-attention head, and
 * grad of grad of a scalar elementwise + matmul function.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as T from '@softgrad/tensor';

const be = T.getDefaultBackend();
let live0 = 0;
beforeEach(() => {
  live0 = be.stats().liveBuffers;
});
afterEach(() => {
  expect(be.stats().liveBuffers).toBe(live0);
});

/** Seeded uniform [0,1) test data, independent of the engine's RNG. */
const rng = T.mulberry32;

function randn(r: () => number, shape: number[], scale = 1): T.Tensor {
  const n = shape.reduce((a, d) => a * d, 1);
  const data = Float64Array.from({ length: n }, () => scale * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r()));
  return T.tensor(data, { shape, dtype: 'float64' });
}

/** Expect two pytrees of tensors to be elementwise equal within a relative tolerance. */
function expectTreesClose(a: unknown, b: unknown, rtol = 1e-12): void {
  const la = T.treeLeaves(a);
  const lb = T.treeLeaves(b);
  expect(la.length).toBe(lb.length);
  la.forEach((x, i) => {
    const y = lb[i]!;
    expect(x.shape).toEqual(y.shape);
    const dx = x.dataSync();
    const dy = y.dataSync();
    for (let j = 0; j < dx.length; j++) expect(Math.abs(dx[j]! - dy[j]!)).toBeLessThanOrEqual(rtol * Math.max(1, Math.abs(dy[j]!)));
  });
}

// ---------------------------------------------------------------------------------------
// MLP

interface MlpParams {
  w1: T.Tensor;
  b1: T.Tensor;
  w2: T.Tensor;
  b2: T.Tensor;
}

function mlpLogits(p: MlpParams, x: T.Tensor): T.Tensor {
  const h = T.tanh(T.add(T.matmul(x, p.w1), p.b1));
  return T.add(T.matmul(h, p.w2), p.b2);
}

function mlpLoss(p: MlpParams, x: T.Tensor, labels: T.Tensor): T.Tensor {
  return T.crossEntropy(mlpLogits(p, x), labels);
}

describe('2-layer MLP with softmax cross-entropy', () => {
  it('gradient w.r.t. all parameters (a pytree) and the input matches finite differences, to second order', () => {
    T.scope(() => {
      const r = rng(1);
      const params: MlpParams = { w1: randn(r, [4, 5], 0.7), b1: randn(r, [5], 0.1), w2: randn(r, [5, 3], 0.7), b2: randn(r, [3], 0.1) };
      const x = randn(r, [6, 4]);
      const labels = T.tensor(new Int32Array([0, 2, 1, 1, 0, 2]), { shape: [6] });
      T.checkGrads(mlpLoss, [params, x, labels], { order: 2, rng: 11 });
      // Per-example losses (a vector output) too.
      T.checkGrads((p: MlpParams) => T.crossEntropy(mlpLogits(p, x), labels, 'none'), [params], { rng: 12 });
      return null;
    });
  });

  it('grad and valueAndGrad agree with the checked VJP, in the structure of the parameters', () => {
    T.scope(() => {
      const r = rng(2);
      const params: MlpParams = { w1: randn(r, [3, 4]), b1: randn(r, [4]), w2: randn(r, [4, 2]), b2: randn(r, [2]) };
      const x = randn(r, [5, 3]);
      const labels = T.tensor(new Int32Array([0, 1, 1, 0, 1]), { shape: [5] });
      const g = T.grad(mlpLoss)(params, x, labels) as MlpParams;
      expect(Object.keys(g).sort()).toEqual(['b1', 'b2', 'w1', 'w2']);
      const [value, g2] = T.valueAndGrad(mlpLoss)(params, x, labels);
      const [out, pullback] = T.vjp(mlpLoss, params, x, labels);
      const [gv] = pullback(T.onesLike(out));
      pullback.dispose();
      expect(value.dataSync()[0]).toBe(out.dataSync()[0]);
      expectTreesClose(g, gv);
      expectTreesClose(g2, gv);
      // argnums picks the input instead.
      const gx = T.grad(mlpLoss, 1)(params, x, labels);
      expect(gx.shape).toEqual([5, 3]);
      return null;
    });
  });
});

// ---------------------------------------------------------------------------------------
// Causal self-attention head

interface HeadParams {
  wq: T.Tensor;
  wk: T.Tensor;
  wv: T.Tensor;
  wo: T.Tensor;
}

/** Boolean [t, t] mask, true where key position j ≤ query position i. */
function causalMask(t: number): T.Tensor {
  const i = T.arange(0, t, 1, { dtype: 'int32' });
  return T.greaterEqual(T.expandDims(i, -1), T.expandDims(i, 0));
}

/** One head over x [..., t, dModel]; masked scores are set to `maskValue` before the softmax. */
function attentionHead(p: HeadParams, x: T.Tensor, maskValue: number): T.Tensor {
  const t = x.shape[x.rank - 2]!;
  const dHead = p.wq.shape[1]!;
  const q = T.matmul(x, p.wq);
  const k = T.matmul(x, p.wk);
  const v = T.matmul(x, p.wv);
  const scores = T.div(T.matmul(q, k, { transposeB: true }), Math.sqrt(dHead));
  const masked = T.where(causalMask(t), scores, maskValue);
  const attn = T.softmax(masked, -1);
  return T.matmul(T.matmul(attn, v), p.wo);
}

describe('causal self-attention head', () => {
  const setup = (seed: number, xShape: number[]) => {
    const r = rng(seed);
    const dModel = xShape[xShape.length - 1]!;
    const params: HeadParams = { wq: randn(r, [dModel, 3], 0.6), wk: randn(r, [dModel, 3], 0.6), wv: randn(r, [dModel, 3], 0.6), wo: randn(r, [3, dModel], 0.6) };
    return { params, x: randn(r, xShape) };
  };

  it('gradient w.r.t. the weights and the input matches finite differences (large negative mask)', () => {
    T.scope(() => {
      const { params, x } = setup(3, [5, 4]);
      T.checkGrads((p: HeadParams, x: T.Tensor) => attentionHead(p, x, -1e9), [params, x], { order: 2, rng: 21 });
      return null;
    });
  });

  it('gradient matches finite differences with -Infinity masking (no NaN leaks into gradients)', () => {
    T.scope(() => {
      const { params, x } = setup(4, [2, 4, 4]); // batched
      const f = (p: HeadParams, x: T.Tensor) => attentionHead(p, x, -Infinity);
      T.checkGrads(f, [params, x], { order: 2, rng: 22 });
      const g = T.grad((p: HeadParams, x: T.Tensor) => T.sum(f(p, x)), [0, 1])(params, x);
      for (const leaf of T.treeLeaves(g)) expect(leaf.dataSync().every(Number.isFinite)).toBe(true);
      return null;
    });
  });

  it('is causal: the output at position i does not depend on inputs after i', () => {
    T.scope(() => {
      const { params, x } = setup(5, [4, 4]);
      // d out[0] / d x: only row 0 of x may have a non-zero gradient.
      const g = T.grad((x: T.Tensor) => T.sum(T.slice(attentionHead(params, x, -Infinity), [0, 0], [1, -1])))(x);
      const d = g.dataSync();
      expect(Array.from(d.slice(4)).every((v) => v === 0)).toBe(true);
      expect(Array.from(d.slice(0, 4)).some((v) => v !== 0)).toBe(true);
      return null;
    });
  });
});

// ---------------------------------------------------------------------------------------
// grad of grad

describe('grad of grad', () => {
  const f = (x: T.Tensor, w: T.Tensor): T.Tensor => T.sum(T.mul(T.sin(T.matmul(x, w)), T.exp(T.mul(x, 0.3))));

  it('grad(f) of a scalar elementwise + matmul function is itself differentiated correctly (to third order)', () => {
    T.scope(() => {
      const r = rng(6);
      const x = randn(r, [3, 3]);
      const w = randn(r, [3, 3], 0.5);
      const gradF = (x: T.Tensor, w: T.Tensor) => T.grad(f, [0, 1])(x, w);
      T.checkGrads(f, [x, w], { order: 2, rng: 31 });
      T.checkGrads(gradF, [x, w], { order: 2, rng: 32 });
      return null;
    });
  });

  it('grad(grad) of a cubic gives the second derivative exactly', async () => {
    const x = T.tensor([-1.5, 0, 2], { dtype: 'float64' });
    const d1 = (x: T.Tensor) => T.grad((y: T.Tensor) => T.sum(T.mul(T.mul(y, y), y)))(x);
    const d2 = T.grad((x: T.Tensor) => T.sum(d1(x)))(x);
    expect(await d2.toArray()).toEqual([-9, 0, 12]);
    x.dispose();
    d2.dispose();
  });

  it('forward-over-reverse Hessian-vector product equals reverse-over-reverse', () => {
    T.scope(() => {
      const r = rng(7);
      const x = randn(r, [2, 3]);
      const w = randn(r, [3, 3]);
      const v = randn(r, [2, 3]);
      const gx = (x: T.Tensor) => T.grad(f)(x, w);
      const [, hvpFwd] = T.jvp(gx, [x], [v]);
      const hvpRev = T.grad((x: T.Tensor) => T.sum(T.mul(gx(x), v)))(x);
      expectTreesClose(hvpFwd, hvpRev, 1e-12);
      return null;
    });
  });
});
