/**
 * Loop fusion over a traced program: chains of elementwise ops (unary, binary, where, cast,
 * constant fills) and the reduction they feed become one FusedKernel; broadcasts, transposes
 * and slices of materialised buffers become strided reads inside the kernel instead of
 * copies.
 *
 * Groups are grown greedily from the end of the program. A group has one iteration space S
 * (its root's output shape, or for a reduction its input's shape). A producer joins a group
 * when its result is read whole (no broadcast) by the group and every other reader of it
 * either belongs to the group too or comes after the group's root (then the value is also
 * written out, as an extra output: multi-output fusion, as for AdamW's p, m and v). Every
 * member is evaluated at the same iteration point, so a member's value is one node, shared
 * by all its readers in the kernel.
 */
import type { DType } from '../dtype.js';
import type { FusedInput, FusedKernel, FusedNode, FusedOutput } from '../fused.js';
import { axisSplit, broadcastStrides, shapesEqual, sizeOf, stridesOf, type Shape } from '../shape.js';
import { eliminateDeadCode, opInputs, opOutputs, type Op, type Program, type View } from './program.js';

export interface FusionOptions {
  /** Dtypes the backend's fused kernels handle. */
  dtypes: readonly DType[];
  /** Most buffers (outputs + inputs) a kernel may use; a group needing more runs op by op. */
  maxBuffers?: number;
  /**
   * Elementwise producers of at most this many elements that a kernel reads with a broadcast
   * are recomputed inside it instead of read from their own kernel's output (default 0: never).
   * Worth it where a dispatch costs more than a few recomputed operations per point (WebGPU):
   * an attention mask built from a few small tensors is then computed inside each softmax.
   */
  inlineLimit?: number;
}

type ElementwiseOp = Extract<Op, { kind: 'unary' | 'binary' | 'where' | 'cast' | 'full' }>;
type ViewOp = Extract<Op, { kind: 'transpose' | 'broadcastTo' | 'slice' }>;

/**
 * Kernel-axis → view-axis map (with each kernel axis's stride multiplier) and base coordinates
 * re-expressed on `to`, when `from` is `to` with axes split into consecutive factors (and
 * size-1 axes added or dropped): x.reshape([.., 4, 16, ..]) of a [.., 64, ..] view. Null when
 * the reshape merges axes instead.
 */
function splitAxes(
  from: Shape, to: Shape, axisOf: number[], mult: number[], base: number[],
): { axisOf: number[]; mult: number[]; base: number[] } | null {
  const split = axisSplit(to, from);
  if (!split) return null;
  const { of, factor } = split;
  const nb = to.map(() => 0);
  from.forEach((_, k) => {
    if (of[k]! >= 0) nb[of[k]!] += base[k]! * factor[k]!;
  });
  return {
    axisOf: axisOf.map((k) => (k < 0 || of[k]! < 0 ? -1 : of[k]!)),
    mult: axisOf.map((k, d) => (k < 0 || of[k]! < 0 ? 1 : mult[d]! * factor[k]!)),
    base: nb,
  };
}

function isElementwise(op: Op): op is ElementwiseOp {
  return op.kind === 'unary' || op.kind === 'binary' || op.kind === 'where' || op.kind === 'cast' || op.kind === 'full';
}

function isViewOp(op: Op): op is ViewOp {
  return op.kind === 'transpose' || op.kind === 'broadcastTo' || op.kind === 'slice';
}

function stripLeadingOnes(s: Shape): Shape {
  let i = 0;
  while (i < s.length && s[i] === 1) i++;
  return s.slice(i);
}

/** Same row-major layout: equal after dropping leading size-1 axes. */
function sameLayout(a: Shape, b: Shape): boolean {
  return shapesEqual(stripLeadingOnes(a), stripLeadingOnes(b));
}

/** Same row-major order of elements: equal after dropping every size-1 axis. */
function sameOrder(a: Shape, b: Shape): boolean {
  return shapesEqual(a.filter((d) => d !== 1), b.filter((d) => d !== 1));
}

/** Most ops one kernel recomputes from broadcast producers (see FusionOptions.inlineLimit). */
const INLINE_NODE_BUDGET = 64;
/**
 * A producer is recomputed inside a large kernel only if each of its values is recomputed at
 * most this many times: an attention mask read by each head's softmax is, RoPE'd queries read
 * by every key position are not (recomputing them made lavapipe's rollouts a third slower).
 */
const INLINE_MAX_REPEAT = 8;

export function fusePrograms(p: Program, opts: FusionOptions): Program {
  const { vars, ops } = p;
  const dtypes = new Set(opts.dtypes);
  const inlineLimit = opts.inlineLimit ?? 0;
  const producer = new Int32Array(vars.length).fill(-1);
  ops.forEach((op, i) => {
    for (const v of opOutputs(op)) producer[v] = i;
  });
  const consumers: number[][] = vars.map(() => []);
  ops.forEach((op, i) => {
    for (const x of opInputs(op)) {
      const c = consumers[x.v]!;
      if (c[c.length - 1] !== i) c.push(i);
    }
  });
  const isOutput = new Uint8Array(vars.length);
  for (const o of p.outputs) isOutput[o.v] = 1;

  /** Output shape of an elementwise op, or the iteration space of a reduction. */
  const spaceOf = (op: Op): Shape => {
    switch (op.kind) {
      case 'binary': case 'where': return op.shape;
      case 'unary': case 'cast': return op.x.shape;
      case 'reduce': return op.x.shape;
      case 'full': return [vars[op.out]!.size];
      default: throw new Error(`internal: ${op.kind} has no iteration space`);
    }
  };
  const fusable = (op: Op): boolean => {
    if (op.kind === 'reduce') return dtypes.has(op.x.dtype) && op.x.shape.length > 0 && sizeOf(op.x.shape) > 0;
    if (!isElementwise(op)) return false;
    const out = vars[op.out]!;
    return dtypes.has(out.dtype) && opInputs(op).every((x) => dtypes.has(x.dtype)) && out.size > 0;
  };

  const groupOf = new Int32Array(ops.length).fill(-1);
  interface Group { root: number; space: Shape; members: number[] }
  const groups: Group[] = [];

  for (let r = ops.length - 1; r >= 0; r--) {
    const rootOp = ops[r]!;
    if (groupOf[r] !== -1 || !fusable(rootOp)) continue;
    const g: Group = { root: r, space: spaceOf(rootOp), members: [r] };
    const gid = groups.length;
    groups.push(g);
    groupOf[r] = gid;
    const S = g.space;
    const n = sizeOf(S);
    // Grow to a fixpoint: a producer may become eligible once its other readers have joined.
    let grew = true;
    while (grew) {
      grew = false;
      for (const m of [...g.members]) {
        for (const x of opInputs(ops[m]!)) {
          const pi = producer[x.v]!;
          if (pi < 0 || groupOf[pi] !== -1) continue;
          const pop = ops[pi]!;
          if (!isElementwise(pop) || !fusable(pop)) continue;
          if (sizeOf(x.shape) !== n) continue; // read with a broadcast: keep it materialised
          const ps = spaceOf(pop);
          if (!sameLayout(ps, S) && !opInputs(pop).every((y) => sizeOf(y.shape) === n || sizeOf(y.shape) === 1)) continue;
          const external = consumers[x.v]!.some((c) => groupOf[c] !== gid);
          if (external || isOutput[x.v]) {
            // Written out as an extra output: needs the kernel's order of elements, and readers after the root.
            if (!sameOrder(ps, S)) continue;
            if (consumers[x.v]!.some((c) => groupOf[c] !== gid && c < r)) continue;
          }
          groupOf[pi] = gid;
          g.members.push(pi);
          grew = true;
        }
      }
    }
  }

  const kernels = new Map<number, Op>();
  const unfused = new Set<number>();
  for (let gid = 0; gid < groups.length; gid++) {
    const k = buildKernel(gid);
    const fk = k as Extract<Op, { kind: 'fused' }>;
    if (opts.maxBuffers !== undefined && fk.inputs.length + fk.outs.length > opts.maxBuffers) unfused.add(gid);
    else kernels.set(groups[gid]!.root, k);
  }

  const out: Op[] = [];
  ops.forEach((op, i) => {
    if (groupOf[i] === -1 || unfused.has(groupOf[i]!)) out.push(op);
    else if (kernels.has(i)) out.push(kernels.get(i)!);
  });
  return eliminateDeadCode({ vars, ops: out, outputs: p.outputs });

  function buildKernel(gid: number): Op {
    const g = groups[gid]!;
    const S = g.space;
    const rank = S.length;
    const n = sizeOf(S);
    const nodes: FusedNode[] = [];
    const inputs: FusedInput[] = [];
    const inputViews: View[] = [];
    const leafKey = new Map<string, number>();
    const valueNode = new Map<number, number>();
    const constKey = new Map<string, number>();
    const inlined = new Map<string, number>();
    // Each broadcast read of a chain is recomputed at its own mapping, so chains of them could
    // grow a kernel without bound: past this many recomputed ops, reads load again.
    let inlinedNodes = 0;

    const push = (node: FusedNode): number => {
      nodes.push(node);
      return nodes.length - 1;
    };
    const constant = (value: number, dtype: DType): number => {
      const k = `${dtype}:${Object.is(value, -0) ? '-0' : value}`;
      let id = constKey.get(k);
      if (id === undefined) {
        id = push({ kind: 'const', value, dtype });
        constKey.set(k, id);
      }
      return id;
    };

    /**
     * A load of variable v, laid out as `shape`. `aligned`: the reader broadcasts `shape`
     * against S (right-aligned, numpy rules); otherwise it reads v flat, in S's row-major
     * order, with `flatStrides`. Views made by transpose/broadcastTo/slice ops in front of an
     * aligned read are folded in by tracking, for each kernel axis, the view axis it moves
     * and the view coordinate of the kernel's first point.
     */
    const load = (v: number, shape: Shape, aligned: boolean, flatStrides: number[]): number => {
      if (!aligned) return leaf(v, 0, flatStrides);
      // axisOf[d]: the view axis kernel axis d moves (−1: broadcast); base: view coordinate at index 0.
      const lead = rank - shape.length;
      const axisOf = S.map((_, d) => (d < lead || shape[d - lead] === 1 ? -1 : d - lead));
      // mult[d]: kernel axis d steps its view axis by this many elements per index (from split reshapes).
      return loadMapped(v, shape, axisOf, S.map(() => 1), shape.map(() => 0));
    };

    /** A read of v (laid out as `shape`) at kernel point i: view coordinate k = base[k] + Σ_{d: axisOf[d] = k} i_d · mult[d]. */
    const loadMapped = (v: number, shape: Shape, axisOf0: number[], mult0: number[], base0: number[]): number => {
      let vv = v;
      let sh = shape;
      let axisOf = axisOf0;
      let mult = mult0;
      let base = base0;
      for (;;) {
        const pi = producer[vv]!;
        const pop = pi >= 0 ? ops[pi]! : undefined;
        if (!pop || !isViewOp(pop) || !dtypes.has(pop.x.dtype)) break;
        const inShape = pop.x.shape;
        // A reshape between the view op and this read that splits axes or adds/drops size-1
        // ones (q[.., 64] read as [.., 4, 16]): move the coordinates onto the op's output axes.
        const opOut = pop.kind === 'slice' ? pop.sizes : pop.kind === 'transpose' ? pop.perm.map((q) => inShape[q]!) : pop.shape;
        if (!shapesEqual(sh, opOut)) {
          const moved = splitAxes(sh, opOut, axisOf, mult, base);
          if (!moved) break;
          ({ axisOf, mult, base } = moved);
          sh = opOut;
        }
        if (pop.kind === 'slice') {
          if (!shapesEqual(sh, pop.sizes)) break;
          base = base.map((b, k) => b + pop.starts[k]!);
        } else if (pop.kind === 'transpose') {
          if (!shapesEqual(sh, pop.perm.map((q) => inShape[q]!))) break;
          axisOf = axisOf.map((k) => (k < 0 ? -1 : pop.perm[k]!));
          const nb = inShape.map(() => 0);
          pop.perm.forEach((q, k) => (nb[q] = base[k]!));
          base = nb;
        } else {
          if (!shapesEqual(sh, pop.shape)) break;
          const off = pop.shape.length - inShape.length;
          axisOf = axisOf.map((k) => (k < off || inShape[k - off] === 1 ? -1 : k - off));
          base = inShape.map((dim, k) => (dim === 1 ? 0 : base[k + off]!));
        }
        vv = pop.x.v;
        sh = inShape;
      }
      const pi = producer[vv]!;
      // Recomputed only where that costs little: a small kernel, or each value recomputed a few times at most.
      const size = vars[vv]!.size;
      const cheap = size < n && (n <= inlineLimit || n <= INLINE_MAX_REPEAT * size);
      if (inlineLimit > 0 && inlinedNodes < INLINE_NODE_BUDGET && pi >= 0 && groupOf[pi] !== gid && size <= inlineLimit && cheap) {
        const pop = ops[pi]!;
        if (isElementwise(pop) && pop.kind !== 'full' && fusable(pop)) {
          const ps = spaceOf(pop);
          // Read through a reshape that adds or drops size-1 axes or splits some: onto the producer's axes.
          const m = shapesEqual(sh, ps) ? { axisOf, mult, base } : splitAxes(sh, ps, axisOf, mult, base);
          if (m) return inline(pi, pop, m.axisOf, m.mult, m.base);
        }
      }
      const vs = stridesOf(sh);
      const strides = axisOf.map((k, d) => (k < 0 ? 0 : vs[k]! * mult[d]!));
      return leaf(vv, base.reduce((a, b, k) => a + b * vs[k]!, 0), strides);
    };

    /** The producer's value recomputed at the point of its output that the read maps kernel point i to. */
    const inline = (pi: number, pop: ElementwiseOp, axisOf: number[], mult: number[], base: number[]): number => {
      const key = `${pi}@${axisOf.join(',')}|${mult.join(',')}|${base.join(',')}`;
      const cached = inlined.get(key);
      if (cached !== undefined) return cached;
      const ps = spaceOf(pop);
      const at = (y: View): number => {
        // y broadcasts against the producer's space (numpy rules, right-aligned).
        const lead = ps.length - y.shape.length;
        const yAxis = (k: number) => (k < lead || y.shape[k - lead] === 1 ? -1 : k - lead);
        return loadMapped(y.v, y.shape, axisOf.map((k) => (k < 0 ? -1 : yAxis(k))), mult, y.shape.map((dim, j) => (dim === 1 ? 0 : base[j + lead]!)));
      };
      const dtype = vars[pop.out]!.dtype;
      let id: number;
      switch (pop.kind) {
        case 'unary': id = push({ kind: 'unary', op: pop.op, a: at(pop.x), dtype }); break;
        case 'binary': id = push({ kind: 'binary', op: pop.op, a: at(pop.a), b: at(pop.b), dtype }); break;
        case 'where': id = push({ kind: 'where', cond: at(pop.cond), a: at(pop.a), b: at(pop.b), dtype }); break;
        case 'cast': id = push({ kind: 'cast', a: at(pop.x), dtype }); break;
        default: throw new Error(`internal: inlining ${pop.kind}`);
      }
      inlined.set(key, id);
      inlinedNodes++;
      return id;
    };

    /** An input node: v read at offset + Σ i_d · strides[d] (a constant fill becomes a constant). */
    const leaf = (vv: number, offset: number, strides0: number[]): number => {
      let strides = strides0;
      const info = vars[vv]!;
      if (producer[vv]! >= 0) {
        const pop = ops[producer[vv]!]!;
        if (pop.kind === 'full') return constant(pop.value, info.dtype);
      }
      if (info.size === 1) strides = strides.map(() => 0);
      const key = `${vv}@${offset}:${strides.join(',')}`;
      let id = leafKey.get(key);
      if (id === undefined) {
        inputs.push({ dtype: info.dtype, offset, strides });
        inputViews.push({ v: vv, shape: [info.size], dtype: info.dtype });
        id = push({ kind: 'input', input: inputs.length - 1, dtype: info.dtype });
        leafKey.set(key, id);
      }
      return id;
    };

    /** The value of view x as read by a member op whose own iteration shape is `opShape`. */
    const read = (x: View, opShape: Shape): number => {
      const pi = producer[x.v]!;
      if (pi >= 0 && groupOf[pi] === gid) return value(pi);
      if (sameLayout(opShape, S)) return load(x.v, x.shape, true, []);
      // The member is a reshape of S: its inputs are read whole or are scalars.
      return load(x.v, x.shape, false, sizeOf(x.shape) === 1 ? new Array<number>(rank).fill(0) : stridesOf(S));
    };

    function value(i: number): number {
      const cached = valueNode.get(i);
      if (cached !== undefined) return cached;
      const op = ops[i]!;
      const dtype = vars[opOutputs(op)[0]!]!.dtype;
      const sp = op.kind === 'reduce' ? S : spaceOf(op);
      let id: number;
      switch (op.kind) {
        case 'unary': id = push({ kind: 'unary', op: op.op, a: read(op.x, sp), dtype }); break;
        case 'binary': id = push({ kind: 'binary', op: op.op, a: read(op.a, sp), b: read(op.b, sp), dtype }); break;
        case 'where': id = push({ kind: 'where', cond: read(op.cond, sp), a: read(op.a, sp), b: read(op.b, sp), dtype }); break;
        case 'cast': id = push({ kind: 'cast', a: read(op.x, sp), dtype }); break;
        case 'full': id = constant(op.value, dtype); break;
        case 'reduce': id = read(op.x, S); break;
        default: throw new Error(`internal: ${op.kind} in a fused group`);
      }
      valueNode.set(i, id);
      return id;
    }

    const outputs: FusedOutput[] = [];
    const outVars: number[] = [];
    const rootOp = ops[g.root]!;
    let reduceAxes: number[] = [];
    if (rootOp.kind === 'reduce') {
      reduceAxes = [...rootOp.axes];
      outputs.push({ node: value(g.root), reduce: rootOp.op, dtype: vars[rootOp.out]!.dtype });
      outVars.push(rootOp.out);
    }
    // Members read after the group (or returned) are written out; in program order.
    for (const m of [...g.members].sort((a, b) => a - b)) {
      const op = ops[m]!;
      if (op.kind === 'reduce') continue;
      const v = opOutputs(op)[0]!;
      const needed = m === g.root || isOutput[v] || consumers[v]!.some((c) => groupOf[c] !== gid);
      if (!needed) continue;
      outputs.push({ node: value(m), dtype: vars[v]!.dtype });
      outVars.push(v);
    }
    const kernel: FusedKernel = { shape: [...S], reduceAxes, inputs, nodes, outputs };
    void n;
    return { kind: 'fused', kernel, inputs: inputViews, outs: outVars };
  }
}
