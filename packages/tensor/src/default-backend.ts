/**
 * Which CPU backend new tensors get when none is named: the WebAssembly SIMD backend (fast
 * float32, float64 through the JS kernels), or the JS backend (the oracle) when
 * SOFTGRAD_BACKEND=js or where WebAssembly SIMD is missing.
 */
import type { Backend } from './backend.js';
import { createCpuBackend } from './cpu/index.js';
import { createWasmBackend } from './wasm/backend.js';

/** A module using one v128 instruction: valid exactly where the runtime has SIMD128. */
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, 0x03, 0x02, 0x01, 0x00, 0x0a,
  0x08, 0x01, 0x06, 0x00, 0x41, 0x00, 0xfd, 0x0f, 0x0b,
]);

export type CpuBackendKind = 'wasm' | 'js';

export function defaultCpuBackendKind(): CpuBackendKind {
  const env = typeof process !== 'undefined' ? process.env?.['SOFTGRAD_BACKEND'] : undefined;
  if (env === 'js') return 'js';
  if (env !== undefined && env !== '' && env !== 'wasm') throw new Error(`SOFTGRAD_BACKEND=${env}: expected wasm or js`);
  return typeof WebAssembly !== 'undefined' && WebAssembly.validate(SIMD_PROBE) ? 'wasm' : 'js';
}

export function createDefaultCpuBackend(): Backend {
  return defaultCpuBackendKind() === 'wasm' ? createWasmBackend() : createCpuBackend();
}
