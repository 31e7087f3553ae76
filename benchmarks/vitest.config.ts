import { defineConfig } from 'vitest/config';
import { fileURLToPath } from 'node:url';

// Benchmarks run as single long vitest tests so they share the root config's TypeScript
// handling and @softgrad/* aliases; the root suite's include pattern does not reach them.
const pkg = (name: string) => fileURLToPath(new URL(`../packages/${name}/src/index.ts`, import.meta.url));

export default defineConfig({
  resolve: {
    alias: {
      '@softgrad/tensor': pkg('tensor'),
      '@softgrad/webgpu': pkg('webgpu'),
      '@softgrad/transformer': pkg('transformer'),
      '@softgrad/softtokens': pkg('softtokens'),
    },
  },
  test: {
    root: fileURLToPath(new URL('..', import.meta.url)),
    include: ['benchmarks/**/*.bench.run.ts'],
    testTimeout: 600_000,
    hookTimeout: 600_000,
  },
});
