/**
 * JSON as our loaders read it: `JSON.parse`, plus what it silently lets through. A
 * duplicated key (two "dtype"s in a tensor entry, two tensors of one name, one token twice
 * in a vocabulary) is taken by JSON.parse as "the last one wins", which hides corruption;
 * here it is an error naming the file, the line and the key's path.
 */

/** Line (1-based) and column (1-based) of a character offset. */
export function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

function pathText(path: readonly (string | number)[]): string {
  if (path.length === 0) return 'the top-level object';
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? JSON.stringify(p) : `.${JSON.stringify(p)}`)).join('');
}

interface Frame {
  kind: 'object' | 'array';
  keys: Set<string> | null;
  expectKey: boolean;
  index: number;
  key: string | null;
}

/**
 * The first key that occurs twice in one object of a valid JSON text, with its position,
 * or null. The text must already have parsed (this scanner trusts its structure).
 */
export function findDuplicateKey(text: string): { key: string; path: (string | number)[]; offset: number } | null {
  const stack: Frame[] = [];
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i;
      let escaped = false;
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) {
          escaped = true;
          i++;
        } else if (d === 0x22) break;
      }
      const top = stack[stack.length - 1];
      if (top && top.kind === 'object' && top.expectKey) {
        const raw = text.slice(start, i + 1);
        const key = escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        if (top.keys!.has(key)) {
          const path = stack.slice(0, -1).map((f) => (f.kind === 'object' ? f.key! : f.index));
          return { key, path, offset: start };
        }
        top.keys!.add(key);
        top.key = key;
        top.expectKey = false;
      }
      continue;
    }
    if (c === 0x7b /* { */) stack.push({ kind: 'object', keys: new Set(), expectKey: true, index: 0, key: null });
    else if (c === 0x5b /* [ */) stack.push({ kind: 'array', keys: null, expectKey: false, index: 0, key: null });
    else if (c === 0x7d /* } */ || c === 0x5d /* ] */) stack.pop();
    else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top?.kind === 'object') top.expectKey = true;
      else if (top) top.index++;
    }
  }
  return null;
}

/**
 * Parses JSON text strictly: syntax errors and duplicate keys are Errors of the form
 * `source: line L, column C: …`.
 */
export function parseJsonStrict(text: string, source: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const message = (e as Error).message;
    const at = /at position (\d+)/.exec(message);
    const where = at ? (() => {
      const { line, column } = lineAndColumn(text, Number(at[1]));
      return `line ${line}, column ${column}: `;
    })() : '';
    // V8 quotes the text around the problem, raw control characters included; they are
    // escaped so that the message stays one line.
    const oneLine = message.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
    const short = oneLine.length > 160 ? `${oneLine.slice(0, 157)}...` : oneLine;
    throw new Error(`${source}: ${where}not valid JSON (${short})`, { cause: e });
  }
  const dup = findDuplicateKey(text);
  if (dup) {
    const { line, column } = lineAndColumn(text, dup.offset);
    throw new Error(`${source}: line ${line}, column ${column}: key ${JSON.stringify(dup.key)} appears twice in ${pathText(dup.path)} (which one is meant?)`);
  }
  return value;
}
