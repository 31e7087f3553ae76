import { defineConfig } from 'vitest/config';
import { fileURLToPath } from 'node:url';
import { softgradAliases } from '../vitest.config.js';

// Benchmarks run as single long vitest tests so they share the root config's TypeScript
// handling and @softgrad/* aliases; the root suite's include pattern does not reach them.
export default defineConfig({
  resolve: { alias: softgradAliases },
  test: {
    root: fileURLToPath(new URL('..', import.meta.url)),
    include: ['benchmarks/**/*.bench.run.ts'],
    // Timings are only comparable when benchmark files do not compete for the cores.
    fileParallelism: false,
    testTimeout: 600_000,
    hookTimeout: 600_000,
  },
});
