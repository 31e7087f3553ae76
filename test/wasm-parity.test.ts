/**
 * The WebAssembly CPU backend against the JS CPU backend (the oracle): every kernel on random
 * shapes and values, and random fused kernels against their reference meaning.
 */
import { WasmBackend } from '../packages/tensor/src/wasm/backend.js';
import { describeKernelParity } from './support/backend-parity.js';

const wasm = new WasmBackend();
describeKernelParity('wasm', () => wasm, { fused: true, wideRange: true });
