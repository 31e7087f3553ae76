// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length N, N bytes of UTF-8 JSON, then the tensors' bytes.
// Everything here works on plain typed arrays so it does not depend on the engine.

import { constants as bufferConstants } from 'node:buffer';
import { createHash, type Hash } from 'node:crypto';
import { mkdir, open, readFile, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic.js';
import { parseJsonStrict } from './json.js';

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
  /**
   * Record a SHA-256 of the tensors in the metadata (`softgrad_sha256`, see `tensorDigest`),
   * which the reader checks. Default true: the format has no checksum of its own, so a
   * flipped byte in the data would otherwise load as a slightly different model.
   */
  checksum?: boolean;
}

/** Metadata key of the tensors' SHA-256 (hex), written and checked by this module. */
export const DIGEST_METADATA_KEY = 'softgrad_sha256';

/**
 * The largest typed array this Node can allocate, in bytes. A tensor beyond it cannot be
 * read however much memory there is, so it is refused before anything is allocated.
 */
export const MAX_ARRAY_BYTES: number = (() => {
  try {
    return bufferConstants.MAX_LENGTH;
  } catch {
    return 2 ** 31 - 1; // a browser bundle, where node:buffer is a stub that throws on use
  }
})();

/**
 * A SHA-256 hasher where node:crypto exists; in a browser bundle (no node:crypto) undefined,
 * and the digest we record in our files is then neither checked nor written.
 */
function sha256(): Hash | undefined {
  try {
    return createHash('sha256');
  } catch {
    return undefined;
  }
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
    json = parseJsonStrict(text, 'header');
  } catch (e) {
    throw new Error(`${source}: ${(e as Error).message}`);
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

  checkCoverage(entries, dataLength, source);
  return { entries, metadata, dataStart: 8 + headerBytes.length };
}

/**
 * The tensors must tile the data section exactly: no overlaps (two tensors sharing bytes),
 * no holes and nothing after the last tensor. A header length a few bytes off, a tensor
 * dropped from the header or bytes appended to the file all break the tiling, where
 * otherwise they would load as shifted or partial weights. Zero-sized tensors hold no
 * bytes and may sit at any offset within the section.
 */
function checkCoverage(entries: readonly SafetensorsEntry[], dataLength: number, source: string): void {
  const byOffset = entries.filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin);
  let covered = 0;
  let previous: SafetensorsEntry | undefined;
  for (const cur of byOffset) {
    if (cur.begin < covered && previous) {
      throw new Error(
        `${source}: tensors ${quote(previous.name)} [${previous.begin}, ${previous.end}) and ${quote(cur.name)} [${cur.begin}, ${cur.end}) overlap`,
      );
    }
    if (cur.begin > covered) {
      throw new Error(
        `${source}: bytes [${covered}, ${cur.begin}) of the data section belong to no tensor (before ${quote(cur.name)}); ` +
          'expected the tensors to cover the data section exactly (corrupt header or header length?)',
      );
    }
    covered = cur.end;
    previous = cur;
  }
  if (covered !== dataLength) {
    throw new Error(
      `${source}: the data section has ${dataLength - covered} byte(s) after the last tensor (${dataLength} bytes, tensors cover ${covered}); ` +
        'expected the tensors to cover it exactly (corrupt header, header length or appended data?)',
    );
  }
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

function byNameOrder(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

const encoder = new TextEncoder();

/**
 * What the recorded digest covers for one tensor, ahead of its bytes: its name, dtype and
 * shape, so that two tensors trading places or a changed shape also changes the digest.
 */
function digestPrefix(entry: Pick<SafetensorsEntry, 'name' | 'dtype' | 'shape'>): Uint8Array {
  return encoder.encode(`${JSON.stringify([entry.name, entry.dtype, entry.shape])}\n`);
}

function recordedDigest(metadata: Record<string, string>, source: string): string | undefined {
  const value = metadata[DIGEST_METADATA_KEY];
  if (value === undefined) return undefined;
  if (!/^[0-9a-f]{64}$/.test(value)) {
    throw new Error(`${source}: metadata ${quote(DIGEST_METADATA_KEY)} must be 64 hex digits (a SHA-256), got ${show(value)}`);
  }
  return value;
}

function digestMismatch(source: string): Error {
  return new Error(
    `${source}: the tensors do not match the SHA-256 recorded in the file's metadata (${DIGEST_METADATA_KEY}): the file is corrupted`,
  );
}

/** Bytes a tensor takes once decoded (F16/BF16 widen to float32, 64-bit integers narrow to int32). */
function decodedByteLength(entry: SafetensorsEntry): number {
  const n = shapeSize(entry.shape);
  switch (entry.dtype) {
    case 'F64':
      return 8 * n;
    case 'BOOL':
      return n;
    default:
      return 4 * n;
  }
}

function checkAllocatable(entry: SafetensorsEntry, source: string): void {
  const bytes = Math.max(entry.end - entry.begin, decodedByteLength(entry));
  if (bytes > MAX_ARRAY_BYTES) {
    throw new Error(
      `${source}: tensor ${quote(entry.name)} of shape ${show(entry.shape)} needs ${bytes} bytes, more than one array can hold ` +
        `(${MAX_ARRAY_BYTES} bytes in this Node); nothing was allocated`,
    );
  }
}

/** Parses a whole safetensors file held in memory, checking its digest when it has one. */
export function parseSafetensors(bytes: Uint8Array, source: string): SafetensorsFile {
  const headerLength = parseHeaderLength(bytes, bytes.length, source);
  const dataStart = 8 + headerLength;
  const header = parseSafetensorsHeader(bytes.subarray(8, dataStart), bytes.length - dataStart, source);
  const digest = recordedDigest(header.metadata, source);
  const hash = digest === undefined ? undefined : sha256();
  const tensors: Record<string, HostTensor> = Object.create(null);
  for (const entry of [...header.entries].sort(byNameOrder)) {
    checkAllocatable(entry, source);
    const raw = bytes.slice(dataStart + entry.begin, dataStart + entry.end);
    hash?.update(digestPrefix(entry)).update(raw);
    tensors[entry.name] = decodeTensor(raw, entry, source);
  }
  if (hash && hash.digest('hex') !== digest) throw digestMismatch(source);
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
  const info = await fh.stat();
  if (!info.isFile()) throw new Error(`${path}: not a file (expected a .safetensors file)`);
  const size = info.size;
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
 * An open safetensors file whose header has been read and validated; tensors are read one
 * at a time, so a caller can check names and shapes first and then stream the data with
 * one tensor's bytes in memory at a time. When every tensor is read in name order
 * (`names` gives that order), the digest recorded by our writer is checked on the last one.
 */
export class SafetensorsReader {
  private readonly byName: Map<string, SafetensorsEntry>;
  private readonly canonical: SafetensorsEntry[];
  private readonly digest: string | undefined;
  private hash: Hash | undefined;
  private next = 0;
  private rawScratch = new Uint8Array(0);
  private decodedScratch = new Float32Array(0);

  private constructor(
    readonly path: string,
    readonly header: SafetensorsHeader,
    private readonly fh: FileHandle,
  ) {
    this.byName = new Map(header.entries.map((e) => [e.name, e]));
    this.canonical = [...header.entries].sort(byNameOrder);
    this.digest = recordedDigest(header.metadata, path);
    this.hash = this.digest === undefined ? undefined : sha256();
  }

  static async open(path: string): Promise<SafetensorsReader> {
    const fh = await openForReading(path);
    try {
      return new SafetensorsReader(path, await readHeaderFrom(fh, path), fh);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /** Tensor names in the order that lets the digest be checked. */
  get names(): string[] {
    return this.canonical.map((e) => e.name);
  }

  entry(name: string): SafetensorsEntry | undefined {
    return this.byName.get(name);
  }

  /** True when the file records a digest (written by us). */
  get hasDigest(): boolean {
    return this.digest !== undefined;
  }

  async read(name: string): Promise<HostTensor> {
    const entry = this.byName.get(name);
    if (!entry) throw new Error(`${this.path}: tensor ${quote(name)} is not in this file`);
    checkAllocatable(entry, this.path);
    const raw = new Uint8Array(entry.end - entry.begin);
    await readExactly(this.fh, raw, this.header.dataStart + entry.begin, this.path);
    if (this.hash) {
      if (this.canonical[this.next] === entry) {
        this.hash.update(digestPrefix(entry)).update(raw);
        this.next++;
        if (this.next === this.canonical.length && this.hash.digest('hex') !== this.digest) throw digestMismatch(this.path);
      } else {
        // Read out of order or a subset: the digest cannot be checked this time.
        this.hash = undefined;
      }
    }
    return decodeTensor(raw, entry, this.path);
  }

  /**
   * Reads a float tensor (F32, F16, BF16, F64) in pieces of whole rows along its first axis,
   * each decoded (to float32; F64 to float64) and handed to `visit` before the next piece is
   * read: memory holds about `maxPieceBytes` of the tensor at a time, however large it is, and
   * never its raw and decoded forms whole side by side. A piece's data is valid only until
   * `visit` returns (its buffer is reused for the next piece, so that no garbage piles up
   * waiting for the collector): copy what must be kept. The digest is checked as by `read`. A
   * rank-0 or rank-1 tensor's rows are its elements.
   */
  async readRows(name: string, maxPieceBytes: number, visit: (piece: RowPiece) => void | Promise<void>): Promise<void> {
    const entry = this.byName.get(name);
    if (!entry) throw new Error(`${this.path}: tensor ${quote(name)} is not in this file`);
    if (!Number.isSafeInteger(maxPieceBytes) || maxPieceBytes < 1) {
      throw new Error(`${this.path}: readRows: maxPieceBytes must be a positive integer, got ${show(maxPieceBytes)}`);
    }
    const { dtype } = entry;
    if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16' && dtype !== 'F64') {
      throw new Error(`${this.path}: tensor ${quote(name)} is ${dtype}; reading in rows needs a float tensor (F32, F16, BF16, F64)`);
    }
    const width = SAFETENSORS_DTYPE_BYTES[dtype];
    const outWidth = dtype === 'F64' ? 8 : 4;
    const totalRows = entry.shape.length === 0 ? 1 : entry.shape[0];
    const rowElems = entry.shape.length <= 1 ? 1 : shapeSize(entry.shape.slice(1));
    if (rowElems * outWidth > MAX_ARRAY_BYTES) {
      throw new Error(`${this.path}: tensor ${quote(name)}: one row of shape ${show(entry.shape)} is more than one array can hold`);
    }
    const perPiece = Math.max(1, Math.floor(maxPieceBytes / Math.max(1, rowElems * outWidth)));
    const hashing = this.hash !== undefined && this.canonical[this.next] === entry;
    if (this.hash && !hashing) this.hash = undefined; // out of order or a subset: the digest cannot be checked this time
    if (hashing) this.hash!.update(digestPrefix(entry));
    // One raw buffer and (F16/BF16) one decoded buffer, kept by the reader and reused by
    // every piece of every tensor.
    const most = Math.min(totalRows, perPiece) * rowElems;
    if (this.rawScratch.length < most * width) this.rawScratch = new Uint8Array(most * width);
    if (width !== outWidth && this.decodedScratch.length < most) this.decodedScratch = new Float32Array(most);
    const rawAll = this.rawScratch;
    const decodedAll = this.decodedScratch;
    const table = dtype === 'F16' ? halfTable() : undefined;
    for (let row = 0; row < totalRows; row += perPiece) {
      const rows = Math.min(perPiece, totalRows - row);
      const n = rows * rowElems;
      const raw = rawAll.subarray(0, n * width);
      await readExactly(this.fh, raw, this.header.dataStart + entry.begin + row * rowElems * width, this.path);
      if (hashing) this.hash!.update(raw);
      if (!IS_LITTLE_ENDIAN) swapBytesInPlace(raw, width);
      let data: Float32Array | Float64Array;
      if (dtype === 'F32' || dtype === 'F64') {
        data = dtype === 'F32' ? new Float32Array(rawAll.buffer, 0, n) : new Float64Array(rawAll.buffer, 0, n);
      } else {
        data = decodedAll.subarray(0, n);
        const bits = new Uint32Array(data.buffer, 0, n);
        const src = new Uint16Array(raw.buffer, raw.byteOffset, n);
        if (table) for (let i = 0; i < n; i++) bits[i] = table[src[i]];
        else for (let i = 0; i < n; i++) bits[i] = src[i] << 16;
      }
      await visit({ row, rows, data });
    }
    if (hashing) {
      this.next++;
      if (this.next === this.canonical.length && this.hash!.digest('hex') !== this.digest) throw digestMismatch(this.path);
    }
  }

  async close(): Promise<void> {
    await this.fh.close();
  }

  /**
   * Rows [row, row + rows) of a float tensor, decoded as by `readRows`, read out of order: the
   * file's digest is not checked by this reader after it (use a reader of its own for this).
   */
  async readRowRange(name: string, row: number, rows: number): Promise<Float32Array | Float64Array> {
    const entry = this.byName.get(name);
    if (!entry) throw new Error(`${this.path}: tensor ${quote(name)} is not in this file`);
    const totalRows = entry.shape.length === 0 ? 1 : entry.shape[0];
    if (!Number.isSafeInteger(row) || !Number.isSafeInteger(rows) || row < 0 || rows < 0 || row + rows > totalRows) {
      throw new Error(`${this.path}: tensor ${quote(name)}: rows [${row}, ${row + rows}) are outside its ${totalRows}`);
    }
    this.hash = undefined;
    const rowElems = entry.shape.length <= 1 ? 1 : shapeSize(entry.shape.slice(1));
    const width = SAFETENSORS_DTYPE_BYTES[entry.dtype];
    const raw = new Uint8Array(rows * rowElems * width);
    await readExactly(this.fh, raw, this.header.dataStart + entry.begin + row * rowElems * width, this.path);
    const part: SafetensorsEntry = { ...entry, shape: [rows * rowElems], begin: 0, end: raw.length };
    const t = decodeTensor(raw, part, this.path);
    if (t.dtype !== 'float32' && t.dtype !== 'float64') throw new Error(`${this.path}: tensor ${quote(name)} is ${entry.dtype}, not a float tensor`);
    return t.data;
  }
}

/** Consecutive rows [row, row + rows) of a tensor, decoded (see `SafetensorsReader.readRows`). */
export interface RowPiece {
  row: number;
  rows: number;
  data: Float32Array | Float64Array;
}

/**
 * Reads a safetensors file tensor by tensor (never the whole file at once, so shards
 * larger than a Node buffer load). `names` restricts which tensors are read; each
 * named tensor must exist.
 */
export async function readSafetensorsFile(path: string, options: { names?: readonly string[] } = {}): Promise<SafetensorsFile> {
  const reader = await SafetensorsReader.open(path);
  try {
    const names = options.names ? [...options.names].sort() : reader.names;
    for (const name of names) if (!reader.entry(name)) throw new Error(`${path}: tensor ${quote(name)} is not in this file`);
    const tensors: Record<string, HostTensor> = Object.create(null);
    for (const name of names) tensors[name] = await reader.read(name);
    return { tensors, metadata: reader.header.metadata };
  } finally {
    await reader.close();
  }
}

// ---------------------------------------------------------------------------------------
// Writing

/**
 * A tensor to be written, known by name, dtype and shape before its data exists: the writers
 * that take specs lay out the header from them and ask for each tensor's data only when they
 * write it (see `writeCheckpointDirFrom`).
 */
export interface TensorSpec {
  name: string;
  dtype: HostDtype;
  shape: number[];
}

/** Makes the data of one spec'd tensor when a writer needs it; it is dropped once written. */
export type TensorProducer = (spec: TensorSpec) => HostTensor | Promise<HostTensor>;

interface PlannedTensor {
  name: string;
  spec: TensorSpec;
  dtype: SafetensorsDtype;
  byteLength: number;
}

interface Plan {
  header: Uint8Array;
  tensors: PlannedTensor[];
  /** Where in `header` the 64 hex digits of the digest go, once the data is hashed; -1 without a digest. */
  digestOffset: number;
}

// The digest is not known until every tensor has been encoded, but the header comes first:
// it is written with this placeholder, and the real digest (same length) written over it.
const DIGEST_PLACEHOLDER = '0'.repeat(64);

function storageDtype(tensor: Pick<HostTensor, 'dtype'>, floatDtype: WriteFloatDtype): SafetensorsDtype {
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

function checkSpecForWriting(spec: TensorSpec, context: string): void {
  const where = `${context}: tensor ${quote(String(spec.name))}`;
  if (typeof spec.name !== 'string' || spec.name.length === 0 || spec.name === '__metadata__') throw new Error(`${where}: this name cannot be stored`);
  if (!Object.hasOwn(DATA_CLASS, spec.dtype)) throw new Error(`${where}: unknown dtype ${show(spec.dtype)}`);
  if (!Array.isArray(spec.shape) || !spec.shape.every(isNonNegativeInt)) {
    throw new Error(`${where}: shape must be a list of non-negative integers, got ${show(spec.shape)}`);
  }
}

function checkTensorForWriting(name: string, tensor: HostTensor, context: string): void {
  const where = `${context}: tensor ${quote(name)}`;
  if (!isRecord(tensor)) throw new Error(`${where}: expected { dtype, shape, data }, got ${show(tensor)}`);
  checkSpecForWriting({ name, dtype: tensor.dtype, shape: tensor.shape }, context);
  const cls = DATA_CLASS[tensor.dtype];
  if (!cls.is(tensor.data)) throw new Error(`${where}: dtype ${tensor.dtype} needs its data in a ${cls.name}`);
  const n = shapeSize(tensor.shape);
  if (tensor.data.length !== n) {
    throw new Error(`${where}: shape ${show(tensor.shape)} has ${n} elements but data has ${tensor.data.length}`);
  }
}

/** The byte size a tensor will take when stored with the given float dtype. */
export function storedByteLength(tensor: Pick<HostTensor, 'dtype' | 'shape'>, floatDtype: WriteFloatDtype = 'F32'): number {
  return shapeSize(tensor.shape) * SAFETENSORS_DTYPE_BYTES[storageDtype(tensor as HostTensor, floatDtype)];
}

/** The specs of tensors held in memory, each checked (dtype, shape, data) before anything is written. */
function specsOf(tensors: Record<string, HostTensor>, context: string): TensorSpec[] {
  return Object.keys(tensors).map((name) => {
    const t = tensors[name];
    checkTensorForWriting(name, t, context);
    return { name, dtype: t.dtype, shape: [...t.shape] };
  });
}

/** The produced tensor for a spec, checked to be what the header already says. */
async function produceChecked(produce: TensorProducer, spec: TensorSpec, context: string): Promise<HostTensor> {
  const t = await produce({ name: spec.name, dtype: spec.dtype, shape: [...spec.shape] });
  checkTensorForWriting(spec.name, t, context);
  if (t.dtype !== spec.dtype || t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
    throw new Error(
      `${context}: tensor ${quote(spec.name)}: produced ${t.dtype} ${show(t.shape)}, but the header was written for ${spec.dtype} ${show(spec.shape)}`,
    );
  }
  return t;
}

function planSafetensors(specs: readonly TensorSpec[], options: SerializeOptions, context: string): Plan {
  const floatDtype = options.dtype ?? 'F32';
  if (floatDtype !== 'F32' && floatDtype !== 'BF16' && floatDtype !== 'F64') {
    throw new Error(`${context}: cannot write float tensors as ${show(floatDtype)} (supported: F32, BF16, F64)`);
  }
  const metadata: Record<string, string> = Object.assign(Object.create(null), { format: 'pt' }, options.metadata ?? {});
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new Error(`${context}: metadata value for ${quote(k)} must be a string, got ${show(v)}`);
  }
  const withDigest = options.checksum ?? true;
  if (withDigest) metadata[DIGEST_METADATA_KEY] = DIGEST_PLACEHOLDER;
  else delete metadata[DIGEST_METADATA_KEY];
  // Sorted by name so that the same tensors always give the same bytes.
  const sorted = [...specs].sort(byNameOrder);
  const planned: PlannedTensor[] = [];
  const header: Record<string, unknown> = Object.create(null);
  header.__metadata__ = metadata;
  let offset = 0;
  for (let i = 0; i < sorted.length; i++) {
    const spec = sorted[i];
    checkSpecForWriting(spec, context);
    if (i > 0 && sorted[i - 1].name === spec.name) throw new Error(`${context}: tensor ${quote(spec.name)} is given twice`);
    const dtype = storageDtype(spec, floatDtype);
    const byteLength = shapeSize(spec.shape) * SAFETENSORS_DTYPE_BYTES[dtype];
    header[spec.name] = { dtype, shape: [...spec.shape], data_offsets: [offset, offset + byteLength] };
    planned.push({ name: spec.name, spec, dtype, byteLength });
    offset += byteLength;
  }
  const text = JSON.stringify(header);
  const json = encoder.encode(text);
  // Padding with spaces to a multiple of 8 keeps the data 8-byte aligned, as the
  // reference implementation does.
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length);
  // __metadata__ is the header's first key, so the first occurrence is the metadata's
  // (a tensor name containing this text would appear escaped).
  const marker = `${JSON.stringify(DIGEST_METADATA_KEY)}:"`;
  const at = withDigest ? text.indexOf(marker) : -1;
  const digestOffset = at < 0 ? -1 : 8 + encoder.encode(text.slice(0, at + marker.length)).length;
  return { header: out, tensors: planned, digestOffset };
}

function entryOf(p: PlannedTensor): Pick<SafetensorsEntry, 'name' | 'dtype' | 'shape'> {
  return { name: p.name, dtype: p.dtype, shape: [...p.spec.shape] };
}

function encodeTensor(p: PlannedTensor, tensor: HostTensor): Uint8Array {
  const { dtype } = p;
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
  const plan = planSafetensors(specsOf(tensors, 'serializeSafetensors'), options, 'serializeSafetensors');
  const total = plan.header.length + plan.tensors.reduce((s, t) => s + t.byteLength, 0);
  const out = new Uint8Array(total);
  out.set(plan.header, 0);
  const hash = plan.digestOffset >= 0 ? sha256() : undefined;
  let offset = plan.header.length;
  for (const t of plan.tensors) {
    const bytes = encodeTensor(t, tensors[t.name]);
    hash?.update(digestPrefix(entryOf(t))).update(bytes);
    out.set(bytes, offset);
    offset += t.byteLength;
  }
  if (hash) out.set(encoder.encode(hash.digest('hex')), plan.digestOffset);
  return out;
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
  await writeSafetensorsFileFrom(path, specsOf(tensors, path), (spec) => tensors[spec.name], options);
}

/**
 * Writes a safetensors file atomically from specs, asking `produce` for each tensor's data
 * only when it is written (in name order) and dropping it after: memory holds one tensor
 * and its encoding, however large the file.
 */
export async function writeSafetensorsFileFrom(
  path: string,
  specs: readonly TensorSpec[],
  produce: TensorProducer,
  options: SerializeOptions = {},
): Promise<void> {
  const plan = planSafetensors(specs, options, path);
  await writeFileAtomic(path, async (fh) => {
    await writeAll(fh, plan.header);
    const hash = plan.digestOffset >= 0 ? sha256() : undefined;
    for (const t of plan.tensors) {
      const bytes = encodeTensor(t, await produceChecked(produce, t.spec, path));
      hash?.update(digestPrefix(entryOf(t))).update(bytes);
      await writeAll(fh, bytes);
    }
    if (hash) {
      const hex = encoder.encode(hash.digest('hex'));
      await fh.write(hex, 0, hex.length, plan.digestOffset);
    }
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
  const json = parseJsonStrict(text, path);
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

/** Where one tensor of a checkpoint directory lives. */
export interface CheckpointEntry extends SafetensorsEntry {
  /** The safetensors file holding it. */
  path: string;
}

/**
 * A checkpoint directory whose headers (every shard's) have been read and validated, and
 * whose tensors have not: names, shapes and dtypes can be checked against a config before
 * a single weight is read, and the weights then read one tensor at a time.
 */
export interface CheckpointReader {
  readonly dir: string;
  /** The file the tensors were found through (model.safetensors or the index), for messages. */
  readonly source: string;
  readonly entries: ReadonlyMap<string, CheckpointEntry>;
  /**
   * Reads the named tensors one at a time, file by file, handing each to `visit` (which
   * should convert and drop it). A file's digest is checked once all of its tensors are read.
   */
  readEach(names: Iterable<string>, visit: (name: string, tensor: HostTensor) => void | Promise<void>): Promise<void>;
  /**
   * Reads the named float tensors file by file, each in pieces of rows of about
   * `maxPieceBytes` (see `SafetensorsReader.readRows`), so memory holds one piece at a time.
   */
  readEachInRows(
    names: Iterable<string>, maxPieceBytes: number, visit: (name: string, entry: CheckpointEntry, piece: RowPiece) => void | Promise<void>,
  ): Promise<void>;
}

/**
 * Opens a checkpoint directory: `model.safetensors` if present (as transformers prefers
 * it), otherwise `model.safetensors.index.json` and its shards. Reads headers only.
 */
export async function openCheckpointDir(dir: string): Promise<CheckpointReader> {
  const single = join(dir, SINGLE_FILE_NAME);
  const entries = new Map<string, CheckpointEntry>();
  let source: string;
  if (await exists(single)) {
    source = single;
    for (const e of (await readSafetensorsHeader(single)).entries) entries.set(e.name, { ...e, path: single });
  } else {
    const indexPath = join(dir, INDEX_FILE_NAME);
    if (!(await exists(indexPath))) {
      throw new Error(`${dir}: no checkpoint found (neither ${SINGLE_FILE_NAME} nor ${INDEX_FILE_NAME})`);
    }
    source = indexPath;
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
    for (const [file, names] of byShard) {
      const shardPath = join(dir, file);
      const header = await readSafetensorsHeader(shardPath);
      const byName = new Map(header.entries.map((e) => [e.name, e]));
      const missing = names.filter((n) => !byName.has(n));
      if (missing.length > 0) {
        throw new Error(
          `${indexPath}: ${missing.length} tensor(s) listed for shard ${quote(file)} are absent from it: ${missing.slice(0, 5).map(quote).join(', ')}${missing.length > 5 ? ', ...' : ''}`,
        );
      }
      // A tensor the index does not list would be silently ignored; it is more likely a
      // sign that the index and the shards come from different checkpoints.
      const unlisted = header.entries.filter((e) => weightMap.get(e.name) !== file);
      if (unlisted.length > 0) {
        throw new Error(
          `${shardPath}: holds ${unlisted.length} tensor(s) that ${INDEX_FILE_NAME} does not assign to it: ${unlisted.slice(0, 5).map((e) => quote(e.name)).join(', ')}${unlisted.length > 5 ? ', ...' : ''}`,
        );
      }
      for (const name of names) entries.set(name, { ...byName.get(name)!, path: shardPath });
    }
  }
  const byFile = (names: Iterable<string>) => {
    const out = new Map<string, string[]>();
    for (const name of names) {
      const e = entries.get(name);
      if (!e) throw new Error(`${source}: tensor ${quote(name)} is not in this checkpoint`);
      const list = out.get(e.path);
      if (list) list.push(name);
      else out.set(e.path, [name]);
    }
    return out;
  };
  const eachFile = async (names: Iterable<string>, each: (reader: SafetensorsReader, name: string) => Promise<void>) => {
    for (const [path, list] of byFile(names)) {
      const reader = await SafetensorsReader.open(path);
      try {
        // Name order is the order in which the recorded digest can be checked.
        for (const name of list.sort()) await each(reader, name);
      } finally {
        await reader.close();
      }
    }
  };
  return {
    dir,
    source,
    entries,
    async readEach(names, visit) {
      await eachFile(names, async (reader, name) => visit(name, await reader.read(name)));
    },
    async readEachInRows(names, maxPieceBytes, visit) {
      await eachFile(names, (reader, name) => reader.readRows(name, maxPieceBytes, (piece) => visit(name, entries.get(name)!, piece)));
    },
  };
}

/** Loads every tensor of a checkpoint directory into host memory (see `openCheckpointDir`). */
export async function readCheckpointDir(dir: string): Promise<Record<string, HostTensor>> {
  const reader = await openCheckpointDir(dir);
  const tensors: Record<string, HostTensor> = Object.create(null);
  await reader.readEach(reader.entries.keys(), (name, t) => void (tensors[name] = t));
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
  return writeCheckpointDirFrom(dir, specsOf(tensors, dir), (spec) => tensors[spec.name], options);
}

/**
 * `writeCheckpointDir` from specs: the shards are laid out from names, dtypes and shapes, and
 * `produce` is asked for each tensor's data only when it is written, so a checkpoint far
 * larger than memory (random weights of a real model's shape, a conversion) is written with
 * one tensor in memory at a time.
 */
export async function writeCheckpointDirFrom(
  dir: string,
  specs: readonly TensorSpec[],
  produce: TensorProducer,
  options: WriteCheckpointOptions = {},
): Promise<{ files: string[] }> {
  const floatDtype = options.dtype ?? 'F32';
  const max = options.maxShardBytes;
  if (max !== undefined && !(Number.isSafeInteger(max) && max > 0)) {
    throw new Error(`${dir}: maxShardBytes must be a positive integer, got ${show(max)}`);
  }
  for (const spec of specs) checkSpecForWriting(spec, dir);
  const byName = new Map(specs.map((sp) => [sp.name, sp]));
  if (byName.size !== specs.length) throw new Error(`${dir}: a tensor name is given twice`);
  const names = [...byName.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const sizes = new Map(names.map((n) => [n, storedByteLength(byName.get(n)!, floatDtype)]));
  const total = names.reduce((s, n) => s + (sizes.get(n) ?? 0), 0);

  await mkdir(dir, { recursive: true });
  const singlePath = join(dir, SINGLE_FILE_NAME);
  const indexPath = join(dir, INDEX_FILE_NAME);
  const previousShards = (await exists(indexPath))
    ? new Set((await readIndex(indexPath).catch(() => ({ weightMap: new Map<string, string>() }))).weightMap.values())
    : new Set<string>();

  if (max === undefined || total <= max) {
    await writeSafetensorsFileFrom(singlePath, specs, produce, options);
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
    for (const name of groups[g]) weightMap[name] = files[g];
    await writeSafetensorsFileFrom(join(dir, files[g]), groups[g].map((n) => byName.get(n)!), produce, options);
  }
  // A leftover single file would shadow the index (readers prefer it).
  await rm(singlePath, { force: true });
  const index = { metadata: { total_size: total }, weight_map: weightMap };
  await writeFileAtomic(indexPath, `${JSON.stringify(index, null, 2)}\n`);
  const keep = new Set(files);
  for (const f of previousShards) if (!keep.has(f)) await rm(join(dir, f), { force: true });
  return { files: [...files, INDEX_FILE_NAME] };
}
