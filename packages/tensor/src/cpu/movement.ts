/** Movement kernels: transpose, broadcastTo, slice, pad, concat, gather, scatterAdd. */
import type { BufferView } from '../backend.js';
import { allocTyped, type TypedArray } from '../dtype.js';
import { broadcastStrides, sizeOf, stridesOf, type Shape } from '../shape.js';
import { copyStrided, sizeOfRange } from './strided.js';

export function transpose(xv: BufferView, x: TypedArray, perm: readonly number[]): TypedArray {
  const r = xv.shape.length;
  if (perm.length !== r || new Set(perm).size !== r || perm.some((p) => !Number.isInteger(p) || p < 0 || p >= r)) {
    throw new Error(`transpose: [${perm.join(',')}] is not a permutation of rank ${r}`);
  }
  const xs = stridesOf(xv.shape);
  const outShape = perm.map((p) => xv.shape[p]!);
  const out = allocTyped(xv.dtype, x.length);
  copyStrided(outShape, x, 0, perm.map((p) => xs[p]!), out, 0, stridesOf(outShape));
  return out;
}

export function broadcastTo(xv: BufferView, x: TypedArray, shape: Shape): TypedArray {
  const out = allocTyped(xv.dtype, sizeOf(shape));
  copyStrided(shape, x, 0, broadcastStrides(xv.shape, shape), out, 0, stridesOf(shape));
  return out;
}

export function slice(xv: BufferView, x: TypedArray, starts: readonly number[], sizes: readonly number[]): TypedArray {
  const xs = stridesOf(xv.shape);
  let off = 0;
  for (let i = 0; i < starts.length; i++) off += starts[i]! * xs[i]!;
  const out = allocTyped(xv.dtype, sizeOf(sizes));
  copyStrided(sizes, x, off, xs, out, 0, stridesOf(sizes));
  return out;
}

export function pad(xv: BufferView, x: TypedArray, before: readonly number[], after: readonly number[]): TypedArray {
  const outShape = xv.shape.map((d, i) => before[i]! + d + after[i]!);
  const os = stridesOf(outShape);
  let off = 0;
  for (let i = 0; i < before.length; i++) off += before[i]! * os[i]!;
  const out = allocTyped(xv.dtype, sizeOf(outShape));
  copyStrided(xv.shape, x, 0, stridesOf(xv.shape), out, off, os);
  return out;
}

export function concat(xs: readonly BufferView[], data: readonly TypedArray[], axis: number): TypedArray {
  const first = xs[0];
  if (first === undefined) throw new Error('concat: needs at least one input');
  const outShape = first.shape.slice();
  outShape[axis] = xs.reduce((s, v) => s + v.shape[axis]!, 0);
  const os = stridesOf(outShape);
  const out = allocTyped(first.dtype, sizeOf(outShape));
  let at = 0;
  xs.forEach((v, i) => {
    copyStrided(v.shape, data[i]!, 0, stridesOf(v.shape), out, at * os[axis]!, os);
    at += v.shape[axis]!;
  });
  return out;
}

function checkIndices(op: string, indices: TypedArray, d: number): void {
  for (let j = 0; j < indices.length; j++) {
    const i = indices[j]!;
    if (i < 0 || i >= d) throw new Error(`${op}: index ${i} out of range [0, ${d})`);
  }
}

export function gather(xv: BufferView, x: TypedArray, iv: BufferView, indices: TypedArray, axis: number): TypedArray {
  if (iv.dtype !== 'int32') throw new Error(`gather: indices must be int32, got ${iv.dtype}`);
  const shape = xv.shape;
  const outer = sizeOfRange(shape, 0, axis);
  const d = shape[axis]!;
  const inner = sizeOfRange(shape, axis + 1, shape.length);
  // Validate before allocating so a throw leaves nothing live.
  checkIndices('gather', indices, d);
  const nIdx = indices.length;
  const out = allocTyped(xv.dtype, outer * nIdx * inner);
  let o = 0;
  for (let a = 0; a < outer; a++) {
    const base = a * d * inner;
    for (let j = 0; j < nIdx; j++) {
      const src = base + indices[j]! * inner;
      if (inner === 1) {
        out[o++] = x[src]!;
      } else {
        for (let t = 0; t < inner; t++) out[o++] = x[src + t]!;
      }
    }
  }
  return out;
}

export function scatterAdd(
  uv: BufferView, u: TypedArray, iv: BufferView, indices: TypedArray, axis: number, outShape: Shape,
): TypedArray {
  if (iv.dtype !== 'int32') throw new Error(`scatterAdd: indices must be int32, got ${iv.dtype}`);
  const outer = sizeOfRange(outShape, 0, axis);
  const d = outShape[axis]!;
  const inner = sizeOfRange(outShape, axis + 1, outShape.length);
  const nIdx = indices.length;
  if (u.length !== outer * nIdx * inner) {
    throw new Error(
      `scatterAdd: updates [${uv.shape.join(',')}] do not match outShape [${outShape.join(',')}] with ${nIdx} indices on axis ${axis}`,
    );
  }
  checkIndices('scatterAdd', indices, d);
  const n = outer * d * inner;
  // Sequential accumulation in index order is what makes the result deterministic; doubles
  // make repeated float32 updates round once.
  const acc = uv.dtype === 'int32' ? new Int32Array(n) : new Float64Array(n);
  let p = 0;
  for (let a = 0; a < outer; a++) {
    const base = a * d * inner;
    for (let j = 0; j < nIdx; j++) {
      const dst = base + indices[j]! * inner;
      for (let t = 0; t < inner; t++) acc[dst + t] += u[p++]!;
    }
  }
  const out = allocTyped(uv.dtype, n);
  if (uv.dtype === 'bool') {
    for (let i = 0; i < n; i++) out[i] = acc[i] !== 0 ? 1 : 0;
  } else {
    out.set(acc as never);
  }
  return out;
}

/** The start XLA's dynamic_slice uses: the requested index clamped so `size` elements fit. */
export function clampedStart(index: number, dim: number, size: number): number {
  return Math.min(Math.max(index, 0), dim - size);
}

export function dynamicSlice(xv: BufferView, x: TypedArray, index: number, axis: number, size: number): TypedArray {
  const starts = xv.shape.map((_, i) => (i === axis ? clampedStart(index, xv.shape[axis]!, size) : 0));
  const sizes = xv.shape.map((d, i) => (i === axis ? size : d));
  return slice(xv, x, starts, sizes);
}

/** Writes `update` into `target` (x's layout) at the clamped index along `axis`. */
export function writeUpdateSlice(xv: BufferView, target: TypedArray, uv: BufferView, u: TypedArray, index: number, axis: number): void {
  const os = stridesOf(xv.shape);
  const start = clampedStart(index, xv.shape[axis]!, uv.shape[axis]!);
  copyStrided(uv.shape, u, 0, stridesOf(uv.shape), target, start * os[axis]!, os);
}
