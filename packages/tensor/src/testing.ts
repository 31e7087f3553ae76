/**
 * A gradient checker in the manner of JAX's `public_test_util.check_grads`, for float64
 * tensors on a backend that reads synchronously (the CPU oracle).
 *
 * For f mapping arguments (pytrees of tensors) to a tensor (any shape, or a pytree of tensors):
 *   (a) JVP vs finite differences: along a random direction v,
 *       (f(x+εv) − f(x−εv)) / 2ε ≈ jvp(f, x, v), element by element;
 *   (b) the VJP inner-product identity: ⟨vjp(u), v⟩ = ⟨u, jvp(v)⟩ for random u, v;
 *   (c) with order 2, (a) and (b) again for the derivative functions themselves:
 *       x ↦ jvp(f, x, v₀) (forward over forward / reverse over forward) and
 *       x ↦ vjp(f, x)(u₀) (forward over reverse / reverse over reverse; for a scalar f and
 *       u₀ = 1 that is grad f, so this is grad of grad).
 *
 * Directions come from a seeded JS PRNG, not the engine's RNG, and perturbed inputs are
 * built on the host, so the oracle shares as little as possible with what it checks.
 * Everything the checker creates is disposed, whether the check passes or throws.
 */
import { jvp, vjp } from './autodiff.js';
import { tensor } from './creation.js';
import { isFloat, type TypedArray } from './dtype.js';
import { treeLeaves, treeMap } from './pytree.js';
import { scope } from './scope.js';
import { fmtShape, stridesOf } from './shape.js';
import type { Tensor } from './tensor.js';

export interface CheckGradsOptions {
  /** 1: first derivatives; 2: also the derivatives of the JVP and VJP functions. Default 1. */
  order?: 1 | 2;
  /**
   * Finite-difference step. Default 1e-5 for float64 (truncation error ~ε²·f''' stays far
   * below the tolerance even for attention-sized compositions at order 2, while round-off
   * ~1e-16·|f|/ε stays negligible), 1e-2 when any input is float32.
   */
  eps?: number;
  /** Relative tolerance. Default 1e-5 for float64, 2e-2 with float32 inputs. */
  rtol?: number;
  /** Absolute tolerance. Default 1e-5 for float64, 2e-2 with float32 inputs. */
  atol?: number;
  /** Seed (integer) or a uniform [0,1) generator for the random directions. Default seed 0. */
  rng?: number | (() => number);
}

type Fn = (...args: any[]) => unknown;

/**
 * mulberry32: a small, fast, seedable 32-bit PRNG (uniform in [0, 1)), for test data and
 * directions that must not depend on the engine's own RNG.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normalSampler(uniform: () => number): () => number {
  return () => {
    const u1 = 1 - uniform(); // (0, 1]
    const u2 = uniform();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  };
}

function readSync(t: Tensor): TypedArray {
  if (!t.backend.readSync) {
    throw new Error(`checkGrads: the ${t.backend.name} backend cannot read synchronously; run gradient checks on the CPU backend`);
  }
  return t.dataSync();
}

function describe(t: Tensor): string {
  return `${fmtShape(t.shape)} ${t.dtype}`;
}

function unravel(i: number, shape: readonly number[]): string {
  const strides = stridesOf(shape);
  return `[${shape.map((d, k) => Math.floor(i / strides[k]!) % d).join(',')}]`;
}

function fmtNum(x: number): string {
  return Number.isFinite(x) ? x.toPrecision(10) : String(x);
}

/** One check's context, for failure messages. */
interface Ctx {
  label: string;
  argDesc: string;
  eps: number;
  rtol: number;
  atol: number;
}

interface Dir {
  /** Host values of the direction for each argument leaf (null for non-float leaves). */
  host: (Float64Array | null)[];
}

/** The checker proper; all tensors it makes live in the caller's scope. */
class Checker {
  private readonly normal: () => number;
  constructor(uniform: () => number, private readonly tol: { eps: number; rtol: number; atol: number }) {
    this.normal = normalSampler(uniform);
  }

  randomHost(n: number): Float64Array {
    const a = new Float64Array(n);
    for (let i = 0; i < n; i++) a[i] = this.normal();
    return a;
  }

  /** A random tensor shaped like `like` for float leaves; zeros of its dtype otherwise. */
  randomLike(like: Tensor): { t: Tensor; host: Float64Array | null } {
    if (!isFloat(like.dtype)) {
      return { t: tensor(new Int32Array(like.size), { shape: like.shape, dtype: like.dtype, backend: like.backend }), host: null };
    }
    const host = this.randomHost(like.size);
    return { t: tensor(host, { shape: like.shape, dtype: like.dtype, backend: like.backend }), host: like.dtype === 'float64' ? host : Float64Array.from(new Float32Array(host)) };
  }

  /** Arguments with each float leaf x replaced by x + s·v (computed on the host). */
  perturb(args: readonly unknown[], dir: Dir, s: number): unknown[] {
    return treeMap([...args], (leaf, i) => {
      const v = dir.host[i];
      if (!v) return leaf;
      const x = readSync(leaf);
      const out = new Float64Array(x.length);
      for (let j = 0; j < x.length; j++) out[j] = x[j]! + s * v[j]!;
      return tensor(out, { shape: leaf.shape, dtype: leaf.dtype, backend: leaf.backend });
    });
  }

  /** f's output leaves read to the host (float leaves only; others as null). */
  evalHost(f: Fn, args: readonly unknown[]): { shapes: string[]; values: (Float64Array | null)[] } {
    return scope(() => {
      const out = treeLeaves(f(...args));
      return {
        shapes: out.map(describe),
        values: out.map((o) => (isFloat(o.dtype) ? Float64Array.from(readSync(o)) : null)),
      };
    });
  }

  direction(args: readonly unknown[]): { dir: Dir; tangents: unknown[] } {
    const host: (Float64Array | null)[] = [];
    const tangents = treeMap([...args], (leaf) => {
      const r = this.randomLike(leaf);
      host.push(r.host);
      return r.t;
    });
    return { dir: { host }, tangents };
  }

  /** (a) JVP against a central finite difference along a random direction. */
  checkJvp(f: Fn, args: readonly unknown[], ctx: Ctx): void {
    scope(() => {
      const { dir, tangents } = this.direction(args);
      const [outT, toutT] = jvp(f, [...args], tangents);
      const outLeaves = treeLeaves(outT);
      const toutLeaves = treeLeaves(toutT);
      const shapes = outLeaves.map(describe);
      toutLeaves.forEach((t, k) => {
        const o = outLeaves[k]!;
        if (t.shape.length !== o.shape.length || t.shape.some((d, i) => d !== o.shape[i])) {
          throw new Error(`checkGrads: ${ctx.label}: the tangent of output leaf ${k} is ${describe(t)}, the output is ${shapes[k]}`);
        }
      });
      const tout = toutLeaves.map((t, k) => (isFloat(outLeaves[k]!.dtype) ? Float64Array.from(readSync(t)) : null));
      const { eps, rtol, atol } = ctx;
      const plusArgs = this.perturb(args, dir, eps);
      const plus = this.evalHost(f, plusArgs);
      const minusArgs = this.perturb(args, dir, -eps);
      const minus = this.evalHost(f, minusArgs);
      if (plus.values.length !== tout.length || minus.values.length !== tout.length) {
        throw new Error(`checkGrads: ${ctx.label}: f returned ${plus.values.length} output leaves at x+εv but ${tout.length} under jvp`);
      }
      tout.forEach((t, k) => {
        if (!t) return;
        const p = plus.values[k]!;
        const m = minus.values[k]!;
        let worst = -1;
        let worstExcess = 0;
        for (let i = 0; i < t.length; i++) {
          const fd = (p[i]! - m[i]!) / (2 * eps);
          const err = Math.abs(t[i]! - fd);
          const excess = Number.isNaN(err) ? Infinity : err - (atol + rtol * Math.abs(fd));
          if (excess > 0 && (worst < 0 || excess > worstExcess)) {
            worst = i;
            worstExcess = excess;
          }
        }
        if (worst >= 0) {
          const fd = (p[worst]! - m[worst]!) / (2 * eps);
          const j = t[worst]!;
          throw new Error(
            `checkGrads: ${ctx.label}: JVP disagrees with the central finite difference ` +
              `(args ${ctx.argDesc}; output leaf ${k} ${shapes[k]}, element ${unravel(worst, outLeaves[k]!.shape)}): ` +
              `jvp = ${fmtNum(j)}, finite difference = ${fmtNum(fd)} ` +
              `(|diff| = ${fmtNum(Math.abs(j - fd))} > atol ${atol} + rtol ${rtol}·|fd|; eps = ${eps})`,
          );
        }
      });
      return null;
    });
  }

  /** (b) ⟨vjp(u), v⟩ = ⟨u, jvp(v)⟩ for random u and v. */
  checkVjp(f: Fn, args: readonly unknown[], ctx: Ctx): void {
    scope(() => {
      const { dir, tangents } = this.direction(args);
      const [, toutT] = jvp(f, [...args], tangents);
      const [outT, pullback] = vjp(f, ...args);
      try {
        const outLeaves = treeLeaves(outT);
        const us = outLeaves.map((o) => this.randomLike(o));
        const cts = treeLeaves(pullback(us.map((u) => u.t)));
        const toutLeaves = treeLeaves(toutT);
        // ⟨u, jvp(v)⟩ over float output leaves.
        let rhs = 0;
        let rhsAbs = 0;
        us.forEach((u, k) => {
          if (!u.host) return;
          const t = readSync(toutLeaves[k]!);
          for (let i = 0; i < t.length; i++) {
            rhs += u.host[i]! * t[i]!;
            rhsAbs += Math.abs(u.host[i]! * t[i]!);
          }
        });
        // ⟨vjp(u), v⟩ over float argument leaves (the pullback gives one cotangent per float leaf).
        const floatDirs = dir.host.filter((h): h is Float64Array => h !== null);
        if (cts.length !== floatDirs.length) {
          throw new Error(`checkGrads: ${ctx.label}: the pullback returned ${cts.length} cotangents for ${floatDirs.length} float argument leaves`);
        }
        const floatArgs = treeLeaves([...args]).filter((t) => isFloat(t.dtype));
        cts.forEach((c, k) => {
          const a = floatArgs[k]!;
          if (c.dtype !== a.dtype || c.shape.length !== a.shape.length || c.shape.some((d, i) => d !== a.shape[i])) {
            throw new Error(`checkGrads: ${ctx.label}: the cotangent for argument leaf ${k} is ${describe(c)}, the argument is ${describe(a)}`);
          }
        });
        let lhs = 0;
        cts.forEach((c, k) => {
          const g = readSync(c);
          const v = floatDirs[k]!;
          for (let i = 0; i < g.length; i++) lhs += g[i]! * v[i]!;
        });
        const { rtol, atol } = ctx;
        const err = Math.abs(lhs - rhs);
        if (!(err <= atol + rtol * Math.max(Math.abs(rhs), Math.abs(lhs)))) {
          throw new Error(
            `checkGrads: ${ctx.label}: VJP inner-product identity fails ` +
              `(args ${ctx.argDesc}; outputs ${outLeaves.map(describe).join(', ')}): ` +
              `⟨vjp(u), v⟩ = ${fmtNum(lhs)}, ⟨u, jvp(v)⟩ = ${fmtNum(rhs)} ` +
              `(|diff| = ${fmtNum(err)} > atol ${atol} + rtol ${rtol}·max(|lhs|,|rhs|); Σ|u·jvp(v)| = ${fmtNum(rhsAbs)})`,
          );
        }
      } finally {
        pullback.dispose();
      }
      return null;
    });
  }

  check(f: Fn, args: readonly unknown[], order: number, label: string): void {
    const argDesc = `(${treeLeaves([...args]).map(describe).join(', ')})`;
    const ctx: Ctx = { label, argDesc, ...this.tol };
    this.checkJvp(f, args, { ...ctx, label: `${label}JVP` });
    this.checkVjp(f, args, { ...ctx, label: `${label}VJP` });
    if (order < 2) return;
    scope(() => {
      // Fixed tangent v₀ and cotangent u₀ for the derivative functions.
      const { tangents: v0 } = this.direction(args);
      const out = scope(() => treeLeaves(f(...args)).map((o) => ({ shape: o.shape, dtype: o.dtype, backend: o.backend })));
      const u0 = out.map((o) =>
        isFloat(o.dtype)
          ? tensor(this.randomHost(o.shape.reduce((a, d) => a * d, 1)), { shape: o.shape, dtype: o.dtype, backend: o.backend })
          : tensor(new Int32Array(o.shape.reduce((a, d) => a * d, 1)), { shape: o.shape, dtype: o.dtype, backend: o.backend }),
      );
      const jvpFn = (...a: unknown[]): unknown => jvp(f, a, v0)[1];
      const vjpFn = (...a: unknown[]): unknown => {
        const [, pullback] = vjp(f, ...a);
        try {
          return pullback(u0);
        } finally {
          pullback.dispose();
        }
      };
      this.check(jvpFn, args, order - 1, `${label}JVP of `);
      this.check(vjpFn, args, order - 1, `${label}VJP of `);
      return null;
    });
  }
}

/**
 * Check f's derivatives at `args` (f is called as f(...args)); throws an Error naming the
 * failed check, the shapes and both numbers. Non-float leaves are held constant.
 */
export function checkGrads(f: Fn, args: readonly unknown[], options: CheckGradsOptions = {}): void {
  const leaves = treeLeaves([...args]);
  const floatLeaves = leaves.filter((t) => isFloat(t.dtype));
  if (floatLeaves.length === 0) throw new Error('checkGrads: the arguments contain no float tensors to differentiate');
  for (const t of leaves) t.view('checkGrads');
  const f32 = floatLeaves.some((t) => t.dtype === 'float32');
  const eps = options.eps ?? (f32 ? 1e-2 : 1e-5);
  const rtol = options.rtol ?? (f32 ? 2e-2 : 1e-5);
  const atol = options.atol ?? (f32 ? 2e-2 : 1e-5);
  const order = options.order ?? 1;
  if (order !== 1 && order !== 2) throw new Error(`checkGrads: order must be 1 or 2, got ${order}`);
  const uniform = typeof options.rng === 'function' ? options.rng : mulberry32(options.rng ?? 0);
  new Checker(uniform, { eps, rtol, atol }).check(f, args, order, '');
}
