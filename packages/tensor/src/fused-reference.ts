/**
 * The reference meaning of a fused kernel, computed with the JS CPU backend's own kernels:
 * each node is evaluated over the whole iteration space as the CPU backend would evaluate
 * that op eagerly, and reductions use its reduce kernel. A fused kernel run by any backend
 * must agree with this (exactly, for the CPU backend's arithmetic; to float32 rounding for
 * others), which is what the fusion and code-generator tests check.
 */
import type { BufferView } from './backend.js';
import { binary, castTyped, unary, where } from './cpu/elementwise.js';
import { reduce } from './cpu/reduce.js';
import { copyStrided } from './cpu/strided.js';
import { allocTyped, type DType, type TypedArray } from './dtype.js';
import { phaseAsKernel, type FusedKernel, type PhasedKernel } from './fused.js';
import { sizeOf, stridesOf } from './shape.js';

/** Runs `kernel` on host arrays (one per kernel input, read through the input's offset and strides). */
export function runFusedReference(kernel: FusedKernel, inputs: readonly TypedArray[]): TypedArray[] {
  const S = kernel.shape;
  const n = sizeOf(S);
  const contiguous = stridesOf(S);
  const values: TypedArray[] = [];
  const view = (data: TypedArray, dtype: DType): [BufferView, TypedArray] => [{ buf: data, shape: S, dtype }, data];
  kernel.nodes.forEach((node, i) => {
    let out: TypedArray;
    switch (node.kind) {
      case 'input': {
        const spec = kernel.inputs[node.input]!;
        out = allocTyped(spec.dtype, n);
        copyStrided(S, inputs[node.input]!, spec.offset, spec.strides, out, 0, contiguous);
        break;
      }
      case 'const': {
        out = allocTyped(node.dtype, n);
        const v = node.dtype === 'bool' ? (node.value !== 0 ? 1 : 0) : node.value;
        out.fill(v);
        break;
      }
      case 'unary': {
        const [v, d] = view(values[node.a]!, kernel.nodes[node.a]!.dtype);
        out = unary(node.op, v, d);
        break;
      }
      case 'binary': {
        const [va, da] = view(values[node.a]!, kernel.nodes[node.a]!.dtype);
        const [vb, db] = view(values[node.b]!, kernel.nodes[node.b]!.dtype);
        out = binary(node.op, va, da, vb, db, S);
        break;
      }
      case 'where': {
        const [vc, dc] = view(values[node.cond]!, 'bool');
        const [va, da] = view(values[node.a]!, node.dtype);
        const [vb, db] = view(values[node.b]!, node.dtype);
        out = where(vc, dc, va, da, vb, db, S);
        break;
      }
      case 'cast':
        out = castTyped(values[node.a]!, kernel.nodes[node.a]!.dtype, node.dtype);
        break;
    }
    values[i] = out;
  });
  return kernel.outputs.map((o) => {
    const v = values[o.node]!;
    if (!o.reduce) return v.slice();
    return reduce(o.reduce, { buf: v, shape: S, dtype: kernel.nodes[o.node]!.dtype }, v, kernel.reduceAxes);
  });
}

/** Runs a phased kernel phase by phase (each as the FusedKernel phaseAsKernel makes); returns its written outputs. */
export function runPhasedReference(kernel: PhasedKernel, inputs: readonly TypedArray[]): TypedArray[] {
  const results: TypedArray[][] = [];
  kernel.phases.forEach((_, p) => {
    const { kernel: k, refs } = phaseAsKernel(kernel, p);
    results.push(runFusedReference(k, [...inputs, ...refs.map(([q, o]) => results[q]![o]!)]));
  });
  return kernel.written.map(([p, o]) => results[p]![o]!);
}
