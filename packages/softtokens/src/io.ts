/**
 * File helpers. All node:fs use of this package's data and report code lives here, so the
 * parsers elsewhere stay usable in a browser on text obtained some other way. Writing goes
 * through @softgrad/transformer's atomic module (writeFileAtomicSync and friends).
 */
import { readFileSync, statSync } from 'node:fs';
import { findDuplicateKey, writeFileAtomicSync } from '@softgrad/transformer';

/** One JSON value per line, each line terminated by a newline. */
export function toJsonl(records: readonly unknown[]): string {
  return records.map((r) => JSON.stringify(r) + '\n').join('');
}

/** Writes records as JSONL, atomically. */
export function writeJsonl(path: string, records: readonly unknown[]): void {
  writeFileAtomicSync(path, toJsonl(records));
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
      // V8 quotes the text near the problem, control characters included: keep one line.
      const why = (err instanceof Error ? err.message : String(err)).replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
      throw new DataFileError(source, i + 1, `invalid JSON (${why.length > 120 ? `${why.slice(0, 117)}...` : why})`);
    }
    // JSON.parse keeps the last of two equal keys; a record saying two things is refused.
    const dup = findDuplicateKey(body);
    if (dup) throw new DataFileError(source, i + 1, `key ${JSON.stringify(dup.key)} appears twice in one record`);
    out.push({ line: i + 1, value });
  }
  return out;
}

/** Reads a data file as UTF-8; errors say what the path is when it is not a readable file. */
export function readTextFile(path: string): string {
  let info;
  try {
    info = statSync(path);
  } catch (e) {
    throw new Error(`${path}: cannot read: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`, { cause: e });
  }
  if (info.isDirectory()) throw new Error(`${path}: is a directory; expected a JSONL file`);
  const bytes = readFileSync(path);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new Error(`${path}: not UTF-8 text; expected a JSONL file`);
  }
}

/** Reads a JSONL file into its values; errors name the file and line. */
export function readJsonl(path: string): unknown[] {
  return parseJsonl(readTextFile(path), path).map((l) => l.value);
}
