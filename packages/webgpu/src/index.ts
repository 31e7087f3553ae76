/**
 * @softgrad/webgpu — the WebGPU backend for @softgrad/tensor, in browsers (navigator.gpu) and
 * in Node (Dawn, through the `webgpu` package).
 */
import { acquireDevice, type AcquireOptions } from './device.js';
import { WebGpuBackend, type WebGpuBackendSettings } from './webgpu-backend.js';

export {
  WebGpuBackend, WebGpuBuffer, sizeClass, instantiate, defaultMatmulVariant, DEFAULT_MATMUL_TILES,
  type MatmulTile, type MatmulVariant, type WebGpuBackendSettings,
} from './webgpu-backend.js';
export { WebGpuUnavailableError, acquireDevice, type AdapterInfo, type AcquireOptions } from './device.js';
export { WGSL } from './shaders.generated.js';

export interface CreateWebGpuBackendOptions extends AcquireOptions, WebGpuBackendSettings {
  /**
   * Compile the matmul and copy pipelines up front with createComputePipelineAsync (default
   * true). Other pipelines compile synchronously on first use and are cached by key.
   */
  precompile?: boolean;
}

/**
 * Creates a backend on `options.device`, or on a newly requested adapter and device. Throws
 * WebGpuUnavailableError, saying what to install, when there is no adapter.
 */
export async function createWebGpuBackend(options: CreateWebGpuBackendOptions = {}): Promise<WebGpuBackend> {
  const { device, adapterInfo, owned } = await acquireDevice(options);
  const backend = new WebGpuBackend(device, adapterInfo, owned, options);
  if (options.precompile ?? true) await backend.precompile([...backend.matmulSpecs(), ['elementwise/fill', {}], ['movement/copy', {}]]);
  return backend;
}
