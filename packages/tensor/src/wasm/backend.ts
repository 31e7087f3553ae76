/**
 * The WebAssembly CPU backend: float32 (and int32/bool) kernels in WebAssembly SIMD128 over
 * one linear memory, the default for float32 work on the CPU.
 *
 * - Elementwise ops, casts and reductions, eager or fused by `jit`, all go through the one
 *   code generator (codegen.ts); kernels are compiled on first use and cached.
 * - matmul runs the packed-panel SIMD kernels of the static module (matmul.ts).
 * - Movement ops (transpose, slice, pad, concat, broadcast, gather, scatter) are strided copies
 *   done in place on the memory, with the JS CPU backend's copy routines.
 * - float64 stays correct rather than fast: it runs the JS CPU backend's kernels on views of
 *   the same memory, so the oracle's semantics hold bit for bit.
 */
import type {
  Backend, BackendBuffer, BackendStats, BinaryOp, BufferView, CompareOp, LogicalOp, ReduceOp, UnaryOp,
} from '../backend.js';
import { binary as jsBinary, castTyped, unary as jsUnary, where as jsWhere } from '../cpu/elementwise.js';
import { matmul as jsMatmul } from '../cpu/matmul.js';
import { clampedStart, scatterAdd as jsScatterAdd } from '../cpu/movement.js';
import { reduce as jsReduce } from '../cpu/reduce.js';
import { copyStrided } from '../cpu/strided.js';
import { DTYPES, type DType, type TypedArray } from '../dtype.js';
import { fusedOutputSize, type FusedKernel, type FusedNode } from '../fused.js';
import { runFusedReference } from '../fused-reference.js';
import { broadcastStrides, sizeOf, stridesOf, type Shape } from '../shape.js';
import { bitsToUnitFloat, fillUniformFloat32, threefry2x32 } from '../threefry.js';
import { MAX_PAGES, RESERVED_BYTES, WasmBuffer, WasmHeap, type HeapStats } from './heap.js';
import { KernelCache } from './kernels.js';
import { DEFAULT_GEMM, gemmScratch } from './matmul.js';
import { relaxedProbeBytes, type StaticVariant } from './static-module.js';
import { STATIC_KERNELS } from './static-kernels.generated.js';
import { CONTROL_BYTES, MAX_CHUNKS, MAX_WORKERS, ThreadPool, workerThreadsSync, type KernelFunction } from './threads.js';

const BYTES: Record<DType, number> = { float32: 4, int32: 4, bool: 1, float64: 8 };
const ARITH = new Set<string>(['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum']);

export interface WasmBackendOptions {
  /** Initial memory in 64 KiB pages (it grows on demand up to 4 GiB). */
  initialPages?: number;
  /**
   * Threads that compute together (this one plus workers over shared memory). Default: the
   * SOFTGRAD_THREADS environment variable, else min(4, available cores). Results are the same
   * for any count. Without worker threads (browsers) it is 1.
   */
  threads?: number;
}

/** Loop points below which a kernel is not worth splitting across threads (a hand-off costs a few µs). */
const PARALLEL_MIN_POINTS = 32768;
/** Multiply-adds below which a matmul runs on one thread. */
const PARALLEL_MIN_MACS = 1 << 18;
/**
 * Chunks per thread a split call is cut into: threads claim them as they come free, so a
 * worker that starts late or is descheduled for a while costs a chunk, not half the call.
 */
const CHUNKS_PER_THREAD = 3;

function defaultThreads(): number {
  const env = typeof process !== 'undefined' ? process.env?.['SOFTGRAD_THREADS'] : undefined;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1) throw new Error(`SOFTGRAD_THREADS=${env}: expected a positive integer`);
    return n;
  }
  const os = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule?.('node:os') as
    { availableParallelism?: () => number } | undefined;
  return Math.max(1, Math.min(4, os?.availableParallelism?.() ?? 1));
}

export interface WasmBackendStats extends BackendStats, HeapStats {
  compiledKernels: number;
  /** Milliseconds spent generating and compiling fused kernels (new shapes cost this once each). */
  kernelCompileMs: number;
}

export class WasmBackend implements Backend {
  readonly name = 'wasm';
  /** float64 runs the JS kernels op by op: fusing it would gain nothing. */
  readonly fusedDTypes: readonly DType[] = ['float32', 'int32', 'bool'];
  readonly heap: WasmHeap;
  readonly threads: number;
  /** Whether the runtime has relaxed SIMD (then matmul uses fused multiply-adds). */
  readonly relaxedSimd: boolean;
  private readonly kernels: KernelCache;
  private readonly pool: ThreadPool | null;
  private readonly gemm: KernelFunction;
  private readonly gemmBatched: KernelFunction;
  private readonly gemv: KernelFunction;
  private readonly scatterAddF32: (...args: number[]) => void;
  /** Packing scratch per chunk of a split call. */
  private readonly scratch: { packA: number; packB: number; tile: number }[] = [];
  private readonly registered = new WeakMap<WebAssembly.Module, KernelFunction>();

  constructor(options: WasmBackendOptions = {}) {
    const wanted = options.threads ?? defaultThreads();
    if (!Number.isInteger(wanted) || wanted < 1 || wanted > MAX_WORKERS + 1) throw new Error(`wasm backend: threads must be an integer from 1 to ${MAX_WORKERS + 1}, got ${wanted}`);
    const wt = wanted > 1 ? workerThreadsSync() : undefined;
    const shared = wt !== undefined && typeof SharedArrayBuffer !== 'undefined';
    this.heap = new WasmHeap(shared, options.initialPages ?? 64);
    if (CONTROL_BYTES > RESERVED_BYTES) throw new Error('internal: the thread pool\'s control area does not fit the reserved bytes');
    this.pool = shared ? ThreadPool.create(wt, this.heap.memory, wanted, 0) : null;
    this.threads = this.pool?.threads ?? 1;
    const memoryImport = { module: 'env', name: 'memory', initial: 1, maximum: MAX_PAGES, shared: this.heap.shared };
    this.kernels = new KernelCache(this.heap.memory, memoryImport);
    this.relaxedSimd = WebAssembly.validate(relaxedProbeBytes() as BufferSource);
    const variant: StaticVariant = `${this.relaxedSimd ? 'relaxed' : 'simd'}${this.heap.shared ? '-shared' : ''}`;
    const module = new WebAssembly.Module(decodeBase64(STATIC_KERNELS[variant]!) as BufferSource);
    const inst = new WebAssembly.Instance(module, { env: { memory: this.heap.memory } });
    this.gemm = this.kernelFunction(module, 'gemm', inst.exports['gemm'] as (...args: number[]) => void);
    this.gemv = this.kernelFunction(module, 'gemv', inst.exports['gemv'] as (...args: number[]) => void);
    this.gemmBatched = this.kernelFunction(module, 'gemmBatched', inst.exports['gemmBatched'] as (...args: number[]) => void);
    this.scatterAddF32 = inst.exports['scatterAddF32'] as (...args: number[]) => void;
    // Packing scratch per chunk (any thread may run any chunk of a call).
    const sc = gemmScratch(DEFAULT_GEMM);
    for (let t = 0; t < (this.pool ? this.chunkCount(Infinity) : 1); t++) {
      this.scratch.push({ packA: this.heap.reserve(sc.packA * 4), packB: this.heap.reserve(sc.packB * 4), tile: this.heap.reserve(sc.tile * 4) });
    }
  }

  private kernelFunction(module: WebAssembly.Module, name: string, fn: (...args: number[]) => void): KernelFunction {
    return this.pool ? this.pool.register(module, name, fn) : { id: -1, module, name, fn };
  }

  /** Chunks for a call worth splitting: a few per thread, at most MAX_CHUNKS and at most `units`. */
  private chunkCount(units: number): number {
    return Math.max(1, Math.min(units, this.threads * CHUNKS_PER_THREAD, MAX_CHUNKS));
  }

  /** Runs `k` over [0, extent) of its last two arguments, split across threads when worth it. */
  private runSplit(k: KernelFunction, head: readonly number[], extent: number, work: number, align: number): void {
    const C = this.pool && extent >= 2 && work >= PARALLEL_MIN_POINTS ? this.chunkCount(Math.ceil(extent / align)) : 1;
    if (C === 1) {
      k.fn(...head, 0, extent);
      return;
    }
    const chunk = Math.ceil(extent / C / align) * align;
    const args: number[][] = [];
    for (let b = 0; b < extent; b += chunk) args.push([...head, b, Math.min(extent, b + chunk)]);
    this.pool!.run(k, args);
  }

  /** Stops the worker threads (the backend must not be used afterwards). */
  destroy(): void {
    this.pool?.destroy();
  }

  supportsDType(dtype: DType): boolean {
    return DTYPES.includes(dtype);
  }

  // ------------------------------------------------------------------ buffers

  private own(buf: BackendBuffer, op: string): WasmBuffer {
    if (!(buf instanceof WasmBuffer)) throw new Error(`${op}: input is not a wasm backend buffer`);
    if (buf.freed) throw new Error(`${op}: input buffer was already freed`);
    return buf;
  }

  private alloc(size: number, dtype: DType): WasmBuffer {
    return this.heap.alloc(size * BYTES[dtype]);
  }

  /** A typed-array view of `size` elements of a buffer (valid until the memory grows). */
  view(buf: BackendBuffer, dtype: DType, size: number, op = 'view'): TypedArray {
    const b = this.own(buf, op);
    const mem = this.heap.memory.buffer;
    switch (dtype) {
      case 'float32': return new Float32Array(mem, b.ptr, size);
      case 'float64': return new Float64Array(mem, b.ptr, size);
      case 'int32': return new Int32Array(mem, b.ptr, size);
      case 'bool': return new Uint8Array(mem, b.ptr, size);
    }
  }

  private data(x: BufferView, op: string): TypedArray {
    return this.view(x.buf, x.dtype, sizeOf(x.shape), op);
  }

  /** Copies a JS-computed result into a new buffer. */
  private adopt(data: TypedArray, dtype: DType): WasmBuffer {
    const out = this.alloc(data.length, dtype);
    this.view(out, dtype, data.length).set(data as never);
    return out;
  }

  fromTyped(data: TypedArray, dtype: DType): BackendBuffer {
    const out = this.alloc(data.length, dtype);
    const v = this.view(out, dtype, data.length);
    if (dtype === 'bool') for (let i = 0; i < data.length; i++) v[i] = data[i] ? 1 : 0;
    else if (data instanceof Uint8Array || dtype !== dtypeOf(data)) v.set(castTyped(data, dtypeOf(data), dtype) as never);
    else v.set(data as never);
    return out;
  }

  full(size: number, dtype: DType, value: number): BackendBuffer {
    const out = this.alloc(size, dtype);
    const v = dtype === 'bool' ? (value !== 0 ? 1 : 0) : dtype === 'int32' ? Math.trunc(value) : value;
    this.view(out, dtype, size).fill(v);
    return out;
  }

  async read(buf: BackendBuffer, dtype: DType, size: number): Promise<TypedArray> {
    return this.readSync(buf, dtype, size);
  }

  readSync(buf: BackendBuffer, dtype: DType, size: number): TypedArray {
    const b = this.own(buf, 'read');
    if (size * BYTES[dtype] > b.bytes) throw new Error(`wasm backend: read of ${size} ${dtype} elements from a buffer of ${b.bytes} bytes`);
    return this.view(b, dtype, size).slice();
  }

  free(buf: BackendBuffer): void {
    if (!(buf instanceof WasmBuffer)) throw new Error('wasm backend: free of a buffer this backend did not allocate');
    this.heap.free(buf);
  }

  stats(): WasmBackendStats {
    const h = this.heap.stats();
    return { ...h, compiledKernels: this.kernels.size, kernelCompileMs: this.kernels.compileMs };
  }

  // ------------------------------------------------------------------ fused kernels

  runFused(kernel: FusedKernel, inputs: readonly BackendBuffer[]): BackendBuffer[] {
    const ins = inputs.map((b) => this.own(b, 'runFused'));
    const outs = kernel.outputs.map((o) => this.alloc(fusedOutputSize(kernel, o), o.dtype));
    if (sizeOf(kernel.shape) === 0) {
      // An empty space: elementwise outputs are empty, sums over nothing are 0.
      kernel.outputs.forEach((o, j) => {
        if (o.reduce) this.view(outs[j]!, o.dtype, fusedOutputSize(kernel, o)).fill(0);
      });
      return outs;
    }
    const c = this.kernels.get(kernel);
    if (!c) {
      const results = runFusedReference(kernel, ins.map((b, i) => this.whole(b, kernel.inputs[i]!.dtype)));
      results.forEach((r, j) => this.view(outs[j]!, kernel.outputs[j]!.dtype, r.length).set(r as never));
      return outs;
    }
    let kf = this.registered.get(c.module);
    if (!kf) {
      kf = this.kernelFunction(c.module, 'k', c.fn);
      this.registered.set(c.module, kf);
    }
    const p = c.plan;
    const innerParallel = p.parallelDim === p.dims.length - 1;
    this.runSplit(kf, [...ins.map((b) => b.ptr), ...outs.map((b) => b.ptr)], p.parallelExtent, p.parallelExtent * c.workPerUnit, innerParallel ? 4 : 1);
    return outs;
  }

  /** Every element a buffer holds, as its dtype (for kernels reading it through strides). */
  private whole(b: WasmBuffer, dtype: DType): TypedArray {
    return this.view(b, dtype, Math.floor(b.bytes / BYTES[dtype]));
  }

  private elementwise(shape: Shape, operands: readonly BufferView[], node: (loads: number[]) => FusedNode[], outDtype: DType): BackendBuffer {
    const nodes: FusedNode[] = operands.map((x, i) => ({ kind: 'input', input: i, dtype: x.dtype }));
    const extra = node(operands.map((_, i) => i));
    nodes.push(...extra);
    const kernel: FusedKernel = {
      shape: [...shape],
      reduceAxes: [],
      inputs: operands.map((x) => ({ dtype: x.dtype, offset: 0, strides: broadcastStrides(x.shape, shape) })),
      nodes,
      outputs: [{ node: nodes.length - 1, dtype: outDtype }],
    };
    return this.runFused(kernel, operands.map((x) => x.buf))[0]!;
  }

  // ------------------------------------------------------------------ elementwise

  unary(op: UnaryOp, x: BufferView): BackendBuffer {
    if (x.dtype === 'float64') return this.adopt(jsUnary(op, x, this.data(x, op)), x.dtype);
    return this.elementwise(x.shape, [x], () => [{ kind: 'unary', op, a: 0, dtype: x.dtype }], x.dtype);
  }

  binary(op: BinaryOp | CompareOp | LogicalOp, a: BufferView, b: BufferView, outShape: Shape): BackendBuffer {
    const outDtype: DType = ARITH.has(op) ? a.dtype : 'bool';
    if (a.dtype === 'float64') return this.adopt(jsBinary(op, a, this.data(a, op), b, this.data(b, op), outShape), outDtype);
    return this.elementwise(outShape, [a, b], () => [{ kind: 'binary', op, a: 0, b: 1, dtype: outDtype }], outDtype);
  }

  where(cond: BufferView, a: BufferView, b: BufferView, outShape: Shape): BackendBuffer {
    if (a.dtype === 'float64') {
      return this.adopt(jsWhere(cond, this.data(cond, 'where'), a, this.data(a, 'where'), b, this.data(b, 'where'), outShape), a.dtype);
    }
    return this.elementwise(outShape, [cond, a, b], () => [{ kind: 'where', cond: 0, a: 1, b: 2, dtype: a.dtype }], a.dtype);
  }

  cast(x: BufferView, dtype: DType): BackendBuffer {
    if (x.dtype === 'float64' || dtype === 'float64') return this.adopt(castTyped(this.data(x, 'cast'), x.dtype, dtype), dtype);
    return this.elementwise(x.shape, [x], () => [{ kind: 'cast', a: 0, dtype }], dtype);
  }

  reduce(op: ReduceOp, x: BufferView, axes: readonly number[]): BackendBuffer {
    if (x.dtype === 'float64' || x.dtype === 'bool') return this.adopt(jsReduce(op, x, this.data(x, op), axes), op === 'argmax' || op === 'argmin' ? 'int32' : x.dtype);
    const dtype: DType = op === 'argmax' || op === 'argmin' ? 'int32' : x.dtype;
    const kernel: FusedKernel = {
      shape: [...x.shape],
      reduceAxes: [...axes],
      inputs: [{ dtype: x.dtype, offset: 0, strides: stridesOf(x.shape) }],
      nodes: [{ kind: 'input', input: 0, dtype: x.dtype }],
      outputs: [{ node: 0, reduce: op, dtype }],
    };
    return this.runFused(kernel, [x.buf])[0]!;
  }

  // ------------------------------------------------------------------ matmul

  matmul(a: BufferView, b: BufferView, transA: boolean, transB: boolean, batchShape: Shape): BackendBuffer {
    if (a.dtype !== 'float32') return this.adopt(jsMatmul(a, this.data(a, 'matmul'), b, this.data(b, 'matmul'), transA, transB, batchShape), a.dtype);
    const ra = a.shape.length;
    const rb = b.shape.length;
    const M = transA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
    const K = transA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
    const N = transB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
    const nBatch = sizeOf(batchShape);
    const out = this.alloc(nBatch * M * N, 'float32');
    if (nBatch * M * N === 0) return out;
    const pa = this.own(a.buf, 'matmul').ptr;
    const pb = this.own(b.buf, 'matmul').ptr;
    if (K === 0) {
      this.view(out, 'float32', nBatch * M * N).fill(0);
      return out;
    }
    const ars = transA ? 1 : K;
    const acs = transA ? M : 1;
    const brs = transB ? 1 : N;
    const bcs = transB ? K : 1;
    const aBatch = a.shape.slice(0, ra - 2);
    const bBatch = b.shape.slice(0, rb - 2);
    // x[b, M, K] · w[K, N]: the batch rows of A are contiguous, so one product packs w once.
    if (!transA && sizeOf(bBatch) === 1 && sizeOf(aBatch) === nBatch) {
      this.product(nBatch * M, N, K, pa, ars, acs, pb, brs, bcs, out.ptr);
      return out;
    }
    const aStr = broadcastStrides(aBatch, batchShape);
    const bStr = broadcastStrides(bBatch, batchShape);
    const rank = batchShape.length;
    const idx = new Array<number>(rank).fill(0);
    let aOff = 0;
    let bOff = 0;
    const items: number[] = [];
    for (let t = 0; t < nBatch; t++) {
      items.push(pa + aOff * M * K * 4, pb + bOff * K * N * 4, out.ptr + t * M * N * 4);
      for (let d = rank - 1; d >= 0; d--) {
        aOff += aStr[d]!;
        bOff += bStr[d]!;
        if (++idx[d]! < batchShape[d]!) break;
        aOff -= aStr[d]! * batchShape[d]!;
        bOff -= bStr[d]! * batchShape[d]!;
        idx[d] = 0;
      }
    }
    // Products big enough to split go one by one across threads; many small ones are split by item.
    if (M === 1 || N === 1 || M * N * K >= PARALLEL_MIN_MACS || !this.pool) {
      for (let t = 0; t < nBatch; t++) this.product(M, N, K, items[3 * t]!, ars, acs, items[3 * t + 1]!, brs, bcs, items[3 * t + 2]!);
      return out;
    }
    const table = this.heap.alloc(items.length * 4);
    this.view(table, 'int32', items.length).set(items);
    const C = nBatch * M * N * K >= PARALLEL_MIN_MACS ? this.chunkCount(nBatch) : 1;
    const chunk = Math.ceil(nBatch / C);
    const args: number[][] = [];
    for (let i0 = 0, t = 0; i0 < nBatch; i0 += chunk, t++) {
      const s = this.scratch[t]!;
      args.push([M, N, K, ars, acs, brs, bcs, table.ptr, s.packA, s.packB, s.tile, i0, Math.min(nBatch, i0 + chunk)]);
    }
    if (args.length === 1) this.gemmBatched.fn(...args[0]!);
    else this.pool.run(this.gemmBatched, args);
    this.heap.free(table);
    return out;
  }

  /** C[M,N] (contiguous at c) = A·B for one matrix pair (byte pointers, element strides). */
  private product(M: number, N: number, K: number, a: number, ars: number, acs: number, b: number, brs: number, bcs: number, c: number): void {
    const macs = M * N * K;
    if (M === 1) {
      this.runSplit(this.gemv, [N, K, a, acs, b, brs, bcs, c], N, macs >= PARALLEL_MIN_MACS ? Infinity : 0, 4);
      return;
    }
    if (N === 1) {
      // c = A·b is the one-row product bᵀ·Aᵀ.
      this.runSplit(this.gemv, [M, K, b, brs, a, acs, ars, c], M, macs >= PARALLEL_MIN_MACS ? Infinity : 0, 4);
      return;
    }
    const nr = DEFAULT_GEMM.nv * 4;
    const mr = DEFAULT_GEMM.mr;
    const call = (t: number, m0: number, m1: number, n0: number, n1: number): number[] => {
      const s = this.scratch[t]!;
      return [M, N, K, a, ars, acs, b, brs, bcs, c, N, s.packA, s.packB, s.tile, m0, m1, n0, n1];
    };
    if (!this.pool || macs < PARALLEL_MIN_MACS) {
      this.gemm.fn(...call(0, 0, M, 0, N));
      return;
    }
    // Split the wider of N and M into panel-aligned ranges; each C element is summed in one order.
    const args: number[][] = [];
    const byColumns = N / nr >= M / mr;
    const panel = byColumns ? nr : mr;
    const extent = byColumns ? N : M;
    // One range per thread: each range packs all of the other operand, so finer ranges would
    // repeat that packing (a weight gradient's [K = tokens, N] panel is most of a megabyte).
    const chunk = Math.ceil(extent / Math.min(this.threads, Math.ceil(extent / panel)) / panel) * panel;
    for (let x0 = 0, t = 0; x0 < extent; x0 += chunk, t++) {
      const x1 = Math.min(extent, x0 + chunk);
      args.push(byColumns ? call(t, 0, M, x0, x1) : call(t, x0, x1, 0, N));
    }
    this.pool.run(this.gemm, args);
  }

  // ------------------------------------------------------------------ movement

  private copy(x: BufferView, outSize: number, shape: Shape, srcOff: number, srcStrides: readonly number[], dstOff: number, dstStrides: readonly number[], zero = false): WasmBuffer {
    const out = this.alloc(outSize, x.dtype);
    const dst = this.view(out, x.dtype, outSize);
    if (zero) dst.fill(0);
    copyStrided(shape, this.data(x, 'copy'), srcOff, srcStrides, dst, dstOff, dstStrides);
    return out;
  }

  /**
   * Copy kernels by layout: a jitted program's slices and transposes run the same few every
   * call, and a kernel object seen before skips planning and keying (KernelCache.get).
   */
  private readonly copyKernels = new Map<string, FusedKernel>();

  /** out (contiguous, `shape`) = x read at offset + Σ index·strides: a copy kernel from the code generator. */
  private gatherCopy(x: BufferView, shape: Shape, offset: number, strides: number[]): BackendBuffer {
    if (x.dtype === 'float64') return this.copy(x, sizeOf(shape), shape, offset, strides, 0, stridesOf(shape));
    const key = `${x.dtype}|${shape.join(',')}|${offset}|${strides.join(',')}`;
    let kernel = this.copyKernels.get(key);
    if (!kernel) {
      kernel = {
        shape: [...shape], reduceAxes: [], inputs: [{ dtype: x.dtype, offset, strides }],
        nodes: [{ kind: 'input', input: 0, dtype: x.dtype }], outputs: [{ node: 0, dtype: x.dtype }],
      };
      if (this.copyKernels.size >= 4096) this.copyKernels.clear();
      this.copyKernels.set(key, kernel);
    }
    return this.runFused(kernel, [x.buf])[0]!;
  }

  transpose(x: BufferView, perm: readonly number[]): BackendBuffer {
    const xs = stridesOf(x.shape);
    return this.gatherCopy(x, perm.map((p) => x.shape[p]!), 0, perm.map((p) => xs[p]!));
  }

  broadcastTo(x: BufferView, shape: Shape): BackendBuffer {
    return this.gatherCopy(x, shape, 0, broadcastStrides(x.shape, shape));
  }

  slice(x: BufferView, starts: readonly number[], sizes: readonly number[]): BackendBuffer {
    const xs = stridesOf(x.shape);
    return this.gatherCopy(x, sizes, starts.reduce((a, s, i) => a + s * xs[i]!, 0), xs);
  }

  pad(x: BufferView, before: readonly number[], after: readonly number[]): BackendBuffer {
    const outShape = x.shape.map((d, i) => before[i]! + d + after[i]!);
    const os = stridesOf(outShape);
    const off = before.reduce((a, s, i) => a + s * os[i]!, 0);
    return this.copy(x, sizeOf(outShape), x.shape, 0, stridesOf(x.shape), off, os, true);
  }

  concat(xs: readonly BufferView[], axis: number): BackendBuffer {
    const first = xs[0]!;
    const outShape = [...first.shape];
    outShape[axis] = xs.reduce((s, v) => s + v.shape[axis]!, 0);
    const os = stridesOf(outShape);
    const n = sizeOf(outShape);
    const out = this.alloc(n, first.dtype);
    let at = 0;
    for (const v of xs) {
      // Views are made after the allocation: it may have grown the memory.
      copyStrided(v.shape, this.data(v, 'concat'), 0, stridesOf(v.shape), this.view(out, first.dtype, n), at * os[axis]!, os);
      at += v.shape[axis]!;
    }
    return out;
  }

  gather(x: BufferView, indices: BufferView, axis: number): BackendBuffer {
    if (indices.dtype !== 'int32') throw new Error(`gather: indices must be int32, got ${indices.dtype}`);
    const shape = x.shape;
    const outer = sizeOf(shape.slice(0, axis));
    const d = shape[axis]!;
    const inner = sizeOf(shape.slice(axis + 1));
    // A copy: the allocation below may grow the memory under a view of it.
    const idx = checkIndices('gather', this.data(indices, 'gather') as Int32Array, d).slice();
    const n = outer * idx.length * inner;
    const out = this.alloc(n, x.dtype);
    // Rows are moved within the one memory (memmove), views taken after the allocation.
    const src = this.own(x.buf, 'gather').ptr / BYTES[x.dtype];
    const dst = out.ptr / BYTES[x.dtype];
    const mem = x.dtype === 'float64' ? this.heap.f64 : x.dtype === 'bool' ? this.heap.u8 : this.heap.i32;
    let o = dst;
    for (let a = 0; a < outer; a++) {
      const base = src + a * d * inner;
      for (let j = 0; j < idx.length; j++) {
        const from = base + idx[j]! * inner;
        if (inner === 1) mem[o] = mem[from]!;
        else mem.copyWithin(o, from, from + inner);
        o += inner;
      }
    }
    return out;
  }

  private scatterScratch = new Float64Array(0);

  scatterAdd(updates: BufferView, indices: BufferView, axis: number, outShape: Shape): BackendBuffer {
    if (indices.dtype !== 'int32') throw new Error(`scatterAdd: indices must be int32, got ${indices.dtype}`);
    if (updates.dtype === 'bool') {
      return this.adopt(jsScatterAdd(updates, this.data(updates, 'scatterAdd'), indices, this.data(indices, 'scatterAdd'), axis, outShape), 'bool');
    }
    const outer = sizeOf(outShape.slice(0, axis));
    const d = outShape[axis]!;
    const inner = sizeOf(outShape.slice(axis + 1));
    const nIdx = sizeOf(indices.shape);
    checkIndices('scatterAdd', this.data(indices, 'scatterAdd') as Int32Array, d);
    const n = outer * d * inner;
    if (sizeOf(updates.shape) !== outer * nIdx * inner) {
      throw new Error(`scatterAdd: updates [${updates.shape.join(',')}] do not match [${outShape.join(',')}] with ${nIdx} indices on axis ${axis}`);
    }
    if (updates.dtype === 'float32') {
      // Sequential accumulation in index order (deterministic), in doubles so repeated float32
      // updates round once, as the CPU backend does.
      const acc = this.heap.alloc(n * 8 + 16);
      const out = this.alloc(n, 'float32');
      this.scatterAddF32(acc.ptr, this.own(updates.buf, 'scatterAdd').ptr, this.own(indices.buf, 'scatterAdd').ptr, outer, d, nIdx, inner, out.ptr);
      this.heap.free(acc);
      return out;
    }
    const idx = (this.data(indices, 'scatterAdd') as Int32Array).slice();
    const u = this.data(updates, 'scatterAdd');
    let acc: Int32Array | Float64Array;
    if (updates.dtype === 'int32') {
      acc = scatterRows(new Int32Array(n), u as Int32Array, idx, outer, d, inner);
    } else {
      // float64: the double accumulator is kept between calls.
      if (this.scatterScratch.length < n) this.scatterScratch = new Float64Array(n);
      acc = this.scatterScratch.subarray(0, n);
      acc.fill(0);
      scatterRows(acc, u as Float64Array, idx, outer, d, inner);
    }
    const out = this.alloc(n, updates.dtype);
    this.view(out, updates.dtype, n).set(acc as never);
    return out;
  }

  randomUniform(key: readonly [number, number], size: number, dtype: DType): BackendBuffer {
    if (dtype !== 'float32' && dtype !== 'float64') throw new Error(`randomUniform: dtype must be float32 or float64, got ${dtype}`);
    const out = this.alloc(size, dtype);
    const v = this.view(out, dtype, size);
    if (dtype === 'float32') {
      fillUniformFloat32(key, v as Float32Array);
      return out;
    }
    for (let p = 0; 2 * p < size; p++) {
      const [x0, x1] = threefry2x32(key[0], key[1], p, 0);
      v[2 * p] = bitsToUnitFloat(x0);
      if (2 * p + 1 < size) v[2 * p + 1] = bitsToUnitFloat(x1);
    }
    return out;
  }

  private index(index: BufferView, op: string): number {
    if (index.dtype !== 'int32' || sizeOf(index.shape) !== 1) throw new Error(`${op}: index must be one int32`);
    return this.data(index, op)[0]!;
  }

  dynamicSlice(x: BufferView, index: BufferView, axis: number, size: number): BackendBuffer {
    const start = clampedStart(this.index(index, 'dynamicSlice'), x.shape[axis]!, size);
    const xs = stridesOf(x.shape);
    const sizes = x.shape.map((d, i) => (i === axis ? size : d));
    return this.copy(x, sizeOf(sizes), sizes, start * xs[axis]!, xs, 0, stridesOf(sizes));
  }

  dynamicUpdateSlice(x: BufferView, update: BufferView, index: BufferView, axis: number, reuse: boolean): BackendBuffer {
    const start = clampedStart(this.index(index, 'dynamicUpdateSlice'), x.shape[axis]!, update.shape[axis]!);
    const n = sizeOf(x.shape);
    let out: WasmBuffer;
    if (reuse) {
      out = this.own(x.buf, 'dynamicUpdateSlice');
    } else {
      out = this.alloc(n, x.dtype);
      this.view(out, x.dtype, n).set(this.data(x, 'dynamicUpdateSlice') as never);
    }
    const os = stridesOf(x.shape);
    copyStrided(update.shape, this.data(update, 'dynamicUpdateSlice'), 0, stridesOf(update.shape), this.view(out, x.dtype, n), start * os[axis]!, os);
    return out;
  }
}

/** Each index checked against the axis size, before anything is allocated or written. */
function checkIndices(op: string, idx: Int32Array, d: number): Int32Array {
  for (let j = 0; j < idx.length; j++) {
    const i = idx[j]!;
    if (i < 0 || i >= d) throw new Error(`${op}: index ${i} out of range [0, ${d})`);
  }
  return idx;
}

/** acc[a, idx[j], :] += u[a, j, :] in index order; one monomorphic loop per array type. */
function scatterRows<A extends Int32Array | Float64Array>(acc: A, u: ArrayLike<number>, idx: Int32Array, outer: number, d: number, inner: number): A {
  let p = 0;
  for (let a = 0; a < outer; a++) {
    const base = a * d * inner;
    for (let j = 0; j < idx.length; j++) {
      const at = base + idx[j]! * inner;
      for (let t = 0; t < inner; t++) acc[at + t] += u[p++]!;
    }
  }
  return acc;
}

function decodeBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function dtypeOf(a: TypedArray): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof Int32Array) return 'int32';
  return 'bool';
}

export function createWasmBackend(options: WasmBackendOptions = {}): WasmBackend {
  return new WasmBackend(options);
}
