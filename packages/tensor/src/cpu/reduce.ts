/** Reductions: sum/max/min over an axis set, argmax/argmin over one axis (keepdims layout). */
import type { BufferView, ReduceOp } from '../backend.js';
import { allocTyped, type TypedArray } from '../dtype.js';
import { sizeOf, stridesOf } from '../shape.js';
import { collapseDims, sizeOfRange } from './strided.js';

export function reduce(op: ReduceOp, xv: BufferView, x: TypedArray, axes: readonly number[]): TypedArray {
  const shape = xv.shape;
  for (const a of axes) {
    if (!Number.isInteger(a) || a < 0 || a >= shape.length) {
      throw new Error(`reduce: axis ${a} is out of range for rank ${shape.length}`);
    }
  }
  if (op === 'argmax' || op === 'argmin') {
    if (axes.length !== 1) throw new Error(`reduce: ${op} takes exactly one axis, got [${axes.join(',')}]`);
    return argReduce(op === 'argmax', shape, x, axes[0]!);
  }
  const outShape = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const outSize = sizeOf(outShape);
  const out = allocTyped(xv.dtype, outSize);
  if (outSize === 0) return out;
  // Accumulate in doubles whatever the dtype: float32 sums round once, int32 sums wrap once.
  const acc = new Float64Array(outSize);
  if (op === 'max') acc.fill(-Infinity);
  else if (op === 'min') acc.fill(Infinity);
  else if (op !== 'sum') throw new Error(`reduce: unknown op '${op as string}'`);
  if (x.length > 0) {
    const outStrides = stridesOf(outShape).map((s, i) => (axes.includes(i) ? 0 : s));
    const c = collapseDims(shape, [stridesOf(shape), outStrides]);
    accumulate(op, x, acc, c.shape, c.strides[1]!);
  }
  if (xv.dtype === 'bool') {
    // A bool sum has no count to hold: it reads as "any", like max.
    for (let i = 0; i < outSize; i++) out[i] = acc[i]! > 0 ? 1 : 0;
  } else {
    for (let i = 0; i < outSize; i++) out[i] = acc[i]!;
  }
  return out;
}

/**
 * Walks x in memory order (it is contiguous, so `shape` after collapsing still has x's
 * strides implicitly) with the output position advanced by `os` (0 on reduced dimensions).
 * The innermost dimension is either reduced (a row reduction into one scalar) or kept (a
 * column update of contiguous accumulators); both are tight loops.
 */
function accumulate(op: 'sum' | 'max' | 'min', x: TypedArray, acc: Float64Array, shape: number[], os: number[]): void {
  const r = shape.length;
  const inner = shape[r - 1]!;
  const innerReduced = os[r - 1] === 0;
  const outer = sizeOfRange(shape, 0, r - 1);
  const idx = new Array<number>(r - 1).fill(0);
  let i = 0;
  let o = 0;
  for (let k = 0; k < outer; k++) {
    if (innerReduced) {
      let s = acc[o]!;
      if (op === 'sum') {
        for (let j = 0; j < inner; j++) s += x[i + j]!;
      } else if (op === 'max') {
        // `v !== v` lets a NaN in, and nothing compares greater than NaN afterwards.
        for (let j = 0; j < inner; j++) {
          const v = x[i + j]!;
          if (v > s || v !== v) s = v;
        }
      } else {
        for (let j = 0; j < inner; j++) {
          const v = x[i + j]!;
          if (v < s || v !== v) s = v;
        }
      }
      acc[o] = s;
    } else if (op === 'sum') {
      for (let j = 0; j < inner; j++) acc[o + j] += x[i + j]!;
    } else if (op === 'max') {
      for (let j = 0; j < inner; j++) {
        const v = x[i + j]!;
        if (v > acc[o + j]! || v !== v) acc[o + j] = v;
      }
    } else {
      for (let j = 0; j < inner; j++) {
        const v = x[i + j]!;
        if (v < acc[o + j]! || v !== v) acc[o + j] = v;
      }
    }
    i += inner;
    for (let d = r - 2; d >= 0; d--) {
      o += os[d]!;
      if (++idx[d]! < shape[d]!) break;
      o -= os[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
}

/** First occurrence wins ties; the first NaN wins over numbers (NaN is "largest" and "smallest"). */
function argReduce(isMax: boolean, shape: readonly number[], x: TypedArray, axis: number): Int32Array {
  const outer = sizeOfRange(shape, 0, axis);
  const d = shape[axis]!;
  const inner = sizeOfRange(shape, axis + 1, shape.length);
  const out = new Int32Array(outer * inner);
  if (out.length === 0) return out;
  if (d === 0) throw new Error(`reduce: ${isMax ? 'argmax' : 'argmin'} over an axis of size 0`);
  const sign = isMax ? 1 : -1;
  if (inner === 1) {
    for (let o = 0; o < outer; o++) {
      const base = o * d;
      let best = sign * x[base]!;
      let bi = 0;
      if (best === best) {
        for (let j = 1; j < d; j++) {
          const v = sign * x[base + j]!;
          if (v > best || v !== v) {
            best = v;
            bi = j;
            if (v !== v) break;
          }
        }
      }
      out[o] = bi;
    }
    return out;
  }
  // Several independent rows interleaved in memory: scan the axis outermost so reads stay contiguous.
  const best = new Float64Array(inner);
  for (let o = 0; o < outer; o++) {
    const base = o * d * inner;
    const ob = o * inner;
    for (let t = 0; t < inner; t++) best[t] = sign * x[base + t]!;
    for (let j = 1; j < d; j++) {
      const row = base + j * inner;
      for (let t = 0; t < inner; t++) {
        const v = sign * x[row + t]!;
        const b = best[t]!;
        if ((v > b || v !== v) && b === b) {
          best[t] = v;
          out[ob + t] = j;
        }
      }
    }
  }
  return out;
}
