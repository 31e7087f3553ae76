/**
 * Fused updates over a fused program: dynamicUpdateSlice(x, u, index) whose update u is made
 * only for it — by an elementwise fused kernel, or by a slice of a materialised buffer —
 * becomes one kernel that computes u and writes it straight into x's region (x's buffer
 * itself when the executor may reuse it). A KV-cache write after RoPE, or of V's columns
 * of the projection, is then one dispatch instead of two. Every other update becomes a copy
 * kernel of the same form, which horizontal fusion can then run alongside others.
 */
import type { DType } from '../dtype.js';
import type { FusedInto, FusedKernel } from '../fused.js';
import { axisSplit, stridesOf, type Shape } from '../shape.js';
import { eliminateDeadCode, opInputs, opOutputs, type Op, type Program, type View } from './program.js';

/**
 * The same elementwise kernel iterating over `to` instead: `to` must hold the kernel's points
 * in the same row-major order, each axis of the kernel split into consecutive axes of `to`
 * (size-1 axes anywhere). Null when `to` merges axes instead.
 */
function respace(k: FusedKernel, to: Shape): FusedKernel | null {
  const split = axisSplit(k.shape, to);
  if (!split) return null;
  const { of, factor } = split;
  const inputs = k.inputs.map((inp) => ({ ...inp, strides: to.map((_, b) => (of[b]! < 0 ? 0 : inp.strides[of[b]!]! * factor[b]!)) }));
  return { ...k, shape: [...to], inputs };
}

export function fuseUpdates(p: Program, dtypes: readonly DType[]): Program {
  const { ops } = p;
  const producer = new Int32Array(p.vars.length).fill(-1);
  const readers = new Int32Array(p.vars.length);
  ops.forEach((op, i) => {
    for (const v of opOutputs(op)) producer[v] = i;
    for (const v of new Set(opInputs(op).map((x) => x.v))) readers[v]!++;
  });
  const isOutput = new Uint8Array(p.vars.length);
  for (const o of p.outputs) isOutput[o.v] = 1;
  const fusable = new Set(dtypes);

  const removed = new Set<number>();
  const out = ops.map((op): Op => {
    if (op.kind !== 'dynamicUpdateSlice') return op;
    const u = op.update.v;
    if (!fusable.has(op.update.dtype)) return op;
    const pi = producer[u]!;
    const pop = pi >= 0 ? ops[pi]! : undefined;
    // Made only for this update (then it is computed in the update's kernel), or read as it is.
    const onlyHere = pop !== undefined && readers[u] === 1 && !isOutput[u];
    let kernel: FusedKernel;
    let inputs: readonly View[];
    let absorbed = true;
    if (onlyHere && pop.kind === 'fused' && pop.kernel.reduceAxes.length === 0 && pop.outs.length === 1 && pop.outs[0] === u) {
      kernel = pop.kernel;
      inputs = pop.inputs;
    } else if (onlyHere && pop.kind === 'slice' && fusable.has(pop.x.dtype)) {
      const xs = stridesOf(pop.x.shape);
      kernel = {
        shape: [...pop.sizes], reduceAxes: [],
        inputs: [{ dtype: pop.x.dtype, offset: pop.starts.reduce((a, s, k) => a + s * xs[k]!, 0), strides: xs }],
        nodes: [{ kind: 'input', input: 0, dtype: pop.x.dtype }],
        outputs: [{ node: 0, dtype: pop.x.dtype }],
      };
      inputs = [{ v: pop.x.v, shape: [pop.x.shape.reduce((a, b) => a * b, 1)], dtype: pop.x.dtype }];
    } else {
      // The update as it is: a copy kernel, still worth having for horizontal fusion.
      const U0 = op.update.shape;
      kernel = {
        shape: [...U0], reduceAxes: [],
        inputs: [{ dtype: op.update.dtype, offset: 0, strides: stridesOf(U0) }],
        nodes: [{ kind: 'input', input: 0, dtype: op.update.dtype }],
        outputs: [{ node: 0, dtype: op.update.dtype }],
      };
      inputs = [{ v: u, shape: [U0.reduce((a, b) => a * b, 1)], dtype: op.update.dtype }];
      absorbed = false;
    }
    const U = op.update.shape;
    if (kernel.shape.some((d) => d === 0) || inputs.some((x) => x.v === op.x.v)) return op;
    const k = respace(kernel, U);
    if (!k) return op;
    kernel = k;
    const xs = stridesOf(op.x.shape);
    const into: FusedInto = { xShape: [...op.x.shape], strides: U.map((d, a) => (d === 1 ? 0 : xs[a]!)), axisStride: xs[op.axis]!, maxStart: op.x.shape[op.axis]! - U[op.axis]! };
    if (absorbed) removed.add(pi);
    return { kind: 'fusedInto', kernel, inputs, x: op.x, index: op.index, axis: op.axis, into, out: op.out };
  });
  return eliminateDeadCode({ vars: p.vars, ops: out.filter((_, i) => !removed.has(i)), outputs: p.outputs });
}
