/**
 * Functional automatic differentiation by nested tracing (the trace stack and `bind` are in
 * trace.ts): `grad`, `valueAndGrad` and `vjp` push a reverse-mode tape, `jvp` a forward-mode
 * tangent trace. A tensor carries one slot per trace that saw it.
 *
 * Memory: tape nodes retain the storage of their inputs and outputs; the transformation
 * releases them when it finishes, and disposes every intermediate it created.
 */
import { isFloat } from './dtype.js';
import { fmtShape } from './shape.js';
import { alias, closeScope, openScope, type Tensor } from './tensor.js';
import { treeLeaves, treeMap } from './pytree.js';
import { add, onesLike, zerosLike } from './ops.js';
import { bind, popTracesTo, pushTrace, Trace, withTraces, type Primitive } from './trace.js';

// ---------------------------------------------------------------------------------------
// Reverse mode

interface TapeNode {
  id: number;
  /** Null for leaves (the differentiated inputs). */
  prim: Primitive | null;
  params: unknown;
  inputs: readonly Tensor[];
  output: Tensor;
  parents: (TapeNode | null)[];
  released: boolean;
}

class Tape extends Trace {
  private seq = 0;
  readonly nodes: TapeNode[] = [];

  leaf(t: Tensor): Tensor {
    const a = identity(t);
    const node: TapeNode = { id: this.seq++, prim: null, params: null, inputs: [], output: a, parents: [], released: true };
    this.setSlot(a, { node });
    return a;
  }

  process(prim: Primitive, inputs: readonly Tensor[], out: Tensor, params: unknown): void {
    if (!prim.vjp) throw new Error(`${prim.name}: no reverse-mode rule`);
    for (const t of inputs) t._storage.retain();
    out._storage.retain();
    const node: TapeNode = {
      id: this.seq++, prim, params, inputs: [...inputs], output: out,
      parents: inputs.map((t) => (this.slot(t)?.node as TapeNode | undefined) ?? null),
      released: false,
    };
    this.nodes.push(node);
    this.setSlot(out, { node });
  }

  nodeOf(t: Tensor): TapeNode | undefined {
    return this.slot(t)?.node as TapeNode | undefined;
  }

  private releaseNode(n: TapeNode): void {
    if (n.released) return;
    n.released = true;
    for (const t of n.inputs) t._storage.release();
    n.output._storage.release();
  }

  /**
   * Propagate cotangents from `outputs` back to `leaves`. Must run with this tape no longer
   * active (its rules are recorded by enclosing traces only). With `consume`, each node's
   * saved tensors are released as soon as its rule has run.
   */
  backward(outputs: readonly Tensor[], cotangents: readonly Tensor[], leaves: readonly Tensor[], consume: boolean): Tensor[] {
    const ct = new Map<TapeNode, Tensor>();
    const accumulate = (node: TapeNode, g: Tensor): void => {
      const prev = ct.get(node);
      if (prev) {
        ct.set(node, add(prev, g));
        prev.dispose();
      } else {
        ct.set(node, identity(g));
      }
    };
    outputs.forEach((o, i) => {
      const node = this.nodeOf(o);
      if (node) accumulate(node, cotangents[i]!);
    });
    // Nodes are created in topological order, so decreasing ids is a valid reverse order.
    const reachable = new Set<TapeNode>();
    const stackN = [...ct.keys()];
    while (stackN.length) {
      const n = stackN.pop()!;
      if (reachable.has(n)) continue;
      reachable.add(n);
      for (const p of n.parents) if (p && !reachable.has(p)) stackN.push(p);
    }
    const order = [...reachable].filter((n) => n.prim).sort((a, b) => b.id - a.id);
    for (const node of order) {
      const g = ct.get(node);
      if (!g) {
        if (consume) this.releaseNode(node);
        continue;
      }
      const needs = node.parents.map((p) => p !== null);
      const frame = openScope();
      let grads: (Tensor | null)[];
      try {
        grads = node.prim!.vjp!(g, node.inputs, node.output, node.params, needs);
      } catch (e) {
        closeScope(frame, []);
        throw e;
      }
      closeScope(frame, grads.filter((x): x is Tensor => x !== null));
      grads.forEach((gi, i) => {
        const parent = node.parents[i];
        if (!gi || !parent) return;
        const want = node.inputs[i]!.shape;
        if (gi.shape.length !== want.length || gi.shape.some((d, j) => d !== want[j])) {
          throw new Error(`internal: the ${node.prim!.name} rule returned a cotangent ${fmtShape(gi.shape)} for input ${i} of shape ${fmtShape(want)}`);
        }
        accumulate(parent, gi);
      });
      for (const gi of new Set(grads)) if (gi && gi !== g) gi.dispose();
      ct.delete(node);
      g.dispose();
      if (consume) this.releaseNode(node);
    }
    const result = leaves.map((leaf) => {
      const node = this.nodeOf(leaf);
      const g = node ? ct.get(node) : undefined;
      if (node) ct.delete(node);
      return g ?? zerosLike(leaf);
    });
    for (const t of ct.values()) t.dispose();
    return result;
  }

  releaseAll(): void {
    for (const n of this.nodes) this.releaseNode(n);
  }
}

// ---------------------------------------------------------------------------------------
// Forward mode

class ForwardTrace extends Trace {
  // Tangents live as long as the trace: scopes inside the traced function dispose the
  // tangent objects they created, so the trace holds its own reference to their storage.
  private readonly held: Tensor[] = [];

  private setTangent(t: Tensor, tangent: Tensor): void {
    tangent._storage.retain();
    this.held.push(tangent);
    this.setSlot(t, { tangent });
  }

  leaf(t: Tensor, tangent: Tensor): Tensor {
    const a = identity(t);
    this.setTangent(a, tangent);
    return a;
  }
  process(prim: Primitive, inputs: readonly Tensor[], out: Tensor, params: unknown): void {
    if (!prim.jvp) throw new Error(`${prim.name}: no forward-mode rule`);
    const tangents = inputs.map((t) => this.slot(t)?.tangent ?? null);
    const tout = prim.jvp(tangents, inputs, out, params);
    if (tout) this.setTangent(out, tout);
  }
  tangentOf(t: Tensor): Tensor | undefined {
    return this.slot(t)?.tangent;
  }
  override end(): void {
    super.end();
    for (const t of this.held) t._storage.release();
    this.held.length = 0;
  }
}

// ---------------------------------------------------------------------------------------
// Identity (the alias through which transformations introduce their inputs)

const identityPrim: Primitive<null> = {
  name: 'identity',
  impl: ([x]) => alias(x!),
  jvp: ([t]) => (t ? identity(t) : null),
  vjp: (g) => [identity(g)],
};

function identity(t: Tensor): Tensor {
  return bind(identityPrim, [t], null);
}

// ---------------------------------------------------------------------------------------
// Public transformations

function assertSync(name: string, v: unknown): void {
  if (v && typeof (v as { then?: unknown }).then === 'function') {
    throw new Error(`${name}: the function returned a Promise; transformed functions must be synchronous (await outside them)`);
  }
}

function assertFloatLeaves(name: string, leaves: readonly Tensor[], what: string): void {
  for (const t of leaves) {
    if (!isFloat(t.dtype)) {
      throw new Error(`${name}: ${what} contains a ${t.dtype} tensor ${fmtShape(t.shape)}; only float tensors can be differentiated (pass integer data through a non-differentiated argument)`);
    }
  }
}

type Argnums = number | readonly number[];

export interface GradOptions {
  argnums?: Argnums;
  /** The function returns [scalar, aux]; aux is returned alongside and not differentiated. */
  hasAux?: boolean;
}

function normArgnums(name: string, argnums: Argnums, nargs: number): number[] {
  const list = typeof argnums === 'number' ? [argnums] : [...argnums];
  for (const a of list) {
    if (!Number.isInteger(a) || a < 0 || a >= nargs) {
      throw new Error(`${name}: argnums ${a} is out of range for ${nargs} argument(s)`);
    }
  }
  return list;
}

/**
 * valueAndGrad(f)(...args) → [value, grads] (with hasAux: [[value, aux], grads]). grads has
 * the structure of args[argnums] (a tuple when argnums is an array). f must be synchronous
 * and return a float scalar (size 1).
 */
export function valueAndGrad<A extends unknown[]>(
  f: (...args: A) => unknown,
  options: GradOptions = {},
): (...args: A) => [any, any] {
  return valueAndGradNamed('valueAndGrad', f, options);
}

/** valueAndGrad, with errors reported under the name the user called (`grad` or `valueAndGrad`). */
function valueAndGradNamed<A extends unknown[]>(
  name: string,
  f: (...args: A) => unknown,
  options: GradOptions,
): (...args: A) => [any, any] {
  return (...args: A) => {
    const argnums = normArgnums(name, options.argnums ?? 0, args.length);
    const tape = new Tape();
    const frame = openScope();
    let done = false;
    const level = pushTrace(tape);
    try {
      const leaves: Tensor[] = [];
      const traced = args.map((a, i) => {
        if (!argnums.includes(i)) return a;
        const argLeaves = treeLeaves(a);
        if (argLeaves.length === 0) {
          // Otherwise the "gradient" would be the argument itself, silently.
          const got = a === null ? 'null' : Array.isArray(a) ? 'an array without tensors' : typeof a === 'object' ? 'an object without tensors' : `a ${typeof a} (${String(a)})`;
          throw new Error(`${name}: argument ${i} has no tensors to differentiate, got ${got}; pass float tensors (or a pytree of them), or leave it out of argnums`);
        }
        assertFloatLeaves(name, argLeaves, `argument ${i}`);
        return treeMap(a, (leaf) => {
          const l = withTraces(level, () => tape.leaf(leaf));
          leaves.push(l);
          return l;
        });
      }) as A;
      const out = f(...traced);
      assertSync(name, out);
      let value: unknown = out;
      let aux: unknown;
      if (options.hasAux) {
        if (!Array.isArray(out) || out.length !== 2) throw new Error(`${name}: with hasAux the function must return [value, aux]`);
        [value, aux] = out;
      }
      const v = value as Tensor;
      if (!v || typeof v !== 'object' || !('shape' in v) || treeLeaves(v).length !== 1) {
        throw new Error(`${name}: the function must return a scalar tensor${options.hasAux ? ' as the first element of [value, aux]' : ''}`);
      }
      if (v.size !== 1) throw new Error(`${name}: the function must return a scalar, got shape ${fmtShape(v.shape)} (reduce it with sum or mean first)`);
      if (!isFloat(v.dtype)) throw new Error(`${name}: the function returned a ${v.dtype} scalar; it must be float`);
      popTracesTo(level);
      const seed = onesLike(v);
      const grads = tape.backward([v], [seed], leaves, true);
      // Rebuild the argument structure from the flat gradient list.
      let k = 0;
      const gradTrees = argnums.map((i) => treeMap(args[i], () => grads[k++]!));
      const result = typeof (options.argnums ?? 0) === 'number' ? gradTrees[0] : gradTrees;
      closeScope(frame, [...treeLeaves(value), ...treeLeaves(aux), ...grads]);
      done = true;
      return [options.hasAux ? [value, aux] : value, result];
    } finally {
      popTracesTo(level);
      tape.releaseAll();
      tape.end();
      if (!done) closeScope(frame, []);
    }
  };
}

/**
 * grad(f)(...args) → gradient of the scalar f with respect to args[argnums]; with hasAux,
 * [gradient, aux] (as in JAX).
 */
export function grad<A extends unknown[]>(f: (...args: A) => unknown, options: GradOptions | Argnums = {}): (...args: A) => any {
  const opts = typeof options === 'object' && !Array.isArray(options) ? (options as GradOptions) : { argnums: options as Argnums };
  const vg = valueAndGradNamed('grad', f, opts);
  return (...args: A) => {
    const [out, g] = vg(...args);
    if (opts.hasAux) {
      const [value, aux] = out as [Tensor, unknown];
      if (!treeLeaves(aux).includes(value)) value.dispose();
      return [g, aux];
    }
    for (const t of treeLeaves(out)) t.dispose();
    return g;
  };
}

/** The pullback returned by `vjp`: call it with output cotangents; dispose it when done. */
export interface VjpFn {
  (cotangents: unknown): any[];
  dispose(): void;
  [Symbol.dispose](): void;
}

/**
 * vjp(f, ...primals) → [out, pullback]. pullback(cotangent with out's structure) returns one
 * cotangent tree per primal (null for non-float leaves). The pullback keeps the forward
 * intermediates alive until disposed; it may be called more than once.
 */
export function vjp<A extends unknown[]>(f: (...args: A) => unknown, ...primals: A): [any, VjpFn] {
  const name = 'vjp';
  const tape = new Tape();
  const frame = openScope();
  const level = pushTrace(tape);
  let out: unknown;
  const leaves: (Tensor | null)[] = [];
  try {
    const traced = primals.map((a) =>
      treeMap(a, (leaf) => {
        if (!isFloat(leaf.dtype)) {
          leaves.push(null);
          return leaf;
        }
        const l = withTraces(level, () => tape.leaf(leaf));
        leaves.push(l);
        return l;
      }),
    ) as A;
    out = f(...traced);
    assertSync(name, out);
  } catch (e) {
    popTracesTo(level);
    tape.releaseAll();
    tape.end();
    closeScope(frame, []);
    throw e;
  }
  popTracesTo(level);
  const outLeaves = treeLeaves(out);
  // The leaves stay alive (disposed with the pullback); everything else not returned goes.
  closeScope(frame, [...outLeaves, ...leaves.filter((l): l is Tensor => l !== null)]);
  let disposed = false;
  const pullback = ((cotangents: unknown) => {
    if (disposed) throw new Error(`${name}: the pullback was called after dispose()`);
    const cts = treeLeaves(cotangents);
    if (cts.length !== outLeaves.length) {
      throw new Error(`${name}: the cotangent has ${cts.length} tensor leaves, the output has ${outLeaves.length}`);
    }
    cts.forEach((c, i) => {
      const o = outLeaves[i]!;
      if (c.shape.length !== o.shape.length || c.shape.some((d, j) => d !== o.shape[j]) || c.dtype !== o.dtype) {
        throw new Error(`${name}: cotangent ${i} is ${fmtShape(c.shape)} ${c.dtype}, the output is ${fmtShape(o.shape)} ${o.dtype}`);
      }
    });
    const live = leaves.filter((l): l is Tensor => l !== null);
    const bframe = openScope();
    let grads: Tensor[];
    try {
      grads = tape.backward(outLeaves, cts, live, false);
    } catch (e) {
      closeScope(bframe, []);
      throw e;
    }
    closeScope(bframe, grads);
    let k = 0;
    let m = 0;
    return primals.map((p) => treeMap(p, () => {
      const l = leaves[m++];
      return l ? grads[k++]! : null;
    }));
  }) as VjpFn;
  pullback.dispose = () => {
    if (disposed) return;
    disposed = true;
    tape.releaseAll();
    tape.end();
    for (const l of leaves) l?.dispose();
  };
  pullback[Symbol.dispose] = pullback.dispose;
  return [out, pullback];
}

/**
 * jvp(f, primals, tangents) → [out, tangentOut]: forward-mode derivative of f at primals along
 * tangents (each tangent tree matches its primal's structure, shapes and dtypes).
 */
export function jvp<A extends unknown[]>(f: (...args: A) => unknown, primals: A, tangents: { [K in keyof A]: unknown }): [any, any] {
  const name = 'jvp';
  if (primals.length !== tangents.length) {
    throw new Error(`${name}: ${primals.length} primal(s) but ${tangents.length} tangent(s)`);
  }
  const trace = new ForwardTrace();
  const frame = openScope();
  const level = pushTrace(trace);
  let done = false;
  try {
    const traced = primals.map((p, i) => {
      const tl = treeLeaves(tangents[i]);
      const pl = treeLeaves(p);
      if (tl.length !== pl.length) throw new Error(`${name}: tangent ${i} has ${tl.length} tensor leaves, primal has ${pl.length}`);
      return treeMap(p, (leaf, j) => {
        const t = tl[j]!;
        if (t.shape.length !== leaf.shape.length || t.shape.some((d, k) => d !== leaf.shape[k]) || t.dtype !== leaf.dtype) {
          throw new Error(`${name}: tangent ${fmtShape(t.shape)} ${t.dtype} does not match primal ${fmtShape(leaf.shape)} ${leaf.dtype}`);
        }
        if (!isFloat(leaf.dtype)) return leaf;
        return withTraces(level, () => trace.leaf(leaf, t));
      });
    }) as A;
    const out = f(...traced);
    assertSync(name, out);
    popTracesTo(level);
    const tout = treeMap(out, (o) => {
      const t = trace.tangentOf(o);
      return t ? identity(t) : zerosLike(o);
    });
    closeScope(frame, [...treeLeaves(out), ...treeLeaves(tout)]);
    done = true;
    return [out, tout];
  } finally {
    popTracesTo(level);
    trace.end();
    if (!done) closeScope(frame, []);
  }
}
