/**
 * Shared by the WebGPU test files: one backend per file, and the acquisition rule — with the
 * CI variable set, a missing adapter fails the suite; elsewhere the suite skips and says why.
 */
import { createWebGpuBackend, type WebGpuBackend } from '@softgrad/webgpu';

export async function acquireTestBackend(): Promise<WebGpuBackend | null> {
  try {
    return await createWebGpuBackend();
  } catch (e) {
    const reason = (e as Error).message;
    if (process.env['CI']) throw new Error(`WebGPU tests need an adapter when CI is set: ${reason}`);
    console.warn(`[WebGPU tests skipped] ${reason}`);
    return null;
  }
}

export { expectClose, expectEqual, seededInts, seededValues } from '../../../test/support/numeric.js';
