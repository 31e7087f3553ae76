/**
 * The WebAssembly backend's memory: one linear memory (shared between threads when the host
 * allows it) and an allocator over it.
 *
 * Buffers come from per-size-class free lists (four classes per power of two, so at most a
 * quarter is wasted) and are reused as soon as they are freed: training loops allocate the
 * same sizes step after step, so after the first step nothing new is allocated and nothing
 * is zero-filled. Every buffer is 64-byte aligned (no two threads write one cache line) and
 * followed by at least 64 spare bytes, so kernels may read a whole 16-byte vector (or a GEMM
 * panel row) past a buffer's last element.
 */
import { AllocationError } from '../dtype.js';

export const PAGE_BYTES = 65536;
/** wasm32 addresses 4 GiB at most. */
export const MAX_PAGES = 65536;
const ALIGN = 64;
// GEMM's in-place B panels may read up to NR − 1 = 7 floats past a row's end.
const SLACK = 64;
/** Bytes at the bottom of memory kept for the thread pool's control words and scratch. */
export const RESERVED_BYTES = 65536;

export class WasmBuffer {
  freed = false;
  constructor(readonly ptr: number, readonly bytes: number, readonly capacity: number) {}
}

export interface HeapStats {
  liveBuffers: number;
  liveBytes: number;
  /** Bytes of linear memory in use (live and pooled buffers). */
  heapBytes: number;
  pooledBuffers: number;
}

export class WasmHeap {
  readonly memory: WebAssembly.Memory;
  private top = RESERVED_BYTES;
  private readonly pool = new Map<number, number[]>();
  private live = 0;
  private liveBytes = 0;
  private pooled = 0;
  private u8View!: Uint8Array;
  private i32View!: Int32Array;
  private f32View!: Float32Array;
  private f64View!: Float64Array;

  constructor(readonly shared: boolean, initialPages = 64) {
    this.memory = new WebAssembly.Memory({ initial: initialPages, maximum: MAX_PAGES, shared });
    this.refresh();
  }

  private refresh(): void {
    const buf = this.memory.buffer;
    this.u8View = new Uint8Array(buf);
    this.i32View = new Int32Array(buf);
    this.f32View = new Float32Array(buf);
    this.f64View = new Float64Array(buf);
  }

  get u8(): Uint8Array { return this.u8View; }
  get i32(): Int32Array { return this.i32View; }
  get f32(): Float32Array { return this.f32View; }
  get f64(): Float64Array { return this.f64View; }

  /** Size class of a request: 64 bytes, then four classes per power of two. */
  static capacityFor(bytes: number): number {
    const need = bytes + SLACK;
    if (need <= ALIGN) return ALIGN;
    const octave = 2 ** Math.floor(Math.log2(need - 1));
    const step = Math.max(ALIGN, octave / 4);
    return Math.ceil(need / step) * step;
  }

  alloc(bytes: number): WasmBuffer {
    const cap = WasmHeap.capacityFor(bytes);
    const list = this.pool.get(cap);
    let ptr = list?.pop();
    if (ptr !== undefined) {
      this.pooled--;
    } else {
      ptr = this.top;
      const end = ptr + cap;
      if (end > this.memory.buffer.byteLength) this.grow(end);
      this.top = end;
    }
    this.live++;
    this.liveBytes += bytes;
    return new WasmBuffer(ptr, bytes, cap);
  }

  /** Memory the backend keeps for itself (kernel scratch): never freed, not counted as live buffers. */
  reserve(bytes: number): number {
    const ptr = this.top;
    const end = ptr + WasmHeap.capacityFor(bytes);
    if (end > this.memory.buffer.byteLength) this.grow(end);
    this.top = end;
    return ptr;
  }

  free(b: WasmBuffer): void {
    if (b.freed) throw new Error('wasm backend: buffer freed twice');
    b.freed = true;
    this.live--;
    this.liveBytes -= b.bytes;
    let list = this.pool.get(b.capacity);
    if (!list) {
      list = [];
      this.pool.set(b.capacity, list);
    }
    list.push(b.ptr);
    this.pooled++;
  }

  private grow(end: number): void {
    const have = this.memory.buffer.byteLength / PAGE_BYTES;
    const need = Math.ceil(end / PAGE_BYTES);
    if (need > MAX_PAGES) {
      throw new AllocationError(
        `wasm backend: out of memory: ${(end / 2 ** 30).toFixed(2)} GiB needed, WebAssembly memory holds at most 4 GiB; ` +
          'use the JS CPU backend (createCpuBackend) for larger models',
      );
    }
    // Grow geometrically so a long run of growing allocations costs few copies of the view.
    const target = Math.min(MAX_PAGES, Math.max(need, Math.ceil(have * 1.5)));
    try {
      this.memory.grow(target - have);
    } catch {
      this.memory.grow(need - have);
    }
    this.refresh();
  }

  stats(): HeapStats {
    return { liveBuffers: this.live, liveBytes: this.liveBytes, heapBytes: this.top, pooledBuffers: this.pooled };
  }
}
