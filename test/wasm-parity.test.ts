/**
 * The WebAssembly CPU backend against the JS CPU backend (the oracle): every kernel on random
 * shapes and values, and random fused kernels against their reference meaning.
 */
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '@softgrad/tensor';
import { WasmBackend } from '../packages/tensor/src/wasm/backend.js';
import { describeKernelParity } from './support/backend-parity.js';
import { seededValues } from './support/numeric.js';

const wasm = new WasmBackend();
describeKernelParity('wasm', () => wasm, { fused: true, wideRange: true });

describe('wasm scatterAdd', () => {
  it('float32 rows accumulate in doubles and round once, bit for bit as on the JS backend', async () => {
    const cpu = createCpuBackend();
    // Rows of 1, 2, 3 and 5 floats (the vector loop, its odd tail), most rows hit many times.
    for (const [outer, d, inner, nIdx] of [[1, 7, 1, 50], [3, 5, 2, 41], [2, 4, 3, 33], [1, 300, 5, 1000]] as const) {
      const u = seededValues(outer * 31 + inner, outer * nIdx * inner, -1e3, 1e3);
      const idx = Int32Array.from({ length: nIdx }, (_, j) => (j * 7 + (j >> 2)) % d);
      const run = async (be: typeof cpu | WasmBackend) => {
        const ub = be.fromTyped(u, 'float32');
        const ib = be.fromTyped(idx, 'int32');
        const out = be.scatterAdd({ buf: ub, shape: [outer, nIdx, inner], dtype: 'float32' }, { buf: ib, shape: [nIdx], dtype: 'int32' }, 1, [outer, d, inner]);
        const data = await be.read(out, 'float32', outer * d * inner);
        for (const b of [ub, ib, out]) be.free(b);
        return new Uint32Array(Float32Array.from(data).buffer);
      };
      expect(await run(wasm), `[${outer}, ${d}, ${inner}] from ${nIdx} rows`).toEqual(await run(cpu));
    }
    expect(() => wasm.scatterAdd({ buf: wasm.full(4, 'float32', 1), shape: [4], dtype: 'float32' }, { buf: wasm.fromTyped(Int32Array.of(0, 1, 9, 2), 'int32'), shape: [4], dtype: 'int32' }, 0, [3]))
      .toThrow(/index 9 out of range \[0, 3\)/);
  });
});
