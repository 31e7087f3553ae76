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
 *
 * Size classes never share memory, so a long run that moves through many sizes (a rollout,
 * then a training step of a large model) can pool more than it uses. When the next buffer
 * would not fit under wasm32's 4 GiB, the pool is coalesced first: adjacent free blocks merge
 * into regions that any size can be cut from, and free memory at the top is given back to
 * the bump pointer. Only if that fails is the allocation an out-of-memory error.
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
  /** Coalesced free memory (start, bytes), address order; only filled when memory runs short. */
  private regions: [number, number][] = [];
  private regionBytes = 0;
  private live = 0;
  private liveBytes = 0;
  private pooled = 0;
  private u8View!: Uint8Array;
  private i32View!: Int32Array;
  private f32View!: Float32Array;
  private f64View!: Float64Array;

  /** `maximumPages` below wasm32's 65,536 only for tests of running out. */
  constructor(readonly shared: boolean, initialPages = 64, readonly maximumPages = MAX_PAGES) {
    this.memory = new WebAssembly.Memory({ initial: initialPages, maximum: maximumPages, shared });
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
      ptr = this.fromRegions(cap) ?? this.bump(cap, bytes);
    }
    this.live++;
    this.liveBytes += bytes;
    return new WasmBuffer(ptr, bytes, cap);
  }

  /** Memory the backend keeps for itself (kernel scratch): never freed, not counted as live buffers. */
  reserve(bytes: number): number {
    const cap = WasmHeap.capacityFor(bytes);
    return this.fromRegions(cap) ?? this.bump(cap, bytes);
  }

  /** New memory at the top; coalesces the pool first when the top would pass 4 GiB. */
  private bump(cap: number, bytes: number): number {
    if (this.top + cap > this.maximumPages * PAGE_BYTES) {
      this.coalesce();
      const ptr = this.fromRegions(cap);
      if (ptr !== undefined) return ptr;
    }
    const ptr = this.top;
    const end = ptr + cap;
    if (end > this.memory.buffer.byteLength) this.grow(end, bytes);
    this.top = end;
    return ptr;
  }

  /** Best fit from the coalesced regions (the smallest that holds `cap`), cut from its start. */
  private fromRegions(cap: number): number | undefined {
    let best = -1;
    for (let i = 0; i < this.regions.length; i++) {
      const size = this.regions[i]![1];
      if (size >= cap && (best < 0 || size < this.regions[best]![1])) best = i;
    }
    if (best < 0) return undefined;
    const r = this.regions[best]!;
    const ptr = r[0];
    if (r[1] === cap) this.regions.splice(best, 1);
    else {
      r[0] += cap;
      r[1] -= cap;
    }
    this.regionBytes -= cap;
    return ptr;
  }

  /** Merges every pooled block and region into address-ordered regions; free memory at the top lowers it. */
  private coalesce(): void {
    const blocks: [number, number][] = this.regions.map(([p, n]) => [p, n]);
    for (const [cap, ptrs] of this.pool) for (const p of ptrs) blocks.push([p, cap]);
    this.pool.clear();
    this.pooled = 0;
    blocks.sort((a, b) => a[0] - b[0]);
    const merged: [number, number][] = [];
    for (const [p, n] of blocks) {
      const last = merged[merged.length - 1];
      if (last && last[0] + last[1] === p) last[1] += n;
      else merged.push([p, n]);
    }
    const top = merged[merged.length - 1];
    if (top && top[0] + top[1] === this.top) {
      this.top = top[0];
      merged.pop();
    }
    this.regions = merged;
    this.regionBytes = merged.reduce((a, [, n]) => a + n, 0);
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

  private grow(end: number, bytes: number): void {
    const have = this.memory.buffer.byteLength / PAGE_BYTES;
    const need = Math.ceil(end / PAGE_BYTES);
    if (need > this.maximumPages) {
      const gib = (n: number) => (n / 2 ** 30).toFixed(2);
      const largest = this.regions.reduce((a, [, n]) => Math.max(a, n), 0);
      throw new AllocationError(
        `wasm backend: out of memory: ${gib(bytes)} GiB more needed with ${gib(this.liveBytes)} GiB in ${this.live} live buffers ` +
          `(${gib(this.regionBytes)} GiB free in pieces, the largest ${gib(largest)} GiB); WebAssembly memory holds at most ${gib(this.maximumPages * PAGE_BYTES)} GiB: ` +
          'use the JS CPU backend (createCpuBackend; SOFTGRAD_BACKEND=js for the CLI) for larger models or batches',
      );
    }
    // Grow geometrically so a long run of growing allocations costs few copies of the view.
    const target = Math.min(this.maximumPages, Math.max(need, Math.ceil(have * 1.5)));
    try {
      this.memory.grow(target - have);
    } catch {
      this.memory.grow(need - have);
    }
    this.refresh();
  }

  stats(): HeapStats {
    return { liveBuffers: this.live, liveBytes: this.liveBytes, heapBytes: this.top - this.regionBytes, pooledBuffers: this.pooled };
  }
}
