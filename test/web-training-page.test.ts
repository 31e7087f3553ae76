/**
 * The training page (web/) in a real browser: builds it with Vite, serves the build, and has
 * headless Chromium (WebGPU on SwiftShader's Vulkan) run three soft-token RL steps of the
 * built-in model on navigator.gpu. Checks that the three plots update, the sample CoT shows its
 * shadow tokens with mixture weights, every GPU buffer of the run is freed, and the console
 * stays free of errors.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';

const root = fileURLToPath(new URL('..', import.meta.url));
const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  if (process.env['CI']) throw new Error(`the browser training-page test needs Chromium at ${CHROMIUM} when CI is set`);
  console.warn(`[training-page browser test skipped] no Chromium at ${CHROMIUM} (set CHROMIUM_PATH)`);
}

const TYPES: Record<string, string> = {
  '.html': 'text/html', '.js': 'text/javascript', '.json': 'application/json', '.css': 'text/css', '.map': 'application/json',
};

let outDir = '';
let server: Server | undefined;
let browser: Browser | undefined;
let baseUrl = '';

describe.skipIf(!haveChromium)('training page in headless Chromium (WebGPU)', () => {
  beforeAll(async () => {
    outDir = mkdtempSync(join(tmpdir(), 'softgrad-web-'));
    const { build } = await import('vite');
    await build({ configFile: join(root, 'web/vite.config.ts'), logLevel: 'warn', build: { outDir, emptyOutDir: true } });
    server = createServer((req, res) => {
      const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
      const file = normalize(join(outDir, path === '/' ? 'index.html' : path));
      if (!file.startsWith(outDir + sep) || !existsSync(file) || !statSync(file).isFile()) {
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
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  it('runs three soft RL steps on navigator.gpu, updating the plots and the sample CoT, with no console errors', async () => {
    const page = await browser!.newPage();
    const errors: string[] = [];
    const console_: string[] = [];
    page.on('console', (m) => {
      console_.push(`${m.type()}: ${m.text()}`);
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    await page.goto(baseUrl);
    await page.waitForSelector('body[data-state="idle"]');
    expect(await page.evaluate(() => 'gpu' in navigator)).toBe(true);

    await page.selectOption('select[name="backend"]', 'webgpu');
    await page.selectOption('select[name="kind"]', 'soft');
    expect(await page.inputValue('input[name="tau"]')).toBe('0.5');
    // Small settings: SwiftShader runs WebGPU on the CPU.
    const settings: Record<string, string> = {
      steps: '3', batchPrompts: '1', samples: '2', maxCot: '4', maxAnswer: '3', warmup: '0', evalEvery: '0', valCount: '1', lr: '0.0001', seed: '1',
    };
    for (const [name, value] of Object.entries(settings)) await page.fill(`input[name="${name}"]`, value);
    const t0 = performance.now();
    await page.click('#start');
    await page.waitForSelector('body[data-state="training"]', { timeout: 30_000 });
    // The plots fill in while it trains, not only at the end.
    await page.waitForFunction(
      () => Number(document.getElementById('plot-reward')!.dataset.points) >= 1 || document.body.dataset.state === 'error', null, { timeout: 60_000 },
    );
    expect(await page.getAttribute('body', 'data-state'), `status: ${await page.textContent('#status')}\nconsole:\n${console_.join('\n')}`).toBe('training');
    await page.waitForFunction(() => ['done', 'stopped', 'error'].includes(document.body.dataset.state ?? ''), null, { timeout: 90_000 });
    const seconds = (performance.now() - t0) / 1000;
    const status = await page.textContent('#status');
    expect(await page.getAttribute('body', 'data-state'), `status: ${status}\nconsole:\n${console_.join('\n')}`).toBe('done');
    expect(status).toMatch(/^done: 3 RL steps of soft in/);

    expect(await page.getAttribute('#plot-reward', 'data-points')).toBe('3');
    expect(await page.getAttribute('#plot-entropy', 'data-points')).toBe('3');
    // Before the first step and after the last.
    expect(await page.getAttribute('#plot-validation', 'data-points')).toBe('2');
    for (const id of ['plot-reward', 'plot-validation', 'plot-entropy']) expect(await page.locator(`#${id} svg polyline`).count()).toBeGreaterThan(0);

    // The last step's traced sample: shadow tokens, each with its largest mixture weights.
    const cotSteps = Number(await page.getAttribute('#cot-tokens', 'data-steps'));
    expect(cotSteps).toBeGreaterThanOrEqual(1);
    expect(cotSteps).toBeLessThanOrEqual(4);
    expect(await page.locator('#cot-tokens .token').count()).toBe(cotSteps);
    expect(await page.locator('#cot-tokens .token ol.mixture').count()).toBe(cotSteps);
    const firstMixture = await page.locator('#cot-tokens .token ol.mixture').first().locator('li').allTextContents();
    expect(firstMixture).toHaveLength(5);
    for (const item of firstMixture) expect(item).toMatch(/ \d+(\.\d)?%$/);
    expect(await page.textContent('#cot-answer')).toMatch(/answer ".*" \(reward (0|10|100)\)/);

    expect(await page.getAttribute('body', 'data-adapter')).toMatch(/./);
    expect(await page.getAttribute('body', 'data-leaked-buffers')).toBe('0');
    expect(errors, `console:\n${console_.join('\n')}`).toEqual([]);
    console.log(`training page: ${status} (${seconds.toFixed(1)} s in the browser test); ${await page.textContent('#device')}`);
    await page.close();
  });

  it('stops a run after the step under way when Stop is pressed (CPU backend in the page)', async () => {
    const page = await browser!.newPage();
    const errors: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    await page.goto(baseUrl);
    await page.waitForSelector('body[data-state="idle"]');
    await page.selectOption('select[name="backend"]', 'cpu');
    await page.selectOption('select[name="kind"]', 'fuzzy');
    expect(await page.inputValue('input[name="tau"]')).toBe('0.0001');
    const settings: Record<string, string> = { steps: '500', batchPrompts: '1', samples: '2', maxCot: '4', maxAnswer: '3', valCount: '0' };
    for (const [name, value] of Object.entries(settings)) await page.fill(`input[name="${name}"]`, value);
    await page.click('#start');
    await page.waitForFunction(() => Number(document.getElementById('plot-reward')!.dataset.points) >= 2, null, { timeout: 60_000 });
    await page.click('#stop');
    await page.waitForSelector('body[data-state="stopped"]', { timeout: 60_000 });
    const steps = Number(await page.getAttribute('#plot-reward', 'data-points'));
    expect(steps).toBeGreaterThanOrEqual(2);
    expect(steps).toBeLessThan(500);
    expect(await page.textContent('#status')).toMatch(new RegExp(`^stopped after ${steps} RL steps of fuzzy in [\\d.]+ s`));
    expect(await page.getAttribute('body', 'data-leaked-buffers')).toBe('0');
    expect(await page.isDisabled('#stop')).toBe(true);
    expect(await page.isDisabled('#start')).toBe(false);
    expect(errors).toEqual([]);
    await page.close();
  });
});
