import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors, readSafetensorsFile, serializeSafetensors, type HostTensor } from '../src/safetensors.js';

// Whatever the bytes, the reader returns tensors consistent with their shapes or throws
// a plain Error that names the source; nothing else (no RangeError from a typed-array
// constructor, no TypeError from a missing field, no SyntaxError from JSON.parse).

const SOURCE = 'fuzz/model.safetensors';

function outcome(run: () => { tensors: Record<string, HostTensor> }, source = SOURCE): 'parsed' | 'rejected' {
  try {
    const { tensors } = run();
    for (const t of Object.values(tensors)) {
      const n = t.shape.reduce((a, b) => a * b, 1);
      if (t.data.length !== n) throw new Error(`inconsistent tensor: shape ${t.shape} with ${t.data.length} elements`);
    }
    return 'parsed';
  } catch (e) {
    if (!(e instanceof Error) || e.constructor !== Error || !e.message.includes(source)) {
      throw new Error(`reader threw ${(e as object)?.constructor?.name}: ${(e as Error)?.message}`);
    }
    return 'rejected';
  }
}

function valid(): Uint8Array {
  return serializeSafetensors(
    {
      'a.weight': { dtype: 'float32', shape: [3, 2], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
      'b.bias': { dtype: 'float32', shape: [4], data: Float32Array.from([0.5, -1, 2, 8]) },
      'c.ids': { dtype: 'int32', shape: [2], data: Int32Array.from([7, -7]) },
    },
    { dtype: 'BF16', metadata: { k: 'v' } },
  );
}

function headerLength(bytes: Uint8Array): number {
  return Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
}

function withHeader(headerText: string, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const RUNS = { numRuns: 500 };

describe('safetensors reader under fuzzing', () => {
  it('handles arbitrary bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => void outcome(() => parseSafetensors(bytes, SOURCE))), RUNS);
  });

  it('handles arbitrary header lengths in front of a valid file', () => {
    const base = valid();
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (n) => {
        const b = base.slice();
        new DataView(b.buffer).setBigUint64(0, n, true);
        outcome(() => parseSafetensors(b, SOURCE));
      }),
      RUNS,
    );
  });

  it('handles truncation anywhere', () => {
    const base = valid();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: base.length }), (cut) => {
        const result = outcome(() => parseSafetensors(base.slice(0, cut), SOURCE));
        if (cut < base.length) expect(result).toBe('rejected');
      }),
    );
  });

  it('handles random byte flips in the header', () => {
    const base = valid();
    const n = headerLength(base);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 8 + n - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        (flips) => {
          const b = base.slice();
          for (const [at, v] of flips) b[at] = v;
          outcome(() => parseSafetensors(b, SOURCE));
        },
      ),
      RUNS,
    );
  });

  it('handles well-formed JSON headers with random dtypes, shapes and offsets', () => {
    const dim = fc.oneof(fc.integer({ min: -2, max: 6 }), fc.constant(2 ** 40), fc.double(), fc.constant('3'), fc.constant(null));
    const offset = fc.oneof(fc.integer({ min: -4, max: 80 }), fc.constant(2 ** 53), fc.constant(1.5), fc.constant('0'), fc.constant(null));
    const dtype = fc.oneof(
      fc.constantFrom('F32', 'F16', 'BF16', 'F64', 'I64', 'I32', 'I16', 'I8', 'U64', 'U32', 'U16', 'U8', 'BOOL', 'F8_E4M3', 'f32', ''),
      fc.integer(),
      fc.constant(null),
    );
    const entry = fc.oneof(
      { weight: 8, arbitrary: fc.record({ dtype, shape: fc.array(dim, { maxLength: 4 }), data_offsets: fc.array(offset, { maxLength: 3 }) }, { requiredKeys: [] }) },
      { weight: 1, arbitrary: fc.anything() },
    );
    const header = fc.oneof(
      { weight: 8, arbitrary: fc.dictionary(fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom('__metadata__', '__proto__', 'constructor')), entry, { maxKeys: 5 }) },
      { weight: 1, arbitrary: fc.jsonValue() },
    );
    fc.assert(
      fc.property(header, fc.uint8Array({ maxLength: 80 }), (h, data) => {
        outcome(() => parseSafetensors(withHeader(JSON.stringify(h) ?? 'null', data), SOURCE));
      }),
      { numRuns: 2000 },
    );
  });

  it('handles small perturbations of a valid header (dtypes, shapes, offsets), both accepting and rejecting', () => {
    const base = valid();
    const n = headerLength(base);
    const header = JSON.parse(new TextDecoder().decode(base.subarray(8, 8 + n))) as Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>;
    const data = base.slice(8 + n);
    const names = Object.keys(header).filter((k) => k !== '__metadata__');
    const mostlyZero = fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -8, max: 8 }) });
    // Mostly no change per field: the tensors must tile the data exactly, so most changes
    // are rejected and the accepting side needs unchanged fields to be exercised at all.
    const mostlyNone = <V>(a: fc.Arbitrary<V>) => fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: a });
    const change = fc.record({
      name: fc.constantFrom(...names),
      dtype: mostlyNone(fc.constantFrom('F32', 'F16', 'BF16', 'F64', 'I64', 'U32', 'U8', 'BOOL')),
      shape: mostlyNone(fc.array(fc.integer({ min: 0, max: 6 }), { maxLength: 3 })),
      shift: fc.tuple(mostlyZero, mostlyZero),
    });
    const seen = { parsed: 0, rejected: 0 };
    fc.assert(
      fc.property(fc.array(change, { minLength: 1, maxLength: 3 }), mostlyZero, (changes, dataDelta) => {
        const h = structuredClone(header);
        for (const c of changes) {
          const e = h[c.name];
          if (c.dtype) e.dtype = c.dtype;
          if (c.shape) e.shape = c.shape;
          e.data_offsets = [e.data_offsets[0] + c.shift[0], e.data_offsets[1] + c.shift[1]];
        }
        const d = dataDelta >= 0 ? new Uint8Array([...data, ...new Uint8Array(dataDelta)]) : data.slice(0, data.length + dataDelta);
        seen[outcome(() => parseSafetensors(withHeader(JSON.stringify(h), d), SOURCE))]++;
      }),
      { numRuns: 2000 },
    );
    // The generator must exercise both sides of the validation, or this test proves little.
    expect(seen.parsed).toBeGreaterThan(20);
    expect(seen.rejected).toBeGreaterThan(20);
  });

  it('handles random text and random UTF-8 sequences as the header', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 100 }), fc.string({ unit: 'binary', maxLength: 100 }), fc.json({ maxDepth: 3 })), fc.uint8Array({ maxLength: 32 }), (text, data) => {
        outcome(() => parseSafetensors(withHeader(text, data), SOURCE));
      }),
      RUNS,
    );
  });
});

describe('safetensors file reader under fuzzing', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'softgrad-fuzz-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('rejects corrupted files on disk with an Error naming the path', async () => {
    const base = valid();
    let i = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: base.length }),
        fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        async (cut, flips) => {
          const b = base.slice(0, cut);
          for (const [at, v] of flips) if (at < b.length) b[at] = v;
          const path = join(dir, `f${i++}.safetensors`);
          await writeFile(path, b);
          let error: unknown;
          try {
            await readSafetensorsFile(path);
          } catch (e) {
            error = e;
          }
          if (error !== undefined) {
            expect((error as object).constructor).toBe(Error);
            expect((error as Error).message).toContain(path);
          }
          await rm(path);
        },
      ),
      { numRuns: 100 },
    );
  });
});
