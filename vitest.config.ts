import { defineConfig } from 'vitest/config';
import { fileURLToPath } from 'node:url';

const pkg = (name: string) => fileURLToPath(new URL(`./packages/${name}/src/index.ts`, import.meta.url));

/**
 * @softgrad/* resolved to their TypeScript sources; benchmarks/vitest.config.ts and
 * web/vite.config.ts use it too. A subpath entry must come before its package's entry, which
 * would otherwise match it as a prefix.
 */
export const softgradAliases: Record<string, string> = {
  '@softgrad/softtokens/browser': fileURLToPath(new URL('./packages/softtokens/src/browser.ts', import.meta.url)),
  '@softgrad/tensor': pkg('tensor'),
  '@softgrad/webgpu': pkg('webgpu'),
  '@softgrad/transformer': pkg('transformer'),
  '@softgrad/softtokens': pkg('softtokens'),
};

export default defineConfig({
  resolve: { alias: softgradAliases },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
