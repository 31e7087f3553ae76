/**
 * The backend `jit` traces with. Its buffers are symbols; every kernel call appends an op to
 * the program instead of computing anything, so a traced function runs through the whole
 * frontend (validation, autodiff, scopes) without touching data. Reading a value is the one
 * thing it cannot do, and it says so.
 */
import type {
  Backend, BackendBuffer, BackendStats, BinaryOp, BufferView, CompareOp, LogicalOp, ReduceOp, TracingBackend, UnaryOp,
} from '../backend.js';
import type { DType, TypedArray } from '../dtype.js';
import type { KeyExpr } from '../random.js';
import { sizeOf, type Shape } from '../shape.js';
import { fromBuffer, type Storage, type Tensor } from '../tensor.js';
import type { Op, VarInfo, VarSource, View } from './program.js';

/** A recorder buffer: the id of a program variable. */
export class Sym {
  constructor(readonly recorder: Recorder, readonly id: number) {}
}

const ARITH = new Set<string>(['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum']);

export class Recorder implements TracingBackend {
  readonly tracing = true as const;
  readonly name: string;
  readonly vars: VarInfo[] = [];
  readonly ops: Op[] = [];
  private readonly captured = new Map<Storage, Sym>();

  constructor(readonly target: Backend, private readonly fnName: string) {
    this.name = `jit(${target.name})`;
  }

  supportsDType(dtype: DType): boolean {
    return this.target.supportsDType(dtype);
  }

  private newVar(size: number, dtype: DType, source: VarSource = { kind: 'op' }): Sym {
    this.vars.push({ size, dtype, source });
    return new Sym(this, this.vars.length - 1);
  }

  private id(buf: BackendBuffer, op: string): number {
    if (!(buf instanceof Sym) || buf.recorder !== this) {
      throw new Error(`${op}: an input does not belong to the function being traced by jit (${this.fnName})`);
    }
    return buf.id;
  }

  private view(x: BufferView, op: string): View {
    return { v: this.id(x.buf, op), shape: [...x.shape], dtype: x.dtype };
  }

  private emit(size: number, dtype: DType, make: (out: number) => Op): Sym {
    const s = this.newVar(size, dtype);
    this.ops.push(make(s.id));
    return s;
  }

  /** A symbolic tensor standing for tensor leaf `leaf` of the jitted function's arguments. */
  input(leaf: number, shape: Shape, dtype: DType): Tensor {
    return fromBuffer(this, this.newVar(sizeOf(shape), dtype, { kind: 'input', leaf }), shape, dtype);
  }

  capture<T extends { readonly backend: Backend }>(t: T): T {
    const tensor = t as unknown as Tensor;
    const storage = tensor._storage;
    let sym = this.captured.get(storage);
    if (!sym) {
      tensor.view('jit');
      storage.retain(); // released when the compiled program is disposed
      sym = this.newVar(tensor.size, tensor.dtype, { kind: 'captured', storage });
      this.captured.set(storage, sym);
    }
    return fromBuffer(this, sym, tensor.shape, tensor.dtype) as unknown as T;
  }

  /** Storage captured so far, to release if tracing fails. */
  capturedStorage(): Storage[] {
    return [...this.captured.keys()];
  }

  private readError(): Error {
    return new Error(
      `jit: ${this.fnName} read a tensor's value while being traced (data(), dataSync(), item() or toArray()); ` +
        'inside jit tensors are symbols without values. Return the tensor from the function and read it outside, ' +
        'or compute host-side values before calling the jitted function and pass them as static arguments.',
    );
  }

  async read(): Promise<TypedArray> {
    throw this.readError();
  }
  readSync(): TypedArray {
    throw this.readError();
  }
  free(): void {
    // Symbols own nothing; the executor frees real buffers by the program's last uses.
  }
  stats(): BackendStats {
    return { liveBuffers: 0, liveBytes: 0 };
  }

  fromTyped(data: TypedArray, dtype: DType): BackendBuffer {
    const copy = data.slice();
    return this.newVar(copy.length, dtype, { kind: 'const', data: copy });
  }
  full(size: number, dtype: DType, value: number): BackendBuffer {
    return this.emit(size, dtype, (out) => ({ kind: 'full', value, out }));
  }
  randomUniform(key: readonly [number, number], size: number, dtype: DType): BackendBuffer {
    return this.randomUniformKeyed({ kind: 'words', words: key }, size, dtype);
  }
  randomUniformKeyed(key: KeyExpr, size: number, dtype: DType): BackendBuffer {
    return this.emit(size, dtype, (out) => ({ kind: 'randomUniform', key, out }));
  }

  unary(op: UnaryOp, x: BufferView): BackendBuffer {
    const xv = this.view(x, op);
    return this.emit(sizeOf(x.shape), x.dtype, (out) => ({ kind: 'unary', op, x: xv, out }));
  }
  binary(op: BinaryOp | CompareOp | LogicalOp, a: BufferView, b: BufferView, outShape: Shape): BackendBuffer {
    const av = this.view(a, op);
    const bv = this.view(b, op);
    const dtype: DType = ARITH.has(op) ? a.dtype : 'bool';
    return this.emit(sizeOf(outShape), dtype, (out) => ({ kind: 'binary', op, a: av, b: bv, shape: [...outShape], out }));
  }
  where(cond: BufferView, a: BufferView, b: BufferView, outShape: Shape): BackendBuffer {
    const cv = this.view(cond, 'where');
    const av = this.view(a, 'where');
    const bv = this.view(b, 'where');
    return this.emit(sizeOf(outShape), a.dtype, (out) => ({ kind: 'where', cond: cv, a: av, b: bv, shape: [...outShape], out }));
  }
  reduce(op: ReduceOp, x: BufferView, axes: readonly number[]): BackendBuffer {
    const xv = this.view(x, op);
    const size = sizeOf(x.shape.map((d, i) => (axes.includes(i) ? 1 : d)));
    const dtype: DType = op === 'argmax' || op === 'argmin' ? 'int32' : x.dtype;
    return this.emit(size, dtype, (out) => ({ kind: 'reduce', op, x: xv, axes: [...axes], out }));
  }
  matmul(a: BufferView, b: BufferView, transA: boolean, transB: boolean, batchShape: Shape): BackendBuffer {
    const av = this.view(a, 'matmul');
    const bv = this.view(b, 'matmul');
    const m = a.shape[a.shape.length - (transA ? 1 : 2)]!;
    const n = b.shape[b.shape.length - (transB ? 2 : 1)]!;
    return this.emit(sizeOf(batchShape) * m * n, a.dtype, (out) => ({ kind: 'matmul', a: av, b: bv, transA, transB, batch: [...batchShape], out }));
  }
  transpose(x: BufferView, perm: readonly number[]): BackendBuffer {
    const xv = this.view(x, 'transpose');
    return this.emit(sizeOf(x.shape), x.dtype, (out) => ({ kind: 'transpose', x: xv, perm: [...perm], out }));
  }
  broadcastTo(x: BufferView, shape: Shape): BackendBuffer {
    const xv = this.view(x, 'broadcastTo');
    return this.emit(sizeOf(shape), x.dtype, (out) => ({ kind: 'broadcastTo', x: xv, shape: [...shape], out }));
  }
  slice(x: BufferView, starts: readonly number[], sizes: readonly number[]): BackendBuffer {
    const xv = this.view(x, 'slice');
    return this.emit(sizeOf(sizes), x.dtype, (out) => ({ kind: 'slice', x: xv, starts: [...starts], sizes: [...sizes], out }));
  }
  pad(x: BufferView, before: readonly number[], after: readonly number[]): BackendBuffer {
    const xv = this.view(x, 'pad');
    const size = sizeOf(x.shape.map((d, i) => before[i]! + d + after[i]!));
    return this.emit(size, x.dtype, (out) => ({ kind: 'pad', x: xv, before: [...before], after: [...after], out }));
  }
  concat(xs: readonly BufferView[], axis: number): BackendBuffer {
    const views = xs.map((x) => this.view(x, 'concat'));
    const size = xs.reduce((a, x) => a + sizeOf(x.shape), 0);
    return this.emit(size, xs[0]!.dtype, (out) => ({ kind: 'concat', xs: views, axis, out }));
  }
  gather(x: BufferView, indices: BufferView, axis: number): BackendBuffer {
    const xv = this.view(x, 'gather');
    const iv = this.view(indices, 'gather');
    const size = sizeOf(x.shape.slice(0, axis)) * sizeOf(indices.shape) * sizeOf(x.shape.slice(axis + 1));
    return this.emit(size, x.dtype, (out) => ({ kind: 'gather', x: xv, indices: iv, axis, out }));
  }
  scatterAdd(updates: BufferView, indices: BufferView, axis: number, outShape: Shape): BackendBuffer {
    const uv = this.view(updates, 'scatterAdd');
    const iv = this.view(indices, 'scatterAdd');
    return this.emit(sizeOf(outShape), updates.dtype, (out) => ({ kind: 'scatterAdd', updates: uv, indices: iv, axis, shape: [...outShape], out }));
  }
  cast(x: BufferView, dtype: DType): BackendBuffer {
    const xv = this.view(x, 'cast');
    return this.emit(sizeOf(x.shape), dtype, (out) => ({ kind: 'cast', x: xv, dtype, out }));
  }
  dynamicSlice(x: BufferView, index: BufferView, axis: number, size: number): BackendBuffer {
    const xv = this.view(x, 'dynamicSlice');
    const iv = this.view(index, 'dynamicSlice');
    const n = sizeOf(x.shape.map((d, i) => (i === axis ? size : d)));
    return this.emit(n, x.dtype, (out) => ({ kind: 'dynamicSlice', x: xv, index: iv, axis, size, out }));
  }
  dynamicUpdateSlice(x: BufferView, update: BufferView, index: BufferView, axis: number): BackendBuffer {
    const xv = this.view(x, 'dynamicUpdateSlice');
    const uv = this.view(update, 'dynamicUpdateSlice');
    const iv = this.view(index, 'dynamicUpdateSlice');
    return this.emit(sizeOf(x.shape), x.dtype, (out) => ({ kind: 'dynamicUpdateSlice', x: xv, update: uv, index: iv, axis, out }));
  }
}
