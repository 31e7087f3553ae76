/**
 * Horizontal fusion over a fused program: elementwise kernels and fused updates that do not
 * depend on one another run as one dispatch (each member over its own share of the
 * invocations). After RoPE and the KV-cache writes are fused updates, a layer's K write and V
 * write are independent: one dispatch instead of two. Where a dispatch costs more than the
 * work in it (small decode steps on a GPU) this is a fixed saving per layer.
 *
 * Members are taken greedily in program order: a kernel joins the open group when it reads
 * nothing the group makes, nothing between a member and it reads what that member makes
 * (the group runs at its last member's place), and the group stays within the buffer limit
 * (outputs plus distinct inputs); otherwise it opens the next group.
 */
import { eliminateDeadCode, opInputs, opOutputs, type FusedIntoOp, type FusedOp, type Op, type Program } from './program.js';

export interface HorizontalOptions {
  maxBuffers?: number;
}

type Member = FusedOp | FusedIntoOp;

function isMember(op: Op): op is Member {
  return (op.kind === 'fused' && op.kernel.reduceAxes.length === 0 && op.kernel.shape.every((d) => d > 0)) || op.kind === 'fusedInto';
}

/** Buffers a group's dispatch binds: every output, and each distinct input variable once. */
function bindings(members: readonly Member[]): number {
  const inputs = new Set<number>();
  let outputs = 0;
  for (const m of members) {
    outputs += opOutputs(m).length;
    for (const x of m.inputs) inputs.add(x.v);
    if (m.kind === 'fusedInto') inputs.add(m.index.v);
  }
  return outputs + inputs.size;
}

export function fuseHorizontally(p: Program, opts: HorizontalOptions = {}): Program {
  const { ops } = p;
  const groups: number[][] = [];
  let open: number[] = [];
  const close = () => {
    if (open.length > 1) groups.push(open);
    open = [];
  };
  ops.forEach((op, i) => {
    if (!isMember(op)) return;
    if (open.length > 0) {
      const made = new Set(open.flatMap((m) => opOutputs(ops[m]!)));
      const independent = !opInputs(op).some((x) => made.has(x.v));
      let clear = independent;
      for (let j = open[0]! + 1; clear && j < i; j++) {
        if (open.includes(j)) continue;
        if (opInputs(ops[j]!).some((x) => made.has(x.v))) clear = false;
      }
      const within = opts.maxBuffers === undefined || bindings([...open, i].map((m) => ops[m] as Member)) <= opts.maxBuffers;
      if (clear && within) {
        open.push(i);
        return;
      }
      close();
    }
    open.push(i);
  });
  close();
  if (groups.length === 0) return p;
  const at = new Map<number, number[]>();
  const moved = new Set<number>();
  for (const g of groups) {
    at.set(g[g.length - 1]!, g);
    for (const m of g.slice(0, -1)) moved.add(m);
  }
  const out: Op[] = [];
  ops.forEach((op, i) => {
    if (moved.has(i)) return;
    const g = at.get(i);
    out.push(g ? { kind: 'horizontal', members: g.map((m) => ops[m] as Member) } : op);
  });
  return eliminateDeadCode({ vars: p.vars, ops: out, outputs: p.outputs });
}
