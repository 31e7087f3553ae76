/**
 * FusedKernel → WGSL: the WebGPU backend's code generator for the kernels jit's fusion pass
 * makes. Shapes and strides are baked into the source (a jitted program runs the same shapes
 * every call, so each kernel compiles once and its pipeline is cached by source).
 *
 * - Elementwise kernels: one invocation per point of the iteration space.
 * - Reductions with a short reduced extent: one invocation per output element, looping over the
 *   reduced points in order. Long ones: one workgroup of 64 per output element, each invocation
 *   summing a strided subset in order, then a fixed tree in workgroup memory — deterministic,
 *   no atomics, the same result every run.
 *
 * Values are f32, i32 and bool in registers; buffers hold 32-bit words (bool as 0/1 u32).
 */
import type { DType, FusedInto, FusedKernel, FusedNode, PhasedKernel, ReduceOp } from '@softgrad/tensor';

export type Word = 'f32' | 'i32' | 'u32';

function word(dtype: DType): Word {
  if (dtype === 'float32') return 'f32';
  if (dtype === 'int32') return 'i32';
  if (dtype === 'bool') return 'u32';
  throw new Error(`webgpu fused kernel: ${dtype} is not supported`);
}

function reg(dtype: DType): string {
  return dtype === 'float32' ? 'f32' : dtype === 'int32' ? 'i32' : 'bool';
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function literal(value: number, dtype: DType): string {
  if (dtype === 'float32') {
    // A constant bitcast to ±inf or NaN is a WGSL compile error ("value inf cannot be
    // represented as 'f32'"): those come from common.wgsl's run-time helpers instead.
    // (Rounded first: a finite double beyond float32's range is an infinity here too.)
    f32[0] = value;
    const rounded = f32[0]!;
    if (Number.isNaN(rounded)) return 'nanF()';
    if (rounded === Infinity) return 'infF()';
    if (rounded === -Infinity) return '(-infF())';
    return `bitcast<f32>(${u32[0]!}u)`;
  }
  if (dtype === 'int32') return `i32(${value | 0})`;
  return value !== 0 ? 'true' : 'false';
}

const UNARY_F32: Record<string, (x: string) => string> = {
  neg: (x) => `-${x}`, exp: (x) => `exp(${x})`, log: (x) => `log(${x})`, sqrt: (x) => `sqrt(${x})`, rsqrt: (x) => `(1.0 / sqrt(${x}))`,
  abs: (x) => `abs(${x})`, tanh: (x) => `tanhStable(${x})`, sigmoid: (x) => `sigmoidStable(${x})`, sin: (x) => `sin(${x})`,
  cos: (x) => `cos(${x})`, sign: (x) => `signF(${x})`,
};
const UNARY_I32: Record<string, (x: string) => string> = { neg: (x) => `-${x}`, abs: (x) => `abs(${x})`, sign: (x) => `sign(${x})` };
const ARITH_F32: Record<string, (a: string, b: string) => string> = {
  add: (a, b) => `(${a} + ${b})`, sub: (a, b) => `(${a} - ${b})`, mul: (a, b) => `(${a} * ${b})`, div: (a, b) => `(${a} / ${b})`,
  pow: (a, b) => `powF(${a}, ${b})`, maximum: (a, b) => `maxF(${a}, ${b})`, minimum: (a, b) => `minF(${a}, ${b})`,
};
const ARITH_I32: Record<string, (a: string, b: string) => string> = {
  add: (a, b) => `(${a} + ${b})`, sub: (a, b) => `(${a} - ${b})`, mul: (a, b) => `(${a} * ${b})`, div: (a, b) => `divI(${a}, ${b})`,
  pow: (a, b) => `powI(${a}, ${b})`, maximum: (a, b) => `max(${a}, ${b})`, minimum: (a, b) => `min(${a}, ${b})`,
};
const COMPARE: Record<string, string> = { less: '<', lessEqual: '<=', greater: '>', greaterEqual: '>=', equal: '==', notEqual: '!=' };

function nodeExpr(n: FusedNode, nodes: readonly FusedNode[], v: (i: number) => string): string {
  switch (n.kind) {
    case 'input': throw new Error('internal: loads are emitted separately');
    case 'const': return literal(n.value, n.dtype);
    case 'unary': {
      const dt = nodes[n.a]!.dtype;
      if (dt === 'bool') return `!${v(n.a)}`;
      const f = (dt === 'int32' ? UNARY_I32 : UNARY_F32)[n.op];
      if (!f) throw new Error(`webgpu fused kernel: ${n.op} on ${dt}`);
      return f(v(n.a));
    }
    case 'binary': {
      const dt = nodes[n.a]!.dtype;
      if (n.op in COMPARE) {
        if (dt === 'float32' && n.op === 'notEqual') return `(${v(n.a)} != ${v(n.b)} || isNan(${v(n.a)}) || isNan(${v(n.b)}))`;
        return `(${v(n.a)} ${COMPARE[n.op]} ${v(n.b)})`;
      }
      if (n.op === 'and') return `(${v(n.a)} && ${v(n.b)})`;
      if (n.op === 'or') return `(${v(n.a)} || ${v(n.b)})`;
      const f = (dt === 'int32' ? ARITH_I32 : ARITH_F32)[n.op];
      if (!f) throw new Error(`webgpu fused kernel: ${n.op} on ${dt}`);
      return f(v(n.a), v(n.b));
    }
    case 'where': return `select(${v(n.b)}, ${v(n.a)}, ${v(n.cond)})`;
    case 'cast': {
      const from = nodes[n.a]!.dtype;
      const x = v(n.a);
      if (from === n.dtype) return x;
      if (n.dtype === 'bool') return from === 'float32' ? `(${x} != 0.0 || isNan(${x}))` : `(${x} != 0)`;
      if (from === 'bool') return n.dtype === 'float32' ? `select(0.0, 1.0, ${x})` : `select(0, 1, ${x})`;
      return n.dtype === 'float32' ? `f32(${x})` : `i32(${x})`;
    }
  }
}

function identity(op: ReduceOp, t: string): string {
  return op === 'sum' ? (t === 'f32' ? '0.0' : '0') : t === 'f32' ? (op === 'max' ? '-infF()' : 'infF()') : op === 'max' ? '(-2147483647 - 1)' : '2147483647';
}

/** acc = acc ⊕ v, with the CPU backend's NaN rules (max/min propagate NaN; arg-reductions take the first NaN). */
function combine(op: ReduceOp, t: string, acc: string, v: string, idx: string, bestIdx: string): string {
  if (op === 'sum') return `${acc} = ${acc} + ${v};`;
  const nan = (x: string) => (t === 'f32' ? `isNan(${x})` : 'false');
  if (op === 'max' || op === 'min') return `if (${v} ${op === 'max' ? '>' : '<'} ${acc} || ${nan(v)}) { ${acc} = ${v}; }`;
  const cmp = op === 'argmax' ? '>' : '<';
  return `if (${bestIdx} < 0 || (!${nan(acc)} && (${v} ${cmp} ${acc} || ${nan(v)}))) { ${acc} = ${v}; ${bestIdx} = ${idx}; }`;
}

/**
 * The fixed tree over a workgroup of 64 in workgroup arrays sv{name}/si{name} (values and,
 * for arg-reductions, indices); ends with a barrier, so every invocation may read slot 0.
 */
function treeReduce(accs: readonly { op: ReduceOp; t: string; name: string }[], indent: string): string[] {
  const lines: string[] = [];
  lines.push(`${indent}workgroupBarrier();`);
  lines.push(`${indent}for (var half: u32 = 32u; half > 0u; half = half >> 1u) {`, `${indent}  if (lid < half) {`);
  for (const { op, t, name } of accs) {
    const a = `sv${name}[lid]`;
    const b = `sv${name}[lid + half]`;
    if (op === 'sum') lines.push(`${indent}    ${a} = ${a} + ${b};`);
    else if (op === 'max' || op === 'min') {
      const nan = t === 'f32' ? `isNan(${b})` : 'false';
      lines.push(`${indent}    if (${b} ${op === 'max' ? '>' : '<'} ${a} || ${nan}) { ${a} = ${b}; }`);
    } else {
      // (value, index) pairs: the better value wins, ties and NaNs go to the smaller index.
      const nanA = t === 'f32' ? `isNan(${a})` : 'false';
      const nanB = t === 'f32' ? `isNan(${b})` : 'false';
      const cmp = op === 'argmax' ? '>' : '<';
      const ia = `si${name}[lid]`;
      const ib = `si${name}[lid + half]`;
      lines.push(
        `${indent}    let takeB = ${ib} >= 0 && (${ia} < 0 || (${nanB} && (!${nanA} || ${ib} < ${ia})) || (!${nanA} && !${nanB} && (${b} ${cmp} ${a} || (${b} == ${a} && ${ib} < ${ia}))));`,
        `${indent}    if (takeB) { ${a} = ${b}; ${ia} = ${ib}; }`,
      );
    }
  }
  lines.push(`${indent}  }`, `${indent}  workgroupBarrier();`, `${indent}}`);
  return lines;
}

export interface FusedWgsl {
  /** The kernel body (to append to common.wgsl). */
  code: string;
  /** Invocations the dispatch must cover (P(0)), and workgroups of `workgroupSize`. */
  invocations: number;
  workgroupSize: number;
  /** One workgroup per output element (long reductions) instead of one invocation. */
  groupPerOutput: boolean;
}

/** Statements computing every node of k at the point whose coordinates are c{d}; values in locals nv{i}. */
function pointStatements(k: FusedKernel, indent: string, input: (j: number) => string): string[] {
  return k.nodes.map((n, i) => {
    if (n.kind === 'input') {
      const inp = k.inputs[n.input]!;
      const terms = [String(inp.offset), ...k.shape.map((_, d) => (inp.strides[d] ? `c${d} * ${inp.strides[d]}u` : '')).filter(Boolean)];
      const load = `${input(n.input)}[${terms.join(' + ')}]`;
      return `${indent}let nv${i} = ${n.dtype === 'bool' ? `(${load} != 0u)` : load};`;
    }
    return `${indent}let nv${i}: ${reg(n.dtype)} = ${nodeExpr(n, k.nodes, (j) => `nv${j}`)};`;
  });
}

const storeWord = (v: string, dtype: DType) => (dtype === 'bool' ? `select(0u, 1u, ${v})` : v);

/** Buffer names an elementwise function reads and writes. */
export interface KernelNames {
  input(j: number): string;
  output(j: number): string;
  /** The start index of a fused update (an array<i32>). */
  index: string;
}

/**
 * `fn name(i: u32)`: an elementwise kernel's work at its flat point i — each output at i, or
 * (into) its one output at the point's place in a dynamicUpdateSlice's result.
 */
export function elementwiseFunction(k: FusedKernel, into: FusedInto | undefined, name: string, names: KernelNames): string[] {
  const lines = [`fn ${name}(i: u32) {`, '  var rem = i;'];
  for (let d = k.shape.length - 1; d >= 0; d--) lines.push(`  let c${d} = rem % ${k.shape[d]}u;`, `  rem = rem / ${k.shape[d]}u;`);
  lines.push(...pointStatements(k, '  ', names.input));
  if (into) {
    if (k.outputs.length !== 1 || k.outputs[0]!.reduce) throw new Error('internal: a fused update must be elementwise with one output');
    const terms = [`u32(clamp(${names.index}[0], 0, ${into.maxStart})) * ${into.axisStride}u`, ...into.strides.map((st, d) => (st ? `c${d} * ${st}u` : '')).filter(Boolean)];
    lines.push(`  ${names.output(0)}[${terms.join(' + ')}] = ${storeWord(`nv${k.outputs[0]!.node}`, k.outputs[0]!.dtype)};`);
  } else {
    k.outputs.forEach((o, j) => {
      // Every reduced axis has size 1 here: a reduction is the value (index 0 for arg-reductions).
      const v = o.reduce === 'argmax' || o.reduce === 'argmin' ? 'i32(0)' : `nv${o.node}`;
      lines.push(`  ${names.output(j)}[i] = ${storeWord(v, o.dtype)};`);
    });
  }
  lines.push('}');
  return lines;
}

/** Reduced extents at least this long get a workgroup per output. */
const LONG_REDUCTION = 256;

/**
 * `into`: the kernel is elementwise with one output, written into a dynamicUpdateSlice's
 * result at the clamped start read from the binding after the inputs (see FusedInto).
 */
export function fusedKernelWgsl(k: FusedKernel, into?: FusedInto): FusedWgsl {
  const r = k.shape.length;
  const red = (d: number) => k.reduceAxes.includes(d);
  const reduces = k.outputs.some((o) => o.reduce) && k.reduceAxes.length > 0;
  const lines: string[] = [];
  k.outputs.forEach((o, j) => lines.push(`@group(0) @binding(${1 + j}) var<storage, read_write> o${j}: array<${word(o.dtype)}>;`));
  k.inputs.forEach((inp, j) => lines.push(`@group(0) @binding(${1 + k.outputs.length + j}) var<storage, read> i${j}: array<${word(inp.dtype)}>;`));
  const keptDims = k.shape.map((_, d) => d).filter((d) => !red(d));
  const redDims = k.shape.map((_, d) => d).filter(red);
  const outSize = keptDims.reduce((a, d) => a * k.shape[d]!, 1);
  const redSize = redDims.reduce((a, d) => a * k.shape[d]!, 1);
  const total = k.shape.reduce((a, b) => a * b, 1);

  const pointBody = (indent: string): string[] => pointStatements(k, indent, (j) => `i${j}`);
  const store = storeWord;
  /** Flat elementwise-output index of the point c{d} (row-major over the whole space). */
  const flatIndex = () => {
    let s = '0u';
    for (let d = 0; d < r; d++) s = `(${s}) * ${k.shape[d]}u + c${d}`;
    return s;
  };
  /** c{d} for dims `dims` from the flat index `from` (row-major over those dims). */
  const unravel = (dims: number[], from: string, indent: string): string[] => {
    const out = [`${indent}var rem = ${from};`];
    for (let q = dims.length - 1; q >= 0; q--) {
      const d = dims[q]!;
      out.push(`${indent}let c${d} = rem % ${k.shape[d]}u;`, `${indent}rem = rem / ${k.shape[d]}u;`);
    }
    return out;
  };

  const head = (size: number) => [
    `@compute @workgroup_size(${size})`,
    'fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {',
  ];

  if (into || !reduces) {
    if (into) lines.push(`@group(0) @binding(${1 + k.outputs.length + k.inputs.length}) var<storage, read> dynIndex: array<i32>;`);
    lines.push(...elementwiseFunction(k, into, 'point', { input: (j) => `i${j}`, output: (j) => `o${j}`, index: 'dynIndex' }));
    lines.push(...head(256));
    lines.push('  let i = groupIndex(wid, nwg) * 256u + lid;', '  if (i >= P(0u)) { return; }', '  point(i);', '}');
    return { code: lines.join('\n'), invocations: total, workgroupSize: 256, groupPerOutput: false };
  }

  const accs = k.outputs.map((o, j) => ({ o, j })).filter(({ o }) => o.reduce);
  const elems = k.outputs.map((o, j) => ({ o, j })).filter(({ o }) => !o.reduce);
  const accType = (o: (typeof k.outputs)[number]) => (k.nodes[o.node]!.dtype === 'int32' ? 'i32' : k.nodes[o.node]!.dtype === 'bool' ? 'i32' : 'f32');
  const valueOf = (o: (typeof k.outputs)[number]) => (k.nodes[o.node]!.dtype === 'bool' ? `select(0, 1, nv${o.node})` : `nv${o.node}`);
  // Index of the point along the (single) reduced axis of an arg-reduction.
  const argIndex = redDims.length === 1 ? `i32(c${redDims[0]})` : 'i32(0)';

  if (redSize < LONG_REDUCTION) {
    lines.push(...head(64));
    lines.push('  let o = groupIndex(wid, nwg) * 64u + lid;', '  if (o >= P(0u)) { return; }');
    lines.push(...unravel(keptDims, 'o', '  '));
    for (const { o, j } of accs) {
      const t = accType(o);
      lines.push(`  var acc${j}: ${t} = ${identity(o.reduce!, t)};`, `  var best${j}: i32 = -1;`);
    }
    // Nested loops over the reduced axes, in order.
    let indent = '  ';
    for (const d of redDims) {
      lines.push(`${indent}for (var c${d}: u32 = 0u; c${d} < ${k.shape[d]}u; c${d} = c${d} + 1u) {`);
      indent += '  ';
    }
    lines.push(...pointBody(indent));
    for (const { o, j } of accs) lines.push(`${indent}${combine(o.reduce!, accType(o), `acc${j}`, valueOf(o), argIndex, `best${j}`)}`);
    for (const { o, j } of elems) lines.push(`${indent}o${j}[${flatIndex()}] = ${store(`nv${o.node}`, o.dtype)};`);
    for (let q = 0; q < redDims.length; q++) {
      indent = indent.slice(2);
      lines.push(`${indent}}`);
    }
    for (const { o, j } of accs) {
      const v = o.reduce === 'argmax' || o.reduce === 'argmin' ? `best${j}` : o.dtype === 'int32' && accType(o) === 'i32' ? `acc${j}` : `acc${j}`;
      lines.push(`  o${j}[o] = ${v};`);
    }
    lines.push('}');
    return { code: lines.join('\n'), invocations: outSize, workgroupSize: 64, groupPerOutput: false };
  }

  // Long reductions: a workgroup of 64 per output; invocation t takes reduced points t, t+64, ...
  for (const { o, j } of accs) {
    const t = accType(o);
    lines.push(`var<workgroup> sv${j}: array<${t}, 64>;`, `var<workgroup> si${j}: array<i32, 64>;`);
  }
  lines.push(...head(64));
  lines.push('  let o = groupIndex(wid, nwg);', '  if (o >= P(0u)) { return; }');
  lines.push(...unravel(keptDims, 'o', '  ').map((l) => l.replace('var rem', 'var remK')).map((l) => l.replace(/\brem\b/g, 'remK')));
  for (const { o, j } of accs) {
    const t = accType(o);
    lines.push(`  var acc${j}: ${t} = ${identity(o.reduce!, t)};`, `  var best${j}: i32 = -1;`);
  }
  lines.push(`  for (var q: u32 = lid; q < ${redSize}u; q = q + 64u) {`);
  lines.push(...unravel(redDims, 'q', '    '));
  lines.push(...pointBody('    '));
  for (const { o, j } of accs) lines.push(`    ${combine(o.reduce!, accType(o), `acc${j}`, valueOf(o), argIndex, `best${j}`)}`);
  for (const { o, j } of elems) lines.push(`    o${j}[${flatIndex()}] = ${store(`nv${o.node}`, o.dtype)};`);
  lines.push('  }');
  for (const { j } of accs) lines.push(`  sv${j}[lid] = acc${j};`, `  si${j}[lid] = best${j};`);
  lines.push(...treeReduce(accs.map(({ o, j }) => ({ op: o.reduce!, t: accType(o), name: String(j) })), '  '));
  lines.push('  if (lid == 0u) {');
  for (const { o, j } of accs) lines.push(`    o${j}[o] = ${o.reduce === 'argmax' || o.reduce === 'argmin' ? `si${j}[0]` : `sv${j}[0]`};`);
  lines.push('  }', '}');
  return { code: lines.join('\n'), invocations: outSize, workgroupSize: 64, groupPerOutput: true };
}

/**
 * PhasedKernel → WGSL. Rows shorter than LONG_REDUCTION: one invocation per row runs every
 * phase in turn, looping over the row's points in order. Longer rows: a workgroup of 64 per
 * row; each phase's reductions end in the same fixed tree as FusedKernel's, and every
 * invocation then reads the row's value, so later phases see it in a register. A phase
 * reading an earlier space-sized output at the same point reads what the same invocation
 * wrote (both phases visit a row's points in the same order over the same invocations).
 */
export function phasedKernelWgsl(k: PhasedKernel): FusedWgsl {
  const r = k.shape.length;
  const red = (d: number) => k.reduceAxes.includes(d);
  const keptDims = k.shape.map((_, d) => d).filter((d) => !red(d));
  const redDims = k.shape.map((_, d) => d).filter(red);
  const rows = keptDims.reduce((a, d) => a * k.shape[d]!, 1);
  const redSize = redDims.reduce((a, d) => a * k.shape[d]!, 1);
  const long = redSize >= LONG_REDUCTION;
  const written = new Map(k.written.map(([p, o], w) => [`${p}.${o}`, w]));
  const outDtype = (p: number, o: number) => k.phases[p]!.outputs[o]!.dtype;
  const isRow = (p: number, o: number) => k.phases[p]!.kind === 'row' || k.phases[p]!.outputs[o]!.reduce !== undefined;
  const lines: string[] = [];
  k.written.forEach(([p, o], w) => lines.push(`@group(0) @binding(${1 + w}) var<storage, read_write> o${w}: array<${word(outDtype(p, o))}>;`));
  k.inputs.forEach((inp, j) => lines.push(`@group(0) @binding(${1 + k.written.length + j}) var<storage, read> i${j}: array<${word(inp.dtype)}>;`));
  const accType = (dtype: DType) => (dtype === 'float32' ? 'f32' : 'i32');
  if (long) {
    k.phases.forEach((ph, p) => ph.outputs.forEach((o, j) => {
      if (ph.kind === 'reduce' && o.reduce) lines.push(`var<workgroup> sv${p}_${j}: array<${accType(ph.nodes[o.node]!.dtype)}, 64>;`, `var<workgroup> si${p}_${j}: array<i32, 64>;`);
    }));
  }
  lines.push('@compute @workgroup_size(64)');
  lines.push('fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {');
  lines.push(long ? '  let o = groupIndex(wid, nwg);' : '  let o = groupIndex(wid, nwg) * 64u + lid;', '  if (o >= P(0u)) { return; }');
  lines.push('  var remK = o;');
  for (let q = keptDims.length - 1; q >= 0; q--) {
    const d = keptDims[q]!;
    lines.push(`  let c${d} = remK % ${k.shape[d]}u;`, `  remK = remK / ${k.shape[d]}u;`);
  }
  const store = storeWord;
  const flatIndex = () => {
    let s = '0u';
    for (let d = 0; d < r; d++) s = `(${s}) * ${k.shape[d]}u + c${d}`;
    return s;
  };
  const once = (stmt: string) => (long ? `if (lid == 0u) { ${stmt} }` : stmt);
  const argIndex = redDims.length === 1 ? `i32(c${redDims[0]})` : 'i32(0)';

  k.phases.forEach((ph, p) => {
    const nv = (i: number) => `p${p}v${i}`;
    const body = (indent: string): string[] => ph.nodes.map((n, i) => {
      if (n.kind === 'ref') {
        if (isRow(n.phase, n.output)) return `${indent}let ${nv(i)} = r${n.phase}_${n.output};`;
        const w = written.get(`${n.phase}.${n.output}`);
        if (w === undefined) throw new Error('internal: a point reference to an output that is not written');
        const load = `o${w}[${flatIndex()}]`;
        return `${indent}let ${nv(i)} = ${n.dtype === 'bool' ? `(${load} != 0u)` : load};`;
      }
      if (n.kind === 'input') {
        const inp = k.inputs[n.input]!;
        const terms = [String(inp.offset), ...k.shape.map((_, d) => (inp.strides[d] && (ph.kind !== 'row' || !red(d)) ? `c${d} * ${inp.strides[d]}u` : '')).filter(Boolean)];
        const load = `i${n.input}[${terms.join(' + ')}]`;
        return `${indent}let ${nv(i)} = ${n.dtype === 'bool' ? `(${load} != 0u)` : load};`;
      }
      return `${indent}let ${nv(i)}: ${reg(n.dtype)} = ${nodeExpr(n, ph.nodes as FusedNode[], nv)};`;
    });
    /** The loop over the row's points, around `inner` (statements at the point). */
    const overRow = (inner: (indent: string) => string[]) => {
      if (long) {
        lines.push(`  for (var q: u32 = lid; q < ${redSize}u; q = q + 64u) {`, '    var rem = q;');
        for (let q = redDims.length - 1; q >= 0; q--) {
          const d = redDims[q]!;
          lines.push(`    let c${d} = rem % ${k.shape[d]}u;`, `    rem = rem / ${k.shape[d]}u;`);
        }
        lines.push(...inner('    '), '  }');
        return;
      }
      let indent = '  ';
      for (const d of redDims) {
        lines.push(`${indent}for (var c${d}: u32 = 0u; c${d} < ${k.shape[d]}u; c${d} = c${d} + 1u) {`);
        indent += '  ';
      }
      lines.push(...inner(indent));
      for (let q = 0; q < redDims.length; q++) {
        indent = indent.slice(2);
        lines.push(`${indent}}`);
      }
    };
    const writeAtPoint = (indent: string) => ph.outputs.flatMap((o, j) => {
      const w = written.get(`${p}.${j}`);
      return o.reduce || w === undefined ? [] : [`${indent}o${w}[${flatIndex()}] = ${store(nv(o.node), o.dtype)};`];
    });
    if (ph.kind === 'row') {
      lines.push(...body('  '));
      ph.outputs.forEach((o, j) => {
        lines.push(`  let r${p}_${j}: ${reg(o.dtype)} = ${nv(o.node)};`);
        const w = written.get(`${p}.${j}`);
        if (w !== undefined) lines.push(`  ${once(`o${w}[o] = ${store(`r${p}_${j}`, o.dtype)};`)}`);
      });
      return;
    }
    if (ph.kind === 'map') {
      overRow((indent) => [...body(indent), ...writeAtPoint(indent)]);
      return;
    }
    const accs = ph.outputs.map((o, j) => ({ o, j, t: accType(ph.nodes[o.node]!.dtype) })).filter(({ o }) => o.reduce);
    for (const { o, j, t } of accs) lines.push(`  var acc${p}_${j}: ${t} = ${identity(o.reduce!, t)};`, `  var best${p}_${j}: i32 = -1;`);
    overRow((indent) => [
      ...body(indent),
      ...accs.map(({ o, j, t }) => {
        const v = ph.nodes[o.node]!.dtype === 'bool' ? `select(0, 1, ${nv(o.node)})` : nv(o.node);
        return `${indent}${combine(o.reduce!, t, `acc${p}_${j}`, v, argIndex, `best${p}_${j}`)}`;
      }),
      ...writeAtPoint(indent),
    ]);
    const arg = (op: ReduceOp) => op === 'argmax' || op === 'argmin';
    if (long) {
      for (const { j } of accs) lines.push(`  sv${p}_${j}[lid] = acc${p}_${j};`, `  si${p}_${j}[lid] = best${p}_${j};`);
      lines.push(...treeReduce(accs.map(({ o, j, t }) => ({ op: o.reduce!, t, name: `${p}_${j}` })), '  '));
      for (const { o, j } of accs) lines.push(`  let r${p}_${j} = ${arg(o.reduce!) ? `si${p}_${j}[0]` : `sv${p}_${j}[0]`};`);
    } else {
      for (const { o, j } of accs) lines.push(`  let r${p}_${j} = ${arg(o.reduce!) ? `best${p}_${j}` : `acc${p}_${j}`};`);
    }
    for (const { j } of accs) {
      const w = written.get(`${p}.${j}`);
      if (w !== undefined) lines.push(`  ${once(`o${w}[o] = r${p}_${j};`)}`);
    }
  });
  lines.push('}');
  return { code: lines.join('\n'), invocations: rows, workgroupSize: 64, groupPerOutput: long };
}

/** A member of a horizontal dispatch: its kernel and which bindings hold its buffers. */
export interface HorizontalPart {
  kernel: FusedKernel;
  into?: FusedInto;
  outputs: number[];
  inputs: number[];
  /** Binding of a fused update's start index. */
  index: number;
}

/**
 * Independent elementwise kernels as one dispatch: member m takes invocations
 * [Σ_{j<m} n_j, Σ_{j≤m} n_j) with n_j its number of points. `words[b]` and `writable[b]` give
 * binding b's element type and access.
 */
export function horizontalWgsl(parts: readonly HorizontalPart[], words: readonly Word[], writable: readonly boolean[]): FusedWgsl {
  const lines: string[] = [];
  words.forEach((w, b) => lines.push(`@group(0) @binding(${1 + b}) var<storage, ${writable[b] ? 'read_write' : 'read'}> b${b}: array<${w}>;`));
  parts.forEach((p, j) => lines.push(...elementwiseFunction(p.kernel, p.into, `m${j}`, {
    input: (q) => `b${p.inputs[q]}`, output: (q) => `b${p.outputs[q]}`, index: `b${p.index}`,
  })));
  lines.push('@compute @workgroup_size(256)');
  lines.push('fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {');
  lines.push('  let i = groupIndex(wid, nwg) * 256u + lid;', '  if (i >= P(0u)) { return; }');
  let start = 0;
  parts.forEach((p, j) => {
    const n = p.kernel.shape.reduce((a, b) => a * b, 1);
    lines.push(`  if (i < ${start + n}u) { m${j}(i - ${start}u); return; }`);
    start += n;
  });
  lines.push('}');
  return { code: lines.join('\n'), invocations: start, workgroupSize: 256, groupPerOutput: false };
}
