/**
 * The fused-kernel IR: what `jit`'s fusion pass hands a backend, and what each backend's one
 * code generator (WebAssembly for the CPU, WGSL for WebGPU) compiles.
 *
 * A kernel walks one iteration space `shape`. Each input is read at every point through an
 * affine view (offset + Σ index_d · strides[d]; stride 0 broadcasts), so broadcasts,
 * transposes and slices of materialised buffers cost no copies. The nodes form an
 * expression DAG in topological order over those loads and scalar constants. Outputs are
 * either elementwise (one value per point, written contiguously in row-major order of
 * `shape`) or reductions over `reduceAxes` (written in the keepdims layout: `shape` with the
 * reduced axes set to 1). A kernel's reductions all reduce the same axes.
 */
import type { BinaryOp, CompareOp, LogicalOp, ReduceOp, UnaryOp } from './backend.js';
import type { DType } from './dtype.js';
import { sizeOf, stridesOf } from './shape.js';

export interface FusedInput {
  dtype: DType;
  /** Element offset of the read at index 0. */
  offset: number;
  /** Element stride per iteration dimension (0 = broadcast). */
  strides: number[];
}

export type FusedNode =
  | { kind: 'input'; input: number; dtype: DType }
  | { kind: 'const'; value: number; dtype: DType }
  | { kind: 'unary'; op: UnaryOp; a: number; dtype: DType }
  | { kind: 'binary'; op: BinaryOp | CompareOp | LogicalOp; a: number; b: number; dtype: DType }
  | { kind: 'where'; cond: number; a: number; b: number; dtype: DType }
  | { kind: 'cast'; a: number; dtype: DType };

export interface FusedOutput {
  /** The node whose value is written (elementwise) or reduced. */
  node: number;
  /** Absent: elementwise. Present: the reduction over the kernel's `reduceAxes`. */
  reduce?: ReduceOp;
  /** Output dtype: the node's, or int32 for argmax/argmin. */
  dtype: DType;
}

export interface FusedKernel {
  shape: number[];
  /** Sorted axes of `shape` that reduce outputs reduce; empty when all outputs are elementwise. */
  reduceAxes: number[];
  inputs: FusedInput[];
  nodes: FusedNode[];
  outputs: FusedOutput[];
}

/** Elements an output holds: the whole space, or the kept part of it. */
export function fusedOutputSize(k: FusedKernel, o: FusedOutput): number {
  if (!o.reduce) return sizeOf(k.shape);
  return sizeOf(k.shape.map((d, i) => (k.reduceAxes.includes(i) ? 1 : d)));
}

function nodeKey(n: FusedNode): string {
  switch (n.kind) {
    case 'input': return `i${n.input}`;
    case 'const': return `c${n.dtype[0]}${Object.is(n.value, -0) ? '-0' : String(n.value)}`;
    case 'unary': return `${n.op}(${n.a})`;
    case 'binary': return `${n.op}(${n.a},${n.b})`;
    case 'where': return `where(${n.cond},${n.a},${n.b})`;
    case 'cast': return `${n.dtype}(${n.a})`;
  }
}

/** A stable text form: equal kernels have equal keys (backends cache compiled code by it). */
export function fusedKernelKey(k: FusedKernel): string {
  const node = nodeKey;
  return [
    `s${k.shape.join('x')}`,
    `r${k.reduceAxes.join(',')}`,
    k.inputs.map((i) => `${i.dtype[0]}${i.offset}:${i.strides.join(',')}`).join(';'),
    k.nodes.map(node).join(';'),
    k.outputs.map((o) => `${o.node}${o.reduce ? `/${o.reduce}` : ''}`).join(';'),
  ].join('|');
}

/** Throws when a kernel is malformed (backends call it before compiling). */
export function validateFusedKernel(k: FusedKernel): void {
  const r = k.shape.length;
  const fail = (why: string): never => {
    throw new Error(`fused kernel: ${why} (${fusedKernelKey(k)})`);
  };
  if (k.shape.some((d) => !Number.isInteger(d) || d < 0)) fail('bad iteration shape');
  for (const a of k.reduceAxes) if (!Number.isInteger(a) || a < 0 || a >= r) fail(`reduce axis ${a} out of range`);
  k.inputs.forEach((inp, i) => {
    if (inp.strides.length !== r) fail(`input ${i} has ${inp.strides.length} strides for rank ${r}`);
    if (inp.strides.some((st) => !(st >= 0))) fail(`input ${i} has a negative stride (${inp.strides.join(', ')})`);
  });
  k.nodes.forEach((n, i) => {
    const refs = n.kind === 'input' || n.kind === 'const' ? [] : n.kind === 'where' ? [n.cond, n.a, n.b] : n.kind === 'binary' ? [n.a, n.b] : [n.a];
    for (const j of refs) if (!(j >= 0 && j < i)) fail(`node ${i} refers to node ${j}, not an earlier one`);
    if (n.kind === 'input' && !(n.input >= 0 && n.input < k.inputs.length)) fail(`node ${i} loads missing input ${n.input}`);
  });
  if (k.outputs.length === 0) fail('no outputs');
  const anyReduce = k.outputs.some((o) => o.reduce);
  if (anyReduce && k.reduceAxes.length === 0) fail('reduce outputs without reduce axes');
  for (const o of k.outputs) {
    if (!(o.node >= 0 && o.node < k.nodes.length)) fail(`output reads missing node ${o.node}`);
    if ((o.reduce === 'argmax' || o.reduce === 'argmin') && k.reduceAxes.length !== 1) fail(`${o.reduce} needs exactly one reduce axis`);
  }
}

// ---------------------------------------------------------------------------------------
// Phased kernels: a row-wise reduction and what follows it, in one kernel.

/**
 * A node of a phase: a fused-kernel node, or the value of an earlier phase's output. A
 * reference to a row-sized output (a reduction, or a row phase's value) is that row's value;
 * one to a space-sized output is its value at the same point.
 */
export type PhaseNode = FusedNode | { kind: 'ref'; phase: number; output: number; dtype: DType };

/**
 * - `reduce`: outputs reduce over the kernel's reduceAxes (row-sized) or are elementwise over
 *   the whole space (space-sized), as in a FusedKernel;
 * - `map`: elementwise over the whole space;
 * - `row`: evaluated once per row (every reduced index at 0), row-sized outputs.
 */
export interface FusedPhase {
  kind: 'reduce' | 'map' | 'row';
  nodes: PhaseNode[];
  outputs: FusedOutput[];
}

/**
 * Phases run one after the other over the same iteration space `shape`, row by row: a row is
 * one point of the kept axes, and a phase sees every earlier phase's value for its row. So
 * RMSNorm (sum of squares, then the reciprocal root, then the scaling) or softmax (max, then
 * the sum of exponentials, then the quotient) is one kernel reading its input rows from
 * memory while the per-row values stay in registers. Inputs read through strides over
 * `shape` as in a FusedKernel (a row phase only reads them with every reduced index at 0).
 * `written` lists the outputs that leave the kernel, as [phase, output], in buffer order.
 */
export interface PhasedKernel {
  shape: number[];
  reduceAxes: number[];
  inputs: FusedInput[];
  phases: FusedPhase[];
  written: [number, number][];
}

/** Whether a phase output holds one value per row (else one per point of the space). */
export function phaseOutputIsRow(k: PhasedKernel, phase: number, output: number): boolean {
  const p = k.phases[phase]!;
  return p.kind === 'row' || p.outputs[output]!.reduce !== undefined;
}

export function phasedOutputSize(k: PhasedKernel, phase: number, output: number): number {
  if (!phaseOutputIsRow(k, phase, output)) return sizeOf(k.shape);
  return sizeOf(k.shape.map((d, i) => (k.reduceAxes.includes(i) ? 1 : d)));
}

export function phasedKernelKey(k: PhasedKernel): string {
  const phases = k.phases.map((p) => {
    const nodes = p.nodes.map((n) => (n.kind === 'ref' ? `r${n.phase}.${n.output}${n.dtype[0]}` : nodeKey(n)));
    return `${p.kind}{${nodes.join(';')}}{${p.outputs.map((o) => `${o.node}${o.reduce ? `/${o.reduce}` : ''}`).join(';')}}`;
  });
  return [
    `s${k.shape.join('x')}`,
    `r${k.reduceAxes.join(',')}`,
    k.inputs.map((i) => `${i.dtype[0]}${i.offset}:${i.strides.join(',')}`).join(';'),
    phases.join(''),
    k.written.map(([p, o]) => `${p}.${o}`).join(';'),
  ].join('|');
}

/**
 * Each phase as a plain FusedKernel whose extra inputs (numbered after the kernel's own) are
 * the earlier outputs it refers to, and the (phase, output) each of those reads: what the
 * reference implementation runs, one phase after another.
 */
export function phaseAsKernel(k: PhasedKernel, phase: number): { kernel: FusedKernel; refs: [number, number][] } {
  const p = k.phases[phase]!;
  const rowShape = k.shape.map((d, i) => (k.reduceAxes.includes(i) ? 1 : d));
  const space = p.kind === 'row' ? rowShape : k.shape;
  const rowStrides = stridesOf(rowShape).map((s, i) => (k.reduceAxes.includes(i) ? 0 : s));
  const spaceStrides = stridesOf(k.shape);
  const inputs: FusedInput[] = k.inputs.map((i) => ({ ...i, strides: [...i.strides] }));
  const refs: [number, number][] = [];
  const nodes: FusedNode[] = p.nodes.map((n) => {
    if (n.kind !== 'ref') return n;
    const row = phaseOutputIsRow(k, n.phase, n.output);
    refs.push([n.phase, n.output]);
    inputs.push({ dtype: n.dtype, offset: 0, strides: row ? rowStrides : spaceStrides });
    return { kind: 'input', input: inputs.length - 1, dtype: n.dtype };
  });
  return { kernel: { shape: space, reduceAxes: p.kind === 'reduce' ? [...k.reduceAxes] : [], inputs, nodes, outputs: p.outputs }, refs };
}

/**
 * Where an elementwise kernel's one output goes when it is the update of a
 * dynamicUpdateSlice: into x (shape `xShape`) at x-element offset
 * clamp(index, 0, maxStart) · axisStride + Σ_d c_d · strides[d] for kernel point c.
 */
export interface FusedInto {
  xShape: number[];
  strides: number[];
  axisStride: number;
  maxStart: number;
}

export function fusedIntoKey(into: FusedInto): string {
  return `into${into.xShape.join('x')}:${into.strides.join(',')}:${into.axisStride}:${into.maxStart}`;
}
