/**
 * jit(f) has f's meaning: equal values and gradients on random compositions of ops (exactly:
 * a program replayed op by op runs the same kernels, and a fused kernel computes the same
 * float32 operations in the same order as the ops it replaces), re-tracing exactly when a
 * signature changes, keys followed per call, clear errors for what cannot be traced, and
 * flat memory over long jitted loops.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as T from '@softgrad/tensor';
import type { Backend, Tensor } from '@softgrad/tensor';

const cpu = T.createCpuBackend();
const wasm = T.createWasmBackend();

/** A deterministic random program over two inputs: the same op sequence for the same seed and shapes. */
function randomProgram(seed: number, steps: number) {
  return (x: Tensor, y: Tensor): Tensor => {
    const rnd = T.mulberry32(seed);
    const pick = <V>(xs: readonly V[]): V => xs[Math.floor(rnd() * xs.length)]!;
    const pool: Tensor[] = [x, y];
    for (let s = 0; s < steps; s++) {
      const a = pick(pool);
      const compatible = pool.filter((b) => T.tryBroadcastShapes(a.shape, b.shape) !== null);
      const axis = a.rank > 0 ? Math.floor(rnd() * a.rank) : 0;
      const op = pick([
        'unary', 'unary', 'binary', 'binary', 'reduce', 'matmul', 'transpose', 'slice', 'concat', 'where', 'softmax', 'scalar', 'reshape',
      ]);
      let out: Tensor;
      switch (op) {
        case 'unary': {
          const u = pick(['neg', 'tanh', 'sigmoid', 'sin', 'cos', 'abs', 'expTanh', 'logAbs', 'sqrtAbs', 'rsqrtAbs', 'square']);
          if (u === 'expTanh') out = T.exp(T.tanh(a));
          else if (u === 'logAbs') out = T.log(T.add(T.abs(a), 1));
          else if (u === 'sqrtAbs') out = T.sqrt(T.add(T.abs(a), 0.5));
          else if (u === 'rsqrtAbs') out = T.rsqrt(T.add(T.abs(a), 1));
          else if (u === 'square') out = T.square(a);
          else out = (T as unknown as Record<string, (t: Tensor) => Tensor>)[u]!(a);
          break;
        }
        case 'binary': {
          const b = pick(compatible);
          const f = pick(['add', 'sub', 'mul', 'maximum', 'minimum', 'divSafe']);
          out = f === 'divSafe' ? T.div(a, T.add(T.abs(b), 1)) : (T as unknown as Record<string, (p: Tensor, q: Tensor) => Tensor>)[f]!(a, b);
          break;
        }
        case 'reduce': {
          if (a.rank === 0) { out = T.mul(a, 2); break; }
          const f = pick(['sum', 'mean', 'max', 'logsumexp']);
          out = f === 'logsumexp' ? T.logsumexp(a, axis, rnd() < 0.5) : (T as unknown as Record<string, (t: Tensor, ax: number, k: boolean) => Tensor>)[f]!(a, axis, rnd() < 0.5);
          break;
        }
        case 'matmul':
          out = a.rank >= 2 ? T.matmul(a, a, { transposeB: true }) : T.mul(a, a);
          break;
        case 'transpose':
          out = T.transpose(a);
          break;
        case 'slice':
          out = a.rank > 0 && a.shape[axis]! > 1 ? T.slice(a, a.shape.map((_, i) => (i === axis ? 1 : 0))) : T.neg(a);
          break;
        case 'concat':
          out = a.rank > 0 ? T.concat([a, T.mul(a, 0.5)], axis) : T.add(a, 1);
          break;
        case 'where': {
          const b = pick(compatible);
          out = T.where(T.greater(a, b), a, T.mul(b, 0.25));
          break;
        }
        case 'softmax':
          out = a.rank > 0 ? (rnd() < 0.5 ? T.softmax(a, axis) : T.logSoftmax(a, axis)) : T.sigmoid(a);
          break;
        case 'scalar':
          out = T.add(T.mul(a, Math.round(rnd() * 8 - 4) / 4), 0.5);
          break;
        default:
          out = T.reshape(a, [a.size]);
      }
      pool.push(out);
    }
    return pool.slice(2).reduce((acc, t, i) => T.add(acc, T.mul(T.sum(t), 1 / (i + 2))), T.sum(x));
  };
}

const shapeArb = fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 3 });

async function exactlyEqual(a: Tensor | Tensor[], b: Tensor | Tensor[], what: string): Promise<void> {
  const as = Array.isArray(a) ? a : [a];
  const bs = Array.isArray(b) ? b : [b];
  expect(as.length, what).toBe(bs.length);
  for (let i = 0; i < as.length; i++) {
    const [x, y] = [await as[i]!.data(), await bs[i]!.data()];
    expect(Array.from(x), `${what} [${i}]`).toEqual(Array.from(y));
  }
}

function closeTo(rtol: number, atol: number) {
  return async (a: Tensor | Tensor[], b: Tensor | Tensor[], what: string): Promise<void> => {
    const as = Array.isArray(a) ? a : [a];
    const bs = Array.isArray(b) ? b : [b];
    expect(as.length, what).toBe(bs.length);
    for (let i = 0; i < as.length; i++) {
      const [x, y] = [await as[i]!.data(), await bs[i]!.data()];
      x.forEach((v, j) => expect(Math.abs(v - y[j]!), `${what} [${i}][${j}]: ${v} vs ${y[j]}`).toBeLessThanOrEqual(atol + rtol * Math.abs(y[j]!)));
    }
  };
}

function inputs(backend: Backend, dtype: 'float32' | 'float64', shape: number[], seed: number): [Tensor, Tensor] {
  const rnd = T.mulberry32(seed);
  const n = shape.reduce((p, d) => p * d, 1);
  const mk = (s: number[]) => T.tensor(Float64Array.from({ length: s.reduce((p, d) => p * d, 1) }, () => rnd() * 2 - 1), { shape: s, dtype, backend });
  const yShape = shape.map((d, i) => (i % 2 === 0 ? d : 1));
  void n;
  return [mk(shape), mk(yShape)];
}

describe('jit', () => {
  // Op by op (the JS oracle) a replay runs the very same kernels: equal bit for bit. Fused, a
  // reduction may sum in another order than over the materialised input: equal to rounding.
  for (const [label, backend, dtype, compare] of [
    ['JS CPU, float64, op by op', cpu, 'float64', exactlyEqual],
    ['wasm, float32, fused', wasm, 'float32', closeTo(2e-5, 1e-5)],
  ] as const) {
    it(`equals the function in values and gradients on random compositions of ops (${label})`, async () => {
      await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 30 }), shapeArb, fc.integer({ min: 1, max: 10 }), async (seed, shape, steps) => {
        const f = randomProgram(seed, steps);
        const [x, y] = inputs(backend, dtype, shape, seed);
        const jf = T.jit(f);
        const jg = T.jit(T.valueAndGrad(f, { argnums: [0, 1] }));
        const want = T.scope(() => f(x, y));
        const got = jf(x, y);
        await compare(got, want, `value, seed ${seed}`);
        const [v1, g1] = T.valueAndGrad(f, { argnums: [0, 1] })(x, y) as [Tensor, Tensor[]];
        const [v2, g2] = jg(x, y) as [Tensor, Tensor[]];
        await compare([v2, ...g2], [v1, ...g1], `value and gradients, seed ${seed}`);
        T.treeDispose([x, y, want, got, v1, g1, v2, g2]);
        jf.dispose();
        jg.dispose();
      }), { numRuns: 40 });
      expect(backend.stats().liveBuffers).toBe(0);
    });
  }

  it('fuses: a chain of elementwise ops and its reduction become one kernel on the wasm backend', async () => {
    const f = (x: Tensor, w: Tensor) => T.sum(T.mul(T.sigmoid(T.add(T.mul(x, 2), w)), T.exp(x)), -1);
    const jf = T.jit(f);
    const x = T.tensor(Float32Array.from({ length: 24 }, (_, i) => i / 10 - 1), { shape: [4, 6], backend: wasm });
    const w = T.tensor(Float32Array.from({ length: 6 }, (_, i) => i / 5), { backend: wasm });
    const y = jf(x, w);
    expect(jf.stats().fusedKernels).toBe(1);
    expect(jf.stats().ops).toBe(1);
    await exactlyEqual(y, f(x, w), 'fused value');
    // The CPU oracle has no fused kernels: the same program runs op by op there.
    const xc = await T.toBackend(x, cpu);
    const wc = await T.toBackend(w, cpu);
    const jc = T.jit(f);
    const yc = jc(xc, wc);
    expect(jc.stats().fusedKernels).toBe(0);
    T.treeDispose([x, w, y, xc, wc, yc]);
  });

  it('reads slices and transposes in place, also through reshapes that split axes or add and drop size-1 ones', async () => {
    // Attention over a prefix of a cache: the cache slice is read by the kernel, not copied.
    const f = (q: Tensor, cache: Tensor) => {
      const ks = T.slice(cache, [0, 0, 0, 1], [3, 2, 4, 5]); // [3, 2, 4, 5] of [3, 2, 4, 9]
      const prod = T.mul(T.reshape(q, [3, 2, 2, 4, 1]), T.reshape(ks, [3, 2, 1, 4, 5]));
      const t = T.transpose(T.reshape(T.slice(cache, [0, 1, 0, 2], [3, 1, 4, 3]), [3, 4, 3]), [0, 2, 1]);
      // A slice read through a reshape that splits its axis: [.., 8] of [.., 9] as [.., 2, 4].
      const split = T.reshape(T.slice(cache, [0, 0, 1, 1], [3, 2, 3, 8]), [3, 2, 3, 2, 4]);
      return [T.sum(prod, 3), T.sum(T.exp(T.reshape(t, [3, 1, 3, 4])), -1), T.sum(T.mul(split, T.reshape(q, [3, 2, 1, 2, 4])), [2, 4])];
    };
    const jf = T.jit(f);
    const q = T.tensor(Float32Array.from({ length: 48 }, (_, i) => Math.sin(i)), { shape: [3, 2, 2, 4], backend: wasm });
    const cache = T.tensor(Float32Array.from({ length: 216 }, (_, i) => Math.cos(i / 3)), { shape: [3, 2, 4, 9], backend: wasm });
    const got = jf(q, cache);
    expect(jf.lastProgram()!.ops.map((o) => o.kind)).toEqual(['fused', 'fused', 'fused']);
    const want = f(q, cache);
    for (let i = 0; i < 3; i++) await exactlyEqual(got[i]!, want[i]!, `output ${i}`);
    T.treeDispose([q, cache, got, want]);
  });

  it('re-traces exactly when a signature changes: shapes, dtypes, structure, static values', () => {
    let traced = 0;
    const f = T.jit((x: Tensor, opts: { scale: number }) => {
      traced++;
      return T.mul(x, opts.scale);
    });
    const a = T.ones([2, 3], { backend: cpu });
    const b = T.zeros([2, 3], { backend: cpu });
    const c = T.ones([3, 2], { backend: cpu });
    const d = T.ones([2, 3], { backend: cpu, dtype: 'float64' });
    const outs = [f(a, { scale: 2 }), f(b, { scale: 2 }), f(a, { scale: 2 })];
    expect(f.traceCount).toBe(1);
    outs.push(f(c, { scale: 2 }));
    expect(f.traceCount).toBe(2);
    outs.push(f(d, { scale: 2 }));
    expect(f.traceCount).toBe(3);
    outs.push(f(a, { scale: 3 }));
    expect(f.traceCount).toBe(4);
    outs.push(f(b, { scale: 3 }));
    expect(f.traceCount).toBe(4);
    expect(traced).toBe(4);
    expect(f.stats().replays).toBe(7);
    T.treeDispose([a, b, c, d, outs]);
    f.dispose();
  });

  it('follows key arguments without re-tracing: random draws match the eager function for each key', async () => {
    const f = (k: T.PRNGKey, x: Tensor) => {
      const [k1, k2] = T.split(k);
      return T.add(T.mul(T.normal(k1!, x.shape, { backend: x.backend }), x), T.uniform(T.foldIn(k2!, 7), x.shape, { backend: x.backend }));
    };
    const jf = T.jit(f);
    const x = T.ones([5], { backend: wasm });
    for (const seed of [1, 2, 3]) {
      const got = jf(T.key(seed), x);
      const want = f(T.key(seed), x);
      await exactlyEqual(got, want, `key ${seed}`);
      T.treeDispose([got, want]);
    }
    expect(jf.traceCount).toBe(1);
    x.dispose();
  });

  it('refuses to read values while tracing, naming the problem', () => {
    const f = T.jit((x: Tensor) => {
      const v = x.dataSync()[0]!;
      return T.mul(x, v);
    });
    const x = T.ones([2], { backend: cpu });
    expect(() => f(x)).toThrow(/jit: .*read a tensor's value while being traced/);
    x.dispose();
    expect(cpu.stats().liveBuffers).toBe(0);
  });

  it('captures closed-over tensors as constants and releases them on dispose', async () => {
    const w = T.tensor([1, 2, 3], { backend: cpu });
    const f = T.jit((x: Tensor) => T.add(x, w));
    const x = T.ones([3], { backend: cpu });
    const y = f(x);
    expect(await y.toArray()).toEqual([2, 3, 4]);
    w.dispose(); // the program still holds the constant
    const z = f(x);
    expect(await z.toArray()).toEqual([2, 3, 4]);
    f.dispose();
    T.treeDispose([x, y, z]);
    expect(cpu.stats().liveBuffers).toBe(0);
  });

  it('returns inputs, repeated outputs and static values as they are', async () => {
    const f = T.jit((x: Tensor) => ({ same: x, twice: [T.exp(x), T.exp(x)], label: 'ok', n: 3 }));
    const x = T.ones([2], { backend: wasm });
    const out = f(x);
    expect(out.label).toBe('ok');
    expect(out.n).toBe(3);
    expect(await out.same.toArray()).toEqual([1, 1]);
    await exactlyEqual(out.twice[0]!, out.twice[1]!, 'repeated');
    x.dispose();
    expect(await out.same.toArray()).toEqual([1, 1]);
    T.treeDispose(out);
    f.dispose();
  });

  it('runs inline under grad, so gradients of jitted functions are those of the function', async () => {
    const inner = T.jit((x: Tensor) => T.sum(T.mul(T.sin(x), x)));
    const x = T.tensor([0.5, -1, 2], { dtype: 'float64', backend: cpu });
    const g1 = T.grad(inner)(x);
    const g2 = T.grad((t: Tensor) => T.sum(T.mul(T.sin(t), t)))(x);
    await exactlyEqual(g1, g2, 'grad of jit');
    const outer = T.jit((t: Tensor) => inner(t));
    const v = outer(x);
    expect(await v.item()).toBeCloseTo(Math.sin(0.5) * 0.5 + Math.sin(-1) * -1 + Math.sin(2) * 2, 12);
    T.treeDispose([x, g1, g2, v]);
  });

  it('updates a donated buffer in place: a jitted cache write allocates nothing per step', async () => {
    const write = T.jit((cache: Tensor, row: Tensor, at: Tensor) => T.dynamicUpdateSlice(cache, row, at, 0), { donateArgnums: [0] });
    let cache = T.zeros([8, 4], { backend: wasm });
    const before = wasm.stats().liveBuffers;
    for (let i = 0; i < 8; i++) {
      const row = T.full([1, 4], i + 1, { backend: wasm });
      const at = T.scalar(i, { dtype: 'int32', backend: wasm });
      const old = cache;
      cache = write(old, row, at);
      expect(old.isDisposed).toBe(true);
      row.dispose();
      at.dispose();
      expect(wasm.stats().liveBuffers).toBe(before);
    }
    expect(write.traceCount).toBe(1);
    expect((await cache.toArray() as number[][]).map((r) => r[0])).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    cache.dispose();
  });

  it('keeps live buffers flat over 1000 jitted training steps', async () => {
    const loss = (p: { w: Tensor; b: Tensor }, x: Tensor, y: Tensor) => T.mean(T.square(T.sub(T.add(T.matmul(x, p.w), p.b), y)));
    const step = T.jit((p: { w: Tensor; b: Tensor }, x: Tensor, y: Tensor, lr: Tensor) => {
      const [l, g] = T.valueAndGrad(loss)(p, x, y) as [Tensor, { w: Tensor; b: Tensor }];
      return { loss: l, p: { w: T.sub(p.w, T.mul(g.w, lr)), b: T.sub(p.b, T.mul(g.b, lr)) } };
    }, { donateArgnums: [0] });
    const rnd = T.mulberry32(3);
    const x = T.tensor(Float32Array.from({ length: 64 * 8 }, () => rnd() - 0.5), { shape: [64, 8], backend: wasm });
    const wTrue = T.tensor(Float32Array.from({ length: 8 * 2 }, () => rnd() - 0.5), { shape: [8, 2], backend: wasm });
    const y = T.matmul(x, wTrue);
    let p = { w: T.zeros([8, 2], { backend: wasm }), b: T.zeros([2], { backend: wasm }) };
    const lr = T.scalar(0.5, { backend: wasm });
    let first = 0;
    let last = 0;
    let live = 0;
    for (let i = 0; i < 1000; i++) {
      const out = step(p, x, y, lr);
      p = out.p;
      if (i === 0) first = await out.loss.item();
      if (i === 999) last = await out.loss.item();
      out.loss.dispose();
      if (i === 10) live = wasm.stats().liveBuffers;
      if (i > 10) expect(wasm.stats().liveBuffers).toBe(live);
    }
    expect(step.traceCount).toBe(1);
    expect(last).toBeLessThan(first * 1e-3);
    T.treeDispose([x, wTrue, y, p, lr]);
    step.dispose();
  });
});
