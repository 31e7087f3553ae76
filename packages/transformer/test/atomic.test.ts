/**
 * The atomic-write module under crashes: a simulated crash at every file-system step of a
 * directory swap, and real `kill -9`s of a process that swaps in a loop. After recovery the
 * directory must hold the complete old or the complete new content, and nothing else may
 * be left beside it.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  NODE_DIRECTORY_OPS, appendFileDurableSync, recoverDirectory, removeStaleTemporaries, splitLogLines, swapDirectory,
  writeFileAtomicSync,
} from '../src/atomic.js';
import { CrashingDirectoryOps, SimulatedCrash } from '../src/crash-testing.js';
import { findDuplicateKey, parseJsonStrict } from '../src/json.js';

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'softgrad-swap-'));
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

function writeVersion(dir: string, version: string): void {
  mkdirSync(join(dir, 'sub'), { recursive: true });
  writeFileSync(join(dir, 'a.txt'), version);
  writeFileSync(join(dir, 'sub', 'b.txt'), version);
}

/** The version a directory holds, or an error when it is missing or mixed. */
function versionOf(dir: string): string {
  const a = readFileSync(join(dir, 'a.txt'), 'utf8');
  const b = readFileSync(join(dir, 'sub', 'b.txt'), 'utf8');
  if (a !== b) throw new Error(`mixed content: ${a} / ${b}`);
  return a;
}

const build = (version: string) => async (dir: string) => writeVersion(dir, version);

async function stepsOfOneSwap(target: string): Promise<string[]> {
  const probe = new CrashingDirectoryOps(Infinity, NODE_DIRECTORY_OPS, root);
  await swapDirectory(target, build('probe'), probe);
  return probe.steps;
}

describe('directory swap under a crash at every step', () => {
  for (const initial of ['an existing directory', 'no directory yet'] as const) {
    it(`recovers to the complete old or new content (${initial})`, async () => {
      const target = join(root, 'checkpoint');
      const reference = join(root, 'reference');
      if (initial === 'an existing directory') writeVersion(reference, 'old');
      const steps = await stepsOfOneSwap(reference);
      expect(steps.length).toBeGreaterThan(5);
      const outcomes: string[] = [];
      for (let crashAt = 0; crashAt < steps.length; crashAt++) {
        rmSync(target, { recursive: true, force: true });
        for (const n of readdirSync(root)) if (n.startsWith('.checkpoint')) rmSync(join(root, n), { recursive: true, force: true });
        if (initial === 'an existing directory') writeVersion(target, 'old');
        const ops = new CrashingDirectoryOps(crashAt, NODE_DIRECTORY_OPS, root);
        await expect(swapDirectory(target, build('new'), ops)).rejects.toBeInstanceOf(SimulatedCrash);
        await recoverDirectory(target);
        const left = readdirSync(root).filter((n) => n.startsWith('.checkpoint'));
        expect(left, `after a crash at ${ops.crashedAt}`).toEqual([]);
        if (!existsSync(target)) {
          // Only before anything of the new copy was complete, and only with no old copy.
          expect(initial).toBe('no directory yet');
          outcomes.push(`${ops.crashedAt} → none`);
          continue;
        }
        const version = versionOf(target);
        // Once the complete new copy had its name (.new), recovery must finish the swap.
        const readyBefore = ops.steps.some((s) => s.startsWith('rename .checkpoint.partial'));
        expect(version, `after a crash at ${ops.crashedAt}`).toBe(readyBefore ? 'new' : initial === 'an existing directory' ? 'old' : 'new');
        outcomes.push(`${ops.crashedAt} → ${version}`);
        // And the next swap works from there.
        await swapDirectory(target, build('next'));
        expect(versionOf(target)).toBe('next');
      }
      expect(outcomes.length).toBe(steps.length);
      expect(outcomes.some((o) => o.endsWith('new'))).toBe(true);
    });
  }

  it('leaves no half-built copy after an ordinary failure, and the old one untouched', async () => {
    const target = join(root, 'checkpoint');
    writeVersion(target, 'old');
    await expect(swapDirectory(target, async (dir) => {
      writeFileSync(join(dir, 'a.txt'), 'new');
      throw new Error('disk full (simulated)');
    })).rejects.toThrow('disk full');
    expect(readdirSync(root)).toEqual(['checkpoint']);
    expect(versionOf(target)).toBe('old');
  });

  it('recovery is a no-op on a clean directory and puts back a lone moved-aside copy', async () => {
    const target = join(root, 'checkpoint');
    expect(await recoverDirectory(target)).toBe('none');
    writeVersion(join(root, '.checkpoint.old'), 'old');
    expect(await recoverDirectory(target)).toBe('rolled back');
    expect(versionOf(target)).toBe('old');
  });
});

describe('directory swap under real kill -9', () => {
  it('is always recoverable to one complete version', async () => {
    const dist = join(__dirname, '..', 'dist', 'atomic.js');
    if (!existsSync(dist)) throw new Error(`${dist} is missing: build first (npm run build)`);
    const target = join(root, 'checkpoint');
    // A writer that swaps in new versions as fast as it can, files written in several steps.
    const script = `
      import { swapDirectory } from ${JSON.stringify(dist)};
      import { mkdirSync, writeFileSync } from 'node:fs';
      for (let i = 0; ; i++) {
        await swapDirectory(${JSON.stringify(target)}, async (d) => {
          mkdirSync(d + '/sub', { recursive: true });
          writeFileSync(d + '/a.txt', String(i));
          writeFileSync(d + '/sub/b.txt', String(i));
        });
        if (i === 0) process.stdout.write('started\\n');
      }`;
    const seen = new Set<string>();
    for (let round = 0; round < 8; round++) {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
      await new Promise((r) => setTimeout(r, 5 + ((round * 37) % 60)));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('close', r));
      await recoverDirectory(target);
      seen.add(versionOf(target));
      expect(readdirSync(root).filter((n) => n !== 'checkpoint')).toEqual([]);
    }
    // The kills landed at different points of the loop.
    expect(seen.size).toBeGreaterThan(1);
  });
});

describe('strict JSON', () => {
  it('names a key given twice, with its line and path', () => {
    expect(() => parseJsonStrict('{"a": {"b": 1,\n "b": 2}}', 'x.json')).toThrow('x.json: line 2, column 2: key "b" appears twice in "a"');
    expect(() => parseJsonStrict('[{"x": 1}, {"x": 1, "x": 2}]', 'y.json')).toThrow('key "x" appears twice in [1]');
    expect(() => parseJsonStrict('{"a\\u0062": 1, "ab": 2}', 'z.json')).toThrow('key "ab" appears twice in the top-level object');
    expect(parseJsonStrict('{"a": {"b": 1}, "b": {"a": [{"a": 1}, {"a": 2}]}}', 'ok.json')).toEqual({ a: { b: 1 }, b: { a: [{ a: 1 }, { a: 2 }] } });
    expect(findDuplicateKey('{"k": "\\"k\\"", "k2": 1}')).toBeNull();
  });

  it('puts syntax errors on one line with their position', () => {
    expect(() => parseJsonStrict('{\n "a": 1,\n}', 'c.json')).toThrow(/^c\.json: line 3, column 1: not valid JSON/);
    expect(() => parseJsonStrict('{"a": "x\ny"}', 'd.json')).toThrow(/^d\.json: line 1, column 9: not valid JSON \([^\n]*\)$/);
  });
});

describe('files', () => {
  it('writes atomically and removes only dead writers’ temporary files', () => {
    const path = join(root, 'state.json');
    writeFileAtomicSync(path, '{"step": 1}\n');
    expect(readFileSync(path, 'utf8')).toBe('{"step": 1}\n');
    // A temporary file as a killed writer leaves it (a pid that cannot exist), and a live one.
    const dead = join(root, '.state.json.4194399.0123456789ab.tmp');
    const live = join(root, `.state.json.${process.pid}.0123456789ab.tmp`);
    writeFileSync(dead, 'x');
    writeFileSync(live, 'x');
    expect(removeStaleTemporaries(root)).toEqual(['.state.json.4194399.0123456789ab.tmp']);
    expect(readdirSync(root).sort()).toEqual([`.state.json.${process.pid}.0123456789ab.tmp`, 'state.json']);
  });

  it('tells complete log lines from a torn last one', () => {
    const path = join(root, 'metrics.jsonl');
    appendFileDurableSync(path, '{"step":1}\n');
    appendFileDurableSync(path, '{"step":2}\n{"st');
    expect(splitLogLines(readFileSync(path, 'utf8'))).toEqual({ lines: ['{"step":1}', '{"step":2}'], torn: '{"st' });
    expect(splitLogLines('')).toEqual({ lines: [], torn: null });
  });
});
