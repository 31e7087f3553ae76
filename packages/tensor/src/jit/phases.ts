/**
 * Row fusion over a fused program: a reduction kernel and the kernels after it that use its
 * rows — the next reduction over the same rows, an elementwise kernel over the same space
 * reading each row's result, a kernel over the rows themselves — become one PhasedKernel
 * (see fused.ts). RMSNorm's three kernels (sum of squares, reciprocal root, scaling) and
 * softmax's three (max, sum of exponentials, quotient) each become one dispatch, with the
 * per-row values kept in registers instead of written out and read back.
 *
 * A kernel B joins the group G that produces one of its inputs when
 * - B's iteration space is G's (a reduction over the same axes, or elementwise), or G's rows
 *   (G's space with the reduced axes at 1; size-1 axes may differ);
 * - every read B makes of G's results is one of: a row result read as that row's value
 *   (stride 0 along the reduced axes, row-major along the others), or a result over the whole
 *   space read at the same point;
 * - no op between G's place in the program and B's reads a result of G (G moves to B's place);
 * - the merged kernel stays within the backend's buffer limit.
 * Row results nothing outside the group reads are not written at all.
 */
import type { FusedInput, FusedPhase, PhaseNode, PhasedKernel } from '../fused.js';
import { shapesEqual, sizeOf, stridesOf, type Shape } from '../shape.js';
import { eliminateDeadCode, opInputs, type Op, type Program, type View } from './program.js';

export interface PhaseOptions {
  /** Most buffers (outputs + inputs) one kernel may use. */
  maxBuffers?: number;
}

type FusedOp = Extract<Op, { kind: 'fused' }>;

interface Group {
  shape: number[];
  reduceAxes: number[];
  inputs: FusedInput[];
  views: View[];
  phases: FusedPhase[];
  /** The program variable each phase output is. */
  vars: number[][];
  /** Where the group runs now (the index of its last member). */
  pos: number;
  members: Set<number>;
  /** Space-sized outputs later phases read at the same point (so they must be written). */
  pointRefs: Set<number>;
}

const nonOne = (s: Shape): number[] => s.filter((d) => d !== 1);

/** For each axis of `from`, the axis of `to` it is (−1 for size-1 axes), when both have the same non-1 axes in order. */
function axisMap(from: Shape, to: Shape): number[] {
  const toAxes = to.flatMap((d, a) => (d === 1 ? [] : [a]));
  let j = 0;
  return from.map((d) => (d === 1 ? -1 : toAxes[j++]!));
}

export function mergePhases(p: Program, opts: PhaseOptions = {}): Program {
  const { ops } = p;
  const consumers: number[][] = p.vars.map(() => []);
  ops.forEach((op, i) => {
    for (const x of opInputs(op)) {
      const c = consumers[x.v]!;
      if (c[c.length - 1] !== i) c.push(i);
    }
  });
  const isOutput = new Uint8Array(p.vars.length);
  for (const o of p.outputs) isOutput[o.v] = 1;

  const groupAt = new Map<number, Group>();
  const groupOfVar = new Map<number, Group>();
  const moved = new Set<number>();

  /** Whether a group's result must be written: returned, read at a point by a later phase, or read outside the group. */
  const written = (g: Group, v: number): boolean => isOutput[v] === 1 || g.pointRefs.has(v) || consumers[v]!.some((c) => !g.members.has(c));
  const outputCount = (g: Group): number => g.vars.reduce((n, vs) => n + vs.filter((v) => written(g, v)).length, 0);

  const tryMerge = (g: Group, op: FusedOp, at: number): Group | null => {
    const k = op.kernel;
    const S = g.shape;
    const R = g.reduceAxes;
    const rows = S.map((d, a) => (R.includes(a) ? 1 : d));
    let kind: FusedPhase['kind'];
    if (shapesEqual(k.shape, S) && k.reduceAxes.length === R.length && k.reduceAxes.every((a, i) => a === R[i])) kind = 'reduce';
    else if (shapesEqual(k.shape, S) && k.reduceAxes.length === 0) kind = 'map';
    else if (k.reduceAxes.length === 0 && shapesEqual(nonOne(k.shape), nonOne(rows))) kind = 'row';
    else return null;
    if (sizeOf(k.shape) === 0) return null;
    const mine = new Map<number, [number, number]>();
    g.vars.forEach((vs, ph) => vs.forEach((v, o) => mine.set(v, [ph, o])));
    // G moves to B's place: nothing in between may read what G makes.
    for (let j = g.pos + 1; j < at; j++) {
      if (moved.has(j)) continue;
      const reads = groupAt.get(j)?.views ?? opInputs(ops[j]!);
      if (reads.some((x) => mine.has(x.v))) return null;
    }
    const map = kind === 'row' ? axisMap(k.shape, rows) : k.shape.map((_, a) => a);
    const toS = (strides: readonly number[]): number[] => {
      const out = S.map(() => 0);
      map.forEach((a, b) => {
        if (a >= 0) out[a] = strides[b]!;
      });
      return out;
    };
    const rowStrides = stridesOf(rows);
    const spaceStrides = stridesOf(S);
    const inputs = [...g.inputs];
    const views = [...g.views];
    const pointRefs = new Set(g.pointRefs);
    let refs = 0;
    const nodes: PhaseNode[] = [];
    for (const n of k.nodes) {
      if (n.kind !== 'input') {
        nodes.push(n);
        continue;
      }
      const spec = k.inputs[n.input]!;
      const view = op.inputs[n.input]!;
      const strides = toS(spec.strides);
      const ref = mine.get(view.v);
      if (ref) {
        const [ph, o] = ref;
        const row = g.phases[ph]!.kind === 'row' || g.phases[ph]!.outputs[o]!.reduce !== undefined;
        if (spec.offset !== 0) return null;
        for (let a = 0; a < S.length; a++) {
          if (S[a] === 1) continue;
          const want = row ? (R.includes(a) ? 0 : rowStrides[a]!) : spaceStrides[a]!;
          if (strides[a] !== want) return null;
        }
        if (!row) {
          if (kind === 'row') return null;
          pointRefs.add(view.v);
        }
        nodes.push({ kind: 'ref', phase: ph, output: o, dtype: n.dtype });
        refs++;
        continue;
      }
      let idx = inputs.findIndex((q, i) => views[i]!.v === view.v && q.dtype === spec.dtype && q.offset === spec.offset && q.strides.every((s, a) => s === strides[a]));
      if (idx < 0) {
        inputs.push({ dtype: spec.dtype, offset: spec.offset, strides });
        views.push(view);
        idx = inputs.length - 1;
      }
      nodes.push({ kind: 'input', input: idx, dtype: n.dtype });
    }
    if (refs === 0) return null;
    const merged: Group = {
      shape: S, reduceAxes: R, inputs, views,
      phases: [...g.phases, { kind, nodes, outputs: k.outputs }],
      vars: [...g.vars, [...op.outs]],
      pos: at,
      members: new Set([...g.members, at]),
      pointRefs,
    };
    if (opts.maxBuffers !== undefined && inputs.length + outputCount(merged) > opts.maxBuffers) return null;
    return merged;
  };

  ops.forEach((op, i) => {
    if (op.kind !== 'fused') return;
    const candidates = new Set<Group>();
    for (const x of op.inputs) {
      const g = groupOfVar.get(x.v);
      if (g) candidates.add(g);
    }
    for (const g of candidates) {
      const merged = tryMerge(g, op, i);
      if (!merged) continue;
      groupAt.delete(g.pos);
      moved.add(g.pos);
      groupAt.set(i, merged);
      for (const vs of merged.vars) for (const v of vs) groupOfVar.set(v, merged);
      return;
    }
    const k = op.kernel;
    if (k.reduceAxes.length === 0 || sizeOf(k.shape) === 0) return;
    const g: Group = {
      shape: [...k.shape], reduceAxes: [...k.reduceAxes], inputs: [...k.inputs], views: [...op.inputs],
      phases: [{ kind: 'reduce', nodes: [...k.nodes], outputs: k.outputs }],
      vars: [[...op.outs]], pos: i, members: new Set([i]), pointRefs: new Set(),
    };
    groupAt.set(i, g);
    for (const v of op.outs) groupOfVar.set(v, g);
  });

  const out: Op[] = [];
  ops.forEach((op, i) => {
    if (moved.has(i)) return;
    const g = groupAt.get(i);
    if (!g || g.phases.length === 1) {
      out.push(op);
      return;
    }
    const kept: [number, number][] = [];
    const outs: number[] = [];
    g.vars.forEach((vs, ph) => vs.forEach((v, o) => {
      if (!written(g, v)) return;
      kept.push([ph, o]);
      outs.push(v);
    }));
    const kernel: PhasedKernel = { shape: g.shape, reduceAxes: g.reduceAxes, inputs: g.inputs, phases: g.phases, written: kept };
    out.push({ kind: 'phased', kernel, inputs: g.views, outs });
  });
  return eliminateDeadCode({ vars: p.vars, ops: out, outputs: p.outputs });
}
