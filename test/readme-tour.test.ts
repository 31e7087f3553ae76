/** The README's engine tour, run as written (minus the WebGPU line), so the README stays true. */
import { expect, it } from 'vitest';
import * as T from '@softgrad/tensor';

it('the README tour runs and leaks nothing', async () => {
  const before = T.getDefaultBackend().stats().liveBuffers;
  const x = T.tensor([[1, 2], [3, 4]], { dtype: 'float64' });
  const f = (x: T.Tensor) => T.sum(T.mul(T.sin(x), x));
  const g = T.grad(f)(x);
  const h = T.grad((x: T.Tensor) => T.sum(T.grad(f)(x)))(x);
  const [y, ty] = T.jvp(f, [x], [T.onesLike(x)]);
  const [out, pullback] = T.vjp(f, x);
  const ga = (await g.toArray()) as number[][];
  expect(ga[0]![0]).toBeCloseTo(Math.cos(1) * 1 + Math.sin(1), 12);
  expect(await ty.item()).toBeCloseTo([1, 2, 3, 4].reduce((a, v) => a + Math.cos(v) * v + Math.sin(v), 0), 12);
  pullback.dispose();
  const params = { w: T.normal(T.key(0), [4, 3]), b: T.zeros([3]) };
  const loss = (p: typeof params, xs: T.Tensor, labels: T.Tensor) => T.crossEntropy(T.add(T.matmul(xs, p.w), p.b), labels);
  const xs = T.ones([2, 4]);
  const labels = T.tensor([0, 2], { dtype: 'int32' });
  const [value, grads] = T.valueAndGrad(loss)(params, xs, labels);
  expect(grads.w.shape).toEqual([4, 3]);
  const z = T.scope(() => T.softmax(T.mul(T.arange(5), 0.1)));
  T.treeDispose([x, g, h, y, ty, out, value, grads, params, z, xs, labels]);
  const [k1] = T.split(T.key(42));
  const sample = T.categorical(k1!, T.tensor([0.1, 2.0, -1.0]));
  expect(sample.dtype).toBe('int32');
  sample.dispose();
  // The two tensors the tour creates inline as arguments (the jvp tangent and the categorical
  // logits) are its deliberate shortcuts; nothing else remains.
  expect(T.getDefaultBackend().stats().liveBuffers).toBe(before + 2);
});
