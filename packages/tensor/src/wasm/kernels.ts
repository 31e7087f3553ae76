/**
 * Compiled fused kernels, cached by what their machine code depends on: the loop plan (with
 * the extent of the parallel axis left out, since it arrives at run time as a range), the
 * expression and the operand dtypes. An eager `add` of any two same-shape tensors, or the
 * same layer's kernels in every block of a transformer, share one compiled function.
 */
import { fusedOutputSize, validateFusedKernel, type FusedKernel } from '../fused.js';
import { compileKernel, planLoops, UnsupportedKernelError, type LoopPlan } from './codegen.js';
import type { MemoryImport } from './emit.js';

export interface CompiledKernel {
  module: WebAssembly.Module;
  fn: (...args: number[]) => void;
  plan: LoopPlan;
  importsPow: boolean;
  /** Element counts of the outputs. */
  outputSizes: number[];
  /** Loop-space points per unit of the parallel axis (how much work a range is). */
  workPerUnit: number;
}

export function planKey(k: FusedKernel, plan: LoopPlan): string {
  const dims = plan.dims.map((d, i) => (i === plan.parallelDim ? '*' : String(d)));
  const node = JSON.stringify(k.nodes);
  const outs = k.outputs.map((o) => `${o.node}${o.reduce ?? ''}:${o.dtype}`).join(',');
  return [
    dims.join('x'), plan.reduced.map((r) => (r ? 'r' : 'k')).join(''),
    plan.inStrides.map((s, i) => `${k.inputs[i]!.dtype}@${plan.inOffsets[i]}:${s.join(',')}`).join(';'),
    plan.elemStrides.join(','), plan.redStrides.join(','), node, outs,
  ].join('|');
}

export class KernelCache {
  private readonly compiled = new Map<string, CompiledKernel | 'unsupported'>();
  compiles = 0;
  /** Milliseconds spent generating and compiling kernels so far. */
  compileMs = 0;

  constructor(private readonly memory: WebAssembly.Memory, private readonly memoryImport: MemoryImport) {}

  /** The compiled kernel, or null when this kernel needs the JS fallback (float64, int32 division, ...). */
  get(k: FusedKernel): CompiledKernel | null {
    // A jitted program runs the same kernel objects every call: skip planning and keying them.
    const memo = this.byObject.get(k);
    if (memo !== undefined) return memo;
    const found = this.lookup(k);
    this.byObject.set(k, found);
    return found;
  }

  private readonly byObject = new WeakMap<FusedKernel, CompiledKernel | null>();

  private lookup(k: FusedKernel): CompiledKernel | null {
    const plan = planLoops(k);
    const key = planKey(k, plan);
    const hit = this.compiled.get(key);
    if (hit === 'unsupported') return null;
    if (hit) return { ...hit, plan, outputSizes: k.outputs.map((o) => fusedOutputSize(k, o)), workPerUnit: work(plan) };
    validateFusedKernel(k);
    const t0 = performance.now();
    let code;
    try {
      code = compileKernel(k, this.memoryImport);
    } catch (e) {
      if (e instanceof UnsupportedKernelError) {
        this.compiled.set(key, 'unsupported');
        return null;
      }
      throw e;
    }
    const module = new WebAssembly.Module(code.bytes as BufferSource);
    const imports: WebAssembly.Imports = { env: { memory: this.memory } };
    if (code.importsPow) imports['m'] = { pow: Math.pow };
    const instance = new WebAssembly.Instance(module, imports);
    const fn = instance.exports['k'] as (...args: number[]) => void;
    const entry: CompiledKernel = {
      module, fn, plan, importsPow: code.importsPow,
      outputSizes: k.outputs.map((o) => fusedOutputSize(k, o)), workPerUnit: work(plan),
    };
    this.compiled.set(key, entry);
    this.compiles++;
    this.compileMs += performance.now() - t0;
    return entry;
  }

  get size(): number {
    return this.compiled.size;
  }
}

function work(plan: LoopPlan): number {
  let n = 1;
  plan.dims.forEach((d, i) => {
    if (i !== plan.parallelDim) n *= d;
  });
  return n;
}

export { UnsupportedKernelError };
