// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length N, N bytes of UTF-8 JSON, then the tensors' bytes.
// Everything here works on plain typed arrays so it does not depend on the engine.

import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** A tensor on the host, as read from or written to a checkpoint. Row-major. */
export type HostTensor =
  | { dtype: 'float32'; shape: number[]; data: Float32Array }
  | { dtype: 'float64'; shape: number[]; data: Float64Array }
  | { dtype: 'int32'; shape: number[]; data: Int32Array }
  | { dtype: 'bool'; shape: number[]; data: Uint8Array };

export type HostDtype = HostTensor['dtype'];

/** The dtypes this reader understands, with their sizes in bytes. */
export const SAFETENSORS_DTYPE_BYTES = {
  F64: 8, F32: 4, F16: 2, BF16: 2,
  I64: 8, I32: 4, I16: 2, I8: 1,
  U64: 8, U32: 4, U16: 2, U8: 1,
  BOOL: 1,
} as const;

export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPE_BYTES;

/** Storage dtypes for floating-point tensors when writing. */
export type WriteFloatDtype = 'F32' | 'BF16' | 'F64';

export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte offsets relative to the start of the data section, [begin, end). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  entries: SafetensorsEntry[];
  metadata: Record<string, string>;
  /** Absolute file offset of the data section: 8 + header length. */
  dataStart: number;
}

export interface SafetensorsFile {
  tensors: Record<string, HostTensor>;
  metadata: Record<string, string>;
}

export interface SerializeOptions {
  /** How float32/float64 tensors are stored. Default 'F32'. */
  dtype?: WriteFloatDtype;
  /** String-to-string metadata; `format: "pt"` is added unless given, as transformers requires it. */
  metadata?: Record<string, string>;
}

// safetensors' own limit (MAX_HEADER_SIZE in the Rust crate); a larger claimed length is
// corruption, and honouring it would mean allocating that much before finding out.
export const MAX_HEADER_BYTES = 100_000_000;

const IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function quote(name: string): string {
  const s = JSON.stringify(name);
  return s.length > 80 ? `${s.slice(0, 77)}..."` : s;
}

function show(value: unknown): string {
  let s: string | undefined;
  try {
    s = JSON.stringify(value);
  } catch {
    s = undefined;
  }
  s ??= String(value);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === 'string' && Object.hasOwn(SAFETENSORS_DTYPE_BYTES, value);
}

function isNonNegativeInt(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** Number of elements of a shape; the shape must already be validated. */
export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function swapBytesInPlace(bytes: Uint8Array, width: number): void {
  for (let i = 0; i + width <= bytes.length; i += width) {
    for (let a = i, b = i + width - 1; a < b; a++, b--) {
      const t = bytes[a];
      bytes[a] = bytes[b];
      bytes[b] = t;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Header

/** The 8-byte prefix: the header's length. Throws on files too short or lengths too large. */
export function parseHeaderLength(prefix: Uint8Array, fileSize: number, source: string): number {
  if (fileSize < 8 || prefix.length < 8) {
    throw new Error(`${source}: not a safetensors file: ${fileSize} bytes, shorter than the 8-byte header length`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new Error(`${source}: header length ${n} is larger than the ${MAX_HEADER_BYTES}-byte limit (corrupt file?)`);
  }
  const len = Number(n);
  if (8 + len > fileSize) {
    throw new Error(`${source}: header length ${len} runs past the end of the ${fileSize}-byte file (truncated?)`);
  }
  return len;
}

/**
 * Parses and validates the JSON header. `dataLength` is the size of the data section, used
 * to check every tensor's offsets. Every failure is an Error naming `source`.
 */
export function parseSafetensorsHeader(headerBytes: Uint8Array, dataLength: number, source: string): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new Error(`${source}: header is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${source}: header is not valid JSON (${(e as Error).message})`);
  }
  if (!isRecord(json)) throw new Error(`${source}: header must be a JSON object, got ${show(json)}`);

  // Null-prototype records: names such as "__proto__" are data here, not accessors.
  const metadata: Record<string, string> = Object.create(null);
  const entries: SafetensorsEntry[] = [];
  for (const [name, raw] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (raw === null) continue;
      if (!isRecord(raw)) throw new Error(`${source}: "__metadata__" must be an object of strings, got ${show(raw)}`);
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') throw new Error(`${source}: "__metadata__" value for ${quote(k)} must be a string, got ${show(v)}`);
        metadata[k] = v;
      }
      continue;
    }
    const where = `${source}: tensor ${quote(name)}`;
    if (!isRecord(raw)) throw new Error(`${where}: entry must be an object, got ${show(raw)}`);
    const { dtype, shape, data_offsets: offsets } = raw;
    if (dtype === undefined) throw new Error(`${where}: entry has no "dtype"`);
    if (!isDtype(dtype)) {
      throw new Error(`${where}: unknown dtype ${show(dtype)} (supported: ${Object.keys(SAFETENSORS_DTYPE_BYTES).join(', ')})`);
    }
    if (shape === undefined) throw new Error(`${where}: entry has no "shape"`);
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInt)) {
      throw new Error(`${where}: shape must be a list of non-negative integers, got ${show(shape)}`);
    }
    if (offsets === undefined) throw new Error(`${where}: entry has no "data_offsets"`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInt)) {
      throw new Error(`${where}: data_offsets must be two non-negative integers [begin, end], got ${show(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) throw new Error(`${where}: data_offsets begin ${begin} > end ${end}`);
    if (end > dataLength) {
      throw new Error(`${where}: data_offsets end ${end} is beyond the ${dataLength}-byte data section (truncated file?)`);
    }
    const itemBytes = SAFETENSORS_DTYPE_BYTES[dtype];
    let numel = 1;
    for (const d of shape as number[]) {
      numel *= d;
      if (numel > Number.MAX_SAFE_INTEGER) throw new Error(`${where}: shape ${show(shape)} has too many elements`);
    }
    if (numel * itemBytes !== end - begin) {
      throw new Error(
        `${where}: ${end - begin} bytes of data but shape ${show(shape)} of ${dtype} needs ${numel} × ${itemBytes} = ${numel * itemBytes}`,
      );
    }
    entries.push({ name, dtype, shape: [...(shape as number[])], begin, end });
  }

  const byOffset = entries.filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < byOffset.length; i++) {
    const prev = byOffset[i - 1];
    const cur = byOffset[i];
    if (cur.begin < prev.end) {
      throw new Error(
        `${source}: tensors ${quote(prev.name)} [${prev.begin}, ${prev.end}) and ${quote(cur.name)} [${cur.begin}, ${cur.end}) overlap`,
      );
    }
  }
  return { entries, metadata, dataStart: 8 + headerBytes.length };
}

// ---------------------------------------------------------------------------------------
// Element conversions

let halfToFloatBits: Uint32Array | undefined;

// All 65536 half-precision values as float32 bit patterns; every half is exactly
// representable in float32, NaN payloads included, so a table lookup is exact.
function halfTable(): Uint32Array {
  if (halfToFloatBits) return halfToFloatBits;
  const table = new Uint32Array(65536);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const man = h & 0x3ff;
    if (exp === 0x1f) {
      table[h] = (sign | 0x7f800000 | (man << 13)) >>> 0;
    } else if (exp === 0) {
      f[0] = man * 2 ** -24;
      table[h] = (sign | u[0]) >>> 0;
    } else {
      table[h] = (sign | ((exp - 15 + 127) << 23) | (man << 13)) >>> 0;
    }
  }
  halfToFloatBits = table;
  return table;
}

/** IEEE half-precision bit pattern → float32 value (exact). */
export function halfBitsToFloat(bits: number): number {
  const f = new Float32Array(new Uint32Array([halfTable()[bits & 0xffff]]).buffer);
  return f[0];
}

/** bfloat16 bit pattern → float32 value (exact). */
export function bf16BitsToFloat(bits: number): number {
  return new Float32Array(new Uint32Array([(bits & 0xffff) << 16]).buffer)[0];
}

/**
 * float32 → bfloat16 bits, rounding to nearest with ties to even, as PyTorch does;
 * NaN becomes the quiet NaN 0x7FC0 with the sign kept.
 */
export function floatToBf16Bits(value: number): number {
  const u = new Uint32Array(new Float32Array([value]).buffer)[0];
  return float32BitsToBf16Bits(u);
}

function float32BitsToBf16Bits(u: number): number {
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) & 0x8000) | 0x7fc0;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * Decodes one tensor's raw little-endian bytes. `raw` must own its buffer from offset 0
 * (as a fresh copy does); it may be reused as the result's storage.
 */
function decodeTensor(raw: Uint8Array, entry: SafetensorsEntry, source: string): HostTensor {
  const shape = [...entry.shape];
  const n = shapeSize(shape);
  const width = SAFETENSORS_DTYPE_BYTES[entry.dtype];
  if (!IS_LITTLE_ENDIAN && width > 1) swapBytesInPlace(raw, width);
  const buf = raw.buffer as ArrayBuffer;
  switch (entry.dtype) {
    case 'F32':
      return { dtype: 'float32', shape, data: new Float32Array(buf, 0, n) };
    case 'F64':
      return { dtype: 'float64', shape, data: new Float64Array(buf, 0, n) };
    case 'F16': {
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      const src = new Uint16Array(buf, 0, n);
      const table = halfTable();
      for (let i = 0; i < n; i++) bits[i] = table[src[i]];
      return { dtype: 'float32', shape, data: out };
    }
    case 'BF16': {
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      const src = new Uint16Array(buf, 0, n);
      for (let i = 0; i < n; i++) bits[i] = src[i] << 16;
      return { dtype: 'float32', shape, data: out };
    }
    case 'I32':
      return { dtype: 'int32', shape, data: new Int32Array(buf, 0, n) };
    case 'I16':
      return { dtype: 'int32', shape, data: Int32Array.from(new Int16Array(buf, 0, n)) };
    case 'I8':
      return { dtype: 'int32', shape, data: Int32Array.from(new Int8Array(buf, 0, n)) };
    case 'U16':
      return { dtype: 'int32', shape, data: Int32Array.from(new Uint16Array(buf, 0, n)) };
    case 'U8':
      return { dtype: 'int32', shape, data: Int32Array.from(raw.subarray(0, n)) };
    case 'U32': {
      const src = new Uint32Array(buf, 0, n);
      for (let i = 0; i < n; i++) {
        if (src[i] > 0x7fffffff) {
          throw new Error(`${source}: tensor ${quote(entry.name)}: U32 value ${src[i]} at index ${i} does not fit in int32`);
        }
      }
      return { dtype: 'int32', shape, data: new Int32Array(buf, 0, n) };
    }
    case 'I64':
    case 'U64': {
      // Pairs of 32-bit words (low, high); the value fits int32 exactly when the high word
      // is the sign extension of the low one (and, unsigned, that sign is 0).
      const words = new Int32Array(buf, 0, 2 * n);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const lo = words[2 * i];
        const hi = words[2 * i + 1];
        if (hi !== (lo < 0 ? -1 : 0) || (entry.dtype === 'U64' && hi !== 0)) {
          const v = entry.dtype === 'U64'
            ? new BigUint64Array(buf, 8 * i, 1)[0]
            : new BigInt64Array(buf, 8 * i, 1)[0];
          throw new Error(`${source}: tensor ${quote(entry.name)}: ${entry.dtype} value ${v} at index ${i} does not fit in int32`);
        }
        out[i] = lo;
      }
      return { dtype: 'int32', shape, data: out };
    }
    case 'BOOL': {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = raw[i] !== 0 ? 1 : 0;
      return { dtype: 'bool', shape, data: out };
    }
  }
}

// ---------------------------------------------------------------------------------------
// Reading

/** Parses a whole safetensors file held in memory. */
export function parseSafetensors(bytes: Uint8Array, source: string): SafetensorsFile {
  const headerLength = parseHeaderLength(bytes, bytes.length, source);
  const dataStart = 8 + headerLength;
  const header = parseSafetensorsHeader(bytes.subarray(8, dataStart), bytes.length - dataStart, source);
  const tensors: Record<string, HostTensor> = Object.create(null);
  for (const entry of header.entries) {
    tensors[entry.name] = decodeTensor(bytes.slice(dataStart + entry.begin, dataStart + entry.end), entry, source);
  }
  return { tensors, metadata: header.metadata };
}

async function openForReading(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (e) {
    throw new Error(`${path}: cannot open: ${(e as Error).message}`, { cause: e });
  }
}

// FileHandle.read takes at most 2^31-1 bytes per call; shards are often ~5 GB.
const READ_CHUNK = 1 << 30;

async function readExactly(fh: FileHandle, into: Uint8Array, position: number, source: string): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const want = Math.min(READ_CHUNK, into.length - done);
    const { bytesRead } = await fh.read(into, done, want, position + done);
    if (bytesRead === 0) throw new Error(`${source}: file ended early (changed while being read?)`);
    done += bytesRead;
  }
}

async function readHeaderFrom(fh: FileHandle, path: string): Promise<SafetensorsHeader> {
  const { size } = await fh.stat();
  const prefix = new Uint8Array(8);
  if (size >= 8) await readExactly(fh, prefix, 0, path);
  const headerLength = parseHeaderLength(prefix, size, path);
  const headerBytes = new Uint8Array(headerLength);
  await readExactly(fh, headerBytes, 8, path);
  return parseSafetensorsHeader(headerBytes, size - 8 - headerLength, path);
}

/** Reads and validates only a file's header (cheap even for multi-gigabyte shards). */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const fh = await openForReading(path);
  try {
    return await readHeaderFrom(fh, path);
  } finally {
    await fh.close();
  }
}

/**
 * Reads a safetensors file tensor by tensor (never the whole file at once, so shards
 * larger than a Node buffer load). `names` restricts which tensors are read; each
 * named tensor must exist.
 */
export async function readSafetensorsFile(path: string, options: { names?: readonly string[] } = {}): Promise<SafetensorsFile> {
  const fh = await openForReading(path);
  try {
    const header = await readHeaderFrom(fh, path);
    let entries = header.entries;
    if (options.names) {
      const byName = new Map(entries.map((e) => [e.name, e]));
      entries = options.names.map((name) => {
        const entry = byName.get(name);
        if (!entry) throw new Error(`${path}: tensor ${quote(name)} is not in this file`);
        return entry;
      });
    }
    const tensors: Record<string, HostTensor> = Object.create(null);
    for (const entry of entries) {
      const raw = new Uint8Array(entry.end - entry.begin);
      await readExactly(fh, raw, header.dataStart + entry.begin, path);
      tensors[entry.name] = decodeTensor(raw, entry, path);
    }
    return { tensors, metadata: header.metadata };
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------
// Writing

interface PlannedTensor {
  name: string;
  tensor: HostTensor;
  dtype: SafetensorsDtype;
  byteLength: number;
}

interface Plan {
  header: Uint8Array;
  tensors: PlannedTensor[];
}

function storageDtype(tensor: HostTensor, floatDtype: WriteFloatDtype): SafetensorsDtype {
  switch (tensor.dtype) {
    case 'float32':
    case 'float64':
      return floatDtype;
    case 'int32':
      return 'I32';
    case 'bool':
      return 'BOOL';
  }
}

const DATA_CLASS: Record<HostDtype, { name: string; is: (d: unknown) => boolean }> = {
  float32: { name: 'Float32Array', is: (d) => d instanceof Float32Array },
  float64: { name: 'Float64Array', is: (d) => d instanceof Float64Array },
  int32: { name: 'Int32Array', is: (d) => d instanceof Int32Array },
  bool: { name: 'Uint8Array', is: (d) => d instanceof Uint8Array },
};

function checkTensorForWriting(name: string, tensor: HostTensor, context: string): void {
  const where = `${context}: tensor ${quote(name)}`;
  if (!isRecord(tensor)) throw new Error(`${where}: expected { dtype, shape, data }, got ${show(tensor)}`);
  if (name.length === 0 || name === '__metadata__') throw new Error(`${where}: this name cannot be stored`);
  const cls = Object.hasOwn(DATA_CLASS, tensor.dtype) ? DATA_CLASS[tensor.dtype] : undefined;
  if (!cls) throw new Error(`${where}: unknown dtype ${show(tensor.dtype)}`);
  if (!cls.is(tensor.data)) throw new Error(`${where}: dtype ${tensor.dtype} needs its data in a ${cls.name}`);
  if (!Array.isArray(tensor.shape) || !tensor.shape.every(isNonNegativeInt)) {
    throw new Error(`${where}: shape must be a list of non-negative integers, got ${show(tensor.shape)}`);
  }
  const n = shapeSize(tensor.shape);
  if (tensor.data.length !== n) {
    throw new Error(`${where}: shape ${show(tensor.shape)} has ${n} elements but data has ${tensor.data.length}`);
  }
}

/** The byte size a tensor will take when stored with the given float dtype. */
export function storedByteLength(tensor: Pick<HostTensor, 'dtype' | 'shape'>, floatDtype: WriteFloatDtype = 'F32'): number {
  return shapeSize(tensor.shape) * SAFETENSORS_DTYPE_BYTES[storageDtype(tensor as HostTensor, floatDtype)];
}

function planSafetensors(tensors: Record<string, HostTensor>, options: SerializeOptions, context: string): Plan {
  const floatDtype = options.dtype ?? 'F32';
  if (floatDtype !== 'F32' && floatDtype !== 'BF16' && floatDtype !== 'F64') {
    throw new Error(`${context}: cannot write float tensors as ${show(floatDtype)} (supported: F32, BF16, F64)`);
  }
  const metadata: Record<string, string> = Object.assign(Object.create(null), { format: 'pt' }, options.metadata ?? {});
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new Error(`${context}: metadata value for ${quote(k)} must be a string, got ${show(v)}`);
  }
  // Sorted by name so that the same tensors always give the same bytes.
  const names = Object.keys(tensors).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const planned: PlannedTensor[] = [];
  const header: Record<string, unknown> = Object.create(null);
  header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const tensor = tensors[name];
    checkTensorForWriting(name, tensor, context);
    const dtype = storageDtype(tensor, floatDtype);
    const byteLength = shapeSize(tensor.shape) * SAFETENSORS_DTYPE_BYTES[dtype];
    header[name] = { dtype, shape: [...tensor.shape], data_offsets: [offset, offset + byteLength] };
    planned.push({ name, tensor, dtype, byteLength });
    offset += byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  // Padding with spaces to a multiple of 8 keeps the data 8-byte aligned, as the
  // reference implementation does.
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length);
  return { header: out, tensors: planned };
}

function encodeTensor(p: PlannedTensor): Uint8Array {
  const { tensor, dtype } = p;
  let bytes: Uint8Array;
  let width: number;
  switch (dtype) {
    case 'F32': {
      const f = tensor.data instanceof Float32Array ? tensor.data.slice() : Float32Array.from(tensor.data);
      bytes = new Uint8Array(f.buffer);
      width = 4;
      break;
    }
    case 'F64': {
      const f = tensor.data instanceof Float64Array ? tensor.data.slice() : Float64Array.from(tensor.data);
      bytes = new Uint8Array(f.buffer);
      width = 8;
      break;
    }
    case 'BF16': {
      // float64 input is rounded to float32 first, then to bf16 (double rounding, which
      // can differ from direct rounding only on exact float32 ties).
      const f = tensor.data instanceof Float32Array ? tensor.data : Float32Array.from(tensor.data);
      const bits = new Uint32Array(f.buffer, f.byteOffset, f.length);
      const out = new Uint16Array(f.length);
      for (let i = 0; i < out.length; i++) out[i] = float32BitsToBf16Bits(bits[i]);
      bytes = new Uint8Array(out.buffer);
      width = 2;
      break;
    }
    case 'I32': {
      bytes = new Uint8Array((tensor.data as Int32Array).slice().buffer);
      width = 4;
      break;
    }
    case 'BOOL': {
      const src = tensor.data as Uint8Array;
      bytes = new Uint8Array(src.length);
      for (let i = 0; i < src.length; i++) bytes[i] = src[i] !== 0 ? 1 : 0;
      width = 1;
      break;
    }
    default:
      throw new Error(`internal: no encoder for ${dtype}`);
  }
  if (!IS_LITTLE_ENDIAN && width > 1) swapBytesInPlace(bytes, width);
  return bytes;
}

/** The bytes of a safetensors file holding `tensors`. */
export function serializeSafetensors(tensors: Record<string, HostTensor>, options: SerializeOptions = {}): Uint8Array {
  const plan = planSafetensors(tensors, options, 'serializeSafetensors');
  const total = plan.header.length + plan.tensors.reduce((s, t) => s + t.byteLength, 0);
  const out = new Uint8Array(total);
  out.set(plan.header, 0);
  let offset = plan.header.length;
  for (const t of plan.tensors) {
    out.set(encodeTensor(t), offset);
    offset += t.byteLength;
  }
  return out;
}

/**
 * Writes `path` so that it holds either its previous content or the complete new
 * content, never a part: the bytes go to a temporary file in the same directory, which
 * is synced and renamed over `path`. On failure the temporary file is removed.
 * `content` may be a function that writes through the open handle (for streaming).
 */
export async function writeFileAtomic(
  path: string,
  content: string | Uint8Array | ((fh: FileHandle) => Promise<void>),
): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
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
}

async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, Math.min(READ_CHUNK, bytes.length - done));
    done += bytesWritten;
  }
}

/**
 * Writes a safetensors file atomically, converting one tensor at a time so that
 * memory stays at one tensor's encoding beyond the input.
 */
export async function writeSafetensorsFile(
  path: string,
  tensors: Record<string, HostTensor>,
  options: SerializeOptions = {},
): Promise<void> {
  const plan = planSafetensors(tensors, options, path);
  await writeFileAtomic(path, async (fh) => {
    await writeAll(fh, plan.header);
    for (const t of plan.tensors) await writeAll(fh, encodeTensor(t));
  });
}

// ---------------------------------------------------------------------------------------
// Checkpoint directories (single file or sharded with an index), as transformers writes them

export const SINGLE_FILE_NAME = 'model.safetensors';
export const INDEX_FILE_NAME = 'model.safetensors.index.json';

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

interface CheckpointIndex {
  weightMap: Map<string, string>;
}

async function readIndex(path: string): Promise<CheckpointIndex> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new Error(`${path}: cannot read: ${(e as Error).message}`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (!isRecord(json) || !isRecord(json.weight_map)) {
    throw new Error(`${path}: expected an object with a "weight_map" object`);
  }
  const weightMap = new Map<string, string>();
  for (const [name, file] of Object.entries(json.weight_map)) {
    // Shard names are plain file names in the same directory; anything else would let
    // an index point the loader at arbitrary files.
    if (typeof file !== 'string' || file === '' || file === '.' || file === '..' || /[/\\]/.test(file)) {
      throw new Error(`${path}: weight_map entry for ${quote(name)} must be a file name in the same directory, got ${show(file)}`);
    }
    weightMap.set(name, file);
  }
  return { weightMap };
}

/**
 * Loads every tensor of a checkpoint directory: `model.safetensors` if present (as
 * transformers prefers it), otherwise `model.safetensors.index.json` and its shards.
 */
export async function readCheckpointDir(dir: string): Promise<Record<string, HostTensor>> {
  const single = join(dir, SINGLE_FILE_NAME);
  if (await exists(single)) return (await readSafetensorsFile(single)).tensors;
  const indexPath = join(dir, INDEX_FILE_NAME);
  if (!(await exists(indexPath))) {
    throw new Error(`${dir}: no checkpoint found (neither ${SINGLE_FILE_NAME} nor ${INDEX_FILE_NAME})`);
  }
  const { weightMap } = await readIndex(indexPath);
  const byShard = new Map<string, string[]>();
  for (const [name, file] of weightMap) {
    const list = byShard.get(file);
    if (list) list.push(name);
    else byShard.set(file, [name]);
  }
  for (const file of byShard.keys()) {
    if (!(await exists(join(dir, file)))) throw new Error(`${indexPath}: names shard ${quote(file)}, which does not exist`);
  }
  const tensors: Record<string, HostTensor> = Object.create(null);
  for (const [file, names] of byShard) {
    const shardPath = join(dir, file);
    const header = await readSafetensorsHeader(shardPath);
    const present = new Set(header.entries.map((e) => e.name));
    const missing = names.filter((n) => !present.has(n));
    if (missing.length > 0) {
      throw new Error(
        `${indexPath}: ${missing.length} tensor(s) listed for shard ${quote(file)} are absent from it: ${missing.slice(0, 5).map(quote).join(', ')}${missing.length > 5 ? ', ...' : ''}`,
      );
    }
    const shard = await readSafetensorsFile(shardPath, { names });
    for (const name of names) tensors[name] = shard.tensors[name];
  }
  return tensors;
}

export interface WriteCheckpointOptions extends SerializeOptions {
  /**
   * Largest shard in bytes of tensor data. Without it, or when everything fits, one
   * `model.safetensors` is written. A tensor larger than this gets a shard of its own.
   */
  maxShardBytes?: number;
}

/**
 * Writes tensors as transformers' save_pretrained does: one `model.safetensors`, or
 * shards `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json`. Each
 * file is written atomically and the index last; files of a previous checkpoint that the
 * new one does not use are removed afterwards, so a reader never picks up stale weights.
 */
export async function writeCheckpointDir(
  dir: string,
  tensors: Record<string, HostTensor>,
  options: WriteCheckpointOptions = {},
): Promise<{ files: string[] }> {
  const floatDtype = options.dtype ?? 'F32';
  const max = options.maxShardBytes;
  if (max !== undefined && !(Number.isSafeInteger(max) && max > 0)) {
    throw new Error(`${dir}: maxShardBytes must be a positive integer, got ${show(max)}`);
  }
  const names = Object.keys(tensors).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const name of names) checkTensorForWriting(name, tensors[name], dir);
  const sizes = new Map(names.map((n) => [n, storedByteLength(tensors[n], floatDtype)]));
  const total = names.reduce((s, n) => s + (sizes.get(n) ?? 0), 0);

  await mkdir(dir, { recursive: true });
  const singlePath = join(dir, SINGLE_FILE_NAME);
  const indexPath = join(dir, INDEX_FILE_NAME);
  const previousShards = (await exists(indexPath))
    ? new Set((await readIndex(indexPath).catch(() => ({ weightMap: new Map<string, string>() }))).weightMap.values())
    : new Set<string>();

  if (max === undefined || total <= max) {
    await writeSafetensorsFile(singlePath, tensors, options);
    await rm(indexPath, { force: true });
    for (const f of previousShards) if (f !== SINGLE_FILE_NAME) await rm(join(dir, f), { force: true });
    return { files: [SINGLE_FILE_NAME] };
  }

  const groups: string[][] = [];
  let current: string[] = [];
  let currentBytes = 0;
  for (const name of names) {
    const size = sizes.get(name) ?? 0;
    if (current.length > 0 && currentBytes + size > max) {
      groups.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(name);
    currentBytes += size;
  }
  if (current.length > 0) groups.push(current);

  const pad = (i: number) => String(i).padStart(5, '0');
  const files = groups.map((_, i) => `model-${pad(i + 1)}-of-${pad(groups.length)}.safetensors`);
  const weightMap: Record<string, string> = Object.create(null);
  for (let g = 0; g < groups.length; g++) {
    const shard: Record<string, HostTensor> = Object.create(null);
    for (const name of groups[g]) {
      shard[name] = tensors[name];
      weightMap[name] = files[g];
    }
    await writeSafetensorsFile(join(dir, files[g]), shard, options);
  }
  // A leftover single file would shadow the index (readers prefer it).
  await rm(singlePath, { force: true });
  const index = { metadata: { total_size: total }, weight_map: weightMap };
  await writeFileAtomic(indexPath, `${JSON.stringify(index, null, 2)}\n`);
  const keep = new Set(files);
  for (const f of previousShards) if (!keep.has(f)) await rm(join(dir, f), { force: true });
  return { files: [...files, INDEX_FILE_NAME] };
}
