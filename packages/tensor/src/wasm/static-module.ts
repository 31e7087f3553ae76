/**
 * The WebAssembly backend's static kernels (GEMM, GEMV and scatterAdd), assembled with our emitter. The
 * build (scripts/gen-wasm.mjs) writes the four variants — plain SIMD or relaxed SIMD, over a
 * private or a shared memory — into static-kernels.generated.ts; a test checks that file
 * against these sources. Only emit.ts, matmul.ts and scatter.ts may be imported here: the build compiles
 * this file on its own, before the rest of the package.
 */
import { ModuleBuilder } from './emit.js';
import { DEFAULT_GEMM, emitGemm } from './matmul.js';
import { emitScatterAdd } from './scatter.js';

export type StaticVariant = 'simd' | 'simd-shared' | 'relaxed' | 'relaxed-shared';

export const STATIC_VARIANTS: readonly StaticVariant[] = ['simd', 'simd-shared', 'relaxed', 'relaxed-shared'];

export function staticModuleBytes(variant: StaticVariant): Uint8Array {
  const shared = variant.endsWith('-shared');
  const m = new ModuleBuilder({ module: 'env', name: 'memory', initial: 1, maximum: 65536, shared });
  emitGemm(m, { ...DEFAULT_GEMM, relaxed: variant.startsWith('relaxed') });
  emitScatterAdd(m);
  return m.toBytes();
}

/** A tiny module using f32x4.relaxed_madd: valid exactly where the runtime has relaxed SIMD. */
export function relaxedProbeBytes(): Uint8Array {
  const m = new ModuleBuilder({ module: 'env', name: 'memory', initial: 1, maximum: 1, shared: false });
  m.func('probe', ['i32'], [], (f) => {
    const p = f.params[0]!;
    f.get(p).v128Load().get(p).v128Load().get(p).v128Load().f32x4RelaxedMadd().drop();
  });
  return m.toBytes();
}
