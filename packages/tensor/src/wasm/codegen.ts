/**
 * FusedKernel → one WebAssembly function, the CPU backend's single code generator for every
 * elementwise op, cast, reduction and fused chain of them.
 *
 * Plan: the iteration space is collapsed (size-1 axes dropped; neighbours merged where every
 * operand steps through them contiguously and they are both reduced or both kept), loops run
 * in memory order, and the innermost loop is vectorised four lanes at a time for every
 * operand (contiguous loads, splats of broadcast operands hoisted out of the loop, lane-wise
 * gathers for other strides). The loop's tail runs the same vector code with the stores (and
 * strided loads) masked to the remaining lanes, so a value never depends on its position.
 * Reductions accumulate in registers when the reduced axis is innermost (one store per row)
 * and into the output otherwise (column sums), always in the same order.
 *
 * The function is (input pointers…, output pointers…, begin, end): it computes the part of
 * the space whose *parallel* axis (the outermost kept one) lies in [begin, end), so threads
 * can share a kernel by ranges, every output element written by exactly one of them, with
 * results identical for any split.
 *
 * Buffers are read 16 bytes at a time even in a loop's tail: the allocator pads every buffer
 * so such reads stay inside memory (the lanes past the end are never stored or reduced).
 */
import type { BinaryOp, CompareOp, LogicalOp, ReduceOp, UnaryOp } from '../backend.js';
import type { DType } from '../dtype.js';
import type { FusedKernel, FusedNode } from '../fused.js';
import { stridesOf } from '../shape.js';
import { FunctionBuilder, type Local, ModuleBuilder, type MemoryImport } from './emit.js';
import { expF32x4, logF32x4, sigmoidF32x4, sinCosF32x4, tanhF32x4 } from './math.js';

export class UnsupportedKernelError extends Error {}

const BYTES: Record<DType, number> = { float32: 4, int32: 4, bool: 1, float64: 8 };

export interface LoopPlan {
  dims: number[];
  reduced: boolean[];
  /** Per input: element strides per loop dimension, and the element offset. */
  inStrides: number[][];
  inOffsets: number[];
  /** Element strides of the elementwise outputs and of the reduce outputs per loop dimension. */
  elemStrides: number[];
  redStrides: number[];
  /** The loop dimension split across threads (-1: none), its extent, reduce-output elements per unit of it. */
  parallelDim: number;
  parallelExtent: number;
  keptAfterParallel: number;
}

/** Collapses the kernel's iteration space into the loop nest the generated code runs. */
export function planLoops(k: FusedKernel): LoopPlan {
  const r = k.shape.length;
  const isRed = (a: number) => k.reduceAxes.includes(a);
  const kept = k.shape.map((d, i) => (isRed(i) ? 1 : d));
  const keptStr = stridesOf(kept).map((s, i) => (isRed(i) ? 0 : s));
  const elemStr = stridesOf(k.shape);
  let order = Array.from({ length: r }, (_, i) => i);
  const arg = k.outputs.some((o) => o.reduce === 'argmax' || o.reduce === 'argmin');
  // Arg-reductions track (value, index) pairs in registers: their axis goes innermost.
  if (arg) order = [...order.filter((a) => !isRed(a)), ...order.filter(isRed)];
  let dims: number[] = [];
  let reduced: boolean[] = [];
  let ins: number[][] = k.inputs.map(() => []);
  let es: number[] = [];
  let rs: number[] = [];
  for (const a of order) {
    const n = k.shape[a]!;
    if (n === 1) continue;
    const red = isRed(a);
    const last = dims.length - 1;
    const mergeable = last >= 0 && reduced[last] === red &&
      k.inputs.every((inp, i) => ins[i]![last] === inp.strides[a]! * n) &&
      es[last] === elemStr[a]! * n && rs[last] === keptStr[a]! * n;
    if (mergeable) {
      dims[last] *= n;
      k.inputs.forEach((inp, i) => (ins[i]![last] = inp.strides[a]!));
      es[last] = elemStr[a]!;
      rs[last] = keptStr[a]!;
    } else {
      dims.push(n);
      reduced.push(red);
      k.inputs.forEach((inp, i) => ins[i]!.push(inp.strides[a]!));
      es.push(elemStr[a]!);
      rs.push(keptStr[a]!);
    }
  }
  if (dims.length === 0) {
    dims = [1];
    reduced = [false];
    ins = k.inputs.map(() => [0]);
    es = [1];
    rs = [1];
  }
  const p = reduced.indexOf(false);
  let after = 1;
  if (p >= 0) for (let d = p + 1; d < dims.length; d++) if (!reduced[d]) after *= dims[d]!;
  return {
    dims, reduced, inStrides: ins, inOffsets: k.inputs.map((i) => i.offset), elemStrides: es, redStrides: rs,
    parallelDim: p, parallelExtent: p >= 0 ? dims[p]! : 1, keptAfterParallel: after,
  };
}

export interface CompiledKernelCode {
  bytes: Uint8Array;
  plan: LoopPlan;
  /** Whether the module imports Math.pow (module "m", name "pow"). */
  importsPow: boolean;
}

const IDENTITY_F32: Record<'sum' | 'max' | 'min', number> = { sum: 0, max: -Infinity, min: Infinity };
const IDENTITY_I32: Record<'sum' | 'max' | 'min', number> = { sum: 0, max: -2147483648, min: 2147483647 };
const BIG = 0x7fffffff;

/** Emits the kernel as a module exporting `k`, importing `memory` (and Math.pow if used). */
export function compileKernel(k: FusedKernel, memory: MemoryImport): CompiledKernelCode {
  for (const n of k.nodes) if (n.dtype === 'float64') throw new UnsupportedKernelError('float64 kernels run on the JS kernels');
  for (const i of k.inputs) if (i.dtype === 'float64') throw new UnsupportedKernelError('float64 kernels run on the JS kernels');
  const plan = planLoops(k);
  const importsPow = k.nodes.some((n) => n.kind === 'binary' && n.op === 'pow');
  const m = new ModuleBuilder(memory);
  const powIndex = importsPow ? m.importFunction('m', 'pow', ['f64', 'f64'], ['f64']) : -1;
  const nIn = k.inputs.length;
  const nOut = k.outputs.length;
  const params = new Array(nIn + nOut + 2).fill('i32') as 'i32'[];
  m.func('k', params, [], (f) => new KernelEmitter(f, k, plan, powIndex).emit());
  return { bytes: m.toBytes(), plan, importsPow };
}

interface Stream {
  /** Byte pointer at the start of the current iteration of each loop level (level 0 = base). */
  ptr: Local[];
  /** Element strides per loop dim. */
  strides: number[];
  bytes: number;
}

class KernelEmitter {
  private readonly r: number;
  private readonly inner: number;
  private readonly begin: Local;
  private readonly end: Local;
  private readonly ins: Stream[] = [];
  private readonly outs: Stream[] = [];
  /** Nodes whose value does not change along the innermost loop. */
  private readonly invariant: boolean[];
  private readonly values: Local[] = [];
  /** Lanes past the innermost pointer that loads and stores address (memarg offsets), for unrolled bodies. */
  private laneBase = 0;
  /** First of the reduced loop dims kept in registers (see emitBlocked), or -1. */
  private readonly blockedFrom: number;

  constructor(private readonly f: FunctionBuilder, private readonly k: FusedKernel, private readonly plan: LoopPlan, private readonly powIndex: number) {
    this.r = plan.dims.length;
    this.inner = this.r - 1;
    const nIn = k.inputs.length;
    const nOut = k.outputs.length;
    this.begin = f.params[nIn + nOut]!;
    this.end = f.params[nIn + nOut + 1]!;
    const level = (base: Local): Local[] => {
      const ptr = [base];
      for (let d = 0; d < this.r; d++) ptr.push(f.local('i32'));
      return ptr;
    };
    k.inputs.forEach((inp, i) => {
      this.ins.push({ ptr: level(f.params[i]!), strides: plan.inStrides[i]!, bytes: BYTES[inp.dtype] });
    });
    k.outputs.forEach((o, j) => {
      this.outs.push({ ptr: level(f.params[nIn + j]!), strides: o.reduce ? plan.redStrides : plan.elemStrides, bytes: BYTES[o.dtype] });
    });
    this.invariant = k.nodes.map(() => false);
    k.nodes.forEach((n, i) => {
      const refs = this.refs(n);
      this.invariant[i] = n.kind === 'const' ? true : n.kind === 'input' ? plan.inStrides[n.input]![this.inner] === 0 : refs.every((j) => this.invariant[j]);
    });
    this.blockedFrom = this.blockedStart();
  }

  /**
   * Loop dims [kept…, reduced…, kept innermost] with sum/max/min outputs: the reduced dims just
   * before the innermost one are run inside blocks of the innermost, each block's sums kept in
   * registers (emitBlocked) instead of added into the output at every step. Returns the first
   * of those reduced dims, or -1 when the kernel has another shape.
   */
  private blockedStart(): number {
    const { plan, k } = this;
    if (plan.reduced[this.inner] || !this.hasReduce) return -1;
    if (k.outputs.some((o) => o.reduce === 'argmax' || o.reduce === 'argmin')) return -1;
    let r0 = this.inner;
    while (r0 > 0 && plan.reduced[r0 - 1]) r0--;
    if (r0 === this.inner || plan.reduced.slice(0, r0).some(Boolean)) return -1;
    return r0;
  }

  private refs(n: FusedNode): number[] {
    switch (n.kind) {
      case 'input': case 'const': return [];
      case 'where': return [n.cond, n.a, n.b];
      case 'binary': return [n.a, n.b];
      default: return [n.a];
    }
  }

  private get hasReduce(): boolean {
    return this.k.outputs.some((o) => o.reduce) && this.plan.reduced.some(Boolean);
  }

  emit(): void {
    const { f, k, plan } = this;
    // Input offsets fold into the base pointers.
    k.inputs.forEach((inp, i) => {
      if (inp.offset !== 0) f.get(f.params[i]!).i32Const(inp.offset * BYTES[inp.dtype]).i32Add().set(f.params[i]!);
    });
    const innerReduced = plan.reduced[this.inner]!;
    const outerReduced = plan.reduced.some((red, d) => red && d !== this.inner) || (!innerReduced && plan.reduced.some(Boolean));
    if (this.hasReduce && outerReduced && this.blockedFrom < 0) this.emitInit();
    this.emitLevel(0);
  }

  /** Sets every reduce output of this thread's range to the reduction's identity. */
  private emitInit(): void {
    const { f, k, plan } = this;
    const p = plan.parallelDim;
    const per = plan.keptAfterParallel;
    k.outputs.forEach((o, j) => {
      if (!o.reduce) return;
      const op = o.reduce as 'sum' | 'max' | 'min';
      const ptr = f.local('i32');
      const stop = f.local('i32');
      const base = f.params[k.inputs.length + j]!;
      const bytes = BYTES[o.dtype];
      if (p >= 0) {
        f.get(base).get(this.begin).i32Const(per * bytes).i32Mul().i32Add().set(ptr);
        f.get(base).get(this.end).i32Const(per * bytes).i32Mul().i32Add().set(stop);
      } else {
        f.get(base).set(ptr);
        f.get(base).i32Const(bytes).i32Add().set(stop);
      }
      f.block(() => {
        f.get(ptr).get(stop).i32GeU().brIf(0);
        f.loop(() => {
          f.get(ptr);
          if (o.dtype === 'float32') f.f32Const(IDENTITY_F32[op]).f32Store();
          else f.i32Const(IDENTITY_I32[op]).i32Store();
          f.get(ptr).i32Const(bytes).i32Add().tee(ptr).get(stop).i32LtU().brIf(0);
        });
      });
    });
  }

  private streams(): Stream[] {
    return [...this.ins, ...this.outs];
  }

  private emitLevel(d: number): void {
    const { f, plan } = this;
    if (d === this.inner) {
      this.emitInner();
      return;
    }
    if (d === this.blockedFrom) {
      this.emitBlocked();
      return;
    }
    const i = f.local('i32');
    const isPar = d === plan.parallelDim;
    // Entering level d+1: ptr[d+1] = ptr[d] + lo·stride
    for (const s of this.streams()) {
      f.get(s.ptr[d]!);
      if (isPar) f.get(this.begin).i32Const(s.strides[d]! * s.bytes).i32Mul().i32Add();
      f.set(s.ptr[d + 1]!);
    }
    f.for(i, () => (isPar ? f.get(this.begin) : f.i32Const(0)), () => (isPar ? f.get(this.end) : f.i32Const(plan.dims[d]!)), 1, () => {
      this.emitLevel(d + 1);
      for (const s of this.streams()) {
        const step = s.strides[d]! * s.bytes;
        if (step !== 0) f.get(s.ptr[d + 1]!).i32Const(step).i32Add().set(s.ptr[d + 1]!);
      }
    });
  }

  // ------------------------------------------------------------------ innermost loop

  /** Locals holding this call's range of the innermost dim: [begin, end) when it is the parallel one, else all of it. */
  private innerRange(): [Local, Local] {
    const { f, plan } = this;
    const lo = f.local('i32');
    const hi = f.local('i32');
    if (this.inner === plan.parallelDim) {
      f.get(this.begin).set(lo);
      f.get(this.end).set(hi);
    } else {
      f.i32Const(0).set(lo);
      f.i32Const(plan.dims[this.inner]!).set(hi);
    }
    return [lo, hi];
  }

  private emitInner(): void {
    const { f, k, plan } = this;
    const d = this.inner;
    const [lo, hi] = this.innerRange();
    const j = f.local('i32');
    // Pointers of this row (level d+1 = element lo of the innermost dim).
    for (const s of this.streams()) {
      f.get(s.ptr[d]!).get(lo).i32Const(s.strides[d]! * s.bytes).i32Mul().i32Add().set(s.ptr[d + 1]!);
    }
    // Loop-invariant values once per row.
    k.nodes.forEach((_, i) => {
      if (this.invariant[i]) this.values[i] = this.emitNode(i, 'full', null);
    });
    const innerReduced = plan.reduced[d]!;
    const accs = innerReduced ? this.initAccumulators() : [];
    f.get(lo).set(j);
    // Full vectors.
    f.block(() => {
      f.get(j).i32Const(4).i32Add().get(hi).i32GtS().brIf(0);
      f.loop(() => {
        this.emitBody('full', null, j, accs);
        this.advance(4);
        f.get(j).i32Const(4).i32Add().tee(j).i32Const(4).i32Add().get(hi).i32LeS().brIf(0);
      });
    });
    // Tail: 1–3 remaining lanes.
    const rem = f.local('i32');
    f.get(hi).get(j).i32Sub().tee(rem).i32Const(0).i32GtS();
    f.if(() => this.emitBody('tail', rem, j, accs));
    if (innerReduced) this.finishAccumulators(accs);
  }

  private advance(lanes: number): void {
    const { f } = this;
    const d = this.inner;
    for (const s of this.streams()) {
      const step = s.strides[d]! * s.bytes * lanes;
      if (step !== 0) f.get(s.ptr[d + 1]!).i32Const(step).i32Add().set(s.ptr[d + 1]!);
    }
  }

  private emitBody(mode: 'full' | 'tail', rem: Local | null, j: Local, accs: Accumulator[]): void {
    const { k } = this;
    k.nodes.forEach((_, i) => {
      if (!this.invariant[i]) this.values[i] = this.emitNode(i, mode, rem);
    });
    k.outputs.forEach((o, oi) => {
      const v = this.values[o.node]!;
      if (!o.reduce) {
        this.store(this.outs[oi]!, v, o.dtype, mode, rem);
      } else if (!this.plan.reduced.some(Boolean)) {
        // Every reduced axis has size 1: the reduction is the value itself (index 0 for arg-reductions).
        if (o.reduce === 'argmax' || o.reduce === 'argmin') {
          const z = this.f.local('v128');
          this.f.i32Const(0).i32x4Splat().set(z);
          this.store(this.outs[oi]!, z, 'int32', mode, rem);
        } else {
          this.store(this.outs[oi]!, v, o.dtype, mode, rem);
        }
      } else if (this.plan.reduced[this.inner] || this.blockedFrom >= 0) {
        this.accumulate(accs.find((a) => a.output === oi)!, v, mode, rem, j);
      } else {
        this.accumulateInto(this.outs[oi]!, o.reduce, o.dtype, k.nodes[o.node]!.dtype, v, mode, rem);
      }
    });
  }

  // ------------------------------------------------------------------ register-blocked reductions

  /**
   * From loop dim blockedFrom on: the innermost (kept) dim in blocks of 16 lanes (then of 4, then
   * a masked tail); per block, accumulators in registers for the whole run of the reduced dims,
   * one store per output vector at the end. Each output element still adds its terms in loop
   * order from the identity, so results equal the column-sum form's.
   */
  private emitBlocked(): void {
    const { f } = this;
    const d = this.inner;
    const r0 = this.blockedFrom;
    const [j, hi] = this.innerRange();
    const block = (vectors: number, mode: 'full' | 'tail', rem: Local | null) => {
      // Each stream's pointer at this block's first lane, with the reduced dims at 0.
      const start = this.streams().map((s) => {
        const p = f.local('i32');
        f.get(s.ptr[r0]!).get(j).i32Const(s.strides[d]! * s.bytes).i32Mul().i32Add().set(p);
        return p;
      });
      const accs = Array.from({ length: vectors }, () => this.initAccumulators());
      this.emitBlockedLevel(r0, start, vectors, mode, rem, j, accs);
      this.k.outputs.forEach((o, oi) => {
        if (!o.reduce) return;
        const s = this.outs[oi]!;
        const at = start[this.ins.length + oi]!;
        for (let v = 0; v < vectors; v++) {
          f.get(at).i32Const(v * 4 * s.bytes).i32Add().set(s.ptr[d + 1]!);
          this.store(s, accs[v]!.find((a) => a.output === oi)!.value, o.dtype, mode, rem);
        }
      });
    };
    for (const vectors of [4, 1]) {
      f.block(() => {
        f.get(j).i32Const(4 * vectors).i32Add().get(hi).i32GtS().brIf(0);
        f.loop(() => {
          block(vectors, 'full', null);
          f.get(j).i32Const(4 * vectors).i32Add().tee(j).i32Const(4 * vectors).i32Add().get(hi).i32LeS().brIf(0);
        });
      });
    }
    const rem = f.local('i32');
    f.get(hi).get(j).i32Sub().tee(rem).i32Const(0).i32GtS();
    f.if(() => block(1, 'tail', rem));
  }

  /** The reduced dims from `d` on, inside one block; at the innermost point, `vectors` bodies. */
  private emitBlockedLevel(d: number, start: Local[], vectors: number, mode: 'full' | 'tail', rem: Local | null, j: Local, accs: Accumulator[][]): void {
    const { f, plan } = this;
    const streams = this.streams();
    if (d === this.inner) {
      streams.forEach((s) => f.get(s.ptr[d]!).set(s.ptr[d + 1]!));
      this.k.nodes.forEach((_, i) => {
        if (this.invariant[i]) this.values[i] = this.emitNode(i, 'full', null);
      });
      // Vector v addresses its lanes through memarg offsets (strides are never negative).
      for (let v = 0; v < vectors; v++) {
        this.laneBase = 4 * v;
        this.emitBody(mode, rem, j, accs[v]!);
      }
      this.laneBase = 0;
      return;
    }
    const i = f.local('i32');
    streams.forEach((s, si) => f.get(d === this.blockedFrom ? start[si]! : s.ptr[d]!).set(s.ptr[d + 1]!));
    f.for(i, () => f.i32Const(0), () => f.i32Const(plan.dims[d]!), 1, () => {
      this.emitBlockedLevel(d + 1, start, vectors, mode, rem, j, accs);
      for (const s of streams) {
        const step = s.strides[d]! * s.bytes;
        if (step !== 0) f.get(s.ptr[d + 1]!).i32Const(step).i32Add().set(s.ptr[d + 1]!);
      }
    });
  }

  // ------------------------------------------------------------------ loads and stores

  private load(inputIndex: number, mode: 'full' | 'tail', rem: Local | null): Local {
    const { f, k } = this;
    const s = this.ins[inputIndex]!;
    const dtype = k.inputs[inputIndex]!.dtype;
    const stride = s.strides[this.inner]!;
    const p = s.ptr[this.inner + 1]!;
    const base = this.laneBase * stride * BYTES[dtype];
    const out = f.local('v128');
    if (stride === 0) {
      if (dtype === 'float32') f.get(p).f32Load().f32x4Splat();
      else if (dtype === 'int32') f.get(p).i32Load().i32x4Splat();
      else f.i32Const(0).get(p).i32Load8U().i32Sub().i32x4Splat(); // 1 → all ones
      f.set(out);
      return out;
    }
    if (stride === 1 && dtype !== 'bool') {
      f.get(p).v128Load(base, 0).set(out);
      return out;
    }
    if (stride === 1 && dtype === 'bool') {
      f.get(p).v128Load32Zero(base).simdOp(0x89).simdOp(0xa9);
      f.i32Const(0).i32x4Splat().i32x4Ne().set(out);
      return out;
    }
    // Strided: one lane at a time (in the tail only the lanes that exist).
    f.i32Const(0).i32x4Splat().set(out);
    for (let l = 0; l < 4; l++) {
      const lane = () => {
        const off = base + l * stride * BYTES[dtype];
        f.get(out);
        if (dtype === 'float32') f.get(p).f32Load(off).f32x4ReplaceLane(l);
        else if (dtype === 'int32') f.get(p).i32Load(off).i32x4ReplaceLane(l);
        else f.i32Const(0).get(p).i32Load8U(off).i32Sub().i32x4ReplaceLane(l);
        f.set(out);
      };
      if (mode === 'tail' && l > 0) {
        f.get(rem!).i32Const(l).i32GtS();
        f.if(lane);
      } else {
        lane();
      }
    }
    return out;
  }

  private store(s: Stream, v: Local, dtype: DType, mode: 'full' | 'tail', rem: Local | null): void {
    const { f } = this;
    const p = s.ptr[this.inner + 1]!;
    const stride = s.strides[this.inner]!;
    const base = this.laneBase * stride * BYTES[dtype];
    if (mode === 'full' && stride === 1 && dtype !== 'bool') {
      f.get(p).get(v).v128Store(base, 0);
      return;
    }
    for (let l = 0; l < 4; l++) {
      const lane = () => {
        const off = base + l * stride * BYTES[dtype];
        f.get(p).get(v).i32x4ExtractLane(l);
        if (dtype === 'bool') f.i32Const(1).i32And().i32Store8(off);
        else f.i32Store(off);
      };
      if (mode === 'tail' && l > 0) {
        f.get(rem!).i32Const(l).i32GtS();
        f.if(lane);
      } else {
        lane();
      }
    }
  }

  // ------------------------------------------------------------------ reductions

  private initAccumulators(): Accumulator[] {
    const { f, k } = this;
    const accs: Accumulator[] = [];
    k.outputs.forEach((o, oi) => {
      if (!o.reduce) return;
      const dtype = k.nodes[o.node]!.dtype === 'bool' ? 'int32' : k.nodes[o.node]!.dtype;
      const acc: Accumulator = { output: oi, op: o.reduce, dtype, value: f.local('v128'), index: null };
      if (o.reduce === 'argmax' || o.reduce === 'argmin') {
        acc.index = f.local('v128');
        f.i32Const(BIG).i32x4Splat().set(acc.index);
        f.i32Const(0).i32x4Splat().set(acc.value);
      } else {
        this.splatIdentity(o.reduce, dtype);
        f.set(acc.value);
      }
      accs.push(acc);
    });
    return accs;
  }

  private splatIdentity(op: 'sum' | 'max' | 'min', dtype: DType): void {
    if (dtype === 'float32') this.f.f32Const(IDENTITY_F32[op]).f32x4Splat();
    else this.f.i32Const(IDENTITY_I32[op]).i32x4Splat();
  }

  /** Lanes [0, rem) as a mask (all lanes in full vectors). */
  private laneMask(rem: Local): Local {
    const { f } = this;
    const m = f.local('v128');
    f.v128Const([0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]).get(rem).i32x4Splat().i32x4LtS().set(m);
    return m;
  }

  private combine(op: 'sum' | 'max' | 'min', dtype: DType): void {
    const { f } = this;
    if (dtype === 'float32') {
      if (op === 'sum') f.f32x4Add();
      else if (op === 'max') f.f32x4Max();
      else f.f32x4Min();
    } else if (op === 'sum') f.i32x4Add();
    else if (op === 'max') f.i32x4MaxS();
    else f.i32x4MinS();
  }

  private accumulate(acc: Accumulator, vIn: Local, mode: 'full' | 'tail', rem: Local | null, j: Local): void {
    const { f } = this;
    let v = vIn;
    if (this.k.nodes[this.k.outputs[acc.output]!.node]!.dtype === 'bool') {
      v = f.local('v128');
      f.get(vIn).i32Const(1).i32x4Splat().v128And().set(v);
    }
    const valid = mode === 'tail' ? this.laneMask(rem!) : null;
    if (acc.op === 'argmax' || acc.op === 'argmin') {
      const idx = f.local('v128');
      const better = f.local('v128');
      f.v128Const([0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]).get(j).i32x4Splat().i32x4Add().set(idx);
      const isF = acc.dtype === 'float32';
      // better = first-in-lane | v beats best | (v is NaN and best is not)
      f.get(acc.index!).i32Const(BIG).i32x4Splat().i32x4Eq();
      f.get(v).get(acc.value!);
      if (isF) (acc.op === 'argmax' ? f.f32x4Gt() : f.f32x4Lt());
      else (acc.op === 'argmax' ? f.i32x4GtS() : f.i32x4LtS());
      f.v128Or();
      if (isF) {
        f.get(v).get(v).f32x4Ne().get(acc.value!).get(acc.value!).f32x4Eq().v128And().v128Or();
        // Once a lane holds a NaN nothing replaces it.
        f.get(acc.value!).get(acc.value!).f32x4Eq().get(acc.index!).i32Const(BIG).i32x4Splat().i32x4Eq().v128Or().v128And();
      }
      if (valid) f.get(valid).v128And();
      f.set(better);
      f.get(v).get(acc.value!).get(better).v128Bitselect().set(acc.value!);
      f.get(idx).get(acc.index!).get(better).v128Bitselect().set(acc.index!);
      return;
    }
    const op = acc.op as 'sum' | 'max' | 'min';
    f.get(acc.value!);
    if (valid) {
      f.get(v);
      this.splatIdentity(op, acc.dtype);
      f.get(valid).v128Bitselect();
    } else {
      f.get(v);
    }
    this.combine(op, acc.dtype);
    f.set(acc.value!);
  }

  private finishAccumulators(accs: Accumulator[]): void {
    const { f, plan } = this;
    const outerReduced = plan.reduced.some((red, d) => red && d !== this.inner);
    for (const acc of accs) {
      const s = this.outs[acc.output]!;
      const p = s.ptr[this.inner]!; // the row's output element
      if (acc.op === 'argmax' || acc.op === 'argmin') {
        this.finishArg(acc, p);
        continue;
      }
      const op = acc.op as 'sum' | 'max' | 'min';
      const isF = acc.dtype === 'float32';
      // ((l0 op l1) op (l2 op l3))
      const lane = (l: number) => (isF ? f.get(acc.value).f32x4ExtractLane(l) : f.get(acc.value).i32x4ExtractLane(l));
      const scalarOp = () => {
        if (isF) (op === 'sum' ? f.f32Add() : op === 'max' ? f.f32Max() : f.f32Min());
        else if (op === 'sum') f.i32Add();
        else this.i32MinMax(op);
      };
      const total = f.local(isF ? 'f32' : 'i32');
      lane(0); lane(1); scalarOp();
      lane(2); lane(3); scalarOp();
      scalarOp();
      f.set(total);
      f.get(p);
      if (outerReduced) {
        f.get(p);
        if (isF) f.f32Load();
        else f.i32Load();
        f.get(total);
        scalarOp();
      } else {
        f.get(total);
      }
      if (isF) f.f32Store();
      else f.i32Store();
    }
  }

  /** i32 max/min of the two values on the stack. */
  private i32MinMax(op: 'max' | 'min'): void {
    const { f } = this;
    const a = f.local('i32');
    const b = f.local('i32');
    f.set(b).set(a);
    f.get(a).get(b).get(a).get(b);
    if (op === 'max') f.i32GtS();
    else f.i32LtS();
    f.select();
  }

  private finishArg(acc: Accumulator, p: Local): void {
    const { f } = this;
    const isF = acc.dtype === 'float32';
    const bv = f.local(isF ? 'f32' : 'i32');
    const bi = f.local('i32');
    const v = f.local(isF ? 'f32' : 'i32');
    const i = f.local('i32');
    const lane = (l: number) => {
      f.get(acc.value);
      if (isF) f.f32x4ExtractLane(l);
      else f.i32x4ExtractLane(l);
      f.set(v);
      f.get(acc.index!).i32x4ExtractLane(l).set(i);
    };
    lane(0);
    f.get(v).set(bv);
    f.get(i).set(bi);
    for (let l = 1; l < 4; l++) {
      lane(l);
      // take lane l when it saw elements and (best is empty, or l beats best, or ties with a smaller index)
      f.get(i).i32Const(BIG).i32Ne();
      f.get(bi).i32Const(BIG).i32Eq();
      if (isF) {
        // NaN handling: a NaN beats numbers; among NaNs, and among equal numbers, the smaller index.
        f.get(v).get(v).f32Ne().get(bv).get(bv).f32Eq().i32And(); // v NaN, best not
        f.i32Or();
        f.get(v).get(v).f32Ne().get(bv).get(bv).f32Ne().i32And().get(i).get(bi).i32LtS().i32And(); // both NaN, earlier
        f.i32Or();
        f.get(v).get(v).f32Eq().get(bv).get(bv).f32Eq().i32And(); // both numbers
        f.get(v).get(bv);
        if (acc.op === 'argmax') f.f32Gt();
        else f.f32Lt();
        f.get(v).get(bv).f32Eq().get(i).get(bi).i32LtS().i32And().i32Or();
        f.i32And();
        f.i32Or();
      } else {
        f.get(v).get(bv);
        if (acc.op === 'argmax') f.i32GtS();
        else f.i32LtS();
        f.get(v).get(bv).i32Eq().get(i).get(bi).i32LtS().i32And().i32Or();
        f.i32Or();
      }
      f.i32And();
      f.if(() => {
        f.get(v).set(bv);
        f.get(i).set(bi);
      });
    }
    f.get(p).get(bi).i32Store();
  }

  /** Kept innermost axis with reduced outer axes: out[lanes] = out[lanes] op v. */
  private accumulateInto(s: Stream, op: ReduceOp, dtype: DType, nodeDtype: DType, v: Local, mode: 'full' | 'tail', rem: Local | null): void {
    const { f } = this;
    if (op === 'argmax' || op === 'argmin') throw new Error('internal: arg-reductions are innermost');
    const o = op as 'sum' | 'max' | 'min';
    const p = s.ptr[this.inner + 1]!;
    const isF = dtype === 'float32';
    let val = v;
    if (nodeDtype === 'bool') {
      val = f.local('v128');
      f.get(v).i32Const(1).i32x4Splat().v128And().set(val);
    }
    if (mode === 'full') {
      f.get(p).get(p).v128Load(0, 0).get(val);
      this.combine(o, dtype);
      f.v128Store(0, 0);
      return;
    }
    for (let l = 0; l < 4; l++) {
      const lane = () => {
        f.get(p).get(p);
        if (isF) {
          f.f32Load(l * 4).get(val).f32x4ExtractLane(l);
          if (o === 'sum') f.f32Add();
          else if (o === 'max') f.f32Max();
          else f.f32Min();
          f.f32Store(l * 4);
        } else {
          f.i32Load(l * 4).get(val).i32x4ExtractLane(l);
          if (o === 'sum') f.i32Add();
          else this.i32MinMax(o);
          f.i32Store(l * 4);
        }
      };
      if (l > 0) {
        f.get(rem!).i32Const(l).i32GtS();
        f.if(lane);
      } else {
        lane();
      }
    }
  }

  // ------------------------------------------------------------------ expressions

  private emitNode(i: number, mode: 'full' | 'tail', rem: Local | null): Local {
    const { f, k } = this;
    const n = k.nodes[i]!;
    const val = (j: number) => this.values[j]!;
    switch (n.kind) {
      case 'input': return this.load(n.input, this.invariant[i] ? 'full' : mode, rem);
      case 'const': {
        const out = f.local('v128');
        if (n.dtype === 'float32') f.f32Const(n.value).f32x4Splat();
        else if (n.dtype === 'int32') f.i32Const(n.value).i32x4Splat();
        else f.i32Const(n.value !== 0 ? -1 : 0).i32x4Splat();
        f.set(out);
        return out;
      }
      case 'unary': return this.unary(n.op, val(n.a), k.nodes[n.a]!.dtype);
      case 'binary': return this.binary(n.op, val(n.a), val(n.b), k.nodes[n.a]!.dtype);
      case 'where': {
        const out = f.local('v128');
        f.get(val(n.a)).get(val(n.b)).get(val(n.cond)).v128Bitselect().set(out);
        return out;
      }
      case 'cast': return this.cast(val(n.a), k.nodes[n.a]!.dtype, n.dtype);
    }
  }

  private unary(op: UnaryOp, x: Local, dtype: DType): Local {
    const { f } = this;
    const out = f.local('v128');
    if (dtype === 'bool') {
      if (op !== 'not') throw new UnsupportedKernelError(`${op} on bool`);
      f.get(x).v128Not().set(out);
      return out;
    }
    if (dtype === 'int32') {
      switch (op) {
        case 'neg': f.get(x).i32x4Neg(); break;
        case 'abs': f.get(x).i32x4Abs(); break;
        case 'sign':
          f.i32Const(1).i32x4Splat();
          f.i32Const(-1).i32x4Splat().i32Const(0).i32x4Splat().get(x).i32Const(0).i32x4Splat().i32x4LtS().v128Bitselect();
          f.get(x).i32Const(0).i32x4Splat().i32x4GtS().v128Bitselect();
          break;
        default: throw new UnsupportedKernelError(`${op} on int32`);
      }
      f.set(out);
      return out;
    }
    switch (op) {
      case 'neg': f.get(x).f32x4Neg(); break;
      case 'abs': f.get(x).f32x4Abs(); break;
      case 'sqrt': f.get(x).f32x4Sqrt(); break;
      case 'rsqrt': f.f32Const(1).f32x4Splat().get(x).f32x4Sqrt().f32x4Div(); break;
      case 'exp': expF32x4(f, x); break;
      case 'log': logF32x4(f, x); break;
      case 'sin': sinCosF32x4(f, x, 'sin'); break;
      case 'cos': sinCosF32x4(f, x, 'cos'); break;
      case 'tanh': tanhF32x4(f, x); break;
      case 'sigmoid': sigmoidF32x4(f, x); break;
      case 'sign': {
        // 1, −1, or x + 0 (turns −0 into 0, keeps NaN)
        f.f32Const(1).f32x4Splat();
        f.f32Const(-1).f32x4Splat().get(x).f32Const(0).f32x4Splat().f32x4Add().get(x).f32Const(0).f32x4Splat().f32x4Lt().v128Bitselect();
        f.get(x).f32Const(0).f32x4Splat().f32x4Gt().v128Bitselect();
        break;
      }
      default: throw new UnsupportedKernelError(`${op} on float32`);
    }
    f.set(out);
    return out;
  }

  private binary(op: BinaryOp | CompareOp | LogicalOp, a: Local, b: Local, dtype: DType): Local {
    const { f } = this;
    const out = f.local('v128');
    f.get(a).get(b);
    if (dtype === 'bool') {
      switch (op) {
        case 'and': f.v128And(); break;
        case 'or': f.v128Or(); break;
        case 'equal': f.i32x4Eq(); break;
        case 'notEqual': f.i32x4Ne(); break;
        default: throw new UnsupportedKernelError(`${op} on bool`);
      }
    } else if (dtype === 'int32') {
      switch (op) {
        case 'add': f.i32x4Add(); break;
        case 'sub': f.i32x4Sub(); break;
        case 'mul': f.i32x4Mul(); break;
        case 'maximum': f.i32x4MaxS(); break;
        case 'minimum': f.i32x4MinS(); break;
        case 'less': f.i32x4LtS(); break;
        case 'lessEqual': f.i32x4LeS(); break;
        case 'greater': f.i32x4GtS(); break;
        case 'greaterEqual': f.i32x4GeS(); break;
        case 'equal': f.i32x4Eq(); break;
        case 'notEqual': f.i32x4Ne(); break;
        default: throw new UnsupportedKernelError(`${op} on int32`);
      }
    } else {
      switch (op) {
        case 'add': f.f32x4Add(); break;
        case 'sub': f.f32x4Sub(); break;
        case 'mul': f.f32x4Mul(); break;
        case 'div': f.f32x4Div(); break;
        case 'maximum': f.f32x4Max(); break;
        case 'minimum': f.f32x4Min(); break;
        case 'less': f.f32x4Lt(); break;
        case 'lessEqual': f.f32x4Le(); break;
        case 'greater': f.f32x4Gt(); break;
        case 'greaterEqual': f.f32x4Ge(); break;
        case 'equal': f.f32x4Eq(); break;
        case 'notEqual': f.f32x4Ne(); break;
        case 'pow': {
          // Math.pow per lane (in doubles, rounded once), exactly what the CPU backend computes.
          f.drop().drop();
          f.get(a).set(out);
          for (let l = 0; l < 4; l++) {
            f.get(out);
            f.get(a).f32x4ExtractLane(l).f64PromoteF32();
            f.get(b).f32x4ExtractLane(l).f64PromoteF32();
            f.call(this.powIndex).f32DemoteF64();
            f.f32x4ReplaceLane(l).set(out);
          }
          return out;
        }
        default: throw new UnsupportedKernelError(`${op} on float32`);
      }
    }
    f.set(out);
    return out;
  }

  private cast(x: Local, from: DType, to: DType): Local {
    const { f } = this;
    if (from === to) return x;
    const out = f.local('v128');
    f.get(x);
    if (to === 'bool') {
      if (from === 'float32') f.f32Const(0).f32x4Splat().f32x4Ne();
      else f.i32Const(0).i32x4Splat().i32x4Ne();
    } else if (from === 'bool') {
      if (to === 'float32') f.f32Const(1).f32x4Splat().v128And();
      else f.i32Const(1).i32x4Splat().v128And();
    } else if (from === 'float32' && to === 'int32') {
      f.i32x4TruncSatF32x4S();
    } else if (from === 'int32' && to === 'float32') {
      f.f32x4ConvertI32x4S();
    } else {
      throw new UnsupportedKernelError(`cast ${from} → ${to}`);
    }
    f.set(out);
    return out;
  }
}

interface Accumulator {
  output: number;
  op: ReduceOp;
  dtype: DType;
  value: Local;
  index: Local | null;
}
