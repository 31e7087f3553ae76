/**
 * A small typed emitter of WebAssembly binaries: modules with one imported memory and
 * functions written as calls on a FunctionBuilder (one method per instruction, plus a few
 * structured loops). The static kernels are emitted with it at build time and the fused
 * kernels `jit` asks for are emitted with it at run time, so one code path produces all of
 * the CPU backend's machine code and nothing is downloaded or hand-assembled.
 *
 * Opcodes follow the WebAssembly 2.0 spec (core, SIMD128, threads' shared memory) and the
 * relaxed-SIMD proposal (only `f32x4.relaxed_madd`, emitted when the runtime validates it).
 */

export type ValType = 'i32' | 'i64' | 'f32' | 'f64' | 'v128';

const VALTYPE: Record<ValType, number> = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c, v128: 0x7b };

function uleb(n: number, out: number[]): void {
  if (!Number.isInteger(n) || n < 0) throw new Error(`wasm emit: ${n} is not an unsigned integer`);
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
}

function sleb(n: number, out: number[]): void {
  if (!Number.isInteger(n)) throw new Error(`wasm emit: ${n} is not an integer`);
  let more = true;
  while (more) {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) more = false;
    else byte |= 0x80;
    out.push(byte);
  }
}

function name(s: string, out: number[]): void {
  const bytes = new TextEncoder().encode(s);
  uleb(bytes.length, out);
  for (const b of bytes) out.push(b);
}

const f32buf = new Float32Array(1);
const f64buf = new Float64Array(1);

export class Local {
  constructor(readonly index: number, readonly type: ValType) {}
}

/** Alignment hints (log2 bytes) for natural alignment. */
const ALIGN = { i32: 2, i64: 3, f32: 2, f64: 3, v128: 4, u8: 0 } as const;

export class FunctionBuilder {
  readonly params: Local[];
  private readonly locals: ValType[] = [];
  readonly code: number[] = [];

  constructor(params: readonly ValType[], readonly results: readonly ValType[]) {
    this.params = params.map((t, i) => new Local(i, t));
  }

  /** A fresh local of `type`. */
  local(type: ValType): Local {
    this.locals.push(type);
    return new Local(this.params.length + this.locals.length - 1, type);
  }

  private op(...bytes: number[]): this {
    for (const b of bytes) this.code.push(b);
    return this;
  }
  private simd(opcode: number): this {
    this.code.push(0xfd);
    uleb(opcode, this.code);
    return this;
  }
  /** Any SIMD instruction without immediates, by its opcode (after the 0xfd prefix). */
  simdOp(opcode: number): this {
    return this.simd(opcode);
  }
  private mem(opcode: number, align: number, offset: number): this {
    this.code.push(opcode);
    uleb(align, this.code);
    uleb(offset, this.code);
    return this;
  }
  private simdMem(opcode: number, align: number, offset: number): this {
    this.simd(opcode);
    uleb(align, this.code);
    uleb(offset, this.code);
    return this;
  }

  // --- Control
  unreachable(): this { return this.op(0x00); }
  block(body: () => void): this {
    this.op(0x02, 0x40);
    body();
    return this.op(0x0b);
  }
  loop(body: () => void): this {
    this.op(0x03, 0x40);
    body();
    return this.op(0x0b);
  }
  /** Pops an i32 condition. */
  if(then: () => void, otherwise?: () => void): this {
    this.op(0x04, 0x40);
    then();
    if (otherwise) {
      this.op(0x05);
      otherwise();
    }
    return this.op(0x0b);
  }
  br(depth: number): this { this.op(0x0c); uleb(depth, this.code); return this; }
  brIf(depth: number): this { this.op(0x0d); uleb(depth, this.code); return this; }
  return(): this { return this.op(0x0f); }
  call(fn: number): this { this.op(0x10); uleb(fn, this.code); return this; }
  drop(): this { return this.op(0x1a); }
  /** Pops (a, b, cond): cond ? a : b. */
  select(): this { return this.op(0x1b); }

  /**
   * for (i = start; i < end; i += step) body. `start`/`end` push an i32 each; the bound is
   * evaluated once, into a local. Zero-trip safe.
   */
  for(i: Local, start: () => void, end: () => void, step: number, body: () => void): this {
    const bound = this.local('i32');
    start();
    this.set(i);
    end();
    this.set(bound);
    return this.block(() => {
      this.get(i).get(bound).i32GeS().brIf(0);
      this.loop(() => {
        body();
        this.get(i).i32Const(step).i32Add().tee(i).get(bound).i32LtS().brIf(0);
      });
    });
  }

  // --- Variables
  get(l: Local): this { this.op(0x20); uleb(l.index, this.code); return this; }
  set(l: Local): this { this.op(0x21); uleb(l.index, this.code); return this; }
  tee(l: Local): this { this.op(0x22); uleb(l.index, this.code); return this; }

  // --- Memory (address on the stack; `offset` in bytes)
  i32Load(offset = 0): this { return this.mem(0x28, ALIGN.i32, offset); }
  f32Load(offset = 0): this { return this.mem(0x2a, ALIGN.f32, offset); }
  f64Load(offset = 0): this { return this.mem(0x2b, ALIGN.f64, offset); }
  i32Load8U(offset = 0): this { return this.mem(0x2d, ALIGN.u8, offset); }
  i32Store(offset = 0): this { return this.mem(0x36, ALIGN.i32, offset); }
  f32Store(offset = 0): this { return this.mem(0x38, ALIGN.f32, offset); }
  f64Store(offset = 0): this { return this.mem(0x39, ALIGN.f64, offset); }
  i32Store8(offset = 0): this { return this.mem(0x3a, ALIGN.u8, offset); }
  v128Load(offset = 0, align: number = ALIGN.v128): this { return this.simdMem(0x00, align, offset); }
  v128Load32Splat(offset = 0): this { return this.simdMem(0x09, 2, offset); }
  v128Load64Splat(offset = 0): this { return this.simdMem(0x0a, 3, offset); }
  v128Store(offset = 0, align: number = ALIGN.v128): this { return this.simdMem(0x0b, align, offset); }
  /** Loads 4 bytes, zero-extending to the low lane (i32x4 [b, 0, 0, 0] style). */
  v128Load32Zero(offset = 0): this { return this.simdMem(0x5c, 2, offset); }
  /** Loads 8 bytes into the low half, zeroing the high half. */
  v128Load64Zero(offset = 0): this { return this.simdMem(0x5d, 3, offset); }

  // --- Constants
  i32Const(v: number): this { this.op(0x41); sleb(v | 0, this.code); return this; }
  f32Const(v: number): this {
    this.op(0x43);
    f32buf[0] = v;
    for (const b of new Uint8Array(f32buf.buffer)) this.code.push(b);
    return this;
  }
  f64Const(v: number): this {
    this.op(0x44);
    f64buf[0] = v;
    for (const b of new Uint8Array(f64buf.buffer)) this.code.push(b);
    return this;
  }
  v128Const(bytes: readonly number[]): this {
    if (bytes.length !== 16) throw new Error('v128.const needs 16 bytes');
    this.simd(0x0c);
    for (const b of bytes) this.code.push(b & 0xff);
    return this;
  }

  // --- i32
  i32Eqz(): this { return this.op(0x45); }
  i32Eq(): this { return this.op(0x46); }
  i32Ne(): this { return this.op(0x47); }
  i32LtS(): this { return this.op(0x48); }
  i32LtU(): this { return this.op(0x49); }
  i32GtS(): this { return this.op(0x4a); }
  i32GtU(): this { return this.op(0x4b); }
  i32LeS(): this { return this.op(0x4c); }
  i32GeS(): this { return this.op(0x4e); }
  i32GeU(): this { return this.op(0x4f); }
  i32Add(): this { return this.op(0x6a); }
  i32Sub(): this { return this.op(0x6b); }
  i32Mul(): this { return this.op(0x6c); }
  i32DivS(): this { return this.op(0x6d); }
  i32DivU(): this { return this.op(0x6e); }
  i32RemS(): this { return this.op(0x6f); }
  i32RemU(): this { return this.op(0x70); }
  i32And(): this { return this.op(0x71); }
  i32Or(): this { return this.op(0x72); }
  i32Xor(): this { return this.op(0x73); }
  i32Shl(): this { return this.op(0x74); }
  i32ShrS(): this { return this.op(0x75); }
  i32ShrU(): this { return this.op(0x76); }
  i32Rotl(): this { return this.op(0x77); }
  i32Rotr(): this { return this.op(0x78); }

  // --- f32 / f64
  f32Eq(): this { return this.op(0x5b); }
  f32Ne(): this { return this.op(0x5c); }
  f32Lt(): this { return this.op(0x5d); }
  f32Gt(): this { return this.op(0x5e); }
  f32Le(): this { return this.op(0x5f); }
  f32Ge(): this { return this.op(0x60); }
  f64Eq(): this { return this.op(0x61); }
  f64Ne(): this { return this.op(0x62); }
  f64Lt(): this { return this.op(0x63); }
  f64Gt(): this { return this.op(0x64); }
  f64Le(): this { return this.op(0x65); }
  f64Ge(): this { return this.op(0x66); }
  f32Abs(): this { return this.op(0x8b); }
  f32Neg(): this { return this.op(0x8c); }
  f32Ceil(): this { return this.op(0x8d); }
  f32Floor(): this { return this.op(0x8e); }
  f32Trunc(): this { return this.op(0x8f); }
  f32Nearest(): this { return this.op(0x90); }
  f32Sqrt(): this { return this.op(0x91); }
  f32Add(): this { return this.op(0x92); }
  f32Sub(): this { return this.op(0x93); }
  f32Mul(): this { return this.op(0x94); }
  f32Div(): this { return this.op(0x95); }
  f32Min(): this { return this.op(0x96); }
  f32Max(): this { return this.op(0x97); }
  f32Copysign(): this { return this.op(0x98); }
  f64Abs(): this { return this.op(0x99); }
  f64Neg(): this { return this.op(0x9a); }
  f64Floor(): this { return this.op(0x9c); }
  f64Trunc(): this { return this.op(0x9d); }
  f64Nearest(): this { return this.op(0x9e); }
  f64Sqrt(): this { return this.op(0x9f); }
  f64Add(): this { return this.op(0xa0); }
  f64Sub(): this { return this.op(0xa1); }
  f64Mul(): this { return this.op(0xa2); }
  f64Div(): this { return this.op(0xa3); }
  f64Min(): this { return this.op(0xa4); }
  f64Max(): this { return this.op(0xa5); }
  f64Copysign(): this { return this.op(0xa6); }

  // --- Conversions
  i32TruncSatF32S(): this { return this.op(0xfc, 0x00); }
  i32TruncSatF64S(): this { return this.op(0xfc, 0x02); }
  f32ConvertI32S(): this { return this.op(0xb2); }
  f32DemoteF64(): this { return this.op(0xb6); }
  f64ConvertI32S(): this { return this.op(0xb7); }
  f64PromoteF32(): this { return this.op(0xbb); }
  i32ReinterpretF32(): this { return this.op(0xbc); }
  f32ReinterpretI32(): this { return this.op(0xbe); }

  // --- SIMD: splats and lanes
  i32x4Splat(): this { return this.simd(0x11); }
  f32x4Splat(): this { return this.simd(0x13); }
  f64x2Splat(): this { return this.simd(0x14); }
  i32x4ExtractLane(l: number): this { this.simd(0x1b); this.code.push(l); return this; }
  i32x4ReplaceLane(l: number): this { this.simd(0x1c); this.code.push(l); return this; }
  f32x4ExtractLane(l: number): this { this.simd(0x1f); this.code.push(l); return this; }
  f32x4ReplaceLane(l: number): this { this.simd(0x20); this.code.push(l); return this; }
  f64x2ExtractLane(l: number): this { this.simd(0x21); this.code.push(l); return this; }
  /** i8x16.shuffle with 16 lane indices (0–31 over the two operands). */
  i8x16Shuffle(lanes: readonly number[]): this {
    this.simd(0x0d);
    for (const l of lanes) this.code.push(l);
    return this;
  }

  // --- SIMD: comparisons (lane masks of all ones / zeros)
  i32x4Eq(): this { return this.simd(0x37); }
  i32x4Ne(): this { return this.simd(0x38); }
  i32x4LtS(): this { return this.simd(0x39); }
  i32x4GtS(): this { return this.simd(0x3b); }
  i32x4LeS(): this { return this.simd(0x3d); }
  i32x4GeS(): this { return this.simd(0x3f); }
  f32x4Eq(): this { return this.simd(0x41); }
  f32x4Ne(): this { return this.simd(0x42); }
  f32x4Lt(): this { return this.simd(0x43); }
  f32x4Gt(): this { return this.simd(0x44); }
  f32x4Le(): this { return this.simd(0x45); }
  f32x4Ge(): this { return this.simd(0x46); }

  // --- SIMD: bitwise
  v128Not(): this { return this.simd(0x4d); }
  v128And(): this { return this.simd(0x4e); }
  v128Andnot(): this { return this.simd(0x4f); }
  v128Or(): this { return this.simd(0x50); }
  v128Xor(): this { return this.simd(0x51); }
  /** Pops (a, b, mask): bits of a where mask is 1, of b elsewhere. */
  v128Bitselect(): this { return this.simd(0x52); }
  v128AnyTrue(): this { return this.simd(0x53); }

  // --- SIMD: f32x4 arithmetic
  f32x4Ceil(): this { return this.simd(0x67); }
  f32x4Floor(): this { return this.simd(0x68); }
  f32x4Trunc(): this { return this.simd(0x69); }
  f32x4Nearest(): this { return this.simd(0x6a); }
  f32x4Abs(): this { return this.simd(0xe0); }
  f32x4Neg(): this { return this.simd(0xe1); }
  f32x4Sqrt(): this { return this.simd(0xe3); }
  f32x4Add(): this { return this.simd(0xe4); }
  f64x2Add(): this { return this.simd(0xf0); }
  /** The two float32 of the low half, widened. */
  f64x2PromoteLowF32x4(): this { return this.simd(0x5f); }
  /** Two float64 narrowed into the low half, the high half zero. */
  f32x4DemoteF64x2Zero(): this { return this.simd(0x5e); }
  f32x4Sub(): this { return this.simd(0xe5); }
  f32x4Mul(): this { return this.simd(0xe6); }
  f32x4Div(): this { return this.simd(0xe7); }
  f32x4Min(): this { return this.simd(0xe8); }
  f32x4Max(): this { return this.simd(0xe9); }
  f32x4Pmin(): this { return this.simd(0xea); }
  f32x4Pmax(): this { return this.simd(0xeb); }
  /** Relaxed SIMD: a·b + c, fused where the hardware has FMA. Check support first. */
  f32x4RelaxedMadd(): this { return this.simd(0x105); }

  // --- SIMD: i32x4 arithmetic and conversions
  i32x4Abs(): this { return this.simd(0xa0); }
  i32x4Neg(): this { return this.simd(0xa1); }
  i32x4Shl(): this { return this.simd(0xab); }
  i32x4ShrS(): this { return this.simd(0xac); }
  i32x4ShrU(): this { return this.simd(0xad); }
  i32x4Add(): this { return this.simd(0xae); }
  i32x4Sub(): this { return this.simd(0xb1); }
  i32x4Mul(): this { return this.simd(0xb5); }
  i32x4MinS(): this { return this.simd(0xb6); }
  i32x4MaxS(): this { return this.simd(0xb8); }
  i32x4TruncSatF32x4S(): this { return this.simd(0xf8); }
  f32x4ConvertI32x4S(): this { return this.simd(0xfa); }
}

interface FunctionDef {
  type: number;
  builder: FunctionBuilder;
  exportName: string | undefined;
}

export interface MemoryImport {
  module: string;
  name: string;
  /** Pages of 64 KiB. */
  initial: number;
  maximum: number;
  shared: boolean;
}

/** A module importing one memory and defining functions (exported by name when given). */
export class ModuleBuilder {
  private readonly types: string[] = [];
  private readonly typeBytes: number[][] = [];
  private readonly functions: FunctionDef[] = [];
  private readonly imports: { module: string; name: string; type: number }[] = [];

  constructor(readonly memory: MemoryImport) {}

  /** Imports a host function; returns its index. All imports must come before any `func`. */
  importFunction(module: string, fieldName: string, params: readonly ValType[], results: readonly ValType[]): number {
    if (this.functions.length > 0) throw new Error('wasm emit: function imports must precede function definitions');
    this.imports.push({ module, name: fieldName, type: this.typeIndex(params, results) });
    return this.imports.length - 1;
  }

  private typeIndex(params: readonly ValType[], results: readonly ValType[]): number {
    const key = `${params.join(',')}->${results.join(',')}`;
    let i = this.types.indexOf(key);
    if (i < 0) {
      const b: number[] = [0x60];
      uleb(params.length, b);
      for (const p of params) b.push(VALTYPE[p]);
      uleb(results.length, b);
      for (const r of results) b.push(VALTYPE[r]);
      this.types.push(key);
      this.typeBytes.push(b);
      i = this.types.length - 1;
    }
    return i;
  }

  /** Index a function will get if declared next (for calls between functions of one module). */
  get nextFunctionIndex(): number {
    return this.imports.length + this.functions.length;
  }

  /** Declares a function; `build` emits its body. Returns its index. */
  func(exportName: string | undefined, params: readonly ValType[], results: readonly ValType[], build: (f: FunctionBuilder) => void): number {
    const builder = new FunctionBuilder(params, results);
    build(builder);
    this.functions.push({ type: this.typeIndex(params, results), builder, exportName });
    return this.imports.length + this.functions.length - 1;
  }

  toBytes(): Uint8Array {
    const out: number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    const section = (id: number, body: number[]): void => {
      out.push(id);
      uleb(body.length, out);
      for (const b of body) out.push(b);
    };
    const types: number[] = [];
    uleb(this.typeBytes.length, types);
    for (const t of this.typeBytes) types.push(...t);
    section(1, types);

    const imports: number[] = [];
    uleb(1 + this.imports.length, imports);
    for (const im of this.imports) {
      name(im.module, imports);
      name(im.name, imports);
      imports.push(0x00);
      uleb(im.type, imports);
    }
    name(this.memory.module, imports);
    name(this.memory.name, imports);
    imports.push(0x02, this.memory.shared ? 0x03 : 0x01);
    uleb(this.memory.initial, imports);
    uleb(this.memory.maximum, imports);
    section(2, imports);

    const funcs: number[] = [];
    uleb(this.functions.length, funcs);
    for (const f of this.functions) uleb(f.type, funcs);
    section(3, funcs);

    const exports: number[] = [];
    const exported = this.functions.map((f, i) => [f, i] as const).filter(([f]) => f.exportName !== undefined);
    uleb(exported.length, exports);
    for (const [f, i] of exported) {
      name(f.exportName!, exports);
      exports.push(0x00);
      uleb(this.imports.length + i, exports);
    }
    section(7, exports);

    const code: number[] = [];
    uleb(this.functions.length, code);
    for (const f of this.functions) {
      const body: number[] = [];
      const locals = (f.builder as unknown as { locals: ValType[] }).locals;
      // Run-length groups of equal local types.
      const groups: [number, ValType][] = [];
      for (const t of locals) {
        const last = groups[groups.length - 1];
        if (last && last[1] === t) last[0]++;
        else groups.push([1, t]);
      }
      uleb(groups.length, body);
      for (const [n, t] of groups) {
        uleb(n, body);
        body.push(VALTYPE[t]);
      }
      for (const b of f.builder.code) body.push(b);
      body.push(0x0b);
      uleb(body.length, code);
      for (const b of body) code.push(b);
    }
    section(10, code);
    return Uint8Array.from(out);
  }
}
