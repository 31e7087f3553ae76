#!/usr/bin/env node
/**
 * The slow end-to-end check of the demo (docs/demo.md): runs `npm start` (build + `softgrad demo`
 * with the default preset), times it, and checks the acceptance of the built-in demo: it
 * finishes within the limit (default 600 s) and its headline shows hard RL raising
 * hard-inference sampled pass@1 over the base model with a paired 95 % interval above zero.
 * Exit 0 when both hold, 1 otherwise; the report is in reports/demo/.
 *
 *   npm run demo:check [-- --limit 600]
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
let limit = 600;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--limit' && Number(args[i + 1]) > 0) limit = Number(args[++i]);
  else {
    console.error(`demo-check: unknown argument ${args[i]} (only --limit SECONDS)`);
    process.exit(2);
  }
}
const t0 = performance.now();
const code = await new Promise((ok) => spawn('npm', ['start'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] }).on('close', ok));
const seconds = (performance.now() - t0) / 1000;
if (code !== 0) {
  console.error(`demo-check: npm start failed (exit ${code}) after ${seconds.toFixed(0)} s`);
  process.exit(1);
}
const summary = JSON.parse(readFileSync(join(root, 'reports', 'demo', 'summary.json'), 'utf8'));
const h = summary.headline[0];
const pts = (x) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}`;
console.log(`demo-check: npm start took ${seconds.toFixed(0)} s (limit ${limit} s)`);
console.log(`demo-check: ${h.a} − ${h.b}, ${h.metric}: ${pts(h.difference.estimate)} points [${pts(h.difference.lo)}, ${pts(h.difference.hi)}] → ${h.verdict}`);
const ok = seconds <= limit && h.verdict === 'improved';
console.log(`demo-check: ${ok ? 'PASS' : 'FAIL'}`);
process.exit(ok ? 0 : 1);
