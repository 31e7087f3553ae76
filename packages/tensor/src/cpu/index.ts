/**
 * The CPU backend: the numerical oracle every other backend is tested against. Buffers are
 * plain typed arrays of their dtype; kernels compute in doubles and round on store.
 */
import type {
  Backend, BackendBuffer, BackendStats, BinaryOp, BufferView, CompareOp, LogicalOp, ReduceOp, UnaryOp,
} from '../backend.js';
import { allocTyped, DTYPES, dtypeOfTyped, type DType, type TypedArray } from '../dtype.js';
import type { Shape } from '../shape.js';
import { bitsToUnitFloat, threefry2x32 } from '../threefry.js';
import { binary, castTyped, unary, where } from './elementwise.js';
import { matmul } from './matmul.js';
import { broadcastTo, concat, dynamicSlice, gather, pad, scatterAdd, slice, transpose, writeUpdateSlice } from './movement.js';
import { reduce } from './reduce.js';

export class CpuBackend implements Backend {
  readonly name = 'cpu';
  private readonly live = new Set<TypedArray>();
  // Remembers freed buffers so a second free is reported as such rather than as a foreign buffer.
  private readonly freed = new WeakSet<TypedArray>();
  private liveBytes = 0;

  supportsDType(dtype: DType): boolean {
    return DTYPES.includes(dtype);
  }

  fromTyped(data: TypedArray, dtype: DType): BackendBuffer {
    const from = dtypeOfTyped(data);
    // A Uint8Array may hold any byte; bool storage must be exactly 0/1.
    const copy = from === dtype && dtype !== 'bool' ? data.slice() : castTyped(data, from === 'bool' ? 'int32' : from, dtype);
    return this.track(copy);
  }

  full(size: number, dtype: DType, value: number): BackendBuffer {
    const out = allocTyped(dtype, size);
    const v = dtype === 'bool' ? (value !== 0 ? 1 : 0) : dtype === 'int32' ? Math.trunc(value) : value;
    if (v !== 0) out.fill(v);
    return this.track(out);
  }

  async read(buf: BackendBuffer, dtype: DType, size: number): Promise<TypedArray> {
    return this.readSync(buf, dtype, size);
  }

  readSync(buf: BackendBuffer, dtype: DType, size: number): TypedArray {
    const data = this.data(buf, 'read');
    if (dtypeOfTyped(data) !== dtype) throw new Error(`cpu backend: read as ${dtype} of a ${dtypeOfTyped(data)} buffer`);
    if (size > data.length) throw new Error(`cpu backend: read of ${size} elements from a buffer of ${data.length}`);
    return data.slice(0, size);
  }

  free(buf: BackendBuffer): void {
    const data = buf as TypedArray;
    if (!this.live.delete(data)) {
      if (this.freed.has(data)) throw new Error('cpu backend: buffer freed twice');
      throw new Error('cpu backend: free of a buffer this backend did not allocate');
    }
    this.freed.add(data);
    this.liveBytes -= data.byteLength;
  }

  stats(): BackendStats {
    return { liveBuffers: this.live.size, liveBytes: this.liveBytes };
  }

  unary(op: UnaryOp, x: BufferView): BackendBuffer {
    return this.track(unary(op, x, this.data(x.buf, op)));
  }

  binary(op: BinaryOp | CompareOp | LogicalOp, a: BufferView, b: BufferView, outShape: Shape): BackendBuffer {
    return this.track(binary(op, a, this.data(a.buf, op), b, this.data(b.buf, op), outShape));
  }

  where(cond: BufferView, a: BufferView, b: BufferView, outShape: Shape): BackendBuffer {
    return this.track(
      where(cond, this.data(cond.buf, 'where'), a, this.data(a.buf, 'where'), b, this.data(b.buf, 'where'), outShape),
    );
  }

  reduce(op: ReduceOp, x: BufferView, axes: readonly number[]): BackendBuffer {
    return this.track(reduce(op, x, this.data(x.buf, op), axes));
  }

  matmul(a: BufferView, b: BufferView, transA: boolean, transB: boolean, batchShape: Shape): BackendBuffer {
    return this.track(matmul(a, this.data(a.buf, 'matmul'), b, this.data(b.buf, 'matmul'), transA, transB, batchShape));
  }

  transpose(x: BufferView, perm: readonly number[]): BackendBuffer {
    return this.track(transpose(x, this.data(x.buf, 'transpose'), perm));
  }

  broadcastTo(x: BufferView, shape: Shape): BackendBuffer {
    return this.track(broadcastTo(x, this.data(x.buf, 'broadcastTo'), shape));
  }

  slice(x: BufferView, starts: readonly number[], sizes: readonly number[]): BackendBuffer {
    return this.track(slice(x, this.data(x.buf, 'slice'), starts, sizes));
  }

  pad(x: BufferView, before: readonly number[], after: readonly number[]): BackendBuffer {
    return this.track(pad(x, this.data(x.buf, 'pad'), before, after));
  }

  concat(xs: readonly BufferView[], axis: number): BackendBuffer {
    return this.track(concat(xs, xs.map((x) => this.data(x.buf, 'concat')), axis));
  }

  gather(x: BufferView, indices: BufferView, axis: number): BackendBuffer {
    return this.track(gather(x, this.data(x.buf, 'gather'), indices, this.data(indices.buf, 'gather'), axis));
  }

  scatterAdd(updates: BufferView, indices: BufferView, axis: number, outShape: Shape): BackendBuffer {
    return this.track(
      scatterAdd(updates, this.data(updates.buf, 'scatterAdd'), indices, this.data(indices.buf, 'scatterAdd'), axis, outShape),
    );
  }

  cast(x: BufferView, dtype: DType): BackendBuffer {
    return this.track(castTyped(this.data(x.buf, 'cast'), x.dtype, dtype));
  }

  randomUniform(key: readonly [number, number], size: number, dtype: DType): BackendBuffer {
    if (dtype !== 'float32' && dtype !== 'float64') {
      throw new Error(`randomUniform: dtype must be float32 or float64, got ${dtype}`);
    }
    const out = allocTyped(dtype, size);
    // One threefry call yields the words of elements 2p and 2p+1 (see Backend.randomUniform).
    for (let p = 0; 2 * p < size; p++) {
      const [x0, x1] = threefry2x32(key[0], key[1], p, 0);
      out[2 * p] = bitsToUnitFloat(x0);
      if (2 * p + 1 < size) out[2 * p + 1] = bitsToUnitFloat(x1);
    }
    return this.track(out);
  }

  dynamicSlice(x: BufferView, index: BufferView, axis: number, size: number): BackendBuffer {
    return this.track(dynamicSlice(x, this.data(x.buf, 'dynamicSlice'), this.scalarIndex(index, 'dynamicSlice'), axis, size));
  }

  dynamicUpdateSlice(x: BufferView, update: BufferView, index: BufferView, axis: number, reuse: boolean): BackendBuffer {
    const xd = this.data(x.buf, 'dynamicUpdateSlice');
    const i = this.scalarIndex(index, 'dynamicUpdateSlice');
    const target = reuse ? xd : this.track(xd.slice());
    writeUpdateSlice(x, target, update, this.data(update.buf, 'dynamicUpdateSlice'), i, axis);
    return target;
  }

  private scalarIndex(index: BufferView, op: string): number {
    const d = this.data(index.buf, op);
    if (index.dtype !== 'int32' || d.length !== 1) throw new Error(`${op}: index must be one int32, got ${index.dtype} of ${d.length}`);
    return d[0]!;
  }

  private track(data: TypedArray): TypedArray {
    this.live.add(data);
    this.liveBytes += data.byteLength;
    return data;
  }

  /** The typed array behind a live buffer; using a freed buffer is a bug worth a loud error. */
  private data(buf: BackendBuffer, op: string): TypedArray {
    const data = buf as TypedArray;
    if (!this.live.has(data)) {
      throw new Error(
        this.freed.has(data) ? `${op}: input buffer was already freed` : `${op}: input is not a cpu backend buffer`,
      );
    }
    return data;
  }
}

export function createCpuBackend(): CpuBackend {
  return new CpuBackend();
}
