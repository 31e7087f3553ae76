/** Elementwise kernels: unary, binary with broadcasting, where, cast. */
import type { BinaryOp, BufferView, CompareOp, LogicalOp, UnaryOp } from '../backend.js';
import { allocTyped, type DType, type TypedArray } from '../dtype.js';
import { broadcastStrides, sizeOf, type Shape } from '../shape.js';
import { collapseDims, sizeOfRange } from './strided.js';

export function unary(op: UnaryOp, xv: BufferView, x: TypedArray): TypedArray {
  const n = x.length;
  const out = allocTyped(xv.dtype, n);
  if (op === 'not') {
    if (xv.dtype !== 'bool') throw new Error(`unary: 'not' expects bool, got ${xv.dtype}`);
    for (let i = 0; i < n; i++) out[i] = x[i] ? 0 : 1;
    return out;
  }
  if (xv.dtype === 'bool') throw new Error(`unary: '${op}' is not defined on bool`);
  if (xv.dtype === 'int32' && op !== 'neg' && op !== 'abs' && op !== 'sign') {
    throw new Error(`unary: '${op}' is not defined on int32`);
  }
  // Each op gets its own loop so the body stays monomorphic and free of per-element dispatch.
  switch (op) {
    case 'neg': for (let i = 0; i < n; i++) out[i] = -x[i]!; break;
    case 'exp': for (let i = 0; i < n; i++) out[i] = Math.exp(x[i]!); break;
    case 'log': for (let i = 0; i < n; i++) out[i] = Math.log(x[i]!); break;
    case 'sqrt': for (let i = 0; i < n; i++) out[i] = Math.sqrt(x[i]!); break;
    case 'rsqrt': for (let i = 0; i < n; i++) out[i] = 1 / Math.sqrt(x[i]!); break;
    case 'abs': for (let i = 0; i < n; i++) out[i] = Math.abs(x[i]!); break;
    case 'tanh': for (let i = 0; i < n; i++) out[i] = Math.tanh(x[i]!); break;
    case 'sigmoid':
      // exp of a non-positive argument only: no overflow to Infinity/Infinity for large |x|.
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        if (v >= 0) {
          out[i] = 1 / (1 + Math.exp(-v));
        } else {
          const e = Math.exp(v);
          out[i] = e / (1 + e);
        }
      }
      break;
    case 'sin': for (let i = 0; i < n; i++) out[i] = Math.sin(x[i]!); break;
    case 'cos': for (let i = 0; i < n; i++) out[i] = Math.cos(x[i]!); break;
    // `+ 0` turns Math.sign's -0 into 0, so sign(-0) reads as 0 like every other backend.
    case 'sign': for (let i = 0; i < n; i++) out[i] = Math.sign(x[i]!) + 0; break;
    default: throw new Error(`unary: unknown op '${op as string}'`);
  }
  return out;
}

type AnyBinaryOp = BinaryOp | CompareOp | LogicalOp;

/** Expression per op over operands `x` and `y`; int32 overrides where doubles would lose the wrap. */
const BINARY_EXPR: Record<AnyBinaryOp, string> = {
  add: 'x + y',
  sub: 'x - y',
  mul: 'x * y',
  div: 'x / y',
  pow: 'Math.pow(x, y)',
  maximum: 'Math.max(x, y)',
  minimum: 'Math.min(x, y)',
  less: 'x < y ? 1 : 0',
  lessEqual: 'x <= y ? 1 : 0',
  greater: 'x > y ? 1 : 0',
  greaterEqual: 'x >= y ? 1 : 0',
  equal: 'x === y ? 1 : 0',
  notEqual: 'x !== y ? 1 : 0',
  and: 'x & y',
  or: 'x | y',
};
// The product of two int32 values can exceed 2^53, where a double no longer wraps exactly.
const INT32_EXPR: Partial<Record<AnyBinaryOp, string>> = { mul: 'Math.imul(x, y)' };

const COMPARE_OPS = new Set<AnyBinaryOp>(['less', 'lessEqual', 'greater', 'greaterEqual', 'equal', 'notEqual']);
const LOGICAL_OPS = new Set<AnyBinaryOp>(['and', 'or']);

/** mode 0: same shape; 1: a is a scalar; 2: b is a scalar; 3: strided broadcast. */
type BinaryKernel = (
  mode: number, a: TypedArray, b: TypedArray, out: TypedArray, n: number,
  shape: number[], sa: number[], sb: number[],
) => void;

/**
 * The loops are generated once per (op, dtype) with the op's expression inlined: a shared
 * loop calling a per-op function would see 15 callees, go megamorphic, and run several times
 * slower on the large tensors that elementwise ops see in training.
 */
function makeBinaryKernel(expr: string): BinaryKernel {
  const body = `
    if (mode === 0) {
      for (let i = 0; i < n; i++) { const x = a[i], y = b[i]; out[i] = ${expr}; }
      return;
    }
    if (mode === 1) {
      const x = a[0];
      for (let i = 0; i < n; i++) { const y = b[i]; out[i] = ${expr}; }
      return;
    }
    if (mode === 2) {
      const y = b[0];
      for (let i = 0; i < n; i++) { const x = a[i]; out[i] = ${expr}; }
      return;
    }
    const r = shape.length;
    const inner = shape[r - 1], ia = sa[r - 1], ib = sb[r - 1];
    const outer = n / inner;
    const idx = new Array(r - 1).fill(0);
    let oa = 0, ob = 0, o = 0;
    for (let k = 0; k < outer; k++) {
      let pa = oa, pb = ob;
      if (ib === 0) {
        const y = b[pb];
        for (let j = 0; j < inner; j++) { const x = a[pa]; out[o++] = ${expr}; pa += ia; }
      } else if (ia === 0) {
        const x = a[pa];
        for (let j = 0; j < inner; j++) { const y = b[pb]; out[o++] = ${expr}; pb += ib; }
      } else {
        for (let j = 0; j < inner; j++) { const x = a[pa], y = b[pb]; out[o++] = ${expr}; pa += ia; pb += ib; }
      }
      for (let d = r - 2; d >= 0; d--) {
        oa += sa[d]; ob += sb[d];
        if (++idx[d] < shape[d]) break;
        oa -= sa[d] * shape[d]; ob -= sb[d] * shape[d];
        idx[d] = 0;
      }
    }`;
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  return new Function('mode', 'a', 'b', 'out', 'n', 'shape', 'sa', 'sb', body) as BinaryKernel;
}

const binaryKernels = new Map<string, BinaryKernel>();

function binaryKernel(op: AnyBinaryOp, dtype: DType): BinaryKernel {
  const key = `${op}:${dtype}`;
  let k = binaryKernels.get(key);
  if (k === undefined) {
    const expr = (dtype === 'int32' ? INT32_EXPR[op] : undefined) ?? BINARY_EXPR[op];
    if (expr === undefined) throw new Error(`binary: unknown op '${op as string}'`);
    k = makeBinaryKernel(expr);
    binaryKernels.set(key, k);
  }
  return k;
}

export function binary(
  op: AnyBinaryOp, av: BufferView, a: TypedArray, bv: BufferView, b: TypedArray, outShape: Shape,
): TypedArray {
  const isCompare = COMPARE_OPS.has(op);
  const isLogical = LOGICAL_OPS.has(op);
  if (isLogical && (av.dtype !== 'bool' || bv.dtype !== 'bool')) {
    throw new Error(`binary: '${op}' expects bool inputs, got ${av.dtype} and ${bv.dtype}`);
  }
  if (av.dtype !== bv.dtype) throw new Error(`binary: '${op}' dtypes differ (${av.dtype} vs ${bv.dtype})`);
  const outDType: DType = isCompare || isLogical ? 'bool' : av.dtype;
  const n = sizeOf(outShape);
  const out = allocTyped(outDType, n);
  if (n === 0) return out;
  const kernel = binaryKernel(op, av.dtype);
  const na = a.length;
  const nb = b.length;
  // An operand already holds every output element in output order exactly when its size
  // equals the output's (broadcasting only repeats elements).
  if (na === n && nb === n) {
    kernel(0, a, b, out, n, [], [], []);
  } else if (na === 1 && nb === n) {
    kernel(1, a, b, out, n, [], [], []);
  } else if (nb === 1 && na === n) {
    kernel(2, a, b, out, n, [], [], []);
  } else {
    const c = collapseDims(outShape, [broadcastStrides(av.shape, outShape), broadcastStrides(bv.shape, outShape)]);
    kernel(3, a, b, out, n, c.shape, c.strides[0]!, c.strides[1]!);
  }
  return out;
}

export function where(
  cv: BufferView, cond: TypedArray, av: BufferView, a: TypedArray, bv: BufferView, b: TypedArray, outShape: Shape,
): TypedArray {
  if (cv.dtype !== 'bool') throw new Error(`where: condition must be bool, got ${cv.dtype}`);
  if (av.dtype !== bv.dtype) throw new Error(`where: branch dtypes differ (${av.dtype} vs ${bv.dtype})`);
  const n = sizeOf(outShape);
  const out = allocTyped(av.dtype, n);
  if (n === 0) return out;
  if (cond.length === n && a.length === n && b.length === n) {
    for (let i = 0; i < n; i++) out[i] = cond[i] ? a[i]! : b[i]!;
    return out;
  }
  const c = collapseDims(outShape, [
    broadcastStrides(cv.shape, outShape),
    broadcastStrides(av.shape, outShape),
    broadcastStrides(bv.shape, outShape),
  ]);
  const shape = c.shape;
  const [sc, sa, sb] = c.strides as [number[], number[], number[]];
  const r = shape.length;
  const inner = shape[r - 1]!;
  const ic = sc[r - 1]!;
  const ia = sa[r - 1]!;
  const ib = sb[r - 1]!;
  const outer = sizeOfRange(shape, 0, r - 1);
  const idx = new Array<number>(r - 1).fill(0);
  let oc = 0;
  let oa = 0;
  let ob = 0;
  let o = 0;
  for (let k = 0; k < outer; k++) {
    let pc = oc;
    let pa = oa;
    let pb = ob;
    for (let j = 0; j < inner; j++) {
      out[o++] = cond[pc] ? a[pa]! : b[pb]!;
      pc += ic;
      pa += ia;
      pb += ib;
    }
    for (let d = r - 2; d >= 0; d--) {
      oc += sc[d]!;
      oa += sa[d]!;
      ob += sb[d]!;
      if (++idx[d]! < shape[d]!) break;
      oc -= sc[d]! * shape[d]!;
      oa -= sa[d]! * shape[d]!;
      ob -= sb[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

/** float→int32 truncates toward zero (the Int32Array store then wraps modulo 2^32, NaN → 0). */
export function castTyped(x: TypedArray, from: DType, to: DType): TypedArray {
  const n = x.length;
  const out = allocTyped(to, n);
  if (from === to) {
    out.set(x as never);
  } else if (to === 'bool') {
    for (let i = 0; i < n; i++) out[i] = x[i] !== 0 ? 1 : 0;
  } else if (to === 'int32' && (from === 'float32' || from === 'float64')) {
    for (let i = 0; i < n; i++) out[i] = Math.trunc(x[i]!);
  } else {
    // Widening, float64→float32 (rounded by the Float32Array store), int/bool→float.
    for (let i = 0; i < n; i++) out[i] = x[i]!;
  }
  return out;
}
