import { describe, expect, it } from 'vitest';
import * as T from '@softgrad/tensor';

describe('smoke', () => {
  it('computes and differentiates', async () => {
    const x = T.tensor([[1, 2], [3, 4]], { dtype: 'float64' });
    const f = (x: T.Tensor) => T.sum(T.mul(x, x));
    const g = T.grad(f)(x);
    expect(await g.toArray()).toEqual([[2, 4], [6, 8]]);
    const h = T.grad((x: T.Tensor) => T.sum(T.grad(f)(x)))(x);
    expect(await h.toArray()).toEqual([[2, 2], [2, 2]]);
    const [y, t] = T.jvp(f, [x], [T.onesLike(x)]);
    expect(await y.item()).toBe(30);
    expect(await t.item()).toBe(20);
  });
});
