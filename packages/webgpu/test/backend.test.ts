/**
 * The backend's contract beyond kernel values: generated shaders are current, device loss
 * surfaces as an error, pipelines are shared across shapes, adapter info is reported.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createWebGpuBackend, defaultMatmulVariant, instantiate, sizeClass, WGSL } from '@softgrad/webgpu';
import { acquireTestBackend } from './gpu-setup.js';

const gpu = await acquireTestBackend();
afterAll(() => gpu?.destroy());

describe('WebGPU backend (no device needed)', () => {
  it('shaders.generated.ts is up to date with shaders/*.wgsl', () => {
    const script = fileURLToPath(new URL('../scripts/gen-shaders.mjs', import.meta.url));
    // Exits 1 with a message naming the command to run when the file is stale.
    expect(() => execFileSync(process.execPath, [script, '--check'], { stdio: 'pipe' })).not.toThrow();
  });

  it('every kernel template names its placeholders and nothing else is left unfilled', () => {
    expect(Object.keys(WGSL)).toContain('matmul/tiled4');
    expect(() => instantiate('elementwise/unary', {})).toThrow(/needs a value for \{\{O\}\}/);
    expect(instantiate('elementwise/fill', {})).not.toMatch(/\{\{/);
  });

  it('matmul variant: direct on software adapters, tiled on GPUs', () => {
    const info = (vendor: string, architecture: string, description: string, isFallbackAdapter = false) =>
      ({ vendor, architecture, description, isFallbackAdapter });
    expect(defaultMatmulVariant(info('mesa', 'software', 'llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)'))).toBe('direct');
    expect(defaultMatmulVariant(info('google', 'swiftshader', '', true))).toBe('direct');
    expect(defaultMatmulVariant(info('nvidia', '', 'NVIDIA: 580.159.04'))).toBe('tiled');
    expect(defaultMatmulVariant(info('', '', ''))).toBe('tiled');
    if (gpu) expect(gpu.matmulVariant).toBe(defaultMatmulVariant(gpu.adapterInfo));
  });

  it('size classes waste at most a quarter and are monotone', () => {
    let prev = 0;
    for (let b = 1; b < 1 << 22; b = Math.ceil(b * 1.07) + 3) {
      const c = sizeClass(b);
      expect(c).toBeGreaterThanOrEqual(b);
      expect(c).toBeGreaterThanOrEqual(prev);
      if (b > 256) expect(c / b).toBeLessThanOrEqual(1.25);
      expect(c % 4).toBe(0);
      prev = c;
    }
  });
});

describe.skipIf(!gpu)('WebGPU backend (device)', () => {
  it('a tensor larger than the largest storage binding is refused by name, before anything is allocated', () => {
    const limit = gpu!.device.limits.maxStorageBufferBindingSize;
    const before = gpu!.stats();
    const elements = Math.floor(limit / 4) + 1;
    expect(() => gpu!.full(elements, 'float32', 0)).toThrow(
      new RegExp(`webgpu: a tensor of ${elements} elements .* is larger than this adapter's largest storage buffer binding \\(maxStorageBufferBindingSize`));
    expect(gpu!.stats()).toEqual(before);
    // Exactly the limit still fits (its size class is capped at the limit).
    const b = gpu!.full(Math.floor(limit / 4), 'float32', 0);
    gpu!.free(b);
  });

  it('reports the adapter', () => {
    const info = gpu!.adapterInfo;
    expect(typeof info.vendor).toBe('string');
    expect(`${info.vendor}${info.architecture}${info.description}`.length).toBeGreaterThan(0);
    expect(gpu!.supportsDType('float64')).toBe(false);
    expect(() => gpu!.full(3, 'float64', 1)).toThrow(/float64 is not supported/);
  });

  it('one pipeline serves every shape', async () => {
    const before = gpu!.poolStats().pipelines;
    for (const n of [1, 7, 300, 5000]) {
      const a = gpu!.full(n, 'float32', 2);
      const b = gpu!.unary('sqrt', { buf: a, shape: [n], dtype: 'float32' });
      await gpu!.read(b, 'float32', n);
      gpu!.free(a);
      gpu!.free(b);
    }
    expect(gpu!.poolStats().pipelines - before).toBeLessThanOrEqual(1);
  });

  it('submits in batches: thousands of dispatches without a read stay correct', async () => {
    let x = gpu!.full(16, 'float32', 0);
    const one = gpu!.full(1, 'float32', 1);
    for (let i = 0; i < 1000; i++) {
      const y = gpu!.binary('add', { buf: x, shape: [16], dtype: 'float32' }, { buf: one, shape: [1], dtype: 'float32' }, [16]);
      gpu!.free(x);
      x = y;
    }
    expect(Array.from(await gpu!.read(x, 'float32', 16))).toEqual(new Array(16).fill(1000));
    gpu!.free(x);
    gpu!.free(one);
  });

  it('a lost device is an error on the next operation, not a hang', async () => {
    const be = await createWebGpuBackend({ precompile: false });
    const a = be.full(4, 'float32', 1);
    be.device.destroy();
    await be.device.lost;
    expect(() => be.unary('exp', { buf: a, shape: [4], dtype: 'float32' })).toThrow(/device lost/);
    await expect(be.read(a, 'float32', 4)).rejects.toThrow(/device lost/);
    be.destroy();
  });

  it('destroy releases everything and later calls fail clearly', async () => {
    const be = await createWebGpuBackend({ precompile: false });
    be.full(4, 'float32', 1);
    be.destroy();
    expect(() => be.full(4, 'float32', 1)).toThrow(/destroyed/);
  });
});
