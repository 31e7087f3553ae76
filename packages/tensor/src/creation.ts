/** Creating tensors from host data. */
import type { Backend } from './backend.js';
import { AllocationError, allocTyped, dtypeOfTyped, isDType, type DType, type TypedArray } from './dtype.js';
import { checkShapeDims, fmtShape, sizeOf, type Shape } from './shape.js';
import { fromBuffer, getDefaultBackend, type NestedArray, Tensor } from './tensor.js';

export interface CreateOptions {
  dtype?: DType;
  backend?: Backend;
}

/** Host integer arrays accepted and widened to int32. */
export type NarrowIntArray = Int8Array | Int16Array | Uint16Array | Uint32Array;

export type TensorData = number | boolean | TypedArray | NarrowIntArray | readonly (number | boolean | NestedArray)[];

function checkShape(op: string, shape: Shape): void {
  checkShapeDims(op, shape);
}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/** Throws unless v is an int32 value: JS numbers would otherwise wrap (1e10 → 1410065408) or truncate silently. */
function checkInt32(op: string, v: number, at: number | null): void {
  if (Number.isInteger(v) && v >= INT32_MIN && v <= INT32_MAX) return;
  const where = at === null ? '' : ` at index ${at}`;
  if (!Number.isInteger(v)) {
    throw new Error(`${op}: ${v}${where} is not an integer; int32 tensors hold integers (cast a float tensor to truncate)`);
  }
  throw new Error(`${op}: ${v}${where} is outside the int32 range [${INT32_MIN}, ${INT32_MAX}]`);
}

/**
 * Host typed arrays a tensor can be made from: Float32/Float64/Int32 as they are, Uint8Array
 * as bool, and the narrower integer arrays widened to int32. Anything else is an error naming it.
 */
function typedSource(op: string, data: ArrayBufferView): TypedArray {
  if (data instanceof Float32Array || data instanceof Float64Array || data instanceof Int32Array || data instanceof Uint8Array) return data;
  if (data instanceof Int8Array || data instanceof Int16Array || data instanceof Uint16Array) return Int32Array.from(data);
  if (data instanceof Uint32Array) {
    const i = data.findIndex((v) => v > INT32_MAX);
    if (i >= 0) throw new Error(`${op}: Uint32Array value ${data[i]} at index ${i} is outside the int32 range; tensors have no unsigned dtype`);
    return Int32Array.from(data);
  }
  const name = data.constructor?.name ?? 'ArrayBufferView';
  throw new Error(`${op}: ${name} is not supported; pass a Float32Array, Float64Array, Int32Array (Int8/Int16/Uint16/Uint32 are widened to int32) or a Uint8Array (bool)`);
}

function resolve(op: string, opts: CreateOptions | undefined, fallback: DType): { dtype: DType; backend: Backend } {
  const dtype = opts?.dtype ?? fallback;
  if (!isDType(dtype)) throw new Error(`${op}: unknown dtype ${JSON.stringify(dtype)} (expected float32, float64, int32 or bool)`);
  const backend = opts?.backend ?? getDefaultBackend();
  if (!backend.supportsDType(dtype)) throw new Error(`${op}: the ${backend.name} backend does not support ${dtype}`);
  return { dtype, backend };
}

function inferShape(data: unknown, shape: number[] = []): number[] {
  if (Array.isArray(data)) {
    shape.push(data.length);
    if (data.length > 0) inferShape(data[0], shape);
  }
  return shape;
}

function flattenInto(op: string, data: unknown, shape: readonly number[], dim: number, out: number[]): void {
  if (dim === shape.length) {
    if (typeof data === 'number') out.push(data);
    else if (typeof data === 'boolean') out.push(data ? 1 : 0);
    else throw new Error(`${op}: expected a number or boolean at depth ${dim}, got ${Array.isArray(data) ? 'an array (ragged nesting)' : typeof data}`);
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[dim]) {
    throw new Error(`${op}: ragged nested array: expected length ${shape[dim]} at depth ${dim}, got ${Array.isArray(data) ? data.length : typeof data}`);
  }
  for (const x of data) flattenInto(op, x, shape, dim + 1, out);
}

function firstLeaf(data: unknown): unknown {
  while (Array.isArray(data)) {
    if (data.length === 0) return undefined;
    data = data[0];
  }
  return data;
}

/**
 * A tensor from a number, boolean, nested array, or typed array (with `shape` giving its
 * shape; default 1-D). Default dtype: the typed array's, bool for booleans, else float32.
 */
export function tensor(data: TensorData, opts?: CreateOptions & { shape?: Shape }): Tensor {
  const op = 'tensor';
  if (ArrayBuffer.isView(data)) {
    const typed = typedSource(op, data);
    const { dtype, backend } = resolve(op, opts, dtypeOfTyped(typed));
    const shape = opts?.shape ?? [typed.length];
    checkShape(op, shape);
    if (sizeOf(shape) !== typed.length) {
      throw new Error(`${op}: shape ${fmtShape(shape)} has ${sizeOf(shape)} elements but the data has ${typed.length}`);
    }
    const buf = dtypeOfTyped(typed) === dtype ? typed : convertTyped(typed, dtype);
    return fromBuffer(backend, backend.fromTyped(buf, dtype), shape, dtype);
  }
  const shape = inferShape(data);
  const flat: number[] = [];
  flattenInto(op, data, shape, 0, flat);
  const fallback: DType = typeof firstLeaf(data) === 'boolean' ? 'bool' : 'float32';
  const { dtype, backend } = resolve(op, opts, fallback);
  if (opts?.shape) {
    checkShape(op, opts.shape);
    if (sizeOf(opts.shape) !== flat.length) throw new Error(`${op}: shape ${fmtShape(opts.shape)} does not match ${flat.length} elements`);
  }
  checkShape(op, shape);
  const typed = allocTyped(dtype, flat.length);
  if (dtype === 'int32') flat.forEach((v, i) => checkInt32(op, v, i));
  for (let i = 0; i < flat.length; i++) typed[i] = dtype === 'bool' ? (flat[i] !== 0 ? 1 : 0) : flat[i]!;
  return fromBuffer(backend, backend.fromTyped(typed, dtype), opts?.shape ?? shape, dtype);
}

function convertTyped(src: TypedArray, dtype: DType): TypedArray {
  const out = allocTyped(dtype, src.length);
  for (let i = 0; i < src.length; i++) {
    const v = src[i]!;
    if (dtype === 'int32') checkInt32('tensor', v, i);
    out[i] = dtype === 'bool' ? (v !== 0 ? 1 : 0) : dtype === 'int32' ? Math.trunc(v) : v;
  }
  return out;
}

export function full(shape: Shape, value: number, opts?: CreateOptions): Tensor {
  checkShape('full', shape);
  const { dtype, backend } = resolve('full', opts, 'float32');
  if (typeof value !== 'number' && typeof value !== 'boolean') throw new Error(`full: value must be a number, got ${typeof value}`);
  if (dtype === 'int32') checkInt32('full', Number(value), null);
  try {
    return fromBuffer(backend, backend.full(sizeOf(shape), dtype, value), shape, dtype);
  } catch (e) {
    if (e instanceof AllocationError) throw new AllocationError(`full: ${fmtShape(shape)} ${dtype}: ${e.message}`);
    throw e;
  }
}

export function zeros(shape: Shape, opts?: CreateOptions): Tensor {
  return full(shape, 0, opts);
}

export function ones(shape: Shape, opts?: CreateOptions): Tensor {
  return full(shape, 1, opts);
}

export function scalar(value: number, opts?: CreateOptions): Tensor {
  return full([], value, opts);
}

export function fullLike(t: Tensor, value: number, dtype: DType = t.dtype): Tensor {
  return full(t.shape, value, { dtype, backend: t.backend });
}

export function zerosLike(t: Tensor): Tensor {
  return fullLike(t, 0);
}

export function onesLike(t: Tensor): Tensor {
  return fullLike(t, 1);
}

/** [start, stop) with `step`, like numpy.arange. Default dtype float32; pass int32 for indices. */
export function arange(start: number, stop?: number, step = 1, opts?: CreateOptions): Tensor {
  if (stop === undefined) {
    stop = start;
    start = 0;
  }
  if (step === 0 || !Number.isFinite(step)) throw new Error(`arange: step must be a finite non-zero number, got ${step}`);
  if (!Number.isFinite(start) || !Number.isFinite(stop)) throw new Error(`arange: start and stop must be finite numbers, got ${start} and ${stop}`);
  const n = Math.max(0, Math.ceil((stop - start) / step));
  checkShape('arange', [n]);
  const { dtype, backend } = resolve('arange', opts, 'float32');
  if (dtype === 'int32' && n > 0) {
    checkInt32('arange', start, null);
    checkInt32('arange', step, null);
    checkInt32('arange', start + (n - 1) * step, null);
  }
  const typed = allocTyped(dtype, n);
  for (let i = 0; i < n; i++) typed[i] = start + i * step;
  return fromBuffer(backend, backend.fromTyped(typed, dtype), [n], dtype);
}

/** Identity matrix n×m. */
export function eye(n: number, m: number = n, opts?: CreateOptions): Tensor {
  checkShape('eye', [n, m]);
  const { dtype, backend } = resolve('eye', opts, 'float32');
  const typed = allocTyped(dtype, n * m);
  for (let i = 0; i < Math.min(n, m); i++) typed[i * m + i] = 1;
  return fromBuffer(backend, backend.fromTyped(typed, dtype), [n, m], dtype);
}

/** Copy a tensor to another backend (reads it back, so it is async). */
export async function toBackend(t: Tensor, backend: Backend): Promise<Tensor> {
  if (!backend.supportsDType(t.dtype)) throw new Error(`toBackend: the ${backend.name} backend does not support ${t.dtype}`);
  return tensor(await t.data(), { shape: t.shape, dtype: t.dtype, backend });
}
