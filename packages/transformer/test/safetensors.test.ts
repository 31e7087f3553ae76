import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  bf16BitsToFloat,
  floatToBf16Bits,
  halfBitsToFloat,
  parseSafetensors,
  readCheckpointDir,
  readSafetensorsFile,
  readSafetensorsHeader,
  serializeSafetensors,
  writeCheckpointDir,
  writeSafetensorsFile,
  type HostTensor,
} from '../src/safetensors.js';
import { writeFileAtomic } from '../src/atomic.js';

const DIGEST = expect.stringMatching(/^[0-9a-f]{64}$/);

/** A safetensors file from a header object and raw data bytes, without our writer. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), pad = true): Uint8Array {
  let json = new TextEncoder().encode(JSON.stringify(header));
  if (pad && json.length % 8 !== 0) {
    const p = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function u16le(values: number[]): Uint8Array {
  return new Uint8Array(new Uint16Array(values).buffer);
}

function bitsOf(f: Float32Array): number[] {
  return [...new Uint32Array(f.buffer, f.byteOffset, f.length)];
}

const f32 = (shape: number[], values: number[]): HostTensor => ({ dtype: 'float32', shape, data: Float32Array.from(values) });

function expectCleanError(run: () => unknown, source: string, fragment?: string | RegExp): void {
  let error: unknown;
  try {
    run();
  } catch (e) {
    error = e;
  }
  expect(error, 'expected an error').toBeDefined();
  expect((error as object).constructor).toBe(Error);
  expect((error as Error).message).toContain(source);
  if (fragment !== undefined) expect((error as Error).message).toMatch(fragment);
}

describe('safetensors writer', () => {
  it('writes the reference layout: u64 length, space-padded sorted JSON header, contiguous data', () => {
    const bytes = serializeSafetensors({
      'b.weight': f32([2], [1, 2]),
      'a.weight': f32([1, 3], [3, 4, 5]),
    });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    expect(text.trimEnd().length).toBeLessThanOrEqual(n);
    expect(/ *$/.exec(text)![0].length).toBe(n - text.trimEnd().length);
    const header = JSON.parse(text);
    expect(Object.keys(header)).toEqual(['__metadata__', 'a.weight', 'b.weight']);
    expect(header.__metadata__).toEqual({ format: 'pt', softgrad_sha256: DIGEST });
    expect(header['a.weight']).toEqual({ dtype: 'F32', shape: [1, 3], data_offsets: [0, 12] });
    expect(header['b.weight']).toEqual({ dtype: 'F32', shape: [2], data_offsets: [12, 20] });
    expect(bytes.length).toBe(8 + n + 20);
    expect([...new Float32Array(bytes.slice(8 + n).buffer)]).toEqual([3, 4, 5, 1, 2]);
  });

  it('refuses tensors whose data does not match dtype or shape', () => {
    expectCleanError(() => serializeSafetensors({ x: f32([2, 2], [1, 2, 3]) }), 'serializeSafetensors', /4 elements but data has 3/);
    expectCleanError(
      () => serializeSafetensors({ x: { dtype: 'float32', shape: [1], data: new Float64Array(1) } as unknown as HostTensor }),
      'serializeSafetensors',
      /Float32Array/,
    );
    expectCleanError(() => serializeSafetensors({ x: f32([-1], []) }), 'serializeSafetensors', /non-negative/);
  });
});

describe('safetensors round trips', () => {
  it('F32 is bit-exact for any float32 values, NaN payloads, -0 and subnormals included', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0xffffffff }), { maxLength: 64 }), (bits) => {
        const data = new Float32Array(new Uint32Array(bits).buffer);
        const back = parseSafetensors(serializeSafetensors({ t: { dtype: 'float32', shape: [bits.length], data } }), 'mem');
        const t = back.tensors.t;
        expect(t.dtype).toBe('float32');
        expect(t.shape).toEqual([bits.length]);
        expect(bitsOf(t.data as Float32Array)).toEqual(bits);
      }),
    );
  });

  it('F64, I32 and BOOL tensors and metadata come back unchanged', () => {
    const tensors: Record<string, HostTensor> = {
      d: { dtype: 'float64', shape: [3], data: Float64Array.from([Math.PI, -0, 1e-310]) },
      i: { dtype: 'int32', shape: [2, 2], data: Int32Array.from([-2147483648, 2147483647, 0, -1]) },
      m: { dtype: 'bool', shape: [3], data: Uint8Array.from([1, 0, 1]) },
      s: { dtype: 'float32', shape: [], data: Float32Array.from([7]) },
      e: { dtype: 'float32', shape: [0, 4], data: new Float32Array(0) },
    };
    const back = parseSafetensors(serializeSafetensors(tensors, { dtype: 'F64', metadata: { step: '12' } }), 'mem');
    expect(back.metadata).toEqual({ format: 'pt', step: '12', softgrad_sha256: DIGEST });
    expect(back.tensors.d).toEqual(tensors.d);
    expect(back.tensors.i).toEqual(tensors.i);
    expect(back.tensors.m).toEqual(tensors.m);
    expect(back.tensors.s).toEqual({ dtype: 'float64', shape: [], data: Float64Array.from([7]) });
    expect(back.tensors.e.shape).toEqual([0, 4]);
  });

  it('BF16 rounds each float32 to the nearest bf16, ties to even', () => {
    // Reference: pick the nearer of the two bf16 neighbours by real arithmetic; past the
    // largest bf16 the upper neighbour is infinity, which sits where 2^128 would.
    const reference = (x: number): number => {
      const u = new Uint32Array(new Float32Array([x]).buffer)[0];
      const downBits = u >>> 16;
      const upBits = (downBits + 1) & 0xffff;
      const lo = bf16BitsToFloat(downBits);
      const hi = bf16BitsToFloat(upBits);
      const hiAsNumber = Number.isFinite(hi) ? hi : Math.sign(hi) * 2 ** 128;
      const dLo = Math.abs(x - lo);
      const dHi = Math.abs(hiAsNumber - x);
      if (dLo < dHi) return lo;
      if (dHi < dLo) return hi;
      return downBits % 2 === 0 ? lo : hi;
    };
    const finiteFloat32 = fc
      .integer({ min: 0, max: 0xffffffff })
      .map((b) => new Float32Array(new Uint32Array([b]).buffer)[0])
      .filter((x) => Number.isFinite(x));
    fc.assert(
      fc.property(fc.array(finiteFloat32, { minLength: 1, maxLength: 64 }), (xs) => {
        const data = Float32Array.from(xs);
        const t = parseSafetensors(serializeSafetensors({ t: { dtype: 'float32', shape: [xs.length], data } }, { dtype: 'BF16' }), 'mem')
          .tensors.t.data as Float32Array;
        for (let i = 0; i < xs.length; i++) {
          expect(Object.is(t[i], reference(data[i])) || (t[i] === 0 && reference(data[i]) === 0)).toBe(true);
          // Relative error at most half a bf16 ulp (2^-8 relative spacing).
          if (Number.isFinite(t[i]) && Math.abs(data[i]) > 1e-37) {
            expect(Math.abs(t[i] - data[i])).toBeLessThanOrEqual(Math.abs(data[i]) * 2 ** -8);
          }
        }
      }),
    );
  });

  it('BF16 is exact for bf16-representable values, inf and NaN included', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 64 }), (hs) => {
        const data = new Float32Array(new Uint32Array(hs.map((h) => h << 16)).buffer);
        const t = parseSafetensors(serializeSafetensors({ t: { dtype: 'float32', shape: [hs.length], data } }, { dtype: 'BF16' }), 'mem')
          .tensors.t.data as Float32Array;
        hs.forEach((h, i) => {
          if ((h & 0x7fff) > 0x7f80) expect(Number.isNaN(t[i])).toBe(true);
          else expect(bitsOf(t.subarray(i, i + 1))[0]).toBe((h << 16) >>> 0);
        });
      }),
    );
    expect(floatToBf16Bits(1)).toBe(0x3f80);
    expect(floatToBf16Bits(Infinity)).toBe(0x7f80);
    expect(floatToBf16Bits(-Infinity)).toBe(0xff80);
    expect(floatToBf16Bits(NaN)).toBe(0x7fc0);
    expect(floatToBf16Bits(3.4e38)).toBe(0x7f80); // rounds past the largest bf16
    expect(floatToBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie, to even
    expect(floatToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie, to even (upwards)
  });

  it('F16 and BF16 decode known bit patterns exactly', () => {
    const halves: Array<[number, number]> = [
      [0x3c00, 1], [0xc000, -2], [0x7bff, 65504], [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24],
      [0x0400, 2 ** -14], [0x3555, 0.333251953125], [0x7c00, Infinity], [0xfc00, -Infinity], [0x0000, 0],
    ];
    for (const [h, v] of halves) expect(halfBitsToFloat(h)).toBe(v);
    expect(Object.is(halfBitsToFloat(0x8000), -0)).toBe(true);
    expect(halfBitsToFloat(0x7e00)).toBeNaN();
    expect(bf16BitsToFloat(0x4049)).toBe(3.140625);
    expect(bf16BitsToFloat(0x0001)).toBe(2 ** -133);

    const bytes = rawFile(
      {
        h: { dtype: 'F16', shape: [halves.length], data_offsets: [0, 2 * halves.length] },
        b: { dtype: 'BF16', shape: [2], data_offsets: [2 * halves.length, 2 * halves.length + 4] },
      },
      new Uint8Array([...u16le(halves.map(([h]) => h)), ...u16le([0x3f80, 0xbfc0])]),
    );
    const { tensors } = parseSafetensors(bytes, 'mem');
    expect(tensors.h.dtype).toBe('float32');
    expect([...tensors.h.data]).toEqual(halves.map(([, v]) => v));
    expect([...tensors.b.data]).toEqual([1, -1.5]);
    // A NaN's payload survives the widening.
    const nan = parseSafetensors(rawFile({ n: { dtype: 'F16', shape: [1], data_offsets: [0, 2] } }, u16le([0x7e01])), 'mem');
    expect(bitsOf(nan.tensors.n.data as Float32Array)).toEqual([0x7fc02000]);
  });

  it('integer dtypes become int32 when they fit and fail cleanly when they do not', () => {
    const i64 = new Uint8Array(new BigInt64Array([5n, -7n, 2147483647n, -2147483648n]).buffer);
    const u8 = Uint8Array.from([0, 255]);
    const bytes = rawFile(
      {
        a: { dtype: 'I64', shape: [4], data_offsets: [0, 32] },
        b: { dtype: 'U8', shape: [2], data_offsets: [32, 34] },
        c: { dtype: 'BOOL', shape: [2], data_offsets: [34, 36] },
      },
      new Uint8Array([...i64, ...u8, 0, 7]),
    );
    const { tensors } = parseSafetensors(bytes, 'mem');
    expect(tensors.a).toEqual({ dtype: 'int32', shape: [4], data: Int32Array.from([5, -7, 2147483647, -2147483648]) });
    expect(tensors.b).toEqual({ dtype: 'int32', shape: [2], data: Int32Array.from([0, 255]) });
    expect(tensors.c).toEqual({ dtype: 'bool', shape: [2], data: Uint8Array.from([0, 1]) });
    const big = rawFile({ a: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(new BigInt64Array([2147483648n]).buffer));
    expectCleanError(() => parseSafetensors(big, 'big.safetensors'), 'big.safetensors', /2147483648.*does not fit in int32/);
  });
});

describe('safetensors reader rejects bad input with a clean Error naming the file', () => {
  const S = 'bad.safetensors';
  const ok = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['a file shorter than 8 bytes', new Uint8Array(5), /shorter than the 8-byte/],
    ['a header length beyond the file', (() => { const b = rawFile({ t: ok }, new Uint8Array(8)); new DataView(b.buffer).setBigUint64(0, 1000n, true); return b; })(), /runs past the end/],
    ['an absurd header length', (() => { const b = new Uint8Array(16); new DataView(b.buffer).setBigUint64(0, 2n ** 62n, true); return b; })(), /limit/],
    ['a header that is not UTF-8', (() => { const b = rawFile({ t: ok }, new Uint8Array(8)); b[9] = 0xff; return b; })(), /UTF-8/],
    ['a header that is not JSON', (() => { const b = rawFile({ t: ok }, new Uint8Array(8)); b[8] = 0x41; return b; })(), /not valid JSON/],
    ['a header that is not an object', rawFile([1, 2]), /must be a JSON object/],
    ['an entry that is not an object', rawFile({ t: 3 }), /entry must be an object/],
    ['an entry without dtype', rawFile({ t: { shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8)), /no "dtype"/],
    ['an entry without shape', rawFile({ t: { dtype: 'F32', data_offsets: [0, 8] } }, new Uint8Array(8)), /no "shape"/],
    ['an entry without data_offsets', rawFile({ t: { dtype: 'F32', shape: [2] } }, new Uint8Array(8)), /no "data_offsets"/],
    ['an unknown dtype', rawFile({ t: { ...ok, dtype: 'F8_E4M3' } }, new Uint8Array(8)), /unknown dtype "F8_E4M3"/],
    ['a negative dimension', rawFile({ t: { ...ok, shape: [-2] } }, new Uint8Array(8)), /non-negative integers/],
    ['a fractional dimension', rawFile({ t: { ...ok, shape: [1.5] } }, new Uint8Array(8)), /non-negative integers/],
    ['non-integer offsets', rawFile({ t: { ...ok, data_offsets: [0, '8'] } }, new Uint8Array(8)), /data_offsets/],
    ['begin after end', rawFile({ t: { ...ok, data_offsets: [8, 0] } }, new Uint8Array(8)), /begin 8 > end 0/],
    ['an end beyond the data', rawFile({ t: { ...ok, data_offsets: [0, 8] } }, new Uint8Array(4)), /beyond the 4-byte data/],
    ['a byte length that does not match the shape', rawFile({ t: { ...ok, shape: [3] } }, new Uint8Array(8)), /needs 3 × 4 = 12/],
    ['overlapping tensors', rawFile({ t: ok, u: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8)), /overlap/],
    ['metadata that is not strings', rawFile({ __metadata__: { a: 1 }, t: ok }, new Uint8Array(8)), /__metadata__/],
  ];
  for (const [what, bytes, message] of cases) {
    it(`on ${what}`, () => expectCleanError(() => parseSafetensors(bytes, S), S, message));
  }

  it('accepts zero-sized tensors anywhere, even at the same offset as others', () => {
    const bytes = rawFile({ t: ok, z: { dtype: 'F32', shape: [0, 3], data_offsets: [4, 4] } }, new Uint8Array(8));
    expect(parseSafetensors(bytes, S).tensors.z.shape).toEqual([0, 3]);
  });

  it('keeps a tensor named "__proto__" as data', () => {
    // Built as text: an object literal cannot easily hold an own "__proto__" key.
    const header = '{"__proto__":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
    const file = new Uint8Array(8 + header.length + 8);
    new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
    file.set(new TextEncoder().encode(header), 8);
    const { tensors } = parseSafetensors(file, S);
    expect(Object.keys(tensors)).toEqual(['__proto__']);
    const again = parseSafetensors(serializeSafetensors(tensors), S);
    expect(Object.keys(again.tensors)).toEqual(['__proto__']);
  });
});

describe('safetensors files and checkpoint directories', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'softgrad-st-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const model = (): Record<string, HostTensor> => {
    const t: Record<string, HostTensor> = {};
    for (let i = 0; i < 5; i++) {
      t[`model.layers.${i}.mlp.up_proj.weight`] = f32([4, 8], Array.from({ length: 32 }, (_, k) => i * 2 + k * 0.25));
      t[`model.layers.${i}.input_layernorm.weight`] = f32([8], Array.from({ length: 8 }, (_, k) => 1 + k / 8));
    }
    t['model.embed_tokens.weight'] = f32([10, 8], Array.from({ length: 80 }, (_, k) => k - 40));
    return t;
  };

  it('writes and reads a file, also tensor by tensor and header only', async () => {
    const path = join(dir, 'x.safetensors');
    await writeSafetensorsFile(path, model(), { dtype: 'BF16', metadata: { note: 'hi' } });
    expect(await readdir(dir)).toEqual(['x.safetensors']);
    const all = await readSafetensorsFile(path);
    expect(all.tensors).toEqual(model()); // all values are bf16-representable
    expect(all.metadata).toEqual({ format: 'pt', note: 'hi', softgrad_sha256: DIGEST });
    const some = await readSafetensorsFile(path, { names: ['model.embed_tokens.weight'] });
    expect(Object.keys(some.tensors)).toEqual(['model.embed_tokens.weight']);
    await expect(readSafetensorsFile(path, { names: ['nope'] })).rejects.toThrow(`${path}: tensor "nope" is not in this file`);
    const header = await readSafetensorsHeader(path);
    expect(header.entries.find((e) => e.name === 'model.embed_tokens.weight')).toMatchObject({ dtype: 'BF16', shape: [10, 8] });
    // The file on disk equals the in-memory serialization.
    expect(new Uint8Array(await readFile(path))).toEqual(serializeSafetensors(model(), { dtype: 'BF16', metadata: { note: 'hi' } }));
  });

  it('names the file when it cannot be opened or is truncated', async () => {
    const missing = join(dir, 'missing.safetensors');
    await expect(readSafetensorsFile(missing)).rejects.toThrow(missing);
    const path = join(dir, 'cut.safetensors');
    const bytes = serializeSafetensors(model());
    await writeFile(path, bytes.subarray(0, bytes.length - 3));
    await expect(readSafetensorsFile(path)).rejects.toThrow(new RegExp(`${path}: tensor .* beyond the`));
  });

  it('writes one model.safetensors when everything fits', async () => {
    const { files } = await writeCheckpointDir(dir, model(), { dtype: 'F32', maxShardBytes: 1 << 20 });
    expect(files).toEqual(['model.safetensors']);
    expect(await readdir(dir)).toEqual(['model.safetensors']);
    expect(await readCheckpointDir(dir)).toEqual(model());
  });

  it('shards with an index as transformers does, and reads the shards back', async () => {
    const { files } = await writeCheckpointDir(dir, model(), { dtype: 'F32', maxShardBytes: 300 });
    const index = JSON.parse(await readFile(join(dir, 'model.safetensors.index.json'), 'utf8'));
    const shardNames = files.filter((f) => f.endsWith('.safetensors'));
    expect(shardNames.length).toBeGreaterThan(2);
    expect(shardNames[0]).toBe(`model-00001-of-${String(shardNames.length).padStart(5, '0')}.safetensors`);
    expect(index.metadata.total_size).toBe(5 * (128 + 32) + 320);
    expect(Object.keys(index.weight_map).sort()).toEqual(Object.keys(model()).sort());
    expect(new Set(Object.values(index.weight_map))).toEqual(new Set(shardNames));
    // Each shard stays within the limit unless one tensor alone exceeds it.
    for (const f of shardNames) {
      const h = await readSafetensorsHeader(join(dir, f));
      const size = h.entries.reduce((s, e) => s + e.end - e.begin, 0);
      expect(size <= 300 || h.entries.length === 1).toBe(true);
    }
    expect(await readCheckpointDir(dir)).toEqual(model());
    expect((await readdir(dir)).sort()).toEqual([...files].sort());
  });

  it('removes the files of a previous checkpoint layout so that they cannot shadow the new one', async () => {
    await writeCheckpointDir(dir, model());
    const sharded = await writeCheckpointDir(dir, model(), { maxShardBytes: 300 });
    expect((await readdir(dir)).sort()).toEqual([...sharded.files].sort());
    const changed = { ...model(), 'model.norm.weight': f32([8], [1, 1, 1, 1, 1, 1, 1, 1]) };
    await writeCheckpointDir(dir, changed);
    expect(await readdir(dir)).toEqual(['model.safetensors']);
    expect(await readCheckpointDir(dir)).toEqual(changed);
  });

  it('names the problem when an index points at missing shards or tensors', async () => {
    await writeCheckpointDir(dir, model(), { maxShardBytes: 300 });
    const indexPath = join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(await readFile(indexPath, 'utf8'));

    await writeFile(indexPath, JSON.stringify({ ...index, weight_map: { ...index.weight_map, extra: 'model-00099-of-00099.safetensors' } }));
    await expect(readCheckpointDir(dir)).rejects.toThrow(`${indexPath}: names shard "model-00099-of-00099.safetensors", which does not exist`);

    await writeFile(indexPath, JSON.stringify({ ...index, weight_map: { ...index.weight_map, 'ghost.weight': 'model-00001-of-00005.safetensors' } }));
    await expect(readCheckpointDir(dir)).rejects.toThrow(/absent from it: "ghost.weight"/);

    await writeFile(indexPath, JSON.stringify({ ...index, weight_map: { a: '../etc/passwd' } }));
    await expect(readCheckpointDir(dir)).rejects.toThrow(/file name in the same directory/);

    await writeFile(indexPath, '{"weight_map": 3}');
    await expect(readCheckpointDir(dir)).rejects.toThrow(`${indexPath}: expected an object with a "weight_map" object`);

    await rm(indexPath);
    await expect(readCheckpointDir(dir)).rejects.toThrow(/no checkpoint found/);
  });
});

describe('atomic writes', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'softgrad-atomic-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a failure halfway through writing leaves the previous file intact and no temporary file', async () => {
    const path = join(dir, 'model.safetensors');
    await writeSafetensorsFile(path, { a: f32([2], [1, 2]) });
    const before = await readFile(path);
    await expect(
      writeFileAtomic(path, async (fh) => {
        await fh.write(new Uint8Array(1000).fill(7));
        throw new Error('disk full (simulated)');
      }),
    ).rejects.toThrow('disk full (simulated)');
    expect(await readdir(dir)).toEqual(['model.safetensors']);
    expect(await readFile(path)).toEqual(before);
  });

  it('a serialization error leaves the previous file intact and no temporary file', async () => {
    const path = join(dir, 'model.safetensors');
    await writeSafetensorsFile(path, { a: f32([2], [1, 2]) });
    const before = await readFile(path);
    await expect(writeSafetensorsFile(path, { a: f32([2], [1, 2]), b: f32([3], [1]) })).rejects.toThrow(/3 elements but data has 1/);
    expect(await readdir(dir)).toEqual(['model.safetensors']);
    expect(await readFile(path)).toEqual(before);
  });
});
