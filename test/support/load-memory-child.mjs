// Loads a model directory in a fresh process and reports how much its peak resident memory
// grew over loading, against the weights' float32 size. Run with the compiled packages (npm
// run build):
//
//   node test/support/load-memory-child.mjs DIR [wasm|js|webgpu] [pieceBytes]
//
// Prints one JSON line: { float32Bytes, baselineRssBytes, peakRssBytes, growthBytes, ratio, seconds, backend }.
// `ratio` = growth / float32Bytes: what loading cost beyond the process it ran in. Linux only
// (it reads /proc/self/status).
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// Linux: the resident set now and its high-water mark. getrusage's maxRSS would not do: a
// spawned child starts with its parent's high-water mark (kept across fork and exec).
const status = (field) => Number(/(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith(field)))[1]) * 1024;

const root = fileURLToPath(new URL('../../packages/', import.meta.url));
const T = await import(`${root}tensor/dist/index.js`);
const M = await import(`${root}transformer/dist/index.js`);

const [dir, which = 'wasm', piece] = process.argv.slice(2);
if (!dir) throw new Error('usage: load-memory-child.mjs DIR [wasm|js|webgpu] [pieceBytes]');
let backend;
if (which === 'wasm') backend = T.getDefaultBackend();
else if (which === 'js') backend = T.createCpuBackend();
else if (which === 'webgpu') backend = await (await import(`${root}webgpu/dist/index.js`)).createWebGpuBackend();
else throw new Error(`unknown backend ${which} (expected wasm, js or webgpu)`);
// Something on the backend first, so that its own start-up is part of the baseline.
T.scalar(1, { backend }).dispose();
const config = await M.readConfig(dir);
const float32Bytes = 4 * M.configParameterCount(config);
globalThis.gc?.();
// Reset the high-water mark to the current resident set (clear_refs 5), so the peak is loading's.
writeFileSync('/proc/self/clear_refs', '5');
const baseline = status('VmRSS:');
const t0 = performance.now();
const params = await M.loadParams(config, dir, { backend, ...(piece ? { pieceBytes: Number(piece) } : {}) });
// A read at the end: every upload has reached the backend (WebGPU queues them).
await params.norm.data();
const seconds = (performance.now() - t0) / 1000;
const peak = status('VmHWM:');
const live = backend.stats();
T.treeDispose(params);
process.stdout.write(`${JSON.stringify({
  backend: backend.name, float32Bytes, baselineRssBytes: baseline, peakRssBytes: peak, growthBytes: peak - baseline,
  ratio: (peak - baseline) / float32Bytes, seconds, liveBytesLoaded: live.liveBytes,
})}\n`);
if (which === 'webgpu') backend.destroy?.();
