/**
 * jit(f): trace a pure function of pytrees once per argument signature, then replay the
 * recorded program (fused into few kernels where the backend can run fused kernels).
 *
 * Semantics follow JAX's:
 * - Tensor leaves of the arguments are traced: the program runs on whatever values a call
 *   passes. The cache key is the argument structure with each tensor's shape, dtype and
 *   backend, so a new shape re-traces (counted by `traceCount`).
 * - PRNGKey leaves are traced too: random numbers drawn inside from a key argument (or keys
 *   split/folded from it) follow the key each call passes.
 * - Every other leaf (numbers, strings, booleans, objects that are not plain) is static: part
 *   of the cache key, baked into the program. Pass a value that changes every call (a
 *   learning rate, a position) as a tensor, or it re-traces every call.
 * - Host values the function computes from anything but its tensor arguments (numbers,
 *   typed arrays, concrete tensors it closes over) are constants of the program.
 * - Reading a tensor's value inside is an error: there are no values while tracing.
 * - Called inside grad/vjp/jvp (or inside another jit's trace), f simply runs inline, so jit
 *   never changes what a transformation sees.
 *
 * `donateArgnums` marks arguments the call may consume: their buffers can be reused for the
 * outputs (a KV cache updated in place by dynamicUpdateSlice). A donated tensor is spent
 * after the call (reading it is a use-after-dispose error), as in JAX.
 */
import type { Backend } from '../backend.js';
import { type DType } from '../dtype.js';
import { fusePrograms, type FusionOptions } from './fuse.js';
import { mergePhases } from './phases.js';
import { fuseUpdates } from './updates.js';
import { fuseHorizontally } from './horizontal.js';
import { PRNGKey } from '../random.js';
import { closeScope, getDefaultBackend, openScope, Tensor } from '../tensor.js';
import { traceDepth } from '../trace.js';
import { eliminateDeadCode, Executable, type Program, type View } from './program.js';
import { Recorder } from './recorder.js';

export interface JitOptions {
  /** Argument positions whose tensors each call consumes (their buffers may become outputs). */
  donateArgnums?: readonly number[];
  /** Name used in error messages (default: the function's name). */
  name?: string;
  /** Fuse elementwise chains and reductions into single kernels where the backend can (default true). */
  fuse?: boolean;
  /** Compiled signatures kept; the least recently used beyond this are dropped (default 64). */
  maxCacheEntries?: number;
}

export interface JitStats {
  /** Times the function was traced (one per new signature, or after eviction). */
  traces: number;
  /** Calls that replayed a compiled program. */
  replays: number;
  /** Signatures compiled and cached now. */
  cached: number;
  /** Ops and fused kernels of the most recently used program. */
  ops: number;
  fusedKernels: number;
}

export type Jitted<F extends (...args: any[]) => any> = F & {
  /** Number of traces so far. */
  readonly traceCount: number;
  stats(): JitStats;
  /** The most recently run program (its ops and fused kernels), for inspection. */
  lastProgram(): Program | undefined;
  /** Free every compiled program (constants and captured tensors); the function stays usable. */
  dispose(): void;
  [Symbol.dispose](): void;
};

// ---------------------------------------------------------------------------------------
// Argument flattening

type Leaf = { kind: 'tensor'; t: Tensor } | { kind: 'key'; k: PRNGKey };

interface Flat {
  leaves: Leaf[];
  /** The structure with static values and tensor/key signatures: the cache key. */
  signature: string;
}

const backendIds = new WeakMap<Backend, number>();
const objectIds = new WeakMap<object, number>();
let nextId = 1;
function idOf(map: WeakMap<object, number>, o: object): number {
  let id = map.get(o);
  if (id === undefined) {
    id = nextId++;
    map.set(o, id);
  }
  return id;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (x === null || typeof x !== 'object') return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

function flatten(tree: unknown): Flat {
  const leaves: Leaf[] = [];
  const parts: string[] = [];
  const rec = (x: unknown): void => {
    if (x instanceof Tensor) {
      parts.push(`T${x.shape.join('x')}:${x.dtype}@${idOf(backendIds as WeakMap<object, number>, x.backend)}`);
      leaves.push({ kind: 'tensor', t: x });
    } else if (x instanceof PRNGKey) {
      parts.push('K');
      leaves.push({ kind: 'key', k: x });
    } else if (Array.isArray(x)) {
      parts.push('[');
      x.forEach(rec);
      parts.push(']');
    } else if (isPlainObject(x)) {
      parts.push('{');
      for (const k of Object.keys(x).sort()) {
        parts.push(JSON.stringify(k), ':');
        rec(x[k]);
      }
      parts.push('}');
    } else if (typeof x === 'number') {
      parts.push(Object.is(x, -0) ? 'n-0' : `n${x}`);
    } else if (typeof x === 'string') {
      parts.push(`s${JSON.stringify(x)}`);
    } else if (typeof x === 'boolean' || x === null || x === undefined) {
      parts.push(String(x));
    } else if (typeof x === 'bigint') {
      parts.push(`b${x}`);
    } else {
      // Functions, class instances: static by identity.
      parts.push(`o${idOf(objectIds, x as object)}`);
    }
  };
  rec(tree);
  return { leaves, signature: parts.join(' ') };
}

/** Rebuild `tree` with its tensor and key leaves replaced in flatten order. */
function unflatten<T>(tree: T, replace: (leaf: Leaf, index: number) => unknown): T {
  let i = 0;
  const rec = (x: unknown): unknown => {
    if (x instanceof Tensor) return replace({ kind: 'tensor', t: x }, i++);
    if (x instanceof PRNGKey) return replace({ kind: 'key', k: x }, i++);
    if (Array.isArray(x)) return x.map(rec);
    if (isPlainObject(x)) {
      const o: Record<string, unknown> = {};
      for (const k of Object.keys(x).sort()) o[k] = rec(x[k]);
      return o;
    }
    return x;
  };
  return rec(tree) as T;
}

/** Where output tensor i goes in a result template. */
class OutputSlot {
  constructor(readonly index: number) {}
}

function fillTemplate(template: unknown, outs: readonly Tensor[]): unknown {
  const rec = (x: unknown): unknown => {
    if (x instanceof OutputSlot) return outs[x.index];
    if (Array.isArray(x)) return x.map(rec);
    if (isPlainObject(x)) {
      const o: Record<string, unknown> = {};
      for (const k of Object.keys(x)) o[k] = rec(x[k]);
      return o;
    }
    return x;
  };
  return rec(template);
}

// ---------------------------------------------------------------------------------------
// Tracing

interface Compiled {
  exec: Executable;
  /** The result with its tensor leaves in flatten order (replaced by the outputs on each call). */
  template: unknown;
  /** Which tensor-leaf indices of the arguments are donated. */
  donated: boolean[];
}

function trace(
  f: (...args: any[]) => unknown, args: unknown[], flat: Flat, backend: Backend, name: string,
  donate: ReadonlySet<number>, fusion: FusionOptions | null,
): Compiled {
  const rec = new Recorder(backend, name);
  const frame = openScope();
  let ok = false;
  try {
    // Leaf indices: tensors and keys are numbered separately in the program.
    let tensorLeaf = 0;
    let keyLeaf = 0;
    const donated: boolean[] = [];
    let argIndex = 0;
    const tracedArgs = args.map((a) => {
      const here = argIndex++;
      return unflatten(a, (leaf) => {
        if (leaf.kind === 'tensor') {
          donated.push(donate.has(here));
          return rec.input(tensorLeaf++, leaf.t.shape, leaf.t.dtype);
        }
        return new PRNGKey(leaf.k.words[0], leaf.k.words[1], { kind: 'arg', leaf: keyLeaf++ });
      });
    });
    const out = f(...tracedArgs);
    if (out && typeof (out as { then?: unknown }).then === 'function') {
      throw new Error(`jit: ${name} returned a Promise; jitted functions must be synchronous (await outside them)`);
    }
    const outputs: View[] = [];
    const template = unflatten(out, (leaf) => {
      if (leaf.kind === 'key') throw new Error(`jit: ${name} returned a PRNGKey; return tensors (derive keys outside)`);
      let t = leaf.t;
      if (t.backend !== rec) {
        if (t.backend !== backend) throw new Error(`jit: ${name} returned a tensor on the ${t.backend.name} backend; expected ${backend.name}`);
        t = rec.capture(t);
      }
      const v = t.view('jit');
      outputs.push({ v: (v.buf as { id: number }).id, shape: [...t.shape], dtype: t.dtype });
      return new OutputSlot(outputs.length - 1);
    });
    let program: Program = eliminateDeadCode({ vars: rec.vars, ops: rec.ops, outputs });
    if (fusion) {
      program = fusePrograms(program, fusion);
      if (backend.runPhased) program = mergePhases(program, { maxBuffers: fusion.maxBuffers });
      if (backend.runFusedInto) program = fuseUpdates(program, fusion.dtypes);
      if (backend.runHorizontal) program = fuseHorizontally(program, { maxBuffers: fusion.maxBuffers });
    }
    ok = true;
    return { exec: new Executable(program, backend), template, donated };
  } finally {
    closeScope(frame, []);
    if (!ok) for (const s of rec.capturedStorage()) s.release();
  }
}

// ---------------------------------------------------------------------------------------
// The transformation

/** SOFTGRAD_JIT_LOG=1 reports every trace on stderr: which function, how long, for which shapes. */
function jitLogEnabled(): boolean {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const v = env?.['SOFTGRAD_JIT_LOG'];
  return v !== undefined && v !== '' && v !== '0';
}

/** Every jitted function alive, so their compiled programs can all be released at once. */
const registry = new Set<WeakRef<{ dispose(): void }>>();

/**
 * Releases the compiled programs of every jitted function (their constants and captured
 * tensors), e.g. before counting live buffers, or to give memory back after a phase that
 * used many shapes. The functions stay usable: the next call traces again.
 */
export function clearJitCaches(): void {
  for (const ref of registry) {
    const j = ref.deref();
    if (j) j.dispose();
    else registry.delete(ref);
  }
}

export function jit<F extends (...args: any[]) => any>(f: F, options: JitOptions = {}): Jitted<F> {
  const name = options.name ?? (f.name || 'the function');
  const donate = new Set(options.donateArgnums ?? []);
  const maxEntries = options.maxCacheEntries ?? 64;
  const cache = new Map<string, Compiled>();
  let traces = 0;
  let replays = 0;
  let last: Compiled | undefined;

  const jitted = ((...args: unknown[]) => {
    const flat = flatten(args);
    const tensors = flat.leaves.flatMap((l) => (l.kind === 'tensor' ? [l.t] : []));
    // Under autodiff or another jit's trace, run inline so the enclosing transformation sees every op.
    if (traceDepth() > 0 || tensors.some((t) => t.backend.tracing)) return f(...args);
    const backend = tensors[0]?.backend ?? getDefaultBackend();
    for (const t of tensors) {
      t.view('jit');
      if (t.backend !== backend) throw new Error(`jit: ${name} got tensors on different backends (${backend.name} and ${t.backend.name})`);
    }
    const signature = `${idOf(backendIds as WeakMap<object, number>, backend)}|${flat.signature}`;
    let compiled = cache.get(signature);
    if (compiled) {
      cache.delete(signature); // re-inserted below: Map order is recency order
    } else {
      const fusion = options.fuse === false || !backend.runFused ? null : { dtypes: fusableDTypes(backend), maxBuffers: backend.maxFusedBuffers, inlineLimit: backend.fusedInlineLimit ?? 0 };
      const t0 = performance.now();
      compiled = trace(f, args, flat, backend, name, donate, fusion);
      traces++;
      if (jitLogEnabled()) {
        const shapes = tensors.map((t) => t.shape.join('×') || 'scalar').join(' ');
        console.error(`jit: traced ${name} (#${traces}, ${(performance.now() - t0).toFixed(0)} ms, ${compiled.exec.counts.ops} ops) for ${shapes}`);
      }
      if (cache.size >= maxEntries) {
        const [oldKey, old] = cache.entries().next().value as [string, Compiled];
        cache.delete(oldKey);
        old.exec.dispose();
      }
    }
    cache.set(signature, compiled);
    last = compiled;
    const keys = flat.leaves.flatMap((l) => (l.kind === 'key' ? [l.k.words] : []));
    const outs = compiled.exec.run(tensors, keys, compiled.donated);
    replays++;
    return fillTemplate(compiled.template, outs);
  }) as Jitted<F>;

  Object.defineProperty(jitted, 'traceCount', { get: () => traces });
  jitted.stats = () => ({
    traces, replays, cached: cache.size,
    ops: last?.exec.counts.ops ?? 0, fusedKernels: last?.exec.counts.fused ?? 0,
  });
  jitted.lastProgram = () => last?.exec.program;
  jitted.dispose = () => {
    for (const c of cache.values()) c.exec.dispose();
    cache.clear();
    last = undefined;
  };
  jitted[Symbol.dispose] = jitted.dispose;
  registry.add(new WeakRef(jitted));
  return jitted;
}

function fusableDTypes(backend: Backend): DType[] {
  return (backend.fusedDTypes ?? (['float32', 'float64', 'int32', 'bool'] as const)).filter((d) => backend.supportsDType(d));
}
