/**
 * The primitives: validation, output shapes, one backend kernel each, and their forward
 * (JVP) and reverse (VJP) rules, written once in terms of other primitives so that they are
 * themselves differentiable.
 */
import type { BinaryOp, CompareOp, LogicalOp, ReduceOp, TracingBackend, UnaryOp } from './backend.js';
import { bind, type Primitive } from './trace.js';
import { fullLike, scalar } from './creation.js';
import { isFloat, type DType } from './dtype.js';
import { checkShapeDims, fmtShape, normalizeAxes, normalizeAxis, shapesEqual, sizeOf, tryBroadcastShapes, type Shape } from './shape.js';
import { alias, fromBuffer, Tensor } from './tensor.js';

export { fullLike, onesLike, zerosLike } from './creation.js';

export type TensorLike = Tensor | number;

// ---------------------------------------------------------------------------------------
// Helpers

function checkTensor(op: string, x: unknown, what = 'input'): asserts x is Tensor {
  if (!(x instanceof Tensor)) throw new Error(`${op}: ${what} must be a Tensor, got ${x === null ? 'null' : typeof x}`);
}

function requireFloat(op: string, x: Tensor): void {
  if (!isFloat(x.dtype)) throw new Error(`${op}: expected a float tensor, got ${x.dtype} ${fmtShape(x.shape)}`);
}

/**
 * The inputs, all on one backend. While `jit` traces, concrete tensors closed over by the
 * traced function meet the recorder's symbolic ones: they are captured as constants of the
 * program (the recorder's `capture`). Any other mix is an error.
 */
function sameBackend(op: string, ts: Tensor[]): Tensor[] {
  const b = ts[0]!.backend;
  if (ts.every((t) => t.backend === b)) return ts;
  const rec = ts.find((t) => t.backend.tracing)?.backend as TracingBackend | undefined;
  if (rec && ts.every((t) => t.backend === rec || t.backend === rec.target)) {
    return ts.map((t) => (t.backend === rec ? t : rec.capture(t)));
  }
  const other = ts.find((t) => t.backend !== b)!;
  throw new Error(`${op}: inputs are on different backends (${b.name} vs ${other.backend.name}); move one with toBackend`);
}

/** Turn number operands into scalars matching the tensor operand; returns temporaries to dispose. */
function operands(op: string, xs: readonly TensorLike[]): { ts: Tensor[]; temps: Tensor[] } {
  // The dtype of a number operand follows the first non-bool tensor (for `where`, the
  // branches, not the bool condition), else the first tensor.
  const ref = xs.find((x): x is Tensor => x instanceof Tensor && x.dtype !== 'bool') ?? xs.find((x): x is Tensor => x instanceof Tensor);
  const temps: Tensor[] = [];
  try {
    const ts = xs.map((x) => {
      if (x instanceof Tensor) return x;
      if (typeof x !== 'number') throw new Error(`${op}: operands must be Tensors or numbers, got ${x === null ? 'null' : typeof x}`);
      const t = ref ? scalar(x, { dtype: ref.dtype === 'bool' ? 'float32' : ref.dtype, backend: ref.backend }) : scalar(x);
      temps.push(t);
      return t;
    });
    for (const t of ts) t.view(op);
    return { ts: sameBackend(op, ts), temps };
  } catch (e) {
    // A bad, disposed or foreign operand: the scalars made for number operands must not leak.
    for (const t of temps) t.dispose();
    throw e;
  }
}

function withOperands(op: string, xs: readonly TensorLike[], f: (ts: Tensor[]) => Tensor): Tensor {
  const { ts, temps } = operands(op, xs);
  try {
    return f(ts);
  } finally {
    for (const t of temps) t.dispose();
  }
}

function broadcastOrThrow(op: string, ...shapes: Shape[]): number[] {
  const out = tryBroadcastShapes(...shapes);
  if (!out) throw new Error(`${op}: shapes ${shapes.map(fmtShape).join(' and ')} cannot be broadcast together`);
  return out;
}

/** Sum g down to `shape` (the adjoint of broadcasting `shape` to g.shape). */
export function sumToShape(g: Tensor, shape: Shape): Tensor {
  if (shapesEqual(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  const s = axes.length ? sum(g, axes, true) : g;
  const r = reshape(s, shape);
  if (s !== g) s.dispose();
  return r;
}

function addMaybe(a: Tensor | null, b: Tensor | null): Tensor | null {
  if (!a) return b;
  if (!b) return a;
  return add(a, b);
}

// ---------------------------------------------------------------------------------------
// Elementwise unary

type UnaryDeriv = (x: Tensor, y: Tensor) => Tensor;

const unaryDerivs: Partial<Record<UnaryOp, UnaryDeriv>> = {
  neg: (x) => fullLike(x, -1),
  exp: (_x, y) => y,
  log: (x) => reciprocal(x),
  sqrt: (_x, y) => div(0.5, y),
  rsqrt: (_x, y) => mul(-0.5, mul(y, mul(y, y))),
  abs: (x) => sign(x),
  tanh: (_x, y) => sub(1, mul(y, y)),
  sigmoid: (_x, y) => mul(y, sub(1, y)),
  sin: (x) => cos(x),
  cos: (x) => neg(sin(x)),
};

const unaryPrims = new Map<UnaryOp, Primitive<null>>();

function unaryPrim(op: UnaryOp): Primitive<null> {
  let p = unaryPrims.get(op);
  if (p) return p;
  const deriv = unaryDerivs[op];
  const impl = ([x]: readonly Tensor[]): Tensor => {
    const v = x!.view(op);
    return fromBuffer(x!.backend, x!.backend.unary(op, v), x!.shape, x!.dtype);
  };
  if (deriv) {
    p = {
      name: op,
      impl,
      jvp: ([t], [x], y) => (t ? mul(t, deriv(x!, y)) : null),
      vjp: (g, [x], y) => [mul(g, deriv(x!, y))],
    };
  } else if (op === 'sign') {
    p = { name: op, impl, jvp: () => null, vjp: () => [null] };
  } else {
    p = { name: op, impl };
  }
  unaryPrims.set(op, p);
  return p;
}

function unary(op: UnaryOp, x: Tensor): Tensor {
  checkTensor(op, x);
  if (op === 'not') {
    if (x.dtype !== 'bool') throw new Error(`not: expected a bool tensor, got ${x.dtype}`);
  } else if (op === 'neg' || op === 'abs' || op === 'sign') {
    if (x.dtype === 'bool') throw new Error(`${op}: expected a numeric tensor, got bool`);
  } else {
    requireFloat(op, x);
  }
  x.view(op);
  return bind(unaryPrim(op), [x], null);
}

export const neg = (x: Tensor): Tensor => unary('neg', x);
export const exp = (x: Tensor): Tensor => unary('exp', x);
export const log = (x: Tensor): Tensor => unary('log', x);
export const sqrt = (x: Tensor): Tensor => unary('sqrt', x);
export const rsqrt = (x: Tensor): Tensor => unary('rsqrt', x);
export const abs = (x: Tensor): Tensor => unary('abs', x);
export const tanh = (x: Tensor): Tensor => unary('tanh', x);
export const sigmoid = (x: Tensor): Tensor => unary('sigmoid', x);
export const sin = (x: Tensor): Tensor => unary('sin', x);
export const cos = (x: Tensor): Tensor => unary('cos', x);
export const sign = (x: Tensor): Tensor => unary('sign', x);
export const logicalNot = (x: Tensor): Tensor => unary('not', x);

export function reciprocal(x: Tensor): Tensor {
  return div(1, x);
}

export function square(x: Tensor): Tensor {
  return mul(x, x);
}

// ---------------------------------------------------------------------------------------
// Elementwise binary

const binaryPrims = new Map<string, Primitive<null>>();

function binaryImpl(op: BinaryOp | CompareOp | LogicalOp, outDtype: (a: Tensor) => DType) {
  return ([a, b]: readonly Tensor[]): Tensor => {
    const shape = broadcastOrThrow(op, a!.shape, b!.shape);
    const buf = a!.backend.binary(op, a!.view(op), b!.view(op), shape);
    return fromBuffer(a!.backend, buf, shape, outDtype(a!));
  };
}

type BinRules = Pick<Primitive<null>, 'jvp' | 'vjp'>;

const binaryRules: Record<BinaryOp, BinRules> = {
  add: {
    jvp: ([ta, tb], [a, b], y) => broadcastTangent(addMaybe(ta!, tb!), y),
    vjp: (g, [a, b], _y, _p, needs) => [needs[0] ? sumToShape(g, a!.shape) : null, needs[1] ? sumToShape(g, b!.shape) : null],
  },
  sub: {
    jvp: ([ta, tb], _i, y) => broadcastTangent(ta && tb ? sub(ta, tb) : ta ?? (tb ? neg(tb) : null), y),
    vjp: (g, [a, b], _y, _p, needs) => [needs[0] ? sumToShape(g, a!.shape) : null, needs[1] ? sumToShape(neg(g), b!.shape) : null],
  },
  mul: {
    jvp: ([ta, tb], [a, b], y) => broadcastTangent(addMaybe(ta ? mul(ta, b!) : null, tb ? mul(a!, tb) : null), y),
    vjp: (g, [a, b], _y, _p, needs) => [
      needs[0] ? sumToShape(mul(g, b!), a!.shape) : null,
      needs[1] ? sumToShape(mul(g, a!), b!.shape) : null,
    ],
  },
  div: {
    jvp: ([ta, tb], [, b], y) => broadcastTangent(addMaybe(ta ? div(ta, b!) : null, tb ? neg(div(mul(tb, y), b!)) : null), y),
    vjp: (g, [a, b], y, _p, needs) => [
      needs[0] ? sumToShape(div(g, b!), a!.shape) : null,
      needs[1] ? sumToShape(neg(div(mul(g, y), b!)), b!.shape) : null,
    ],
  },
  pow: {
    jvp: ([ta, tb], [a, b], y) =>
      broadcastTangent(addMaybe(ta ? mul(ta, powDerivBase(a!, b!)) : null, tb ? mul(tb, powDerivExp(a!, y)) : null), y),
    vjp: (g, [a, b], y, _p, needs) => [
      needs[0] ? sumToShape(mul(g, powDerivBase(a!, b!)), a!.shape) : null,
      needs[1] ? sumToShape(mul(g, powDerivExp(a!, y)), b!.shape) : null,
    ],
  },
  maximum: {
    jvp: ([ta, tb], [a, b], y) => broadcastTangent(selectTangent(ta, tb, a!, b!, 'greater'), y),
    vjp: (g, [a, b], _y, _p, needs) => selectCotangent(g, a!, b!, 'greater', needs),
  },
  minimum: {
    jvp: ([ta, tb], [a, b], y) => broadcastTangent(selectTangent(ta, tb, a!, b!, 'less'), y),
    vjp: (g, [a, b], _y, _p, needs) => selectCotangent(g, a!, b!, 'less', needs),
  },
};

/** A tangent that broadcasting left smaller than the output gets materialised at full shape. */
function broadcastTangent(t: Tensor | null, y: Tensor): Tensor | null {
  if (!t || shapesEqual(t.shape, y.shape)) return t;
  return broadcastTo(t, y.shape);
}

function powDerivBase(a: Tensor, b: Tensor): Tensor {
  return mul(b, pow(a, sub(b, 1)));
}

function powDerivExp(a: Tensor, y: Tensor): Tensor {
  // d(a^b)/db = a^b log a, taken as 0 where a ≤ 0 (where the real power is only defined
  // for integer b and the derivative in b does not exist).
  const pos = greater(a, 0);
  const safe = where(pos, a, 1);
  return where(pos, mul(y, log(safe)), 0);
}

/** Weights of a in maximum/minimum: 1 where a wins, 1/2 on ties, 0 where b wins. */
function winWeight(a: Tensor, b: Tensor, cmp: 'greater' | 'less'): Tensor {
  const win = cast(cmp === 'greater' ? greater(a, b) : less(a, b), a.dtype);
  const tie = cast(equal(a, b), a.dtype);
  return add(win, mul(tie, 0.5));
}

function selectTangent(ta: Tensor | null, tb: Tensor | null, a: Tensor, b: Tensor, cmp: 'greater' | 'less'): Tensor | null {
  const wa = winWeight(a, b, cmp);
  return addMaybe(ta ? mul(ta, wa) : null, tb ? mul(tb, sub(1, wa)) : null);
}

function selectCotangent(g: Tensor, a: Tensor, b: Tensor, cmp: 'greater' | 'less', needs: readonly boolean[]): (Tensor | null)[] {
  const wa = winWeight(a, b, cmp);
  return [
    needs[0] ? sumToShape(mul(g, wa), a.shape) : null,
    needs[1] ? sumToShape(mul(g, sub(1, wa)), b.shape) : null,
  ];
}

function binaryPrim(op: BinaryOp | CompareOp | LogicalOp): Primitive<null> {
  let p = binaryPrims.get(op);
  if (p) return p;
  if (op in binaryRules) {
    p = { name: op, impl: binaryImpl(op, (a) => a.dtype), ...binaryRules[op as BinaryOp] };
  } else {
    p = { name: op, impl: binaryImpl(op, () => 'bool') };
  }
  binaryPrims.set(op, p);
  return p;
}

function binary(op: BinaryOp | CompareOp | LogicalOp, x: TensorLike, y: TensorLike): Tensor {
  return withOperands(op, [x, y], ([a, b]) => {
    if (a!.dtype !== b!.dtype) {
      throw new Error(`${op}: dtypes differ (${a!.dtype} ${fmtShape(a!.shape)} vs ${b!.dtype} ${fmtShape(b!.shape)}); cast one first`);
    }
    const dt = a!.dtype;
    if (op === 'and' || op === 'or') {
      if (dt !== 'bool') throw new Error(`${op}: expected bool tensors, got ${dt}`);
    } else if (op in binaryRules) {
      if (dt === 'bool') throw new Error(`${op}: arithmetic on bool tensors; cast to a number type first`);
      if ((op === 'div' || op === 'pow') && dt === 'int32') throw new Error(`${op}: not defined for int32 tensors; cast to float first`);
    } else if (dt === 'bool' && op !== 'equal' && op !== 'notEqual') {
      throw new Error(`${op}: ordering comparison of bool tensors; cast to a number type first`);
    }
    broadcastOrThrow(op, a!.shape, b!.shape);
    return bind(binaryPrim(op), [a!, b!], null);
  });
}

export const add = (a: TensorLike, b: TensorLike): Tensor => binary('add', a, b);
export const sub = (a: TensorLike, b: TensorLike): Tensor => binary('sub', a, b);
export const mul = (a: TensorLike, b: TensorLike): Tensor => binary('mul', a, b);
export const div = (a: TensorLike, b: TensorLike): Tensor => binary('div', a, b);
export const pow = (a: TensorLike, b: TensorLike): Tensor => binary('pow', a, b);
export const maximum = (a: TensorLike, b: TensorLike): Tensor => binary('maximum', a, b);
export const minimum = (a: TensorLike, b: TensorLike): Tensor => binary('minimum', a, b);
export const less = (a: TensorLike, b: TensorLike): Tensor => binary('less', a, b);
export const lessEqual = (a: TensorLike, b: TensorLike): Tensor => binary('lessEqual', a, b);
export const greater = (a: TensorLike, b: TensorLike): Tensor => binary('greater', a, b);
export const greaterEqual = (a: TensorLike, b: TensorLike): Tensor => binary('greaterEqual', a, b);
export const equal = (a: TensorLike, b: TensorLike): Tensor => binary('equal', a, b);
export const notEqual = (a: TensorLike, b: TensorLike): Tensor => binary('notEqual', a, b);
export const logicalAnd = (a: Tensor, b: Tensor): Tensor => binary('and', a, b);
export const logicalOr = (a: Tensor, b: Tensor): Tensor => binary('or', a, b);

// ---------------------------------------------------------------------------------------
// where

const wherePrim: Primitive<null> = {
  name: 'where',
  impl: ([c, a, b]) => {
    const shape = broadcastOrThrow('where', c!.shape, a!.shape, b!.shape);
    return fromBuffer(a!.backend, a!.backend.where(c!.view('where'), a!.view('where'), b!.view('where'), shape), shape, a!.dtype);
  },
  jvp: ([, ta, tb], [c, a, b], y) => {
    if (!ta && !tb) return null;
    const za = ta ?? fullLike(a!, 0);
    const zb = tb ?? fullLike(b!, 0);
    return broadcastTangent(where(c!, za, zb), y);
  },
  vjp: (g, [c, a, b], _y, _p, needs) => [
    null,
    needs[1] ? sumToShape(where(c!, g, 0), a!.shape) : null,
    needs[2] ? sumToShape(where(c!, 0, g), b!.shape) : null,
  ],
};

/** Elementwise select: cond (bool) ? a : b, with broadcasting. */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  checkTensor('where', cond, 'condition');
  if (cond.dtype !== 'bool') throw new Error(`where: condition must be bool, got ${cond.dtype}`);
  const ref = a instanceof Tensor ? a : b instanceof Tensor ? b : null;
  if (!ref) throw new Error('where: at least one of a, b must be a Tensor');
  return withOperands('where', [cond, a, b], ([c, x, y]) => {
    if (x!.dtype !== y!.dtype) throw new Error(`where: dtypes differ (${x!.dtype} vs ${y!.dtype})`);
    broadcastOrThrow('where', c!.shape, x!.shape, y!.shape);
    return bind(wherePrim, [c!, x!, y!], null);
  });
}

// ---------------------------------------------------------------------------------------
// Reductions (the primitive keeps reduced dims as 1; the public function drops them)

interface ReduceParams {
  op: ReduceOp;
  axes: number[];
}

function keptShape(shape: Shape, axes: readonly number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

const reducePrim: Primitive<ReduceParams> = {
  name: 'reduce',
  impl: ([x], { op, axes }) => {
    const shape = keptShape(x!.shape, axes);
    const dtype: DType = op === 'argmax' || op === 'argmin' ? 'int32' : x!.dtype;
    return fromBuffer(x!.backend, x!.backend.reduce(op, x!.view(op), axes), shape, dtype);
  },
  jvp: ([t], [x], y, { op, axes }) => {
    if (!t) return null;
    if (op === 'sum') return bind(reducePrim, [t], { op, axes });
    if (op === 'max' || op === 'min') {
      const w = extremumWeights(x!, y, axes);
      return bind(reducePrim, [mul(t, w)], { op: 'sum', axes });
    }
    return null;
  },
  vjp: (g, [x], y, { op, axes }) => {
    if (op === 'sum') return [broadcastTo(g, x!.shape)];
    if (op === 'max' || op === 'min') return [mul(g, extremumWeights(x!, y, axes))];
    return [null];
  },
};

/** Where x attains the reduced extremum y, 1/count of ties (so ties share the gradient). */
function extremumWeights(x: Tensor, y: Tensor, axes: readonly number[]): Tensor {
  const hit = cast(equal(x, y), x.dtype);
  const count = bind(reducePrim, [hit], { op: 'sum', axes });
  return div(hit, count);
}

function reduce(op: ReduceOp, x: Tensor, axes: number | readonly number[] | undefined, keepdims: boolean): Tensor {
  checkTensor(op, x);
  x.view(op);
  const ax = normalizeAxes(op, axes, x.rank);
  if (op === 'argmax' || op === 'argmin') {
    if (ax.length !== 1) throw new Error(`${op}: takes exactly one axis, got [${ax.join(',')}]`);
    if (x.shape[ax[0]!] === 0) throw new Error(`${op}: axis ${ax[0]} of ${fmtShape(x.shape)} is empty`);
  }
  if (x.dtype === 'bool' && op !== 'argmax' && op !== 'argmin') throw new Error(`${op}: not defined for bool; cast first`);
  if ((op === 'max' || op === 'min') && ax.some((a) => x.shape[a] === 0)) {
    throw new Error(`${op}: reduction over an empty axis of ${fmtShape(x.shape)}`);
  }
  if (ax.length === 0) return reshape(x, x.shape);
  const y = bind(reducePrim, [x], { op, axes: ax });
  if (keepdims) return y;
  const r = reshape(y, x.shape.filter((_, i) => !ax.includes(i)));
  y.dispose();
  return r;
}

export function sum(x: Tensor, axes?: number | readonly number[], keepdims = false): Tensor {
  return reduce('sum', x, axes, keepdims);
}
export function max(x: Tensor, axes?: number | readonly number[], keepdims = false): Tensor {
  return reduce('max', x, axes, keepdims);
}
export function min(x: Tensor, axes?: number | readonly number[], keepdims = false): Tensor {
  return reduce('min', x, axes, keepdims);
}
/** Index of the largest element along `axis` (first one on ties), int32. */
export function argmax(x: Tensor, axis = -1, keepdims = false): Tensor {
  return reduce('argmax', x, axis, keepdims);
}
export function argmin(x: Tensor, axis = -1, keepdims = false): Tensor {
  return reduce('argmin', x, axis, keepdims);
}

export function mean(x: Tensor, axes?: number | readonly number[], keepdims = false): Tensor {
  requireFloat('mean', x);
  const ax = normalizeAxes('mean', axes, x.rank);
  const n = ax.reduce((acc, a) => acc * x.shape[a]!, 1);
  const s = sum(x, ax, keepdims);
  const r = div(s, n);
  s.dispose();
  return r;
}

// ---------------------------------------------------------------------------------------
// matmul

interface MatmulParams {
  transA: boolean;
  transB: boolean;
}

function matmulShapes(op: string, a: Shape, b: Shape, transA: boolean, transB: boolean) {
  if (a.length < 2 || b.length < 2) {
    throw new Error(`${op}: operands must have rank ≥ 2, got ${fmtShape(a)} · ${fmtShape(b)} (reshape vectors to [1,n] or [n,1])`);
  }
  const m = a[a.length - (transA ? 1 : 2)]!;
  const ka = a[a.length - (transA ? 2 : 1)]!;
  const kb = b[b.length - (transB ? 1 : 2)]!;
  const n = b[b.length - (transB ? 2 : 1)]!;
  if (ka !== kb) {
    throw new Error(`${op}: inner dimensions differ (${fmtShape(a)}${transA ? 'ᵀ' : ''} · ${fmtShape(b)}${transB ? 'ᵀ' : ''})`);
  }
  const batch = tryBroadcastShapes(a.slice(0, -2), b.slice(0, -2));
  if (!batch) throw new Error(`${op}: batch dimensions ${fmtShape(a.slice(0, -2))} and ${fmtShape(b.slice(0, -2))} cannot be broadcast`);
  return { m, n, k: ka, batch };
}

const matmulPrim: Primitive<MatmulParams> = {
  name: 'matmul',
  impl: ([a, b], { transA, transB }) => {
    const { m, n, batch } = matmulShapes('matmul', a!.shape, b!.shape, transA, transB);
    const buf = a!.backend.matmul(a!.view('matmul'), b!.view('matmul'), transA, transB, batch);
    return fromBuffer(a!.backend, buf, [...batch, m, n], a!.dtype);
  },
  jvp: ([ta, tb], [a, b], _y, p) =>
    addMaybe(ta ? bind(matmulPrim, [ta, b!], p) : null, tb ? bind(matmulPrim, [a!, tb], p) : null),
  vjp: (g, [a, b], _y, { transA, transB }, needs) => {
    let da: Tensor | null = null;
    let db: Tensor | null = null;
    if (needs[0]) {
      const full = transA ? matmul(b!, g, { transposeA: transB, transposeB: true }) : matmul(g, b!, { transposeB: !transB });
      da = sumToShape(full, a!.shape);
    }
    if (needs[1]) {
      if (b!.rank === 2 && a!.rank > 2 && !transA) {
        // A weight shared by every batch row (x[..., M, K] · w): the batch sum of per-row
        // products is one product over the flattened rows, [K, B·M]·[B·M, N], instead of B
        // small ones and a reduction.
        const k = a!.shape[a!.rank - 1]!;
        const n = g.shape[g.rank - 1]!;
        const af = reshape(a!, [-1, k]);
        const gf = reshape(g, [-1, n]);
        db = transB ? matmul(gf, af, { transposeA: true }) : matmul(af, gf, { transposeA: true });
      } else {
        const full = transB ? matmul(g, a!, { transposeA: true, transposeB: transA }) : matmul(a!, g, { transposeA: !transA });
        db = sumToShape(full, b!.shape);
      }
    }
    return [da, db];
  },
};

export interface MatmulOptions {
  transposeA?: boolean;
  transposeB?: boolean;
}

/** Batched matrix product over the last two axes; batch axes broadcast. */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  checkTensor('matmul', a, 'a');
  checkTensor('matmul', b, 'b');
  a.view('matmul');
  b.view('matmul');
  if (a.dtype !== b.dtype) throw new Error(`matmul: dtypes differ (${a.dtype} vs ${b.dtype})`);
  requireFloat('matmul', a);
  const transA = !!opts.transposeA;
  const transB = !!opts.transposeB;
  matmulShapes('matmul', a.shape, b.shape, transA, transB);
  const [x, w] = sameBackend('matmul', [a, b]);
  if (w!.rank === 2 && x!.rank > 2 && !transA) {
    // A matrix shared by every batch item (x[..., M, K] · w, e.g. a weight): one product over
    // the flattened rows, not one small product per item (M = 1 when decoding).
    const k = x!.shape[x!.rank - 1]!;
    const y = bind(matmulPrim, [reshape(x!, [-1, k]), w!], { transA, transB });
    return reshape(y, [...x!.shape.slice(0, -1), y.shape[1]!]);
  }
  return bind(matmulPrim, [x!, w!], { transA, transB });
}

// ---------------------------------------------------------------------------------------
// Movement

const reshapePrim: Primitive<{ shape: number[] }> = {
  name: 'reshape',
  impl: ([x], { shape }) => alias(x!, shape),
  jvp: ([t], _x, _y, { shape }) => (t ? reshape(t, shape) : null),
  vjp: (g, [x]) => [reshape(g, x!.shape)],
};

/** Same data, new shape (one dimension may be -1). Shares storage; no copy. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  checkTensor('reshape', x);
  x.view('reshape');
  const holes = shape.filter((d) => d === -1).length;
  if (holes > 1 || shape.some((d) => !Number.isInteger(d) || d < -1)) {
    throw new Error(`reshape: invalid target shape ${fmtShape(shape)}`);
  }
  let target = [...shape];
  if (holes) {
    const known = shape.reduce((a, d) => (d === -1 ? a : a * d), 1);
    if (known === 0 || x.size % known !== 0) throw new Error(`reshape: cannot reshape ${fmtShape(x.shape)} into ${fmtShape(shape)}`);
    target = shape.map((d) => (d === -1 ? x.size / known : d));
  }
  if (sizeOf(target) !== x.size) {
    throw new Error(`reshape: cannot reshape ${fmtShape(x.shape)} (${x.size} elements) into ${fmtShape(target)} (${sizeOf(target)} elements)`);
  }
  checkShapeDims('reshape', target, 'target shape');
  return bind(reshapePrim, [x], { shape: target });
}

const transposePrim: Primitive<{ perm: number[] }> = {
  name: 'transpose',
  impl: ([x], { perm }) =>
    fromBuffer(x!.backend, x!.backend.transpose(x!.view('transpose'), perm), perm.map((p) => x!.shape[p]!), x!.dtype),
  jvp: ([t], _x, _y, { perm }) => (t ? transpose(t, perm) : null),
  vjp: (g, _x, _y, { perm }) => {
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return [transpose(g, inv)];
  },
};

/** Permute axes (default: reverse them). out.shape[k] = x.shape[perm[k]]. */
export function transpose(x: Tensor, perm?: readonly number[]): Tensor {
  checkTensor('transpose', x);
  x.view('transpose');
  const p = perm ? perm.map((a) => normalizeAxis('transpose', a, x.rank)) : x.shape.map((_, i) => x.rank - 1 - i);
  if (p.length !== x.rank || new Set(p).size !== p.length) {
    throw new Error(`transpose: [${(perm ?? []).join(',')}] is not a permutation of the ${x.rank} axes of ${fmtShape(x.shape)}`);
  }
  // A permutation that only moves size-1 axes keeps the element order: a free reshape.
  const moved = p.filter((a) => x.shape[a] !== 1);
  if (moved.every((a, i) => i === 0 || a > moved[i - 1]!)) return reshape(x, p.map((a) => x.shape[a]!));
  return bind(transposePrim, [x], { perm: p });
}

/** Swap the last two axes. */
export function matrixTranspose(x: Tensor): Tensor {
  if (x.rank < 2) throw new Error(`matrixTranspose: rank ≥ 2 required, got ${fmtShape(x.shape)}`);
  const perm = x.shape.map((_, i) => i);
  [perm[x.rank - 2], perm[x.rank - 1]] = [perm[x.rank - 1]!, perm[x.rank - 2]!];
  return transpose(x, perm);
}

const broadcastPrim: Primitive<{ shape: number[] }> = {
  name: 'broadcastTo',
  impl: ([x], { shape }) => fromBuffer(x!.backend, x!.backend.broadcastTo(x!.view('broadcastTo'), shape), shape, x!.dtype),
  jvp: ([t], _x, _y, { shape }) => (t ? broadcastTo(t, shape) : null),
  vjp: (g, [x]) => [sumToShape(g, x!.shape)],
};

export function broadcastTo(x: Tensor, shape: readonly number[]): Tensor {
  checkTensor('broadcastTo', x);
  x.view('broadcastTo');
  checkShapeDims('broadcastTo', shape);
  const out = tryBroadcastShapes(x.shape, shape);
  if (!out || x.rank > shape.length || !shapesEqual(out, shape)) {
    throw new Error(`broadcastTo: cannot broadcast ${fmtShape(x.shape)} to ${fmtShape(shape)}`);
  }
  if (shapesEqual(x.shape, shape)) return reshape(x, shape);
  return bind(broadcastPrim, [x], { shape: [...shape] });
}

const slicePrim: Primitive<{ starts: number[]; sizes: number[] }> = {
  name: 'slice',
  impl: ([x], { starts, sizes }) => fromBuffer(x!.backend, x!.backend.slice(x!.view('slice'), starts, sizes), sizes, x!.dtype),
  jvp: ([t], _x, _y, p) => (t ? bind(slicePrim, [t], p) : null),
  vjp: (g, [x], _y, { starts, sizes }) => [pad(g, starts, x!.shape.map((d, i) => d - starts[i]! - sizes[i]!))],
};

/**
 * x[begin[0]:begin[0]+size[0], ...]. `begin` entries may be negative (from the end); a `size`
 * of -1 means "to the end". Missing trailing entries take whole axes.
 */
export function slice(x: Tensor, begin: readonly number[], size?: readonly number[]): Tensor {
  checkTensor('slice', x);
  x.view('slice');
  if (begin.length > x.rank || (size && size.length > x.rank)) {
    throw new Error(`slice: begin [${begin.join(',')}] / size [${(size ?? []).join(',')}] longer than rank of ${fmtShape(x.shape)}`);
  }
  const starts = x.shape.map((d, i) => {
    const b = begin[i] ?? 0;
    return b < 0 ? b + d : b;
  });
  const sizes = x.shape.map((d, i) => {
    const s = size?.[i] ?? -1;
    return s === -1 ? d - starts[i]! : s;
  });
  x.shape.forEach((d, i) => {
    const s = starts[i]!;
    const n = sizes[i]!;
    if (!Number.isInteger(s) || !Number.isInteger(n) || s < 0 || n < 0 || s + n > d) {
      throw new Error(`slice: range [${s}, ${s + n}) is outside axis ${i} of ${fmtShape(x.shape)}`);
    }
  });
  if (sizes.every((n, i) => n === x.shape[i])) return reshape(x, x.shape);
  return bind(slicePrim, [x], { starts, sizes });
}

const padPrim: Primitive<{ before: number[]; after: number[] }> = {
  name: 'pad',
  impl: ([x], { before, after }) =>
    fromBuffer(x!.backend, x!.backend.pad(x!.view('pad'), before, after), x!.shape.map((d, i) => before[i]! + d + after[i]!), x!.dtype),
  jvp: ([t], _x, _y, p) => (t ? bind(padPrim, [t], p) : null),
  vjp: (g, [x], _y, { before }) => [slice(g, before, [...x!.shape])],
};

/** Zero padding: `before[i]` zeros before and `after[i]` after axis i. */
export function pad(x: Tensor, before: readonly number[], after: readonly number[]): Tensor {
  checkTensor('pad', x);
  x.view('pad');
  if (before.length !== x.rank || after.length !== x.rank || [...before, ...after].some((v) => !Number.isInteger(v) || v < 0)) {
    throw new Error(`pad: expected ${x.rank} non-negative integers before and after for ${fmtShape(x.shape)}, got [${before.join(',')}] / [${after.join(',')}]`);
  }
  if ([...before, ...after].every((v) => v === 0)) return reshape(x, x.shape);
  return bind(padPrim, [x], { before: [...before], after: [...after] });
}

const concatPrim: Primitive<{ axis: number }> = {
  name: 'concat',
  impl: (xs, { axis }) => {
    const shape = [...xs[0]!.shape];
    shape[axis] = xs.reduce((a, x) => a + x.shape[axis]!, 0);
    return fromBuffer(xs[0]!.backend, xs[0]!.backend.concat(xs.map((x) => x.view('concat')), axis), shape, xs[0]!.dtype);
  },
  jvp: (ts, xs, _y, p) => {
    if (ts.every((t) => !t)) return null;
    return bind(concatPrim, ts.map((t, i) => t ?? fullLike(xs[i]!, 0)), p);
  },
  vjp: (g, xs, _y, { axis }, needs) => {
    let off = 0;
    return xs.map((x, i) => {
      const begin = x.shape.map((_, j) => (j === axis ? off : 0));
      off += x.shape[axis]!;
      return needs[i] ? slice(g, begin, x.shape) : null;
    });
  },
};

export function concat(xs: readonly Tensor[], axis = 0): Tensor {
  if (!Array.isArray(xs) || xs.length === 0) throw new Error('concat: expected a non-empty array of tensors');
  xs.forEach((x, i) => checkTensor('concat', x, `input ${i}`));
  const first = xs[0]!;
  const ax = normalizeAxis('concat', axis, first.rank);
  for (const x of xs) {
    x.view('concat');
    if (x.dtype !== first.dtype) throw new Error(`concat: dtypes differ (${first.dtype} vs ${x.dtype})`);
    if (x.rank !== first.rank || x.shape.some((d: number, i: number) => i !== ax && d !== first.shape[i])) {
      throw new Error(`concat: shapes ${xs.map((t) => fmtShape(t.shape)).join(', ')} differ off axis ${ax}`);
    }
  }
  if (xs.length === 1) return reshape(first, first.shape);
  return bind(concatPrim, sameBackend('concat', [...xs]), { axis: ax });
}

export function expandDims(x: Tensor, axis: number): Tensor {
  const ax = normalizeAxis('expandDims', axis, x.rank + 1);
  const shape = [...x.shape];
  shape.splice(ax, 0, 1);
  return reshape(x, shape);
}

/** Remove size-1 axes (all of them, or the given ones). */
export function squeeze(x: Tensor, axes?: number | readonly number[]): Tensor {
  const ax = axes === undefined ? x.shape.flatMap((d, i) => (d === 1 ? [i] : [])) : normalizeAxes('squeeze', axes, x.rank);
  for (const a of ax) if (x.shape[a] !== 1) throw new Error(`squeeze: axis ${a} of ${fmtShape(x.shape)} has size ${x.shape[a]}, not 1`);
  return reshape(x, x.shape.filter((_, i) => !ax.includes(i)));
}

export function stack(xs: readonly Tensor[], axis = 0): Tensor {
  if (!Array.isArray(xs) || xs.length === 0) throw new Error('stack: expected a non-empty array of tensors');
  const first = xs[0]!;
  for (const x of xs) {
    if (!shapesEqual(x.shape, first.shape)) throw new Error(`stack: shapes differ (${xs.map((t) => fmtShape(t.shape)).join(', ')})`);
  }
  const ax = normalizeAxis('stack', axis, first.rank + 1);
  const expanded = xs.map((x) => expandDims(x, ax));
  const out = concat(expanded, ax);
  for (const e of expanded) e.dispose();
  return out;
}

// ---------------------------------------------------------------------------------------
// gather / scatterAdd

const gatherPrim: Primitive<{ axis: number }> = {
  name: 'gather',
  impl: ([x, idx], { axis }) => {
    const shape = [...x!.shape.slice(0, axis), ...idx!.shape, ...x!.shape.slice(axis + 1)];
    return fromBuffer(x!.backend, x!.backend.gather(x!.view('gather'), idx!.view('gather'), axis), shape, x!.dtype);
  },
  jvp: ([t], [, idx], _y, p) => (t ? bind(gatherPrim, [t, idx!], p) : null),
  vjp: (g, [x, idx], _y, { axis }) => [scatterAdd(g, idx!, axis, x!.shape), null],
};

function checkIndexOp(op: string, x: Tensor, indices: Tensor): void {
  checkTensor(op, x);
  checkTensor(op, indices, 'indices');
  x.view(op);
  indices.view(op);
  if (indices.dtype !== 'int32') throw new Error(`${op}: indices must be int32, got ${indices.dtype}`);
}

/**
 * numpy `take`: pick entries along `axis` by int32 indices; out.shape =
 * x.shape[:axis] + indices.shape + x.shape[axis+1:]. Embedding lookup is gather(E, ids, 0).
 * Indices outside [0, x.shape[axis]) are an error.
 */
export function gather(x: Tensor, indices: Tensor, axis = 0): Tensor {
  checkIndexOp('gather', x, indices);
  const ax = normalizeAxis('gather', axis, x.rank);
  return bind(gatherPrim, sameBackend('gather', [x, indices]), { axis: ax });
}

const scatterPrim: Primitive<{ axis: number; shape: number[] }> = {
  name: 'scatterAdd',
  impl: ([u, idx], { axis, shape }) =>
    fromBuffer(u!.backend, u!.backend.scatterAdd(u!.view('scatterAdd'), idx!.view('scatterAdd'), axis, shape), shape, u!.dtype),
  jvp: ([t], [, idx], _y, p) => (t ? bind(scatterPrim, [t, idx!], p) : null),
  vjp: (g, [, idx], _y, { axis }) => [gather(g, idx!, axis), null],
};

/** The adjoint of gather: zeros(shape) with updates added at the indexed positions (repeats accumulate). */
export function scatterAdd(updates: Tensor, indices: Tensor, axis: number, shape: readonly number[]): Tensor {
  checkIndexOp('scatterAdd', updates, indices);
  const ax = normalizeAxis('scatterAdd', axis, shape.length);
  const expect = [...shape.slice(0, ax), ...indices.shape, ...shape.slice(ax + 1)];
  if (!shapesEqual(expect, updates.shape)) {
    throw new Error(`scatterAdd: updates ${fmtShape(updates.shape)} should be ${fmtShape(expect)} for indices ${fmtShape(indices.shape)} into ${fmtShape(shape)} along axis ${ax}`);
  }
  return bind(scatterPrim, sameBackend('scatterAdd', [updates, indices]), { axis: ax, shape: [...shape] });
}

// ---------------------------------------------------------------------------------------
// dynamicSlice / dynamicUpdateSlice (start index given as a tensor, so a jitted function
// can move it without re-tracing)

interface DynamicParams {
  axis: number;
}

const dynamicSlicePrim: Primitive<DynamicParams & { size: number }> = {
  name: 'dynamicSlice',
  impl: ([x, idx], { axis, size }) => {
    const shape = x!.shape.map((d, i) => (i === axis ? size : d));
    const buf = x!.backend.dynamicSlice(x!.view('dynamicSlice'), idx!.view('dynamicSlice'), axis, size);
    return fromBuffer(x!.backend, buf, shape, x!.dtype);
  },
  jvp: ([t], [, idx], _y, p) => (t ? bind(dynamicSlicePrim, [t, idx!], p) : null),
  vjp: (g, [x, idx], _y, { axis }) => {
    const z = fullLike(x!, 0);
    const dx = bind(dynamicUpdateSlicePrim, [z, g, idx!], { axis });
    z.dispose();
    return [dx, null];
  },
};

const dynamicUpdateSlicePrim: Primitive<DynamicParams> = {
  name: 'dynamicUpdateSlice',
  impl: ([x, u, idx], { axis }) => {
    const buf = x!.backend.dynamicUpdateSlice(x!.view('dynamicUpdateSlice'), u!.view('dynamicUpdateSlice'), idx!.view('dynamicUpdateSlice'), axis, false);
    return fromBuffer(x!.backend, buf, x!.shape, x!.dtype);
  },
  jvp: ([tx, tu], [x, u, idx], _y, p) => {
    if (!tx && !tu) return null;
    return bind(dynamicUpdateSlicePrim, [tx ?? fullLike(x!, 0), tu ?? fullLike(u!, 0), idx!], p);
  },
  vjp: (g, [, u, idx], _y, { axis }, needs) => [
    needs[0] ? bind(dynamicUpdateSlicePrim, [g, fullLike(u!, 0), idx!], { axis }) : null,
    needs[1] ? bind(dynamicSlicePrim, [g, idx!], { axis, size: u!.shape[axis]! }) : null,
    null,
  ],
};

function indexOperand(op: string, index: Tensor | number, like: Tensor): { idx: Tensor; temp: boolean } {
  if (typeof index === 'number') {
    if (!Number.isInteger(index)) throw new Error(`${op}: index must be an integer, got ${index}`);
    return { idx: scalar(index, { dtype: 'int32', backend: like.backend }), temp: true };
  }
  checkTensor(op, index, 'index');
  index.view(op);
  if (index.dtype !== 'int32' || index.size !== 1) {
    throw new Error(`${op}: index must be an int32 tensor with one element, got ${index.dtype} ${fmtShape(index.shape)}`);
  }
  return { idx: index.rank === 0 ? index : reshape(index, []), temp: index.rank !== 0 };
}

/**
 * x[..., i : i + size, ...] along `axis`, with the start i an int32 scalar tensor (or a
 * number), clamped to [0, x.shape[axis] − size] like XLA's dynamic_slice.
 */
export function dynamicSlice(x: Tensor, index: Tensor | number, axis: number, size: number): Tensor {
  checkTensor('dynamicSlice', x);
  x.view('dynamicSlice');
  const ax = normalizeAxis('dynamicSlice', axis, x.rank);
  if (!Number.isInteger(size) || size < 0 || size > x.shape[ax]!) {
    throw new Error(`dynamicSlice: size ${size} does not fit axis ${ax} of ${fmtShape(x.shape)}`);
  }
  const { idx, temp } = indexOperand('dynamicSlice', index, x);
  try {
    const [xx, ii] = sameBackend('dynamicSlice', [x, idx]);
    return bind(dynamicSlicePrim, [xx!, ii!], { axis: ax, size });
  } finally {
    if (temp) idx.dispose();
  }
}

/**
 * x with the block `update` written at start i along `axis` (i an int32 scalar tensor or a
 * number, clamped as in dynamicSlice); update has x's shape except along `axis`. Under jit,
 * when x is not needed afterwards, the write happens in place.
 */
export function dynamicUpdateSlice(x: Tensor, update: Tensor, index: Tensor | number, axis: number): Tensor {
  checkTensor('dynamicUpdateSlice', x);
  checkTensor('dynamicUpdateSlice', update, 'update');
  x.view('dynamicUpdateSlice');
  update.view('dynamicUpdateSlice');
  const ax = normalizeAxis('dynamicUpdateSlice', axis, x.rank);
  if (update.dtype !== x.dtype) throw new Error(`dynamicUpdateSlice: update is ${update.dtype}, x is ${x.dtype}`);
  if (update.rank !== x.rank || update.shape.some((d, i) => (i === ax ? d > x.shape[i]! : d !== x.shape[i]))) {
    throw new Error(`dynamicUpdateSlice: update ${fmtShape(update.shape)} does not fit into ${fmtShape(x.shape)} along axis ${ax}`);
  }
  const { idx, temp } = indexOperand('dynamicUpdateSlice', index, x);
  try {
    const [xx, uu, ii] = sameBackend('dynamicUpdateSlice', [x, update, idx]);
    return bind(dynamicUpdateSlicePrim, [xx!, uu!, ii!], { axis: ax });
  } finally {
    if (temp) idx.dispose();
  }
}

// ---------------------------------------------------------------------------------------
// cast, stopGradient

const castPrim: Primitive<{ dtype: DType }> = {
  name: 'cast',
  impl: ([x], { dtype }) => fromBuffer(x!.backend, x!.backend.cast(x!.view('cast'), dtype), x!.shape, dtype),
  jvp: ([t], [x], _y, { dtype }) => (t && isFloat(x!.dtype) && isFloat(dtype) ? cast(t, dtype) : null),
  vjp: (g, [x], _y, { dtype }) => [isFloat(x!.dtype) && isFloat(dtype) ? cast(g, x!.dtype) : null],
};

export function cast(x: Tensor, dtype: DType): Tensor {
  checkTensor('cast', x);
  x.view('cast');
  if (!x.backend.supportsDType(dtype)) throw new Error(`cast: the ${x.backend.name} backend does not support ${dtype}`);
  if (dtype === x.dtype) return reshape(x, x.shape);
  return bind(castPrim, [x], { dtype });
}

const stopGradientPrim: Primitive<null> = { name: 'stopGradient', impl: ([x]) => alias(x!) };

/** The same values, treated as a constant by every transformation. */
export function stopGradient(x: Tensor): Tensor {
  checkTensor('stopGradient', x);
  x.view('stopGradient');
  return bind(stopGradientPrim, [x], null);
}
