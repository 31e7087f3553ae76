import { describe, expect, it } from 'vitest';
import { AllocationError } from '../src/dtype.js';
import { PAGE_BYTES, WasmHeap } from '../src/wasm/heap.js';

const MiB = 2 ** 20;

describe('WasmHeap', () => {
  it('reuses a freed buffer of the same size class without growing', () => {
    const heap = new WasmHeap(false, 1, 64);
    const a = heap.alloc(1000);
    const top = heap.stats().heapBytes;
    heap.free(a);
    const b = heap.alloc(990);
    expect(b.ptr).toBe(a.ptr);
    expect(heap.stats().heapBytes).toBe(top);
  });

  it('coalesces pooled blocks of other sizes when the next buffer would pass the maximum', () => {
    const heap = new WasmHeap(false, 1, 64); // 4 MiB
    // Fill most of memory with small blocks of one class, then free them all.
    const small = Array.from({ length: 12 }, () => heap.alloc(256 * 1024));
    for (const b of small) heap.free(b);
    expect(heap.stats().liveBytes).toBe(0);
    // A class none of them belongs to: without coalescing the top would pass 4 MiB.
    const big = heap.alloc(3 * MiB);
    expect(big.ptr + big.capacity).toBeLessThanOrEqual(64 * PAGE_BYTES);
    heap.u8.fill(7, big.ptr, big.ptr + big.bytes);
    heap.free(big);
    // Pieces cut from the merged region are reused; live accounting stays exact.
    const again = [heap.alloc(MiB), heap.alloc(MiB)];
    expect(heap.stats().liveBytes).toBe(2 * MiB);
    expect(again[0]!.ptr).not.toBe(again[1]!.ptr);
    for (const b of again) heap.free(b);
  });

  it('live buffers never overlap after coalescing', () => {
    const heap = new WasmHeap(false, 1, 64);
    const sizes = [100_000, 300_000, 50_000, 700_000, 20_000, 400_000];
    let live = sizes.map((n) => heap.alloc(n));
    for (let round = 0; round < 40; round++) {
      // Free every other buffer, then allocate sizes of other classes.
      const keep = live.filter((_, i) => (i + round) % 2 === 0);
      for (const b of live) if (!keep.includes(b)) heap.free(b);
      live = keep;
      try {
        for (let k = 0; k < 3; k++) live.push(heap.alloc(sizes[(round + k) % sizes.length]! * (1 + (round % 3))));
      } catch (e) {
        expect(e).toBeInstanceOf(AllocationError);
      }
      const spans = live.map((b) => [b.ptr, b.ptr + b.capacity] as const).sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBeGreaterThanOrEqual(spans[i - 1]![1]);
      for (const [, end] of spans) expect(end).toBeLessThanOrEqual(64 * PAGE_BYTES);
    }
  });

  it('out of memory names what is live and what is free', () => {
    const heap = new WasmHeap(false, 1, 64);
    const a = heap.alloc(2 * MiB);
    expect(() => heap.alloc(3 * MiB)).toThrow(AllocationError);
    expect(() => heap.alloc(3 * MiB)).toThrow(/out of memory: 0\.00 GiB more needed with 0\.00 GiB in 1 live buffers .*holds at most 0\.00 GiB/);
    heap.free(a);
    expect(heap.alloc(3 * MiB).bytes).toBe(3 * MiB);
  });
});
