/**
 * The one place where files and directories are written so that a crash (kill -9, power
 * loss) at any instant leaves either the old content or the complete new content, never a
 * mixture: model files, configs, tokenizers, checkpoints, run logs and reports all go
 * through here.
 *
 * Files: written to a temporary file in the same directory (rename is atomic only within
 * one file system), synced, renamed over the target, and the directory synced so that the
 * rename itself is durable.
 *
 * Directories (checkpoints, model directories): built beside the target under a name that
 * says how far the swap got, so that `recoverDirectory` can always finish or undo it:
 *
 *   .NAME.partial   being built; incomplete by definition, removed on recovery
 *   .NAME.new       complete (renamed from .partial after everything in it was synced)
 *   .NAME.old       the previous NAME, moved aside; removed once NAME is the new one
 *
 * Swap: build .partial → sync → rename to .new → rename NAME to .old → rename .new to NAME
 * → remove .old, syncing the parent directory after each rename. At every instant at least
 * one complete copy exists under a name recovery knows, and recovery never needs more than
 * renames and removals.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync, fsyncSync, openSync, readdirSync, renameSync, rmSync, writeSync, type Dirent,
} from 'node:fs';
import { lstat, open, readdir, rename, rm, mkdir, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

// ---------------------------------------------------------------------------------------
// Files

function temporaryName(path: string): string {
  // The pid lets `removeStaleTemporaries` tell a dead writer's leftovers from a live one's.
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

const TEMPORARY_FILE = /^\..+\.(\d+)\.[0-9a-f]{12}\.tmp$/;

function isErrno(e: unknown, ...codes: string[]): boolean {
  return typeof e === 'object' && e !== null && codes.includes((e as NodeJS.ErrnoException).code ?? '');
}

/** Makes a directory's entries (creations, renames, removals) durable. */
export function syncDirectorySync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch (e) {
    // Some file systems cannot sync a directory; the rename is then as durable as they allow.
    if (!isErrno(e, 'EINVAL', 'ENOTSUP', 'EISDIR', 'EPERM', 'EBADF')) throw e;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export async function syncDirectory(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (e) {
    if (!isErrno(e, 'EINVAL', 'ENOTSUP', 'EISDIR', 'EPERM', 'EBADF')) throw e;
  } finally {
    await fh?.close();
  }
}

/**
 * Writes `path` so that it holds either its previous content or the complete new content.
 * `content` may be a function that writes through the open handle (for streaming large
 * files). On failure the temporary file is removed and the previous file is untouched.
 */
export async function writeFileAtomic(
  path: string,
  content: string | Uint8Array | ((fh: FileHandle) => Promise<void>),
): Promise<void> {
  const tmp = temporaryName(path);
  const fh = await open(tmp, 'wx');
  let closed = false;
  try {
    if (typeof content === 'function') await content(fh);
    else await fh.writeFile(content);
    await fh.sync();
    await fh.close();
    closed = true;
    await rename(tmp, path);
  } catch (e) {
    if (!closed) await fh.close().catch(() => undefined);
    await rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
  await syncDirectory(dirname(path));
}

/** The synchronous twin of `writeFileAtomic`, for reports and small state files. */
export function writeFileAtomicSync(path: string, data: string | Uint8Array): void {
  const tmp = temporaryName(path);
  let fd: number | null = null;
  try {
    fd = openSync(tmp, 'wx');
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
    closeSync(fd);
    fd = null;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== null) closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  syncDirectorySync(dirname(path));
}

/**
 * Appends `text` and syncs it: a log line written before a checkpoint is on disk before the
 * checkpoint is. A crash mid-append can leave a torn last line, which readers of such logs
 * must tolerate (see `splitLogLines`).
 */
export function appendFileDurableSync(path: string, text: string): void {
  const fd = openSync(path, 'a');
  try {
    const bytes = Buffer.from(text, 'utf8');
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * The complete lines of an append-only log and whether its end was torn (a last line
 * without its newline, as a crash in the middle of an append leaves it).
 */
export function splitLogLines(text: string): { lines: string[]; torn: string | null } {
  const parts = text.split('\n');
  const last = parts.pop() ?? '';
  return { lines: parts, torn: last === '' ? null : last };
}

function processIsAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but belongs to someone else.
    return isErrno(e, 'EPERM');
  }
}

/** Removes temporary files that `writeFileAtomic` left in `dir` when its writer was killed. */
export function removeStaleTemporaries(dir: string): string[] {
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    if (isErrno(e, 'ENOENT', 'ENOTDIR')) return [];
    throw e;
  }
  const removed: string[] = [];
  for (const e of entries) {
    const m = TEMPORARY_FILE.exec(e.name);
    if (!m || !e.isFile() || processIsAlive(Number(m[1]))) continue;
    rmSync(join(dir, e.name), { force: true });
    removed.push(e.name);
  }
  return removed;
}

// ---------------------------------------------------------------------------------------
// Directory swaps

/**
 * The file-system steps a directory swap takes. The swap and its recovery use nothing
 * else, so a test can stand in for the file system and crash it at any step.
 */
export interface DirectoryOps {
  exists(path: string): Promise<boolean>;
  makeDirectory(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  /** rm -r; no error when absent. */
  removeTree(path: string): Promise<void>;
  /** Makes every file and directory entry under `path` durable. */
  syncTree(path: string): Promise<void>;
  /** Makes one directory's entries durable. */
  syncDirectory(path: string): Promise<void>;
}

async function syncTreeOnDisk(path: string): Promise<void> {
  const entries = await readdir(path, { withFileTypes: true });
  for (const e of entries) {
    const p = join(path, e.name);
    if (e.isDirectory()) await syncTreeOnDisk(p);
    else if (e.isFile()) {
      const fh = await open(p, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
  }
  await syncDirectory(path);
}

export const NODE_DIRECTORY_OPS: DirectoryOps = {
  async exists(path) {
    try {
      await lstat(path);
      return true;
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return false;
      throw e;
    }
  },
  makeDirectory: async (path) => void (await mkdir(path, { recursive: true })),
  rename: (from, to) => rename(from, to),
  removeTree: (path) => rm(path, { recursive: true, force: true }),
  syncTree: syncTreeOnDisk,
  syncDirectory,
};

/** The names a swap of `target` uses beside it. */
export function swapNames(target: string): { partial: string; ready: string; old: string } {
  const dir = dirname(target);
  const name = basename(target);
  return { partial: join(dir, `.${name}.partial`), ready: join(dir, `.${name}.new`), old: join(dir, `.${name}.old`) };
}

export type RecoveryAction = 'none' | 'completed' | 'rolled back' | 'cleaned up';

/**
 * Brings `target` back to a complete state after a swap was interrupted at any point:
 * a complete new copy (.new) is swapped in, a moved-aside old copy (.old) comes back
 * only when there is nothing newer, and leftovers are removed. Idempotent; safe to run
 * when no swap was ever interrupted.
 */
export async function recoverDirectory(target: string, ops: DirectoryOps = NODE_DIRECTORY_OPS): Promise<RecoveryAction> {
  const { partial, ready, old } = swapNames(target);
  const parent = dirname(target);
  let action: RecoveryAction = 'none';
  if (await ops.exists(partial)) {
    await ops.removeTree(partial);
    action = 'cleaned up';
  }
  const hasTarget = await ops.exists(target);
  const hasReady = await ops.exists(ready);
  const hasOld = await ops.exists(old);
  if (hasReady) {
    // The new copy was complete: finish the swap.
    if (hasTarget) {
      if (hasOld) await ops.removeTree(old);
      await ops.rename(target, old);
      await ops.syncDirectory(parent);
    }
    await ops.rename(ready, target);
    await ops.syncDirectory(parent);
    await ops.removeTree(old);
    return 'completed';
  }
  if (hasOld) {
    if (hasTarget) {
      // Killed while removing the old copy: the new one is in place.
      await ops.removeTree(old);
      return 'cleaned up';
    }
    // Cannot arise from a swap (.old appears only while .new exists), but if it does the
    // old copy is the only complete one: put it back.
    await ops.rename(old, target);
    await ops.syncDirectory(parent);
    return 'rolled back';
  }
  return action;
}

/**
 * Replaces directory `target` by what `build` writes into the directory it is given, so
 * that `target` is, at every instant of a crash, recoverable (`recoverDirectory`) to the
 * complete old or the complete new content.
 */
export async function swapDirectory(
  target: string,
  build: (dir: string) => Promise<void>,
  ops: DirectoryOps = NODE_DIRECTORY_OPS,
): Promise<void> {
  await recoverDirectory(target, ops);
  const { partial, ready, old } = swapNames(target);
  const parent = dirname(target);
  await ops.makeDirectory(partial);
  try {
    await build(partial);
  } catch (e) {
    // An ordinary failure (not a crash) leaves no half-built copy behind.
    await ops.removeTree(partial).catch(() => undefined);
    throw e;
  }
  await ops.syncTree(partial);
  await ops.rename(partial, ready);
  await ops.syncDirectory(parent);
  if (await ops.exists(target)) {
    await ops.rename(target, old);
    await ops.syncDirectory(parent);
  }
  await ops.rename(ready, target);
  await ops.syncDirectory(parent);
  await ops.removeTree(old);
}
