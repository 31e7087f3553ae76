/**
 * The WebGPU backend in a real browser: headless Chromium (SwiftShader's Vulkan) loads the
 * TypeScript-compiled ES modules of @softgrad/webgpu and @softgrad/tensor through an import
 * map, runs kernel parity checks against the CPU backend in the page, and reports a verdict.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser } from 'playwright-core';

const root = fileURLToPath(new URL('..', import.meta.url));
const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  if (process.env['CI']) throw new Error(`the browser WebGPU test needs Chromium at ${CHROMIUM} when CI is set`);
  console.warn(`[WebGPU browser test skipped] no Chromium at ${CHROMIUM} (set CHROMIUM_PATH)`);
}

// Runs in the page. Every check compares the WebGPU result with the CPU backend's.
const PAGE_SCRIPT = `
import { createWebGpuBackend } from '@softgrad/webgpu';
import { createCpuBackend } from '@softgrad/tensor';

const results = [];
function values(n, seed, lo = -1, hi = 1) {
  const out = new Float32Array(n); let s = seed;
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; out[i] = lo + (s / 2 ** 32) * (hi - lo); }
  return out;
}
async function run(be, inputs, k, dtype, size) {
  const views = inputs.map((i) => ({ buf: be.fromTyped(i.data, i.dtype), shape: i.shape, dtype: i.dtype }));
  const out = k(be, views);
  const data = await be.read(out, dtype, size);
  views.forEach((v) => be.free(v.buf)); be.free(out);
  return data;
}
async function check(name, inputs, k, dtype, size, tol) {
  const g = await run(gpu, inputs, k, dtype, size);
  const c = await run(cpu, inputs, k, dtype, size);
  let worst = 0, ok = g.length === c.length;
  for (let i = 0; ok && i < g.length; i++) {
    const err = Math.abs(g[i] - c[i]);
    if (!(err <= tol * (1 + Math.abs(c[i])))) ok = false;
    worst = Math.max(worst, err);
  }
  results.push({ name, ok, worst });
}
const f32 = (shape, seed, lo, hi) => ({ data: values(shape.reduce((a, b) => a * b, 1), seed, lo, hi), shape, dtype: 'float32' });

let gpu, cpu;
try {
  gpu = await createWebGpuBackend();
  cpu = createCpuBackend();
  await check('add with broadcasting', [f32([3, 1, 5], 1), f32([4, 1], 2)], (be, [a, b]) => be.binary('add', a, b, [3, 4, 5]), 'float32', 60, 1e-6);
  await check('exp', [f32([1000], 3)], (be, [a]) => be.unary('exp', a), 'float32', 1000, 1e-5);
  await check('matmul 37×45·45×29 (scalar loads)', [f32([37, 45], 4), f32([45, 29], 5)], (be, [a, b]) => be.matmul(a, b, false, false, []), 'float32', 37 * 29, 1e-4);
  await check('matmul 64×32·(48×32)ᵀ (vec4 loads)', [f32([64, 32], 6), f32([48, 32], 7)], (be, [a, b]) => be.matmul(a, b, false, true, []), 'float32', 64 * 48, 1e-4);
  await check('matmul 1×40·40×33 (vector path)', [f32([1, 40], 8), f32([40, 33], 9)], (be, [a, b]) => be.matmul(a, b, false, false, []), 'float32', 33, 1e-4);
  await check('sum over axes [0,2]', [f32([7, 5, 300], 10)], (be, [a]) => be.reduce('sum', a, [0, 2]), 'float32', 5, 1e-4);
  await check('argmax', [f32([6, 333], 11)], (be, [a]) => be.reduce('argmax', a, [1]), 'int32', 6, 0);
  await check('transpose', [f32([3, 4, 5], 12)], (be, [a]) => be.transpose(a, [2, 0, 1]), 'float32', 60, 0);
  const idx = { data: Int32Array.from([2, 0, 2, 1, 2, 2, 0, 1, 1, 2, 2, 0, 0, 1, 2, 2, 1, 0, 2, 1]), shape: [20], dtype: 'int32' };
  await check('gather', [f32([3, 4], 13), idx], (be, [x, i]) => be.gather(x, i, 0), 'float32', 80, 0);
  await check('scatterAdd', [f32([20, 4], 14), idx], (be, [u, i]) => be.scatterAdd(u, i, 0, [3, 4]), 'float32', 12, 1e-5);
  await check('randomUniform (bit-exact)', [], (be) => be.randomUniform([7, 42], 1001, 'float32'), 'float32', 1001, 0);
  window.__verdict = { ok: results.every((r) => r.ok), results, adapter: gpu.adapterInfo };
} catch (e) {
  window.__verdict = { ok: false, results, error: String(e && e.stack || e) };
}
`;

function page(): string {
  const importMap = {
    imports: {
      '@softgrad/tensor': '/packages/tensor/dist/index.js',
      '@softgrad/webgpu': '/packages/webgpu/dist/index.js',
    },
  };
  return `<!doctype html><html><head><meta charset="utf-8">
<script type="importmap">${JSON.stringify(importMap)}</script>
<script type="module">${PAGE_SCRIPT}</script></head><body>softgrad WebGPU parity</body></html>`;
}

const TYPES: Record<string, string> = { '.js': 'text/javascript', '.map': 'application/json', '.html': 'text/html' };

let server: Server | undefined;
let browser: Browser | undefined;
let baseUrl = '';

describe.skipIf(!haveChromium)('WebGPU in headless Chromium', () => {
  beforeAll(async () => {
    // The ES modules the page imports are tsc's output for both packages.
    execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-b', 'packages/webgpu'], { cwd: root, stdio: 'pipe' });
    server = createServer((req, res) => {
      const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
      if (path === '/' || path === '/index.html') {
        res.writeHead(200, { 'content-type': 'text/html' }).end(page());
        return;
      }
      const file = normalize(join(root, path));
      // Only the two packages' build output is served.
      const allowed = ['packages/tensor/dist/', 'packages/webgpu/dist/'].some((p) => file.startsWith(join(root, p)));
      if (!allowed || !existsSync(file)) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox', '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-webgpu-adapter=swiftshader',
        '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic',
      ],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  });

  it('runs kernel parity checks in the page and reports a passing verdict', async () => {
    const p = await browser!.newPage();
    const logs: string[] = [];
    p.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
    p.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
    await p.goto(baseUrl);
    await p.waitForFunction(() => (window as unknown as { __verdict?: unknown }).__verdict !== undefined, null, { timeout: 90_000 });
    const verdict = (await p.evaluate(() => (window as unknown as { __verdict: unknown }).__verdict)) as {
      ok: boolean; results: { name: string; ok: boolean; worst: number }[]; error?: string; adapter?: { vendor: string; architecture: string };
    };
    const failed = verdict.results.filter((r) => !r.ok).map((r) => `${r.name} (max error ${r.worst})`);
    expect(verdict.error, `page error; console:\n${logs.join('\n')}`).toBeUndefined();
    expect(failed).toEqual([]);
    expect(verdict.results.length).toBe(11);
    expect(verdict.adapter?.vendor).toBeTruthy();
    console.log(`browser WebGPU adapter: ${verdict.adapter?.vendor}/${verdict.adapter?.architecture}; ${verdict.results.length} checks passed`);
    await p.close();
  });
});
