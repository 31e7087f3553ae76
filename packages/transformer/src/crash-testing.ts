/**
 * For tests of crash safety: a stand-in for the file system of a directory swap that
 * "crashes" at a chosen step. From that step on every operation fails without touching the
 * disk, as if the process had been killed there: no cleanup code that runs afterwards (a
 * catch or finally block) can do what a killed process could not.
 */
import { readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { DirectoryOps } from './atomic.js';

export class SimulatedCrash extends Error {
  constructor(step: string) {
    super(`simulated crash at: ${step}`);
    this.name = 'SimulatedCrash';
  }
}

/** One entry deep inside `dir` (a file if there is one), for crashing in the middle of rm -r. */
async function someEntry(dir: string): Promise<string | undefined> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return undefined;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) return (await someEntry(p)) ?? p;
    return p;
  }
  return undefined;
}

export class CrashingDirectoryOps implements DirectoryOps {
  /** The steps taken before the crash (or all of them), paths relative to `root`. */
  readonly steps: string[] = [];
  crashedAt: string | undefined;

  /**
   * @param crashAt index of the step to crash at (Infinity: never); a removal counts as
   * two steps, before it starts and halfway through, since rm -r is not atomic.
   */
  constructor(
    private readonly crashAt: number,
    private readonly inner: DirectoryOps,
    private readonly root: string,
  ) {}

  get crashed(): boolean {
    return this.crashedAt !== undefined;
  }

  private rel(path: string): string {
    return relative(this.root, path) || '.';
  }

  private async step(label: string, run: () => Promise<void>): Promise<void> {
    if (this.crashedAt !== undefined) throw new SimulatedCrash(`after ${this.crashedAt}`);
    if (this.steps.length === this.crashAt) {
      this.crashedAt = label;
      throw new SimulatedCrash(label);
    }
    this.steps.push(label);
    await run();
  }

  async exists(path: string): Promise<boolean> {
    if (this.crashedAt !== undefined) throw new SimulatedCrash(`after ${this.crashedAt}`);
    return this.inner.exists(path);
  }

  makeDirectory(path: string): Promise<void> {
    return this.step(`mkdir ${this.rel(path)}`, () => this.inner.makeDirectory(path));
  }

  rename(from: string, to: string): Promise<void> {
    return this.step(`rename ${this.rel(from)} → ${this.rel(to)}`, () => this.inner.rename(from, to));
  }

  async removeTree(path: string): Promise<void> {
    await this.step(`rm -r ${this.rel(path)} (before)`, async () => undefined);
    // Halfway: one entry is gone when the crash comes.
    const victim = await someEntry(path);
    if (this.steps.length === this.crashAt && victim !== undefined) await this.inner.removeTree(victim);
    await this.step(`rm -r ${this.rel(path)} (halfway)`, () => this.inner.removeTree(path));
  }

  syncTree(path: string): Promise<void> {
    return this.step(`sync tree ${this.rel(path)}`, () => this.inner.syncTree(path));
  }

  syncDirectory(path: string): Promise<void> {
    return this.step(`sync dir ${this.rel(path)}`, () => this.inner.syncDirectory(path));
  }
}
