/**
 * Memory: every transformation gives back all the buffers it allocated (the CPU backend's
 * live-buffer count returns to where it started), and a training loop keeps it flat.
 * Errors: a misuse is reported with the op, the shapes and what was expected.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as T from '@softgrad/tensor';

const be = T.getDefaultBackend();
const live = (): number => be.stats().liveBuffers;
let live0 = 0;
beforeEach(() => {
  live0 = live();
});
afterEach(() => {
  // Every test, including those that provoke errors, leaves no buffer behind.
  expect(live()).toBe(live0);
});

const f64 = (data: T.TensorData): T.Tensor => T.tensor(data, { dtype: 'float64' });

// ---------------------------------------------------------------------------------------
// Memory

describe('memory: transformations release everything they allocate', () => {
  const f = (x: T.Tensor, w: T.Tensor): T.Tensor => T.sum(T.tanh(T.matmul(T.exp(x), w)));
  let x: T.Tensor;
  let w: T.Tensor;
  let start = 0;
  beforeEach(() => {
    x = f64([[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]]);
    w = f64([[1, 2], [3, 4], [5, 6]]);
    start = live();
  });
  afterEach(() => {
    x.dispose();
    w.dispose();
  });

  it('grad allocates only its result', () => {
    const g = T.grad(f, [0, 1])(x, w) as T.Tensor[];
    expect(live()).toBe(start + 2);
    T.treeDispose(g);
    expect(live()).toBe(start);
  });

  it('valueAndGrad (with hasAux) allocates only the value, aux and gradients', () => {
    const [[value, aux], g] = T.valueAndGrad((x: T.Tensor, w: T.Tensor) => {
      const y = T.matmul(x, w);
      return [T.sum(T.mul(y, y)), { y }];
    }, { argnums: 1, hasAux: true })(x, w);
    expect(live()).toBe(start + 3);
    T.treeDispose([value, aux, g]);
    expect(live()).toBe(start);
  });

  it('grad with hasAux returns [gradient, aux] and keeps only those', () => {
    const [g, aux] = T.grad((x: T.Tensor) => {
      const e = T.exp(x);
      return [T.sum(e), e];
    }, { hasAux: true })(x);
    expect(g.shape).toEqual([2, 3]);
    expect(Array.from((aux as T.Tensor).dataSync())).toEqual(Array.from(g.dataSync()));
    expect(live()).toBe(start + 2);
    T.treeDispose([g, aux]);
    expect(live()).toBe(start);
  });

  it('vjp holds its tape until the pullback is disposed, then releases it', () => {
    const [y, pullback] = T.vjp((x: T.Tensor, w: T.Tensor) => T.tanh(T.matmul(x, w)), x, w);
    const ct = T.onesLike(y);
    const grads1 = pullback(ct);
    const grads2 = pullback(ct); // callable more than once
    T.treeDispose([grads1, grads2]);
    expect(live()).toBeGreaterThan(start + 2); // the tape is still alive
    pullback.dispose();
    pullback.dispose(); // idempotent
    expect(() => pullback(ct)).toThrow('vjp: the pullback was called after dispose()');
    T.treeDispose([y, ct]);
    expect(live()).toBe(start);
  });

  it('jvp allocates only the output and its tangent', () => {
    const tx = T.onesLike(x);
    const tw = T.zerosLike(w);
    const afterTangents = live();
    const [y, ty] = T.jvp(f, [x, w], [tx, tw]);
    expect(live()).toBe(afterTangents + 2);
    T.treeDispose([y, ty, tx, tw]);
    expect(live()).toBe(start);
  });

  it('scope disposes every intermediate and keeps its (pytree) result', () => {
    const out = T.scope(() => {
      const a = T.exp(x);
      const b = T.matmul(a, w);
      return { b, nested: [T.sum(b)], label: 'kept' };
    });
    expect(live()).toBe(start + 2);
    expect(out.label).toBe('kept');
    T.treeDispose(out);
    expect(live()).toBe(start);
  });

  it('nested grad(grad) and jvp-of-grad leave nothing behind', () => {
    const g1 = (x: T.Tensor) => T.grad(f)(x, w);
    const hess = T.grad((x: T.Tensor) => T.sum(T.mul(g1(x), g1(x))))(x);
    const v = T.onesLike(x);
    const [gx, hvp] = T.jvp(g1, [x], [v]);
    expect(live()).toBe(start + 4);
    T.treeDispose([hess, v, gx, hvp]);
    expect(live()).toBe(start);
  });

  it('a transformation whose function throws releases everything', () => {
    const boom = (x: T.Tensor): T.Tensor => {
      T.exp(T.mul(x, x));
      throw new Error('boom');
    };
    expect(() => T.grad(boom)(x)).toThrow('boom');
    expect(() => T.vjp(boom, x)).toThrow('boom');
    expect(() => T.jvp(boom, [x], [x])).toThrow('boom');
    expect(() => T.scope(() => boom(x))).toThrow('boom');
    expect(live()).toBe(start);
  });

  it('checkGrads leaves nothing behind, also when it reports a failure', () => {
    T.checkGrads(f, [x, w], { order: 2 });
    expect(live()).toBe(start);
    const bad: T.Primitive<null> = { name: 'bad', impl: ([a]) => T.exp(a!), jvp: ([t]) => t, vjp: (g) => [g] };
    expect(() => T.checkGrads((x: T.Tensor) => T.bind(bad, [x], null), [x])).toThrow(/checkGrads: JVP/);
    expect(live()).toBe(start);
  });
});

describe('memory: training', () => {
  it('a 50-step SGD loop of a small MLP written with valueAndGrad keeps a flat live-buffer count', () => {
    const start = live();
    const r = (() => {
      let s = 12345;
      return () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) - 0.5;
    })();
    const rand = (shape: number[]) => T.tensor(Float64Array.from({ length: shape.reduce((a, d) => a * d, 1) }, r), { shape, dtype: 'float64' });
    let params = { w1: rand([4, 8]), b1: rand([8]), w2: rand([8, 3]), b2: rand([3]) };
    const x = rand([16, 4]);
    const labels = T.tensor(Int32Array.from({ length: 16 }, (_, i) => i % 3), { shape: [16] });
    const loss = (p: typeof params, x: T.Tensor, labels: T.Tensor) =>
      T.crossEntropy(T.add(T.matmul(T.silu(T.add(T.matmul(x, p.w1), p.b1)), p.w2), p.b2), labels);
    const step = T.valueAndGrad(loss);
    const counts: number[] = [];
    const losses: number[] = [];
    for (let i = 0; i < 50; i++) {
      const [value, g] = step(params, x, labels);
      losses.push(value.dataSync()[0]!);
      const next = T.treeZipMap([params, g], ([p, gi]) => T.scope(() => T.sub(p!, T.mul(gi!, 0.5))));
      T.treeDispose([params, g, value]);
      params = next;
      counts.push(live());
    }
    expect(new Set(counts).size).toBe(1);
    expect(counts[0]).toBe(start + 6); // 4 parameters, x and labels
    expect(losses[49]!).toBeLessThan(losses[0]!);
    T.treeDispose([params, x, labels]);
    expect(live()).toBe(start);
  });
});

// ---------------------------------------------------------------------------------------
// Errors

describe('errors name the op, the shapes and the expectation', () => {
  const withTensors = (fn: (t: (x: T.Tensor) => T.Tensor) => void): void => {
    const made: T.Tensor[] = [];
    try {
      fn((x) => (made.push(x), x));
    } finally {
      T.treeDispose(made);
    }
  };

  it('matmul with mismatched inner dimensions', () => {
    withTensors((t) => {
      const a = t(T.zeros([2, 3], { dtype: 'float64' }));
      const b = t(T.zeros([4, 5], { dtype: 'float64' }));
      expect(() => T.matmul(a, b)).toThrow('matmul: inner dimensions differ ([2,3] · [4,5])');
      expect(() => T.matmul(a, b, { transposeA: true })).toThrow('matmul: inner dimensions differ ([2,3]ᵀ · [4,5])');
      expect(() => T.matmul(t(T.zeros([3], { dtype: 'float64' })), b)).toThrow(/matmul: operands must have rank ≥ 2, got \[3\] · \[4,5\]/);
      expect(() => T.matmul(t(T.zeros([2, 2, 3], { dtype: 'float64' })), t(T.zeros([3, 3, 1], { dtype: 'float64' })))).toThrow(
        'matmul: batch dimensions [2] and [3] cannot be broadcast',
      );
    });
  });

  it('shapes that do not broadcast', () => {
    withTensors((t) => {
      const a = t(T.zeros([2, 3], { dtype: 'float64' }));
      const b = t(T.zeros([4], { dtype: 'float64' }));
      expect(() => T.add(a, b)).toThrow('add: shapes [2,3] and [4] cannot be broadcast together');
      expect(() => T.where(t(T.tensor([true, false])), a, 0)).toThrow('where: shapes [2] and [2,3] and [] cannot be broadcast together');
      expect(() => T.broadcastTo(a, [3, 3])).toThrow('broadcastTo: cannot broadcast [2,3] to [3,3]');
    });
  });

  it('dtype mismatches', () => {
    withTensors((t) => {
      const a = t(T.zeros([2], { dtype: 'float32' }));
      const b = t(T.zeros([2], { dtype: 'float64' }));
      expect(() => T.add(a, b)).toThrow('add: dtypes differ (float32 [2] vs float64 [2]); cast one first');
      expect(() => T.matmul(t(T.reshape(a, [1, 2])), t(T.reshape(b, [2, 1])))).toThrow('matmul: dtypes differ (float32 vs float64)');
      expect(() => T.exp(t(T.zeros([2], { dtype: 'int32' })))).toThrow('exp: expected a float tensor, got int32 [2]');
      expect(() => T.gather(b, t(T.zeros([1], { dtype: 'float32' })))).toThrow('gather: indices must be int32, got float32');
      expect(() => T.concat([a, b])).toThrow('concat: dtypes differ (float32 vs float64)');
      expect(() => T.mul(2, null as unknown as T.Tensor)).toThrow('mul: operands must be Tensors or numbers, got null');
    });
  });

  it('grad of a non-scalar function', () => {
    withTensors((t) => {
      const x = t(T.zeros([2, 3], { dtype: 'float64' }));
      expect(() => T.grad((x: T.Tensor) => T.exp(x))(x)).toThrow('grad: the function must return a scalar, got shape [2,3] (reduce it with sum or mean first)');
      expect(() => T.valueAndGrad((x: T.Tensor) => T.exp(x))(x)).toThrow('valueAndGrad: the function must return a scalar, got shape [2,3]');
      expect(() => T.grad((x: T.Tensor) => T.argmax(T.sum(x, 0), 0))(x)).toThrow('grad: the function returned a int32 scalar; it must be float');
      expect(() => T.grad((x: T.Tensor) => T.sum(x), 1)(x)).toThrow('grad: argnums 1 is out of range for 1 argument(s)');
    });
  });

  it('async functions passed to grad, vjp, jvp or scope', async () => {
    const x = f64([1, 2]);
    const asyncF = async (x: T.Tensor) => T.sum(x);
    expect(() => T.grad(asyncF)(x)).toThrow('grad: the function returned a Promise; transformed functions must be synchronous');
    expect(() => T.vjp(asyncF, x)).toThrow('vjp: the function returned a Promise');
    expect(() => T.jvp(asyncF, [x], [x])).toThrow('jvp: the function returned a Promise');
    expect(() => T.scope(async () => T.exp(x))).toThrow('scope: the function returned a Promise; scopes take synchronous functions');
    await Promise.resolve(); // let the async bodies finish; their results were already disposed
    x.dispose();
  });

  it('gather with an out-of-range index', () => {
    withTensors((t) => {
      const x = t(T.zeros([3, 2], { dtype: 'float64' }));
      expect(() => T.gather(x, t(T.tensor(new Int32Array([0, 3]))), 0)).toThrow('gather: index 3 out of range [0, 3)');
      expect(() => T.gather(x, t(T.tensor(new Int32Array([-1]))), 1)).toThrow('gather: index -1 out of range [0, 2)');
      // Also from inside a transformation (the tape must not keep anything).
      expect(() => T.grad((x: T.Tensor) => T.sum(T.gather(x, t(T.tensor(new Int32Array([5]))), 0)))(x)).toThrow('gather: index 5 out of range [0, 3)');
    });
  });

  it('use after dispose', async () => {
    const x = f64([1, 2]);
    x.dispose();
    expect(x.isDisposed).toBe(true);
    expect(() => T.exp(x)).toThrow('exp: input tensor [2] float64 has been disposed');
    expect(() => T.add(x, 1)).toThrow('add: input tensor [2] float64 has been disposed');
    expect(() => T.reshape(x, [2, 1])).toThrow('reshape: input tensor [2] float64 has been disposed');
    expect(() => x.dataSync()).toThrow('dataSync: input tensor [2] float64 has been disposed');
    await expect(x.data()).rejects.toThrow('data: input tensor [2] float64 has been disposed');
    expect(() => T.grad((y: T.Tensor) => T.sum(y))(x)).toThrow(/has been disposed/);
    x.dispose(); // idempotent
  });

  it('grad of a function of no tensors refuses instead of returning its input', () => {
    expect(() => T.grad((_x: number) => T.scalar(1))(5)).toThrow('grad: argument 0 has no tensors to differentiate, got a number (5)');
    const vg = T.valueAndGrad((o: { a: string }) => T.scalar(o.a.length));
    expect(() => vg({ a: 'x' })).toThrow(/valueAndGrad: argument 0 has no tensors to differentiate, got an object without tensors/);
  });

  it('typed arrays: narrower integers widen to int32, the rest is refused by name', async () => {
    for (const src of [new Int16Array([1, -2]), new Int8Array([1, -2]), new Uint16Array([1, 2]), new Uint32Array([1, 2])]) {
      const x = T.tensor(src);
      expect(x.dtype).toBe('int32');
      expect(Array.from(await x.data())).toEqual(Array.from(src));
      x.dispose();
    }
    expect(() => T.tensor(new Uint32Array([3e9]))).toThrow('tensor: Uint32Array value 3000000000 at index 0 is outside the int32 range');
    expect(() => T.tensor(new BigInt64Array(2) as unknown as T.TypedArray)).toThrow(/tensor: BigInt64Array is not supported/);
    expect(() => T.tensor(new Uint8ClampedArray(2) as unknown as T.TypedArray)).toThrow(/tensor: Uint8ClampedArray is not supported/);
  });

  it('int32 data outside int32, or not integers, is refused instead of wrapping or truncating', () => {
    expect(() => T.tensor([1e10], { dtype: 'int32' })).toThrow('tensor: 10000000000 at index 0 is outside the int32 range [-2147483648, 2147483647]');
    expect(() => T.tensor([1, 2.5], { dtype: 'int32' })).toThrow('tensor: 2.5 at index 1 is not an integer');
    expect(() => T.tensor(new Float64Array([NaN]), { dtype: 'int32' })).toThrow('tensor: NaN at index 0 is not an integer');
    expect(() => T.full([2], 2 ** 31, { dtype: 'int32' })).toThrow('full: 2147483648 is outside the int32 range');
    expect(() => T.arange(0, 3, 0.5, { dtype: 'int32' })).toThrow('arange: 0.5 is not an integer');
  });

  it('categorical over a row with no finite logit is an error, not index 0', () => {
    withTensors((t) => {
      const z = t(T.tensor([[0, 1], [-Infinity, -Infinity]]));
      expect(() => T.categorical(T.key(0), z)).toThrow('categorical: row 1 of logits [2,2] has only −∞ along axis -1: there is nothing to sample');
      const n = t(T.tensor([[NaN, 0]]));
      expect(() => T.categorical(T.key(0), n)).toThrow(/row 0 of logits \[1,2\] has a NaN/);
    });
  });

  it('shapes with an axis beyond 2^31 − 1 are refused up front, and allocations that fail name the op', () => {
    withTensors((t) => {
      const e = t(T.zeros([0]));
      expect(() => T.reshape(e, [1e20, 0])).toThrow('reshape: target shape [100000000000000000000,0] has an axis of 100000000000000000000, larger than 2147483647');
      expect(() => T.zeros([2 ** 31, 0])).toThrow(/full: shape \[2147483648,0\] has an axis of 2147483648/);
      expect(() => T.broadcastTo(e, [2 ** 40, 0])).toThrow(/broadcastTo: shape .* has an axis of/);
      expect(() => T.uniform(T.key(0), [2 ** 32])).toThrow(/uniform: shape \[4294967296\] has an axis of/);
      expect(() => T.zeros([1e6, 1e6])).toThrow(/^full: \[1000000,1000000\] float32: /);
      const a = t(T.zeros([100000, 1]));
      const b = t(T.zeros([1, 100000]));
      expect(() => T.add(a, b)).toThrow(/^add: .*\(inputs \[100000,1\] float32, \[1,100000\] float32\)/);
      expect(() => T.add(a, b)).toThrow(T.AllocationError);
    });
  });

  it('reshape to a different number of elements', () => {
    withTensors((t) => {
      const x = t(T.zeros([2, 3], { dtype: 'float64' }));
      expect(() => T.reshape(x, [4])).toThrow('reshape: cannot reshape [2,3] (6 elements) into [4] (4 elements)');
      expect(() => T.reshape(x, [4, -1])).toThrow('reshape: cannot reshape [2,3] into [4,-1]');
      expect(() => T.reshape(x, [-1, -1])).toThrow('reshape: invalid target shape [-1,-1]');
    });
  });

  it('bad axes', () => {
    withTensors((t) => {
      const x = t(T.zeros([2, 3], { dtype: 'float64' }));
      expect(() => T.sum(x, 2)).toThrow('sum: axis 2 is out of range for rank 2');
      expect(() => T.max(x, [-3])).toThrow('max: axis -3 is out of range for rank 2');
      expect(() => T.mean(x, [0, -2])).toThrow('mean: repeated axis in [0,-2]');
      expect(() => T.softmax(x, 5)).toThrow(/axis 5 is out of range for rank 2/);
      expect(() => T.concat([x, x], 2)).toThrow('concat: axis 2 is out of range for rank 2');
      expect(() => T.gather(x, t(T.tensor(new Int32Array([0]))), -3)).toThrow('gather: axis -3 is out of range for rank 2');
      expect(() => T.transpose(x, [0, 0])).toThrow('transpose: [0,0] is not a permutation of the 2 axes of [2,3]');
      expect(() => T.squeeze(x, 0)).toThrow('squeeze: axis 0 of [2,3] has size 2, not 1');
      expect(() => T.argmax(x, [0, 1] as unknown as number)).toThrow('argmax: takes exactly one axis, got [0,1]');
      expect(() => T.slice(x, [1, 0], [2, -1])).toThrow('slice: range [1, 3) is outside axis 0 of [2,3]');
    });
  });

  it('an int tensor passed to grad', () => {
    withTensors((t) => {
      const i = t(T.tensor(new Int32Array([1, 2, 3])));
      expect(() => T.grad((x: T.Tensor) => T.sum(T.cast(x, 'float64')))(i)).toThrow(
        'grad: argument 0 contains a int32 tensor [3]; only float tensors can be differentiated',
      );
      expect(() => T.valueAndGrad((p: { a: T.Tensor; n: T.Tensor }) => T.sum(p.a), { argnums: 0 })({ a: t(f64([1])), n: i })).toThrow(
        'valueAndGrad: argument 0 contains a int32 tensor [3]',
      );
    });
  });

  it('jvp tangents and vjp cotangents that do not match', () => {
    withTensors((t) => {
      const x = t(f64([1, 2]));
      expect(() => T.jvp(T.exp, [x], [t(f64([1, 2, 3]))])).toThrow('jvp: tangent [3] float64 does not match primal [2] float64');
      const [y, pullback] = T.vjp(T.exp, x);
      t(y);
      expect(() => pullback(t(T.zeros([2], { dtype: 'float32' })))).toThrow('vjp: cotangent 0 is [2] float32, the output is [2] float64');
      pullback.dispose();
    });
  });
});
