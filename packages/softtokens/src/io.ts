/**
 * File helpers. All node:fs use of this package's data and report code lives here, so the
 * parsers elsewhere stay usable in a browser on text obtained some other way.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * Writes `data` to `path` so that readers see either the old file or the whole new one,
 * never a half-written file (a killed training run must not leave a truncated report or
 * checkpoint index). The temporary file is in the same directory because rename is only
 * atomic within one file system.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
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
}

/** One JSON value per line, each line terminated by a newline. */
export function toJsonl(records: readonly unknown[]): string {
  return records.map((r) => JSON.stringify(r) + '\n').join('');
}

/** Writes records as JSONL, atomically. */
export function writeJsonl(path: string, records: readonly unknown[]): void {
  writeFileAtomic(path, toJsonl(records));
}

/** A JSONL line with the 1-based line number it came from. */
export interface JsonlLine {
  readonly line: number;
  readonly value: unknown;
}

/** Error for a malformed line: the message starts with `file:line:` like a compiler's. */
export class DataFileError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly problem: string,
  ) {
    super(`${file}:${line}: ${problem}`);
    this.name = 'DataFileError';
  }
}

/**
 * Parses JSONL text; blank lines are skipped (files often end with one) but keep their
 * place in the numbering. `source` names the file in errors.
 */
export function parseJsonl(text: string, source: string): JsonlLine[] {
  const out: JsonlLine[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.replace(/\r$/, '');
    if (raw.trim() === '') continue;
    const body = i === 0 ? raw.replace(/^\uFEFF/, '') : raw;
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new DataFileError(source, i + 1, `invalid JSON (${why})`);
    }
    out.push({ line: i + 1, value });
  }
  return out;
}

export function readTextFile(path: string): string {
  return readFileSync(path, 'utf8');
}

/** Reads a JSONL file into its values; errors name the file and line. */
export function readJsonl(path: string): unknown[] {
  return parseJsonl(readTextFile(path), path).map((l) => l.value);
}
