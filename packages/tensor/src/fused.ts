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
import { sizeOf } from './shape.js';

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

/** A stable text form: equal kernels have equal keys (backends cache compiled code by it). */
export function fusedKernelKey(k: FusedKernel): string {
  const node = (n: FusedNode): string => {
    switch (n.kind) {
      case 'input': return `i${n.input}`;
      case 'const': return `c${n.dtype[0]}${Object.is(n.value, -0) ? '-0' : String(n.value)}`;
      case 'unary': return `${n.op}(${n.a})`;
      case 'binary': return `${n.op}(${n.a},${n.b})`;
      case 'where': return `where(${n.cond},${n.a},${n.b})`;
      case 'cast': return `${n.dtype}(${n.a})`;
    }
  };
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
