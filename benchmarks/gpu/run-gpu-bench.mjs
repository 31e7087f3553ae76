#!/usr/bin/env node
/**
 * WebGPU benchmarks as plain ESM JavaScript, for machines that get only the compiled packages
 * and a trimmed node_modules (benchmarks/gpu/make-bundle.sh), not vitest.
 *
 *   1. float32 matmul n×n·n×n on our WebGPU backend beside @tensorflow/tfjs-backend-webgpu on
 *      the same Dawn instance (both take navigator.gpu), timed including the full readback,
 *      plus a "chained" figure: REPS products then a one-element readback (compute-bound).
 *   2. One-dispatch round trip (one tiny kernel plus its readback).
 *   3. Transformer forward (packages/transformer): prefill tokens/s and one-token decode
 *      with a KV cache tokens/s.
 *
 * Every printed figure names the adapter. With OUT set, results go to $OUT/gpu-bench.json
 * (rewritten after every section, so a run cut short still leaves what it measured).
 *
 * Environment:
 *   GPU_BENCH_MODE      full (default) | small (lavapipe-sized: a couple of minutes on CPUs)
 *   GPU_BENCH_SIZES     matmul sizes, e.g. 256,512,1024,2048,4096
 *   GPU_BENCH_SECTIONS  comma list of matmul,roundtrip,transformer,tiles (default all)
 *   GPU_BENCH_TILES     tiles for the "tiles" sweep (ours only, chained matmul), wx,wy,bk,tm;...
 *   GPU_BENCH_TILE_SIZES  matrix sizes for the sweep (default 2048,4096; small: 256)
 *   GPU_BENCH_BUDGET_S  soft time budget: later sections/sizes are skipped past it (default 240)
 *   GPU_BENCH_DAWN      Dawn options for create(), comma-separated (e.g. backend=vulkan)
 *   GPU_BENCH_TF        0 to skip tfjs-backend-webgpu
 *   GPU_BENCH_MODEL     hidden,layers,heads,kvHeads,intermediate,vocab (transformer override)
 *   GPU_BENCH_PREFILL   batch,seq (transformer override);  GPU_BENCH_DECODE_STEPS  decode steps
 *   SOFTGRAD_TILE       wx,wy,bk[,tm] matmul tile for our backend
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';

const T_START = performance.now();
const env = process.env;
const MODE = env.GPU_BENCH_MODE === 'small' ? 'small' : 'full';
const BUDGET_MS = Number(env.GPU_BENCH_BUDGET_S ?? 240) * 1000;
const SECTIONS = new Set((env.GPU_BENCH_SECTIONS ?? 'matmul,roundtrip,transformer,tiles').split(',').map((s) => s.trim()));
const SIZES = (env.GPU_BENCH_SIZES ?? (MODE === 'small' ? '128,256,512' : '256,512,1024,2048,4096')).split(',').map(Number);
const WITH_TF = env.GPU_BENCH_TF !== '0';
const tileEnv = env.SOFTGRAD_TILE?.split(',').map(Number);
const tile = tileEnv ? { wx: tileEnv[0], wy: tileEnv[1], bk: tileEnv[2], tm: tileEnv[3] ?? 4 } : undefined;

const elapsed = () => performance.now() - T_START;
const overBudget = () => elapsed() > BUDGET_MS;

// ------------------------------------------------------------------ results and output

const results = {
  startedAt: new Date().toISOString(),
  mode: MODE,
  machine: {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    node: process.version,
    platform: `${os.platform()} ${os.arch()}`,
    hostname: os.hostname(),
  },
  adapter: null,
  adapterLimits: null,
  adapterFeatures: null,
  tfjsAdapter: null,
  matmul: [],
  matmulChained: [],
  roundtrip: null,
  transformer: null,
  tiles: [],
  errors: [],
  skipped: [],
  totalSeconds: null,
};

function save() {
  results.totalSeconds = +(elapsed() / 1000).toFixed(1);
  if (!env.OUT) return;
  try {
    mkdirSync(env.OUT, { recursive: true });
    writeFileSync(join(env.OUT, 'gpu-bench.json'), `${JSON.stringify(results, null, 2)}\n`);
  } catch (e) {
    console.error(`could not write $OUT/gpu-bench.json: ${e.message}`);
  }
}

let TAG = '[no adapter]';
const say = (line) => console.log(`${TAG} ${line}`);
const fail = (where, e) => {
  const msg = `${where}: ${e?.stack ?? e}`;
  console.log(`${TAG} ERROR ${msg}`);
  results.errors.push(msg);
  save();
};

// ------------------------------------------------------------------ timing helpers

const median = (x) => [...x].sort((p, q) => p - q)[Math.floor(x.length / 2)];

/**
 * Medians of alternating samples of `a` and `b` after one warm-up each (pipeline compilation,
 * pool fill): alternating keeps a load change from favouring whichever side runs first.
 * `b` may be null (then only `a` is timed).
 */
async function timePair(a, b, minMs, minReps = 3, maxReps = 1000) {
  await a();
  if (b) await b();
  const sa = [];
  const sb = [];
  const start = performance.now();
  while (sa.length < minReps || (performance.now() - start < minMs && sa.length < maxReps)) {
    let t0 = performance.now();
    await a();
    sa.push(performance.now() - t0);
    if (b) {
      t0 = performance.now();
      await b();
      sb.push(performance.now() - t0);
    }
  }
  return { a: median(sa), b: b ? median(sb) : NaN, reps: sa.length };
}

function randomData(n, seed) {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : String(x));
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : String(x));

// ------------------------------------------------------------------ setup

console.log(`gpu-bench: mode ${MODE}, node ${process.version}, ${results.machine.cpu} ×${results.machine.cores}, budget ${BUDGET_MS / 1000} s`);

// Dawn's instance must stay referenced for the whole run (docs/webgpu.md): keep it on
// globalThis. Our backend and tfjs-backend-webgpu both take it from navigator.gpu.
const { create, globals } = await import('webgpu');
Object.assign(globalThis, globals);
const dawnOptions = env.GPU_BENCH_DAWN ? env.GPU_BENCH_DAWN.split(',').filter(Boolean) : [];
const dawn = create(dawnOptions);
globalThis.__gpuBenchDawn = dawn;
globalThis.navigator = { gpu: dawn };

// Probe the adapter ourselves first, so its limits and features are on record.
{
  const adapter = await dawn.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    fail('requestAdapter', 'no WebGPU adapter (is the Vulkan loader installed and the ICD found? see benchmarks/gpu/device-command.sh)');
    process.exit(2);
  }
  const info = adapter.info ?? {};
  results.adapter = {
    vendor: info.vendor ?? '', architecture: info.architecture ?? '', device: info.device ?? '', description: info.description ?? '',
    isFallbackAdapter: adapter.isFallbackAdapter ?? info.isFallbackAdapter ?? null,
  };
  const lim = {};
  for (const k of ['maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup',
    'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupSizeY', 'maxStorageBuffersPerShaderStage', 'maxComputeWorkgroupsPerDimension']) lim[k] = adapter.limits[k];
  results.adapterLimits = lim;
  results.adapterFeatures = [...adapter.features].sort();
  TAG = `[${results.adapter.vendor}/${results.adapter.architecture} (${results.adapter.description})]`;
  say(`adapter: ${JSON.stringify(results.adapter)}`);
  say(`limits: ${JSON.stringify(lim)}`);
  say(`features: ${results.adapterFeatures.join(' ')}`);
  save();
}

const tensorPkg = await import('@softgrad/tensor');
const { createWebGpuBackend } = await import('@softgrad/webgpu');
const ours = await createWebGpuBackend({ powerPreference: 'high-performance', ...(tile ? { matmulTile: tile } : {}) });
{
  const i = ours.adapterInfo;
  const same = i.vendor === results.adapter.vendor && i.architecture === results.adapter.architecture && i.description === results.adapter.description;
  say(`softgrad backend adapter: ${i.vendor}/${i.architecture} (${i.description})${same ? '' : ' — DIFFERS from the probed adapter'}`);
  if (tile) say(`softgrad matmul tile ${JSON.stringify(tile)}`);
}

let tf = null;
if (WITH_TF) {
  try {
    tf = await import('@tensorflow/tfjs-core');
    await import('@tensorflow/tfjs-backend-webgpu'); // registers itself only if navigator.gpu exists
    if (!(await tf.setBackend('webgpu'))) throw new Error('tf.setBackend("webgpu") returned false');
    await tf.ready();
    const ai = tf.backend().adapterInfo ?? {};
    results.tfjsAdapter = { vendor: ai.vendor ?? '', architecture: ai.architecture ?? '', tfjs: tf.version_core };
    say(`tfjs-backend-webgpu ${tf.version_core} adapter: ${ai.vendor}/${ai.architecture}`);
  } catch (e) {
    fail('tfjs-backend-webgpu setup', e);
    tf = null;
  }
}
save();

// ------------------------------------------------------------------ 1. matmul

if (SECTIONS.has('matmul')) {
  for (const n of SIZES) {
    if (overBudget()) {
      results.skipped.push(`matmul ${n} (budget)`);
      say(`matmul ${n}: skipped (time budget)`);
      continue;
    }
    for (const tfx of tf ? [tf, null] : [null]) {
      let va, vb, ta, tb;
      try {
        const a = randomData(n * n, 1);
        const b = randomData(n * n, 2);
        va = { buf: ours.fromTyped(a, 'float32'), shape: [n, n], dtype: 'float32' };
        vb = { buf: ours.fromTyped(b, 'float32'), shape: [n, n], dtype: 'float32' };
        if (tfx) {
          ta = tfx.tensor2d(a, [n, n]);
          tb = tfx.tensor2d(b, [n, n]);
        }
        const minMs = MODE === 'small' ? 500 : n >= 2048 ? 2500 : 1500;
        let check;
        let ref;
        const t = await timePair(async () => {
          const out = ours.matmul(va, vb, false, false, []);
          check = await ours.read(out, 'float32', n * n);
          ours.free(out);
        }, tfx ? async () => {
          const c = tfx.matMul(ta, tb);
          ref = await c.data();
          c.dispose();
        } : null, minMs);
        let maxErr = NaN;
        if (ref) {
          maxErr = 0;
          for (let i = 0; i < n * n; i++) maxErr = Math.max(maxErr, Math.abs(check[i] - ref[i]));
        }
        const flops = 2 * n ** 3;
        const g1 = flops / t.a / 1e6;
        const g2 = flops / t.b / 1e6;
        const row = { n, oursMs: t.a, tfjsMs: t.b, oursGflops: g1, tfjsGflops: g2, ratio: g1 / g2, maxAbsDiff: maxErr, reps: t.reps, includesReadback: true };
        results.matmul.push(row);
        say(`matmul ${n}×${n}·${n}×${n} incl. readback: softgrad ${f2(g1)} GFLOP/s (${f2(t.a)} ms), tfjs-webgpu ${f2(g2)} GFLOP/s (${f2(t.b)} ms), ` +
          `ratio ${f2(g1 / g2)}×, max|diff| ${maxErr.toExponential(2)}, ${t.reps} reps${maxErr > 1e-2 ? '  <-- MISMATCH' : ''}`);
        save();

        // Chained: REPS products back to back, then a one-element readback: the compute rate
        // without the n² readback (which dominates at small n on a fast GPU).
        if (n >= 512 && !overBudget()) {
          const REPS = MODE === 'small' ? 2 : n >= 4096 ? 5 : n >= 2048 ? 10 : 20;
          const tc = await timePair(async () => {
            let out;
            for (let r = 0; r < REPS; r++) {
              if (out) ours.free(out);
              out = ours.matmul(va, vb, false, false, []);
            }
            await ours.read(out, 'float32', 1);
            ours.free(out);
          }, tfx ? async () => {
            let c;
            for (let r = 0; r < REPS; r++) {
              if (c) c.dispose();
              c = tfx.matMul(ta, tb);
            }
            const s = tfx.slice(c, [0, 0], [1, 1]);
            await s.data();
            s.dispose();
            c.dispose();
          } : null, minMs, 2);
          const c1 = (REPS * flops) / tc.a / 1e6;
          const c2 = (REPS * flops) / tc.b / 1e6;
          results.matmulChained.push({ n, chain: REPS, oursMs: tc.a, tfjsMs: tc.b, oursGflops: c1, tfjsGflops: c2, ratio: c1 / c2, reps: tc.reps });
          say(`matmul ${n} chained ×${REPS} + 1-element readback: softgrad ${f2(c1)} GFLOP/s (${f2(tc.a)} ms), tfjs-webgpu ${f2(c2)} GFLOP/s (${f2(tc.b)} ms), ratio ${f2(c1 / c2)}×`);
          save();
        }
      } catch (e) {
        fail(`matmul ${n}${tfx ? ' (with tfjs)' : ''}`, e);
        if (tfx) say(`matmul ${n}: retrying with softgrad only`);
        continue;
      } finally {
        try {
          if (va) ours.free(va.buf);
          if (vb) ours.free(vb.buf);
          ta?.dispose();
          tb?.dispose();
        } catch { /* already reported */ }
      }
      break;
    }
  }
  ours.trimPool();
}

// ------------------------------------------------------------------ 2. round trip

if (SECTIONS.has('roundtrip')) {
  try {
    const x = { buf: ours.fromTyped(new Float32Array([1]), 'float32'), shape: [1], dtype: 'float32' };
    const tx = tf ? tf.tensor1d([1]) : null;
    const t = await timePair(async () => {
      const y = ours.unary('exp', x);
      await ours.read(y, 'float32', 1);
      ours.free(y);
    }, tf ? async () => {
      const y = tf.exp(tx);
      await y.data();
      y.dispose();
    } : null, 1000, 20);
    ours.free(x.buf);
    tx?.dispose();
    results.roundtrip = { oursUs: t.a * 1000, tfjsUs: t.b * 1000, reps: t.reps, note: 'tfjs runs tensors this small on the CPU' };
    say(`one-dispatch round trip: softgrad ${f1(t.a * 1000)} µs, tfjs-webgpu ${f1(t.b * 1000)} µs (tfjs runs tensors this small on the CPU), ${t.reps} reps`);
  } catch (e) {
    fail('roundtrip', e);
  }
  save();
}

// ------------------------------------------------------------------ 3. transformer

if (SECTIONS.has('transformer')) {
  if (overBudget()) {
    results.skipped.push('transformer (budget)');
    say('transformer: skipped (time budget)');
  } else {
    try {
      await transformerBench();
    } catch (e) {
      fail('transformer', e);
    }
  }
  save();
}

async function transformerBench() {
  const T = tensorPkg;
  const { initParams, forward, parameterCount, disposeCache } = await import('@softgrad/transformer');
  const small = MODE === 'small';
  const [hidden, layers, heads, kvHeads, intermediate, vocab] = (env.GPU_BENCH_MODEL ?? (small ? '128,2,4,4,384,2048' : '512,8,8,8,1536,8192'))
    .split(',').map(Number);
  const [B, S] = (env.GPU_BENCH_PREFILL ?? (small ? '2,32' : '8,256')).split(',').map(Number);
  const STEPS = Number(env.GPU_BENCH_DECODE_STEPS ?? (small ? 8 : 32));
  const config = {
    model_type: 'llama', architectures: ['LlamaForCausalLM'], vocab_size: vocab, hidden_size: hidden,
    intermediate_size: intermediate, num_hidden_layers: layers, num_attention_heads: heads, num_key_value_heads: kvHeads,
    head_dim: hidden / heads, rms_norm_eps: 1e-6, rope_theta: 10000, rope_scaling: null,
    max_position_embeddings: Math.max(2048, S + STEPS + 8), tie_word_embeddings: false, attention_bias: false,
    bos_token_id: null, eos_token_id: null, torch_dtype: 'float32',
  };
  const params = initParams(config, 0, { backend: ours, dtype: 'float32' });
  const nParams = parameterCount(params);
  const desc = `Llama hidden ${hidden}, ${layers} layers, ${heads} heads (${kvHeads} KV), intermediate ${intermediate}, vocab ${vocab}, untied head, float32, ${(nParams / 1e6).toFixed(1)}M params`;
  say(`transformer: ${desc}; prefill batch ${B} × ${S}, decode ${STEPS} steps`);
  const ids = (b, s, seed) => {
    const d = new Int32Array(b * s);
    let x = seed >>> 0 || 1;
    for (let i = 0; i < d.length; i++) {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      d[i] = x % vocab;
    }
    return T.tensor(d, { shape: [b, s], dtype: 'int32', backend: ours });
  };
  // Waits for the whole forward by reading the last position's greedy token per row (B ints):
  // GPU work runs in submission order, so this readback covers everything before it.
  const lastTokens = async (logits) => {
    const s = logits.shape[1];
    const last = T.slice(logits, [0, s - 1, 0], [-1, 1, -1]);
    const am = T.argmax(last, -1);
    const out = await am.data();
    last.dispose();
    am.dispose();
    return out;
  };

  // Prefill without a cache (pure forward) and with a cache (what generation does).
  const prefillIds = ids(B, S, 7);
  const runPrefill = async (useCache) => {
    const out = forward(config, params, { ids: prefillIds, useCache });
    await lastTokens(out.logits);
    out.logits.dispose();
    out.hidden.dispose();
    disposeCache(out.cache);
  };
  const minMs = small ? 1000 : 3000;
  const tp = await timePair(() => runPrefill(false), null, minMs, 3, 50);
  const prefill = { ms: tp.a, tokens: B * S, tokensPerSec: (B * S) / tp.a * 1000, reps: tp.reps };
  say(`transformer prefill ${B}×${S} (no cache): ${f1(prefill.ms)} ms, ${f1(prefill.tokensPerSec)} tokens/s (${prefill.reps} reps, ${desc})`);

  // Decode: prefill with a cache, then STEPS greedy one-token steps, each reading its B tokens
  // back (as generation must). Repeated twice; the first is the warm-up.
  let decode = null;
  for (let rep = 0; rep < 2; rep++) {
    let out = forward(config, params, { ids: prefillIds, useCache: true });
    let next = await lastTokens(out.logits);
    out.logits.dispose();
    out.hidden.dispose();
    let cache = out.cache;
    const stepMs = [];
    const t0 = performance.now();
    for (let step = 0; step < STEPS; step++) {
      const ts = performance.now();
      const x = T.tensor(Int32Array.from(next), { shape: [B, 1], dtype: 'int32', backend: ours });
      out = forward(config, params, { ids: x, cache });
      next = await lastTokens(out.logits);
      x.dispose();
      out.logits.dispose();
      out.hidden.dispose();
      disposeCache(cache);
      cache = out.cache;
      stepMs.push(performance.now() - ts);
    }
    const total = performance.now() - t0;
    disposeCache(cache);
    decode = {
      batch: B, startLength: S, steps: STEPS, totalMs: total, medianStepMs: median(stepMs),
      tokensPerSec: (B * STEPS) / total * 1000, firstStepMs: stepMs[0], lastStepMs: stepMs[stepMs.length - 1],
    };
  }
  prefillIds.dispose();
  say(`transformer decode batch ${B}, context ${S}→${S + STEPS}: median ${f2(decode.medianStepMs)} ms/step, ${f1(decode.tokensPerSec)} tokens/s ` +
    `(${f1(decode.tokensPerSec / B)} steps/s; first ${f2(decode.firstStepMs)} ms, last ${f2(decode.lastStepMs)} ms)`);
  const stats = ours.stats();
  const liveAfter = stats.liveBuffers;
  T.treeDispose(params);
  results.transformer = {
    config: { hidden, layers, heads, kvHeads, intermediate, vocab, parameters: nParams },
    prefill: { batch: B, seq: S, ...prefill },
    decode,
    liveBuffersBeforeParamDispose: liveAfter,
    liveBuffersAfter: ours.stats().liveBuffers,
  };
  say(`transformer: live GPU buffers after everything but the parameters were freed: ${liveAfter}; after: ${ours.stats().liveBuffers}`);
}

// ------------------------------------------------------------------ 4. tile sweep (ours only)

if (SECTIONS.has('tiles')) {
  try {
    await tileSweep();
  } catch (e) {
    fail('tiles', e);
  }
  save();
}

async function tileSweep() {
  const small = MODE === 'small';
  const tiles = (env.GPU_BENCH_TILES ?? (small ? '16,8,32,8;16,16,32,4'
    : '16,8,32,8;16,16,32,4;16,16,16,8;16,16,32,8;32,8,16,8;32,8,32,8;8,8,32,8'))
    .split(';').filter(Boolean).map((t) => { const [wx, wy, bk, tm] = t.split(',').map(Number); return { wx, wy, bk, tm: tm ?? 4 }; });
  const sizes = (env.GPU_BENCH_TILE_SIZES ?? (small ? '256' : '2048,4096')).split(',').map(Number);
  // Reference results from the default backend, to check each tile's output.
  const refs = new Map();
  for (const n of sizes) {
    const va = { buf: ours.fromTyped(randomData(n * n, 11), 'float32'), shape: [n, n], dtype: 'float32' };
    const vb = { buf: ours.fromTyped(randomData(n * n, 12), 'float32'), shape: [n, n], dtype: 'float32' };
    const out = ours.matmul(va, vb, false, false, []);
    refs.set(n, await ours.read(out, 'float32', n * n));
    ours.free(out);
    ours.free(va.buf);
    ours.free(vb.buf);
  }
  ours.trimPool();
  for (const tile of tiles) {
    const name = `${tile.wx},${tile.wy},${tile.bk},${tile.tm}`;
    if (overBudget()) {
      results.skipped.push(`tile ${name} (budget)`);
      say(`tile ${name}: skipped (time budget)`);
      continue;
    }
    let be;
    try {
      be = await createWebGpuBackend({ powerPreference: 'high-performance', matmulTile: tile });
      for (const n of sizes) {
        const va = { buf: be.fromTyped(randomData(n * n, 11), 'float32'), shape: [n, n], dtype: 'float32' };
        const vb = { buf: be.fromTyped(randomData(n * n, 12), 'float32'), shape: [n, n], dtype: 'float32' };
        const first = be.matmul(va, vb, false, false, []);
        const got = await be.read(first, 'float32', n * n);
        be.free(first);
        const ref = refs.get(n);
        let maxErr = 0;
        for (let i = 0; i < n * n; i++) maxErr = Math.max(maxErr, Math.abs(got[i] - ref[i]));
        const REPS = small ? 2 : n >= 4096 ? 5 : 10;
        const t = await timePair(async () => {
          let out;
          for (let r = 0; r < REPS; r++) {
            if (out) be.free(out);
            out = be.matmul(va, vb, false, false, []);
          }
          await be.read(out, 'float32', 1);
          be.free(out);
        }, null, small ? 300 : 1200, 2);
        const g = (REPS * 2 * n ** 3) / t.a / 1e6;
        results.tiles.push({ tile, n, chain: REPS, ms: t.a, gflops: g, maxAbsDiffVsDefault: maxErr, reps: t.reps });
        say(`tile {wx ${tile.wx}, wy ${tile.wy}, bk ${tile.bk}, tm ${tile.tm}} (${tile.wy * tile.tm}×${tile.wx * 4}) matmul ${n} chained ×${REPS}: ` +
          `${f2(g)} GFLOP/s (${f2(t.a)} ms), max|diff| vs default ${maxErr.toExponential(2)}${maxErr > 1e-2 ? '  <-- MISMATCH' : ''}`);
        be.free(va.buf);
        be.free(vb.buf);
        save();
      }
    } catch (e) {
      fail(`tile ${name}`, e);
    } finally {
      try { be?.destroy(); } catch { /* ignore */ }
    }
  }
}

say(`done in ${f1(elapsed() / 1000)} s${results.errors.length ? `, ${results.errors.length} error(s)` : ''}`);
save();
try {
  ours.destroy();
} catch { /* ignore */ }
process.exit(results.errors.length ? 1 : 0);
