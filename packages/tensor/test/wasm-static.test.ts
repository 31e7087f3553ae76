/**
 * The checked-in static kernels are what their sources assemble to today, and the backend
 * picks the variant its runtime supports.
 */
import { describe, expect, it } from 'vitest';
import { STATIC_KERNELS } from '../src/wasm/static-kernels.generated.js';
import { relaxedProbeBytes, STATIC_VARIANTS, staticModuleBytes } from '../src/wasm/static-module.js';

describe('static WebAssembly kernels', () => {
  it('static-kernels.generated.ts matches src/wasm/static-module.ts (run npm run build when this fails)', () => {
    expect(Object.keys(STATIC_KERNELS).sort()).toEqual([...STATIC_VARIANTS].sort());
    for (const v of STATIC_VARIANTS) expect(STATIC_KERNELS[v], v).toBe(Buffer.from(staticModuleBytes(v)).toString('base64'));
  });

  it('every variant this runtime can run validates, and the relaxed ones exactly when relaxed SIMD is there', () => {
    const relaxed = WebAssembly.validate(relaxedProbeBytes() as BufferSource);
    for (const v of STATIC_VARIANTS) {
      const ok = WebAssembly.validate(Buffer.from(STATIC_KERNELS[v]!, 'base64'));
      expect(ok, v).toBe(v.startsWith('relaxed') ? relaxed : true);
    }
  });
});
