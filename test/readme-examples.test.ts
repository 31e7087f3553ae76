/**
 * The README's code examples, as written: each ```ts block marked with its file in
 * docs/examples/ must be that file verbatim, the files are type-checked with the project
 * (tsconfig.json includes them), and here they run.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import * as T from '@softgrad/tensor';

const ROOT = join(__dirname, '..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const EXAMPLES = ['load-model.ts', 'soft-tokens.ts'];

afterEach(() => {
  vi.restoreAllMocks();
});

describe('README examples', () => {
  for (const name of EXAMPLES) {
    it(`${name} is in the README verbatim, runs, and leaks nothing`, async () => {
      const source = readFileSync(join(ROOT, 'docs', 'examples', name), 'utf8');
      const marker = `<!-- docs/examples/${name} -->\n\`\`\`ts\n`;
      const at = README.indexOf(marker);
      expect(at, `README.md has no block marked ${marker.trim()}`).toBeGreaterThanOrEqual(0);
      const block = README.slice(at + marker.length, README.indexOf('```', at + marker.length));
      expect(block).toBe(source);
      const printed: string[] = [];
      vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => void printed.push(args.join(' ')));
      T.clearJitCaches();
      const before = T.getDefaultBackend().stats().liveBuffers;
      await import(`../docs/examples/${name}`);
      expect(printed.length).toBe(1);
      T.clearJitCaches(); // compiled programs keep their constants for the next call
      expect(T.getDefaultBackend().stats().liveBuffers).toBe(before);
    });
  }
});

describe('the documentation stands on its own', () => {
  it('every docs/ file the project cites, and every relative link in its Markdown, exists', () => {
    const tracked = execFileSync('git', ['ls-files'], { cwd: ROOT, encoding: 'utf8' }).split('\n')
      .filter((f) => /\.(ts|md|sh|json)$/.test(f) && !f.startsWith('node_modules/'));
    const missing: string[] = [];
    let cited = 0;
    for (const file of tracked) {
      const body = readFileSync(join(ROOT, file), 'utf8');
      for (const m of body.matchAll(/\bdocs\/[\w./-]*\w\.(?:md|ts)\b/g)) {
        cited++;
        if (!existsSync(join(ROOT, m[0]))) missing.push(`${file}: ${m[0]}`);
      }
      if (file.endsWith('.md')) {
        for (const m of body.matchAll(/\]\((?!https?:|#)([^)#\s]+)/g)) {
          cited++;
          if (!existsSync(join(ROOT, dirname(file), m[1]!))) missing.push(`${file}: link ${m[1]}`);
        }
      }
    }
    expect(cited).toBeGreaterThan(10);
    expect(missing).toEqual([]);
  });
});
