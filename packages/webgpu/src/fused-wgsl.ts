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
import type { DType, FusedKernel, FusedNode, ReduceOp } from '@softgrad/tensor';

type Word = 'f32' | 'i32' | 'u32';

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

export interface FusedWgsl {
  /** The kernel body (to append to common.wgsl). */
  code: string;
  /** Invocations the dispatch must cover (P(0)), and workgroups of `workgroupSize`. */
  invocations: number;
  workgroupSize: number;
  /** One workgroup per output element (long reductions) instead of one invocation. */
  groupPerOutput: boolean;
}

/** Reduced extents at least this long get a workgroup per output. */
const LONG_REDUCTION = 256;

export function fusedKernelWgsl(k: FusedKernel): FusedWgsl {
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

  /** Statements computing every node at the point whose coordinates are c{d}; values in locals nv{i}. */
  const pointBody = (indent: string): string[] => {
    const out: string[] = [];
    k.nodes.forEach((n, i) => {
      if (n.kind === 'input') {
        const inp = k.inputs[n.input]!;
        const terms = [String(inp.offset), ...k.shape.map((_, d) => (inp.strides[d] ? `c${d} * ${inp.strides[d]}u` : '')).filter(Boolean)];
        const load = `i${n.input}[${terms.join(' + ')}]`;
        out.push(`${indent}let nv${i} = ${n.dtype === 'bool' ? `(${load} != 0u)` : load};`);
      } else {
        out.push(`${indent}let nv${i}: ${reg(n.dtype)} = ${nodeExpr(n, k.nodes, (j) => `nv${j}`)};`);
      }
    });
    return out;
  };
  const store = (v: string, dtype: DType) => (dtype === 'bool' ? `select(0u, 1u, ${v})` : v);
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

  if (!reduces) {
    lines.push(...head(256));
    lines.push('  let i = groupIndex(wid, nwg) * 256u + lid;', '  if (i >= P(0u)) { return; }');
    lines.push(...unravel(k.shape.map((_, d) => d), 'i', '  '));
    lines.push(...pointBody('  '));
    k.outputs.forEach((o, j) => {
      // Every reduced axis has size 1 here: a reduction is the value (index 0 for arg-reductions).
      const v = o.reduce === 'argmax' || o.reduce === 'argmin' ? 'i32(0)' : `nv${o.node}`;
      lines.push(`  o${j}[i] = ${store(v, o.dtype)};`);
    });
    lines.push('}');
    return { code: lines.join('\n'), invocations: total, workgroupSize: 256, groupPerOutput: false };
  }

  const accs = k.outputs.map((o, j) => ({ o, j })).filter(({ o }) => o.reduce);
  const elems = k.outputs.map((o, j) => ({ o, j })).filter(({ o }) => !o.reduce);
  const accType = (o: (typeof k.outputs)[number]) => (k.nodes[o.node]!.dtype === 'int32' ? 'i32' : k.nodes[o.node]!.dtype === 'bool' ? 'i32' : 'f32');
  const valueOf = (o: (typeof k.outputs)[number]) => (k.nodes[o.node]!.dtype === 'bool' ? `select(0, 1, nv${o.node})` : `nv${o.node}`);
  const identity = (op: ReduceOp, t: string) =>
    op === 'sum' ? (t === 'f32' ? '0.0' : '0') : t === 'f32' ? (op === 'max' ? '-infF()' : 'infF()') : op === 'max' ? '(-2147483647 - 1)' : '2147483647';
  /** acc = acc ⊕ v, with the CPU backend's NaN rules (max/min propagate NaN; arg-reductions take the first NaN). */
  const combine = (op: ReduceOp, t: string, acc: string, v: string, idx: string, bestIdx: string): string => {
    if (op === 'sum') return `${acc} = ${acc} + ${v};`;
    const nan = (x: string) => (t === 'f32' ? `isNan(${x})` : 'false');
    if (op === 'max' || op === 'min') return `if (${v} ${op === 'max' ? '>' : '<'} ${acc} || ${nan(v)}) { ${acc} = ${v}; }`;
    const cmp = op === 'argmax' ? '>' : '<';
    return `if (${bestIdx} < 0 || (!${nan(acc)} && (${v} ${cmp} ${acc} || ${nan(v)}))) { ${acc} = ${v}; ${bestIdx} = ${idx}; }`;
  };
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
  lines.push('  workgroupBarrier();');
  lines.push('  for (var half: u32 = 32u; half > 0u; half = half >> 1u) {', '    if (lid < half) {');
  for (const { o, j } of accs) {
    const t = accType(o);
    const a = `sv${j}[lid]`;
    const b = `sv${j}[lid + half]`;
    if (o.reduce === 'sum') lines.push(`      ${a} = ${a} + ${b};`);
    else if (o.reduce === 'max' || o.reduce === 'min') {
      const nan = t === 'f32' ? `isNan(${b})` : 'false';
      lines.push(`      if (${b} ${o.reduce === 'max' ? '>' : '<'} ${a} || ${nan}) { ${a} = ${b}; }`);
    } else {
      // (value, index) pairs: the better value wins, ties and NaNs go to the smaller index.
      const nanA = t === 'f32' ? `isNan(${a})` : 'false';
      const nanB = t === 'f32' ? `isNan(${b})` : 'false';
      const cmp = o.reduce === 'argmax' ? '>' : '<';
      const ia = `si${j}[lid]`;
      const ib = `si${j}[lid + half]`;
      lines.push(
        `      let takeB = ${ib} >= 0 && (${ia} < 0 || (${nanB} && (!${nanA} || ${ib} < ${ia})) || (!${nanA} && !${nanB} && (${b} ${cmp} ${a} || (${b} == ${a} && ${ib} < ${ia}))));`,
        `      if (takeB) { ${a} = ${b}; ${ia} = ${ib}; }`,
      );
    }
  }
  lines.push('    }', '    workgroupBarrier();', '  }');
  lines.push('  if (lid == 0u) {');
  for (const { o, j } of accs) lines.push(`    o${j}[o] = ${o.reduce === 'argmax' || o.reduce === 'argmin' ? `si${j}[0]` : `sv${j}[0]`};`);
  lines.push('  }', '}');
  return { code: lines.join('\n'), invocations: outSize, workgroupSize: 64, groupPerOutput: true };
}
