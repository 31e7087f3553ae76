/**
 * The training page's build. Sources are the packages' TypeScript (the same aliases as the
 * tests); the shipped built-in base model (packages/softtokens/assets/builtin-base) is copied
 * next to the page and fetched from ./builtin-base/.
 */
import { fileURLToPath } from 'node:url';
import { createLogger, defineConfig } from 'vite';
import { softgradAliases } from '../vitest.config.js';

// Two known messages that say nothing is wrong with the page:
// - the loaders of @softgrad/transformer also read files in Node (node:fs, node:path, ...); the
//   page calls only their in-memory parsers, so Vite's empty browser stand-ins are never used;
// - builtinBaseModelDir() resolves the shipped model's directory on disk, which a page does not
//   use (it fetches ./builtin-base/).
const EXPECTED = [/externalized for browser compatibility/, /new URL\("\.\.\/assets\/builtin-base", import\.meta\.url\) doesn't exist at build time/];
const logger = createLogger();
for (const level of ['warn', 'warnOnce'] as const) {
  const write = logger[level].bind(logger);
  logger[level] = (message, options) => {
    if (!EXPECTED.some((re) => re.test(message))) write(message, options);
  };
}

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  // Relative URLs, so the built page works from any path it is served under.
  base: './',
  publicDir: fileURLToPath(new URL('../packages/softtokens/assets', import.meta.url)),
  resolve: { alias: softgradAliases },
  customLogger: logger,
  build: {
    outDir: fileURLToPath(new URL('./dist', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    rolldownOptions: {
      // Dawn for Node; the page has navigator.gpu (without it, @softgrad/webgpu's import fails
      // and it says what is missing).
      external: ['webgpu'],
      onLog(level, log, handler) {
        if (level === 'warn' && EXPECTED.some((re) => re.test(log.message))) return;
        handler(level, log);
      },
    },
  },
  preview: { port: 4173 },
});
