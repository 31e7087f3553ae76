/**
 * The interface every backend implements. The frontend (tensor.ts, primitives.ts) validates
 * inputs, computes output shapes and dtypes, and calls exactly one of these kernels per
 * primitive; a backend only computes. All buffers are dense, row-major and contiguous.
 *
 * Ownership: every kernel returns a fresh buffer that the frontend owns; the frontend calls
 * `free` exactly once per buffer when the last tensor referring to it is released. Inputs
 * are never modified.
 */
import type { DType, TypedArray } from './dtype.js';
import type { FusedInto, FusedKernel, PhasedKernel } from './fused.js';
import type { KeyExpr } from './random.js';
import type { Shape } from './shape.js';

/** Opaque backend storage (a typed array on the CPU, a GPUBuffer on WebGPU, ...). */
export type BackendBuffer = unknown;

/** A buffer together with the logical shape and dtype the frontend gives it. */
export interface BufferView {
  readonly buf: BackendBuffer;
  readonly shape: Shape;
  readonly dtype: DType;
}

/** Float-valued elementwise functions (`sign`, `neg`, `abs` also accept int32; `not` takes bool). */
export type UnaryOp =
  | 'neg' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'abs' | 'tanh' | 'sigmoid' | 'sin' | 'cos' | 'sign' | 'not';

/** Arithmetic: output dtype = input dtype. */
export type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'maximum' | 'minimum';
/** Comparisons: output dtype is bool. */
export type CompareOp = 'less' | 'lessEqual' | 'greater' | 'greaterEqual' | 'equal' | 'notEqual';
/** Logical ops on bool inputs, bool output. */
export type LogicalOp = 'and' | 'or';
/** Reductions. `argmax`/`argmin` return int32 and take exactly one axis (first occurrence wins ties). */
export type ReduceOp = 'sum' | 'max' | 'min' | 'argmax' | 'argmin';

/** The recorder `jit` traces with (see jit/recorder.ts). */
export interface TracingBackend extends Backend {
  readonly tracing: true;
  /** The backend the traced program will run on. */
  readonly target: Backend;
  /** A tensor of the target backend, captured as a constant of the program being traced. */
  capture<T extends { readonly backend: Backend }>(t: T): T;
  /** randomUniform with the key's derivation from the traced function's key arguments. */
  randomUniformKeyed(key: KeyExpr, size: number, dtype: DType): BackendBuffer;
}

export interface BackendStats {
  /** Buffers allocated by this backend and not yet freed. */
  liveBuffers: number;
  liveBytes: number;
}

export interface Backend {
  readonly name: string;
  /** True for the recorder `jit` traces with: its buffers are symbols, not data. */
  readonly tracing?: boolean;
  /** Dtypes this backend can hold (WebGPU: no float64). */
  supportsDType(dtype: DType): boolean;

  /** Upload host data (copied: the caller may reuse `data`). `data.length` = element count. */
  fromTyped(data: TypedArray, dtype: DType): BackendBuffer;
  /** A buffer of `size` elements all equal to `value`. */
  full(size: number, dtype: DType, value: number): BackendBuffer;
  /** Read a buffer back as a fresh typed array of its dtype (bool → Uint8Array of 0/1). */
  read(buf: BackendBuffer, dtype: DType, size: number): Promise<TypedArray>;
  /** Synchronous read, where the backend can do it (the CPU backend); undefined elsewhere. */
  readSync?(buf: BackendBuffer, dtype: DType, size: number): TypedArray;
  free(buf: BackendBuffer): void;
  stats(): BackendStats;

  unary(op: UnaryOp, x: BufferView): BackendBuffer;
  /** a, b broadcast (numpy rules) to `outShape`; output dtype = a.dtype for BinaryOp, bool otherwise. */
  binary(op: BinaryOp | CompareOp | LogicalOp, a: BufferView, b: BufferView, outShape: Shape): BackendBuffer;
  /** cond (bool), a, b (same dtype) broadcast to `outShape`. */
  where(cond: BufferView, a: BufferView, b: BufferView, outShape: Shape): BackendBuffer;
  /**
   * Reduce over `axes` (sorted, distinct, non-empty). The output is laid out as the input
   * shape with the reduced axes set to 1 (keepdims); the frontend reshapes it.
   */
  reduce(op: ReduceOp, x: BufferView, axes: readonly number[]): BackendBuffer;
  /**
   * Batched matmul. a: [...batchA, M, K] (or [...batchA, K, M] when transA), b: [...batchB, K, N]
   * (or [...batchB, N, K] when transB). Batch dims broadcast to `batchShape`; output
   * [...batchShape, M, N]. Both inputs have rank ≥ 2 and the same float dtype.
   */
  matmul(a: BufferView, b: BufferView, transA: boolean, transB: boolean, batchShape: Shape): BackendBuffer;
  /** out[i_perm[0], ..., i_perm[r-1]] = x[i_0, ..., i_{r-1}]; i.e. out.shape[k] = x.shape[perm[k]]. */
  transpose(x: BufferView, perm: readonly number[]): BackendBuffer;
  /** Broadcast x (numpy rules, x.rank ≤ shape.length) to `shape`, materialised. */
  broadcastTo(x: BufferView, shape: Shape): BackendBuffer;
  /** out = x[starts[0]:starts[0]+sizes[0], ...] (unit steps, in range: the frontend checks). */
  slice(x: BufferView, starts: readonly number[], sizes: readonly number[]): BackendBuffer;
  /** Zero padding: out.shape[i] = before[i] + x.shape[i] + after[i] (all ≥ 0). */
  pad(x: BufferView, before: readonly number[], after: readonly number[]): BackendBuffer;
  /** Concatenate along `axis`; every input has the same rank, dtype, and shape off that axis. */
  concat(xs: readonly BufferView[], axis: number): BackendBuffer;
  /**
   * numpy `take(x, indices, axis)`: out.shape = x.shape[:axis] + indices.shape + x.shape[axis+1:].
   * indices are int32. An index outside [0, x.shape[axis]) is an error: the CPU backend throws
   * `gather: index N out of range [0, D)`; backends that cannot throw synchronously must
   * report it no later than the next read.
   */
  gather(x: BufferView, indices: BufferView, axis: number): BackendBuffer;
  /**
   * The adjoint of gather: out = zeros(outShape) with, for every position of `updates`
   * (shape outShape[:axis] + indices.shape + outShape[axis+1:]), out[..., indices[j], ...] += updates[..., j, ...].
   * Repeated indices accumulate. Must be deterministic (no float atomics).
   */
  scatterAdd(updates: BufferView, indices: BufferView, axis: number, outShape: Shape): BackendBuffer;
  /** Convert dtype. float→int32 truncates toward zero; →bool is (x != 0); bool→number is 0/1. */
  cast(x: BufferView, dtype: DType): BackendBuffer;
  /**
   * Uniform floats in [0, 1) from the Threefry-2x32 counter-based generator (20 rounds):
   * for element i, (x0, x1) = threefry2x32(key, (floor(i/2), 0)); bits = i even ? x0 : x1;
   * value = float32 with bits (bits >>> 9) | 0x3f800000, minus 1. These are exact float32
   * values, so every backend gives the same numbers bit for bit. For float64 the same
   * float32 value is widened.
   */
  randomUniform(key: readonly [number, number], size: number, dtype: DType): BackendBuffer;
  /**
   * out = x[..., i : i + size, ...] along `axis`, where i is the int32 scalar in `index`
   * clamped to [0, x.shape[axis] − size] (XLA's dynamic_slice), so the slice always fits.
   */
  dynamicSlice(x: BufferView, index: BufferView, axis: number, size: number): BackendBuffer;
  /**
   * out = x with out[..., i : i + update.shape[axis], ...] = update along `axis` (i clamped as
   * in dynamicSlice). With `reuse`, the caller gives up `x` and the backend may write into
   * x's buffer and return that same buffer (in-place update of, e.g., a preallocated cache).
   */
  dynamicUpdateSlice(x: BufferView, update: BufferView, index: BufferView, axis: number, reuse: boolean): BackendBuffer;
  /**
   * Optional: run a fused kernel (see fused.ts) on `inputs` (one buffer per kernel input),
   * returning one fresh buffer per kernel output. Backends without it run jit programs op by op.
   */
  runFused?(kernel: FusedKernel, inputs: readonly BackendBuffer[]): BackendBuffer[];
  /**
   * Optional: run a phased kernel (see fused.ts); returns its written outputs in order. Where
   * a backend has it, jit merges a row reduction with the kernels that use its rows into one.
   */
  runPhased?(kernel: PhasedKernel, inputs: readonly BackendBuffer[]): BackendBuffer[];
  /**
   * Optional: dynamicUpdateSlice(x, update, index) where the update is an elementwise fused
   * kernel's one output, written straight into the result (see FusedInto); `reuse` as for
   * dynamicUpdateSlice (x's buffer may become the result).
   */
  runFusedInto?(kernel: FusedKernel, inputs: readonly BackendBuffer[], x: BufferView, index: BufferView, into: FusedInto, reuse: boolean): BackendBuffer;
  /**
   * Optional: independent elementwise kernels and fused updates as one dispatch; returns each
   * member's outputs (an update's one output: its result, x's buffer itself when `reuse`).
   */
  runHorizontal?(members: readonly HorizontalMember[]): BackendBuffer[][];
  /** Dtypes worth fusing on this backend (default: every supported dtype, when runFused exists). */
  readonly fusedDTypes?: readonly DType[];
  /** Most buffers (outputs + inputs) one fused kernel may use here (default: no limit). */
  readonly maxFusedBuffers?: number;
  /** Small elementwise results (at most this many elements) fused kernels recompute where they read them broadcast (default 0: none). */
  readonly fusedInlineLimit?: number;
}

/** One kernel of a horizontal dispatch (see Backend.runHorizontal). */
export interface HorizontalMember {
  kernel: FusedKernel;
  inputs: readonly BackendBuffer[];
  into?: { x: BufferView; index: BufferView; spec: FusedInto; reuse: boolean };
}
