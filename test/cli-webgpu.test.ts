/**
 * `softgrad train --backend webgpu` and `softgrad demo --backend webgpu` on the adapter at
 * hand (lavapipe here), with tiny budgets: every process runs on WebGPU (each says which
 * adapter) and the runs and the report come out complete. Runs the compiled CLI.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { acquireTestBackend } from '../packages/webgpu/test/gpu-setup.js';

const MAIN = join(__dirname, '..', 'packages', 'cli', 'dist', 'main.js');
const gpu = await acquireTestBackend();
gpu?.destroy();
const dir = mkdtempSync(join(tmpdir(), 'softgrad-cli-webgpu-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = (...args: string[]) => spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 300_000 });

describe.skipIf(!gpu)('the command on WebGPU', () => {
  it('softgrad train --backend webgpu trains, validates and checkpoints', () => {
    const out = join(dir, 'train');
    const r = run('train', '--backend', 'webgpu', '--out', out, '--mode', 'hard', '--steps', '2', '--batch-prompts', '1', '--samples', '2',
      '--max-cot', '6', '--max-answer', '4', '--val-count', '2', '--eval-every', '1', '--checkpoint-every', '1', '--lr', '1e-4');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^webgpu: /m);
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number });
    expect(metrics.map((m) => m.step)).toEqual([1, 2]);
    expect(metrics.every((m) => Number.isFinite(m.loss))).toBe(true);
    expect(readdirSync(join(out, 'checkpoint'))).toContain('config.json');
  });

  it('softgrad demo --backend webgpu runs every training and evaluation job on WebGPU and writes the report', () => {
    const out = join(dir, 'demo');
    const r = run('demo', '--backend', 'webgpu', '--out', out, '--steps', '1', '--batch-prompts', '1', '--samples', '2', '--max-cot', '6',
      '--test-count', '1', '--ood-count', '1', '--choice-count', '2', '--val-count', '1', '--eval-every', '1', '--eval-samples', '2', '--jobs', '2');
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(join(out, 'report.md'), 'utf8')).toContain('## Table 1');
    const logs = readdirSync(join(out, 'logs'));
    expect(logs).toHaveLength(11); // 3 training runs, 8 evaluations
    for (const log of logs) expect(readFileSync(join(out, 'logs', log), 'utf8'), log).toMatch(/^webgpu: /m);
  });
});
