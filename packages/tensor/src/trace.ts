/**
 * The trace machinery every transformation shares: the primitive interface, the stack of
 * active traces, and `bind`, through which every primitive call passes.
 *
 * A primitive call is first *evaluated* (its `impl` asks the inputs' backend for one kernel;
 * under `jit` that backend is a recorder that only notes the call, so nothing is computed
 * while a function is being traced), then every active autodiff trace whose slots appear
 * among the inputs records it: a tape adds a node, a forward trace computes the output's
 * tangent with the primitive's JVP rule. Rules run with only the *enclosing* traces active,
 * so derivatives of derivatives are recorded by outer traces (grad(grad f), jvp of grad, ...)
 * and perturbations of different levels never mix.
 *
 * This module imports no operations, so ops.ts, autodiff.ts and jit.ts can all depend on it.
 */
import { AllocationError } from './dtype.js';
import type { AdSlot, Tensor } from './tensor.js';

export interface Primitive<P = unknown> {
  readonly name: string;
  /** Compute the output with the inputs' backend (one kernel); no tracing happens inside. */
  impl(inputs: readonly Tensor[], params: P): Tensor;
  /** Forward rule: the output tangent given input tangents (null = zero). Null result = zero. */
  jvp?(tangents: readonly (Tensor | null)[], inputs: readonly Tensor[], output: Tensor, params: P): Tensor | null;
  /**
   * Reverse rule: cotangents for the inputs (null = zero, or not needed per `needs`), each
   * with its input's shape.
   */
  vjp?(g: Tensor, inputs: readonly Tensor[], output: Tensor, params: P, needs: readonly boolean[]): (Tensor | null)[];
}

/** An autodiff trace level: a reverse-mode tape or a forward-mode tangent trace. */
export abstract class Trace {
  private static nextId = 1;
  readonly id = Trace.nextId++;
  readonly touched: Tensor[] = [];
  setSlot(t: Tensor, slot: Omit<AdSlot, 'traceId'>): void {
    (t._ad ??= []).push({ traceId: this.id, ...slot });
    this.touched.push(t);
  }
  slot(t: Tensor): AdSlot | undefined {
    const ad = t._ad;
    if (!ad) return undefined;
    for (let i = ad.length - 1; i >= 0; i--) if (ad[i]!.traceId === this.id) return ad[i];
    return undefined;
  }
  abstract process(prim: Primitive, inputs: readonly Tensor[], out: Tensor, params: unknown): void;
  /** Remove this trace's slots from every tensor it touched. */
  end(): void {
    for (const t of this.touched) {
      if (t._ad) {
        t._ad = t._ad.filter((s) => s.traceId !== this.id);
        if (t._ad.length === 0) t._ad = undefined;
      }
    }
    this.touched.length = 0;
  }
}

let traceStack: Trace[] = [];

/** Push a trace; returns its level (index in the stack), to pass to `popTracesTo`. */
export function pushTrace(trace: Trace): number {
  traceStack = [...traceStack, trace];
  return traceStack.length - 1;
}

/** Drop every trace at `level` and above. */
export function popTracesTo(level: number): void {
  traceStack = traceStack.slice(0, level);
}

/** Run fn with only the first `n` traces active. */
export function withTraces<T>(n: number, fn: () => T): T {
  const saved = traceStack;
  traceStack = saved.slice(0, n);
  try {
    return fn();
  } finally {
    traceStack = saved;
  }
}

/** Apply a primitive: evaluate it, then let every active trace that sees an input record it. */
export function bind<P>(prim: Primitive<P>, inputs: readonly Tensor[], params: P): Tensor {
  let out: Tensor;
  try {
    out = prim.impl(inputs, params);
  } catch (e) {
    // Allocation failures surface deep in a backend: say which op asked, on what.
    if (e instanceof AllocationError && !e.message.startsWith(`${prim.name}:`)) {
      throw new AllocationError(`${prim.name}: ${e.message} (inputs ${inputs.map((t) => `[${t.shape.join(',')}] ${t.dtype}`).join(', ')})`);
    }
    throw e;
  }
  if (traceStack.length === 0) return out;
  const stack = traceStack;
  for (let level = 0; level < stack.length; level++) {
    const trace = stack[level]!;
    let seen = false;
    for (const t of inputs) if (trace.slot(t)) { seen = true; break; }
    if (!seen) continue;
    if (!prim.vjp && !prim.jvp) continue; // not differentiable: the output is a constant
    withTraces(level, () => trace.process(prim as Primitive, inputs, out, params));
  }
  return out;
}

/** Number of active autodiff transformations (0 outside grad/vjp/jvp). */
export function traceDepth(): number {
  return traceStack.length;
}
