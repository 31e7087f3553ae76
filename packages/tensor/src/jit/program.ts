/**
 * A traced program: the backend kernel calls a function made, in order, over symbolic
 * variables, and the executor that replays it on a real backend.
 *
 * Every variable is one flat buffer (size, dtype); ops read variables through views (shape,
 * dtype), exactly as backend kernels read buffers, so reshapes cost nothing. The executor
 * frees each intermediate right after its last use and lets `dynamicUpdateSlice` write in
 * place into a buffer nobody needs afterwards (a preallocated cache, a donated argument).
 */
import type { Backend, BackendBuffer, BinaryOp, BufferView, CompareOp, LogicalOp, ReduceOp, UnaryOp } from '../backend.js';
import { AllocationError, type DType, type TypedArray } from '../dtype.js';
import type { FusedInto, FusedKernel, PhasedKernel } from '../fused.js';
import type { KeyExpr } from '../random.js';
import type { Shape } from '../shape.js';
import { fromBuffer, Storage, Tensor } from '../tensor.js';
import { threefry2x32 } from '../threefry.js';

export interface VarInfo {
  size: number;
  dtype: DType;
  source: VarSource;
}

export type VarSource =
  | { kind: 'input'; leaf: number }
  | { kind: 'const'; data: TypedArray }
  | { kind: 'captured'; storage: Storage }
  | { kind: 'op' };


export interface View {
  v: number;
  shape: Shape;
  dtype: DType;
}

export type Op =
  | { kind: 'unary'; op: UnaryOp; x: View; out: number }
  | { kind: 'binary'; op: BinaryOp | CompareOp | LogicalOp; a: View; b: View; shape: Shape; out: number }
  | { kind: 'where'; cond: View; a: View; b: View; shape: Shape; out: number }
  | { kind: 'reduce'; op: ReduceOp; x: View; axes: readonly number[]; out: number }
  | { kind: 'matmul'; a: View; b: View; transA: boolean; transB: boolean; batch: Shape; out: number }
  | { kind: 'transpose'; x: View; perm: readonly number[]; out: number }
  | { kind: 'broadcastTo'; x: View; shape: Shape; out: number }
  | { kind: 'slice'; x: View; starts: readonly number[]; sizes: readonly number[]; out: number }
  | { kind: 'pad'; x: View; before: readonly number[]; after: readonly number[]; out: number }
  | { kind: 'concat'; xs: readonly View[]; axis: number; out: number }
  | { kind: 'gather'; x: View; indices: View; axis: number; out: number }
  | { kind: 'scatterAdd'; updates: View; indices: View; axis: number; shape: Shape; out: number }
  | { kind: 'cast'; x: View; dtype: DType; out: number }
  | { kind: 'full'; value: number; out: number }
  | { kind: 'randomUniform'; key: KeyExpr; out: number }
  | { kind: 'dynamicSlice'; x: View; index: View; axis: number; size: number; out: number }
  | { kind: 'dynamicUpdateSlice'; x: View; update: View; index: View; axis: number; out: number }
  | FusedOp
  | { kind: 'phased'; kernel: PhasedKernel; inputs: readonly View[]; outs: readonly number[] }
  | FusedIntoOp
  /** Independent elementwise kernels and fused updates as one dispatch. */
  | { kind: 'horizontal'; members: readonly (FusedOp | FusedIntoOp)[] };

export type FusedOp = { kind: 'fused'; kernel: FusedKernel; inputs: readonly View[]; outs: readonly number[] };
/** dynamicUpdateSlice(x, k(inputs), index, axis) with the elementwise kernel k writing its one output into x's region. */
export type FusedIntoOp = { kind: 'fusedInto'; kernel: FusedKernel; inputs: readonly View[]; x: View; index: View; axis: number; into: FusedInto; out: number };

export interface Program {
  vars: VarInfo[];
  ops: Op[];
  /** One variable per output tensor leaf, with the leaf's shape. */
  outputs: View[];
}

/** The views an op reads. */
export function opInputs(op: Op): readonly View[] {
  switch (op.kind) {
    case 'unary': case 'reduce': case 'transpose': case 'broadcastTo': case 'slice': case 'pad': case 'cast':
      return [op.x];
    case 'binary': return [op.a, op.b];
    case 'where': return [op.cond, op.a, op.b];
    case 'matmul': return [op.a, op.b];
    case 'concat': return op.xs;
    case 'gather': return [op.x, op.indices];
    case 'scatterAdd': return [op.updates, op.indices];
    case 'full': case 'randomUniform': return [];
    case 'dynamicSlice': return [op.x, op.index];
    case 'dynamicUpdateSlice': return [op.x, op.update, op.index];
    case 'fused': case 'phased': return op.inputs;
    case 'fusedInto': return [...op.inputs, op.x, op.index];
    case 'horizontal': return op.members.flatMap((m) => opInputs(m));
  }
}

/** The variables an op writes. */
export function opOutputs(op: Op): readonly number[] {
  if (op.kind === 'horizontal') return op.members.flatMap((m) => opOutputs(m));
  return op.kind === 'fused' || op.kind === 'phased' ? op.outs : [op.out];
}

/** Drop ops whose results no output needs. */
export function eliminateDeadCode(p: Program): Program {
  const live = new Set(p.outputs.map((o) => o.v));
  const kept: Op[] = [];
  for (let i = p.ops.length - 1; i >= 0; i--) {
    const op = p.ops[i]!;
    if (!opOutputs(op).some((v) => live.has(v))) continue;
    kept.push(op);
    for (const x of opInputs(op)) live.add(x.v);
  }
  kept.reverse();
  return { vars: p.vars, ops: kept, outputs: p.outputs };
}

export function keyWords(k: KeyExpr, argKeys: readonly (readonly [number, number])[]): readonly [number, number] {
  switch (k.kind) {
    case 'words': return k.words;
    case 'arg': return argKeys[k.leaf]!;
    case 'split': {
      const [a, b] = keyWords(k.of, argKeys);
      return threefry2x32(a, b, k.index, 1);
    }
    case 'foldIn': {
      const [a, b] = keyWords(k.of, argKeys);
      return threefry2x32(a, b, k.data >>> 0, 2);
    }
  }
}

/** Counts an executor reports (per run), for tests and benchmarks. */
export interface RunCounts {
  ops: number;
  fused: number;
}

/**
 * A program bound to one backend: constants uploaded once, last uses precomputed. `run` takes
 * the argument tensors (in leaf order) and the argument keys, returns the output tensors.
 */
export class Executable {
  private readonly constants = new Map<number, Storage>();
  private readonly lastUse: Int32Array;
  private readonly isOutput: Uint8Array;
  private disposed = false;
  readonly counts: RunCounts;

  constructor(readonly program: Program, readonly backend: Backend) {
    const n = program.vars.length;
    this.lastUse = new Int32Array(n).fill(-1);
    this.isOutput = new Uint8Array(n);
    program.ops.forEach((op, i) => {
      for (const x of opInputs(op)) this.lastUse[x.v] = i;
    });
    for (const o of program.outputs) this.isOutput[o.v] = 1;
    this.counts = { ops: program.ops.length, fused: program.ops.filter((o) => o.kind === 'fused' || o.kind === 'phased' || o.kind === 'fusedInto' || o.kind === 'horizontal').length };
  }

  private constant(v: number): Storage {
    let s = this.constants.get(v);
    if (!s) {
      const src = this.program.vars[v]!.source;
      if (src.kind !== 'const') throw new Error('internal: not a constant');
      s = new Storage(this.backend, this.backend.fromTyped(src.data, this.program.vars[v]!.dtype));
      this.constants.set(v, s);
    }
    return s;
  }

  run(args: readonly Tensor[], argKeys: readonly (readonly [number, number])[], donated: readonly boolean[]): Tensor[] {
    if (this.disposed) throw new Error('jit: the compiled program was disposed');
    const { vars, ops, outputs } = this.program;
    const be = this.backend;
    const env: (BackendBuffer | undefined)[] = new Array(vars.length);
    // Buffers this run may free or overwrite: op results, and donated arguments.
    const owned = new Uint8Array(vars.length);
    const storageOf = (v: number): Storage | undefined => {
      const src = vars[v]!.source;
      if (src.kind === 'input') return args[src.leaf]!._storage;
      if (src.kind === 'captured') return src.storage;
      if (src.kind === 'const') return this.constant(v);
      return undefined;
    };
    vars.forEach((info, v) => {
      const src = info.source;
      if (src.kind === 'op') return;
      const s = storageOf(v)!;
      if (s.rc <= 0) throw new Error(`jit: ${src.kind === 'input' ? `argument leaf ${src.leaf}` : 'a captured tensor'} has been disposed`);
      env[v] = s.buf;
      if (src.kind === 'input' && donated[src.leaf]) {
        const t = args[src.leaf]!;
        // Only a buffer no other tensor shares can be handed over; the argument is then spent.
        if (s.rc === 1 && t._owned && !this.isOutput[v]) {
          owned[v] = 1;
          t._owned = false;
          s.rc = 0;
        }
      }
    });
    const view = (x: View): BufferView => ({ buf: env[x.v]!, shape: x.shape, dtype: x.dtype });
    const free = (v: number, keep: readonly (BackendBuffer | undefined)[] = []): void => {
      if (this.isOutput[v]) return;
      const b = env[v];
      if (owned[v] && b !== undefined && !keep.includes(b)) be.free(b);
      env[v] = undefined;
    };
    /** Whether an update of x done by op may write into x's buffer: owned, last read here, read by nothing else in op. */
    const mayReuse = (x: View, op: Op, i: number): boolean =>
      owned[x.v] === 1 && this.lastUse[x.v] === i && !this.isOutput[x.v] &&
      opInputs(op).filter((y) => y.v === x.v).length === 1;
    /** The buffers an op made become its result variables, owned by this run. */
    const bind = (vs: readonly number[], bufs: readonly BackendBuffer[]): void => vs.forEach((v, j) => {
      env[v] = bufs[j];
      owned[v] = 1;
    });
    let at = -1;
    try {
      for (let i = 0; i < ops.length; i++) {
        at = i;
        const op = ops[i]!;
        let result: BackendBuffer | undefined;
        switch (op.kind) {
          case 'unary': result = be.unary(op.op, view(op.x)); break;
          case 'binary': result = be.binary(op.op, view(op.a), view(op.b), op.shape); break;
          case 'where': result = be.where(view(op.cond), view(op.a), view(op.b), op.shape); break;
          case 'reduce': result = be.reduce(op.op, view(op.x), op.axes); break;
          case 'matmul': result = be.matmul(view(op.a), view(op.b), op.transA, op.transB, op.batch); break;
          case 'transpose': result = be.transpose(view(op.x), op.perm); break;
          case 'broadcastTo': result = be.broadcastTo(view(op.x), op.shape); break;
          case 'slice': result = be.slice(view(op.x), op.starts, op.sizes); break;
          case 'pad': result = be.pad(view(op.x), op.before, op.after); break;
          case 'concat': result = be.concat(op.xs.map(view), op.axis); break;
          case 'gather': result = be.gather(view(op.x), view(op.indices), op.axis); break;
          case 'scatterAdd': result = be.scatterAdd(view(op.updates), view(op.indices), op.axis, op.shape); break;
          case 'cast': result = be.cast(view(op.x), op.dtype); break;
          case 'full': result = be.full(vars[op.out]!.size, vars[op.out]!.dtype, op.value); break;
          case 'randomUniform':
            result = be.randomUniform(keyWords(op.key, argKeys), vars[op.out]!.size, vars[op.out]!.dtype);
            break;
          case 'dynamicSlice': result = be.dynamicSlice(view(op.x), view(op.index), op.axis, op.size); break;
          case 'dynamicUpdateSlice':
            result = be.dynamicUpdateSlice(view(op.x), view(op.update), view(op.index), op.axis, mayReuse(op.x, op, i));
            break;
          case 'fused': {
            if (!be.runFused) throw new Error(`jit: the ${be.name} backend cannot run fused kernels`);
            bind(op.outs, be.runFused(op.kernel, op.inputs.map((x) => env[x.v]!)));
            break;
          }
          case 'phased': {
            if (!be.runPhased) throw new Error(`jit: the ${be.name} backend cannot run phased kernels`);
            bind(op.outs, be.runPhased(op.kernel, op.inputs.map((x) => env[x.v]!)));
            break;
          }
          case 'fusedInto': {
            if (!be.runFusedInto) throw new Error(`jit: the ${be.name} backend cannot run fused updates`);
            result = be.runFusedInto(op.kernel, op.inputs.map((x) => env[x.v]!), view(op.x), view(op.index), op.into, mayReuse(op.x, op, i));
            break;
          }
          case 'horizontal': {
            if (!be.runHorizontal) throw new Error(`jit: the ${be.name} backend cannot run horizontal kernels`);
            const outs = be.runHorizontal(op.members.map((m) => ({
              kernel: m.kernel,
              inputs: m.inputs.map((x) => env[x.v]!),
              ...(m.kind === 'fusedInto' ? { into: { x: view(m.x), index: view(m.index), spec: m.into, reuse: mayReuse(m.x, op, i) } } : {}),
            })));
            op.members.forEach((m, j) => bind(opOutputs(m), outs[j]!));
            break;
          }
        }
        if (result !== undefined) {
          const out = (op as { out: number }).out;
          env[out] = result;
          owned[out] = 1;
        }
        for (const v of opOutputs(op)) if (this.lastUse[v] < i && !this.isOutput[v]) free(v);
        // An input whose buffer became a result (an update in place) stays.
        let results: (BackendBuffer | undefined)[] | undefined;
        for (const x of opInputs(op)) {
          if (this.lastUse[x.v] === i && env[x.v] !== undefined) free(x.v, (results ??= opOutputs(op).map((v) => env[v])));
        }
      }
    } catch (e) {
      // A failed kernel must not leak what this run allocated so far.
      env.forEach((b, v) => {
        if (b !== undefined && owned[v]) be.free(b);
      });
      if (e instanceof AllocationError) {
        const op = ops[at];
        const sizes = op ? opOutputs(op).map((v) => `${vars[v]!.size} ${vars[v]!.dtype}`).join(', ') : '?';
        throw new AllocationError(`jit: ${op?.kind ?? 'an op'} (op ${at + 1} of ${ops.length}, result ${sizes} elements): ${e.message}`);
      }
      throw e;
    }
    const made = new Map<number, Tensor>();
    const result = outputs.map((o) => {
      const prev = made.get(o.v);
      if (prev) {
        prev._storage.retain();
        return new Tensor(prev._storage, o.shape, o.dtype);
      }
      let t: Tensor;
      if (vars[o.v]!.source.kind === 'op' || owned[o.v]) {
        t = fromBuffer(be, env[o.v]!, o.shape, o.dtype);
      } else {
        const s = storageOf(o.v)!;
        s.retain();
        t = new Tensor(s, o.shape, o.dtype);
      }
      made.set(o.v, t);
      return t;
    });
    // Donated arguments are spent, as in JAX: those whose buffer was not taken over (shared, or
    // returned as they are) lose this reference too; an output that aliases one keeps its own.
    vars.forEach((info) => {
      if (info.source.kind === 'input' && donated[info.source.leaf]) args[info.source.leaf]!.dispose();
    });
    return result;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const s of this.constants.values()) s.release();
    this.constants.clear();
    for (const info of this.program.vars) if (info.source.kind === 'captured') info.source.storage.release();
  }
}
