/**
 * Headers that claim huge tensors are refused without allocating them. Each case runs in a
 * fresh process (the compiled package, which npm test builds first) that reports its peak
 * resident memory: reading a 2 GB tensor, or even allocating and touching it, would show
 * there as gigabytes. The big files are sparse: they take no disk space.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const DIST = join(__dirname, '..', 'dist', 'index.js');
let dir = '';

beforeAll(() => {
  if (!existsSync(DIST)) throw new Error(`${DIST} is missing: build first (npm run build)`);
  dir = mkdtempSync(join(tmpdir(), 'softgrad-mem-'));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Outcome {
  error: string | null;
  errorClass: string | null;
  peakRssMiB: number;
  baselineRssMiB: number;
}

/**
 * Writes a model directory whose safetensors header lists the tiny model's tensors plus
 * `extra` (name → shape, F32), with a data section of the claimed size (sparse), then
 * loads it with `load` in a fresh process.
 */
function run(name: string, extra: Record<string, number[]>, load: 'loadModel' | 'readSafetensorsFile', dataShortBy = 0): Outcome {
  const script = `
    import * as m from ${JSON.stringify(DIST)};
    import { closeSync, mkdirSync, openSync, ftruncateSync, writeSync } from 'node:fs';
    import { join } from 'node:path';
    const dir = ${JSON.stringify(join(dir, name))};
    mkdirSync(dir, { recursive: true });
    const config = m.parseConfig({ model_type: 'llama', vocab_size: 8, hidden_size: 4, intermediate_size: 4, num_hidden_layers: 1,
      num_attention_heads: 1, max_position_embeddings: 16, tie_word_embeddings: true }, 'tiny');
    await m.writeConfig(dir, config);
    const header = { __metadata__: { format: 'pt' } };
    let offset = 0;
    const add = (n, shape) => { const bytes = 4 * shape.reduce((a, b) => a * b, 1); header[n] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] }; offset += bytes; };
    for (const e of m.expectedTensorNames(config)) add(e.name, e.shape);
    for (const [n, shape] of Object.entries(${JSON.stringify(extra)})) add(n, shape);
    const json = Buffer.from(JSON.stringify(header));
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(json.length));
    const path = join(dir, 'model.safetensors');
    const fd = openSync(path, 'w');
    writeSync(fd, prefix); writeSync(fd, json);
    ftruncateSync(fd, 8 + json.length + offset - ${dataShortBy});
    closeSync(fd);
    const baseline = process.resourceUsage().maxRSS;
    let error = null, errorClass = null;
    try {
      if (${JSON.stringify(load)} === 'loadModel') await m.loadModel(dir);
      else await m.readSafetensorsFile(path);
    } catch (e) { error = e.message; errorClass = e.constructor.name; }
    process.stdout.write(JSON.stringify({ error, errorClass, peakRssMiB: process.resourceUsage().maxRSS / 1024, baselineRssMiB: baseline / 1024 }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Outcome;
}

describe('safetensors headers claiming huge tensors', () => {
  it('refuses a 100 GB tensor in a small file before allocating it', () => {
    const o = run('short', { 'model.huge': [25_000, 1_000_000] }, 'readSafetensorsFile', 100e9);
    expect(o.errorClass).toBe('Error');
    expect(o.error).toMatch(/model\.safetensors: tensor "model\.huge": data_offsets end \d+ is beyond the \d+-byte data section/);
    expect(o.peakRssMiB - o.baselineRssMiB).toBeLessThan(64);
  });

  it('refuses a 100 GB tensor in a 100 GB (sparse) file, naming it, without allocating it', () => {
    const o = run('sparse-read', { 'model.huge': [25_000, 1_000_000] }, 'readSafetensorsFile');
    expect(o.errorClass).toBe('Error');
    expect(o.error).toMatch(/tensor "model\.huge" of shape \[25000,1000000\] needs 100000000000 bytes, more than one array can hold .*nothing was allocated/);
    expect(o.peakRssMiB - o.baselineRssMiB).toBeLessThan(64);
  });

  it('refuses an unknown 2 GB tensor by its name before reading any data', () => {
    const o = run('unknown-2g', { 'model.layers.0.extra.weight': [500_000_000] }, 'loadModel');
    expect(o.errorClass).toBe('Error');
    expect(o.error).toMatch(/model\.safetensors: checkpoint does not match the config .*\n {2}- unexpected model\.layers\.0\.extra\.weight \[500000000\]/);
    // Reading the tensor would touch 2 GB of pages.
    expect(o.peakRssMiB - o.baselineRssMiB).toBeLessThan(64);
  });
});
