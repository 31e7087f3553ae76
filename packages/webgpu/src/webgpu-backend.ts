/**
 * The WebGPU backend. Kernel calls are synchronous: each encodes a compute dispatch into a
 * pending command encoder and returns its output buffer at once. Work reaches the GPU when
 * `read` needs a result, or every `maxDispatchesPerSubmit` dispatches, as one submit.
 */
import type {
  Backend, BackendBuffer, BackendStats, BinaryOp, BufferView, CompareOp, DType, FusedInto, FusedKernel, HorizontalMember, LogicalOp, PhasedKernel, ReduceOp, Shape,
  TypedArray, UnaryOp,
} from '@softgrad/tensor';
import { broadcastStrides, collapseDims, fmtShape, fusedIntoKey, fusedKernelKey, fusedOutputSize, phasedKernelKey, phasedOutputSize, sizeOf, stridesOf } from '@softgrad/tensor';
import type { AdapterInfo } from './device.js';
import { fusedKernelWgsl, horizontalWgsl, phasedKernelWgsl, type FusedWgsl, type HorizontalPart } from './fused-wgsl.js';
import { WGSL } from './shaders.generated.js';

// The numeric flag values, so nothing depends on the GPUBufferUsage/GPUMapMode globals
// existing (a caller may hand us a device from a Dawn instance without them).
const USAGE = { MAP_READ: 1, MAP_WRITE: 2, COPY_SRC: 4, COPY_DST: 8, UNIFORM: 64, STORAGE: 128 } as const;
const MAP_READ = 1;

/** Uniform words per dispatch (matches `array<vec4<u32>, 16>` in shaders/common.wgsl). */
const PARAM_WORDS = 64;
const PARAM_BYTES = PARAM_WORDS * 4;
const MAX_GROUPS = 65535;

export interface MatmulTile {
  /** Threads along N and M; each thread computes tm×4 outputs (tm = 4 unless set). */
  wx: number;
  wy: number;
  /** Rows per thread in the vec4 kernels: 4 or 8. */
  tm?: number;
  /** Depth of the K slice staged in shared memory per step (unused by the 'direct' kernel). */
  bk: number;
}

/**
 * How float32 matmuls with vec4-friendly shapes run: 'tiled' stages tiles of A and B in
 * workgroup memory (right for GPUs); 'direct' has each thread read its operands straight from
 * storage (faster on software adapters such as llvmpipe, where workgroup memory buys nothing).
 * Other shapes always use the scalar tiled kernel.
 */
export type MatmulVariant = 'tiled' | 'direct';

/** Default tiles: 128×64 outputs per workgroup for 'tiled' (best measured on an H200), 64×32 for 'direct' (best measured on lavapipe). */
export const DEFAULT_MATMUL_TILES: Readonly<Record<MatmulVariant, Readonly<MatmulTile>>> = {
  tiled: { wx: 16, wy: 16, bk: 16, tm: 8 },
  direct: { wx: 8, wy: 8, bk: 16, tm: 8 },
};

/** 'direct' on CPU/software adapters (a fallback adapter, or Mesa's llvmpipe), 'tiled' everywhere else. */
export function defaultMatmulVariant(info: AdapterInfo): MatmulVariant {
  const software = info.isFallbackAdapter ||
    /llvmpipe|lavapipe/i.test(`${info.vendor} ${info.architecture} ${info.description}`);
  return software ? 'direct' : 'tiled';
}

export interface WebGpuBackendSettings {
  /** Submit after this many encoded dispatches even without a read. Default 256. */
  maxDispatchesPerSubmit?: number;
  /** Bytes of freed buffers kept for reuse; beyond this, freed buffers are destroyed. Default 512 MiB. */
  poolCapacityBytes?: number;
  /** Matmul kernel for vec4-friendly shapes. Default: defaultMatmulVariant(adapter info). */
  matmulVariant?: MatmulVariant;
  /** Matmul workgroup tile. Default DEFAULT_MATMUL_TILES[variant]. */
  matmulTile?: MatmulTile;
  /** scatterAdd scans every index per output when there are at most this many indices. Default 16. */
  scatterDirectMaxIndices?: number;
}

interface Kernel {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

/** A GPU allocation; it outlives the handles that borrow it from the pool. */
interface Slab {
  readonly gpu: GPUBuffer;
  readonly bytes: number;
  /** The command-buffer epoch that last used it; equal to the current one while unsubmitted commands may. */
  lastEpoch: number;
}

/** What the frontend holds. A fresh handle per allocation, so a double free is caught, never aliased. */
export class WebGpuBuffer {
  freed = false;
  constructor(readonly slab: Slab) {}
}

type Word = 'f32' | 'i32' | 'u32';

function wordOf(dtype: DType): Word {
  switch (dtype) {
    case 'float32': return 'f32';
    case 'int32': return 'i32';
    case 'bool': return 'u32';
    default: throw new Error(`webgpu: dtype ${dtype} is not supported (float32, int32 and bool are)`);
  }
}

/** Four size classes per power of two: at most 25% slack, and few distinct sizes to pool. */
export function sizeClass(bytes: number): number {
  if (bytes <= 256) return 256;
  const e = Math.floor(Math.log2(bytes - 1));
  const step = 2 ** (e - 2);
  return Math.ceil(bytes / step) * step;
}

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);
function floatBits(x: number): number {
  f32[0] = x;
  return f32Bits[0]!;
}

const UNARY_F32: Partial<Record<UnaryOp, string>> = {
  neg: '-x', exp: 'exp(x)', log: 'log(x)', sqrt: 'sqrt(x)', rsqrt: '1.0 / sqrt(x)', abs: 'abs(x)',
  tanh: 'tanhStable(x)', sigmoid: 'sigmoidStable(x)', sin: 'sin(x)', cos: 'cos(x)', sign: 'signF(x)',
};
const UNARY_I32: Partial<Record<UnaryOp, string>> = { neg: '-x', abs: 'abs(x)', sign: 'sign(x)' };

const ARITH: Record<BinaryOp, Partial<Record<Word, string>>> = {
  add: { f32: 'a + b', i32: 'a + b' },
  sub: { f32: 'a - b', i32: 'a - b' },
  mul: { f32: 'a * b', i32: 'a * b' },
  div: { f32: 'a / b', i32: 'divI(a, b)' },
  pow: { f32: 'powF(a, b)', i32: 'powI(a, b)' },
  maximum: { f32: 'maxF(a, b)', i32: 'max(a, b)', u32: 'max(a, b)' },
  minimum: { f32: 'minF(a, b)', i32: 'min(a, b)', u32: 'min(a, b)' },
};
const COMPARE: Record<CompareOp, string> = {
  less: 'a < b', lessEqual: 'a <= b', greater: 'a > b', greaterEqual: 'a >= b', equal: 'a == b', notEqual: 'a != b',
};
const LOGICAL: Record<LogicalOp, string> = { and: 'a != 0u && b != 0u', or: 'a != 0u || b != 0u' };

export class WebGpuBackend implements Backend {
  readonly name = 'webgpu';
  readonly device: GPUDevice;
  readonly adapterInfo: AdapterInfo;

  private readonly owned: boolean;
  private readonly queue: GPUQueue;
  private readonly maxDispatches: number;
  private readonly poolCapacity: number;
  private readonly tile: MatmulTile;
  /** The matmul kernel in use for vec4-friendly shapes (see MatmulVariant). */
  readonly matmulVariant: MatmulVariant;
  private readonly scatterDirectMax: number;

  private readonly pipelines = new Map<string, Kernel>();
  private readonly pool = new Map<number, Slab[]>();
  private readonly staging = new Map<number, GPUBuffer[]>();
  private readonly allSlabs = new Set<Slab>();
  private pooledBytes = 0;
  private liveBuffers = 0;
  private liveBytes = 0;

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private epoch = 1;
  private readonly params: Uint32Array;
  private readonly paramBuffer: GPUBuffer;
  private slot = 0;
  private readonly fused = new Map<string, { kernel: Kernel; gen: FusedWgsl }>();
  /** Compute dispatches recorded since the backend was made (for tests and benchmarks). */
  dispatches = 0;
  /** float64 is not held here; the other dtypes' fused kernels come from fused-wgsl.ts. */
  readonly fusedDTypes: readonly DType[] = ['float32', 'int32', 'bool'];
  /** Storage buffers one fused kernel may bind (outputs and inputs): the device's per-stage limit. */
  readonly maxFusedBuffers: number;
  /** A dispatch costs far more than recomputing a small mask or table per point. */
  readonly fusedInlineLimit = 4096;
  private destroyAfterSubmit: GPUBuffer[] = [];

  /** [flag, index, D, 0] written by gather/scatter kernels on an out-of-range index. */
  private readonly errBuffer: GPUBuffer;
  private errPending = false;

  private lostMessage: string | null = null;
  private gpuError: string | null = null;
  private destroyed = false;

  constructor(device: GPUDevice, adapterInfo: AdapterInfo, owned: boolean, settings: WebGpuBackendSettings = {}) {
    this.device = device;
    this.adapterInfo = adapterInfo;
    this.owned = owned;
    this.queue = device.queue;
    this.maxFusedBuffers = device.limits.maxStorageBuffersPerShaderStage;
    this.maxDispatches = settings.maxDispatchesPerSubmit ?? 256;
    this.poolCapacity = settings.poolCapacityBytes ?? 512 * 2 ** 20;
    this.matmulVariant = settings.matmulVariant ?? defaultMatmulVariant(adapterInfo);
    this.tile = settings.matmulTile ?? DEFAULT_MATMUL_TILES[this.matmulVariant];
    this.scatterDirectMax = settings.scatterDirectMaxIndices ?? 16;
    this.params = new Uint32Array(this.maxDispatches * PARAM_WORDS);
    this.paramBuffer = device.createBuffer({
      size: this.maxDispatches * PARAM_BYTES, usage: USAGE.UNIFORM | USAGE.COPY_DST,
    });
    this.errBuffer = device.createBuffer({ size: 16, usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST });
    // A lost device must surface as an error on the next call, never as a hang.
    void device.lost.then((info) => {
      if (!this.destroyed) this.lostMessage = `${info.reason}: ${info.message}`;
    });
    device.addEventListener('uncapturederror', (ev) => {
      this.gpuError ??= (ev as GPUUncapturedErrorEvent).error.message;
    });
  }

  supportsDType(dtype: DType): boolean {
    return dtype !== 'float64';
  }

  // ---------------------------------------------------------------- state checks

  private check(): void {
    if (this.destroyed) throw new Error('webgpu: the backend has been destroyed');
    if (this.lostMessage !== null) throw new Error(`webgpu: device lost (${this.lostMessage})`);
  }

  private checkGpuError(): void {
    const e = this.gpuError;
    if (e !== null) {
      this.gpuError = null;
      throw new Error(`webgpu: GPU error: ${e}`);
    }
  }

  private own(buf: BackendBuffer, op: string): Slab {
    if (!(buf instanceof WebGpuBuffer)) throw new Error(`${op}: not a WebGPU buffer`);
    if (buf.freed) throw new Error(`${op}: buffer was already freed`);
    return buf.slab;
  }

  // ---------------------------------------------------------------- memory

  private alloc(elements: number): WebGpuBuffer {
    // Every buffer is bound whole to a kernel, so none may exceed the largest binding (128 MiB
    // on software adapters, gigabytes on real GPUs): say so now rather than fail validation later.
    const limit = this.device.limits.maxStorageBufferBindingSize;
    const cls = Math.min(sizeClass(elements * 4), Math.floor(limit / 4) * 4);
    if (elements * 4 > cls) {
      const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
      throw new Error(
        `webgpu: a tensor of ${elements} elements (${mib(elements * 4)}, stored in ${mib(cls)}) is larger than this adapter's largest ` +
          `storage buffer binding (maxStorageBufferBindingSize ${mib(limit)}); use a smaller batch or sequence, or a device with a larger limit`,
      );
    }
    let slab = this.pool.get(cls)?.pop();
    if (slab) {
      this.pooledBytes -= cls;
    } else {
      const gpu = this.device.createBuffer({ size: cls, usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST });
      slab = { gpu, bytes: cls, lastEpoch: 0 };
      this.allSlabs.add(slab);
    }
    this.liveBuffers++;
    this.liveBytes += cls;
    return new WebGpuBuffer(slab);
  }

  free(buf: BackendBuffer): void {
    if (!(buf instanceof WebGpuBuffer)) throw new Error('free: not a WebGPU buffer');
    if (buf.freed) throw new Error('free: buffer was already freed');
    buf.freed = true;
    const slab = buf.slab;
    this.liveBuffers--;
    this.liveBytes -= slab.bytes;
    if (this.destroyed) return;
    if (this.pooledBytes + slab.bytes > this.poolCapacity) {
      this.allSlabs.delete(slab);
      // Destroying a buffer that unsubmitted commands use would invalidate the submit.
      if (slab.lastEpoch === this.epoch && this.encoder) this.destroyAfterSubmit.push(slab.gpu);
      else slab.gpu.destroy();
      return;
    }
    let list = this.pool.get(slab.bytes);
    if (!list) this.pool.set(slab.bytes, (list = []));
    list.push(slab);
    this.pooledBytes += slab.bytes;
  }

  stats(): BackendStats {
    return { liveBuffers: this.liveBuffers, liveBytes: this.liveBytes };
  }

  /** Pool occupancy, for memory tests and tuning. */
  poolStats(): { pooledBuffers: number; pooledBytes: number; pipelines: number } {
    let n = 0;
    for (const l of this.pool.values()) n += l.length;
    return { pooledBuffers: n, pooledBytes: this.pooledBytes, pipelines: this.pipelines.size };
  }

  /** Destroys every pooled (unused) buffer, e.g. between benchmark phases. */
  trimPool(): void {
    this.flush();
    for (const list of this.pool.values()) {
      for (const s of list) {
        this.allSlabs.delete(s);
        s.gpu.destroy();
      }
    }
    this.pool.clear();
    this.pooledBytes = 0;
  }

  /** Releases every GPU resource (and the device, if this backend requested it). */
  destroy(): void {
    if (this.destroyed) return;
    try {
      this.flush();
    } catch {
      // A lost device cannot submit; everything is being released anyway.
    }
    this.destroyed = true;
    for (const s of this.allSlabs) s.gpu.destroy();
    this.allSlabs.clear();
    this.pool.clear();
    for (const l of this.staging.values()) for (const b of l) b.destroy();
    this.staging.clear();
    for (const b of this.destroyAfterSubmit) b.destroy();
    this.destroyAfterSubmit = [];
    this.paramBuffer.destroy();
    this.errBuffer.destroy();
    this.pipelines.clear();
    this.pooledBytes = 0;
    if (this.owned) this.device.destroy();
  }

  // ---------------------------------------------------------------- command encoding

  /** Submits everything encoded so far. */
  flush(): void {
    if (!this.encoder) return;
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    // writeBuffer runs on the queue before this submit and after every earlier one, so one
    // parameter buffer serves every batch.
    if (this.slot > 0) this.queue.writeBuffer(this.paramBuffer, 0, this.params.buffer, 0, this.slot * PARAM_BYTES);
    this.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.slot = 0;
    this.epoch++;
    for (const b of this.destroyAfterSubmit) b.destroy();
    this.destroyAfterSubmit = [];
  }

  /** Resolves when every submitted command has finished (for timing). */
  async sync(): Promise<void> {
    this.check();
    this.flush();
    await this.queue.onSubmittedWorkDone();
    this.check();
    this.checkGpuError();
  }

  private copyEncoder(): GPUCommandEncoder {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    return (this.encoder ??= this.device.createCommandEncoder());
  }

  private kernel(name: string, defs: Record<string, string | number | boolean> = {}): Kernel {
    const key = `${name}${JSON.stringify(defs)}`;
    let k = this.pipelines.get(key);
    if (!k) {
      const pipeline = this.device.createComputePipeline({
        layout: 'auto',
        compute: { module: this.device.createShaderModule({ code: instantiate(name, defs), label: key }), entryPoint: 'main' },
        label: key,
      });
      k = { pipeline, layout: pipeline.getBindGroupLayout(0) };
      this.pipelines.set(key, k);
    }
    return k;
  }

  /**
   * Compiles pipelines ahead of use with createComputePipelineAsync, so the synchronous
   * kernel path finds them cached instead of compiling on first call.
   */
  async precompile(specs: readonly (readonly [string, Record<string, string | number | boolean>])[] = DEFAULT_PRECOMPILE): Promise<void> {
    await Promise.all(
      specs.map(async ([name, defs]) => {
        const key = `${name}${JSON.stringify(defs)}`;
        if (this.pipelines.has(key)) return;
        const pipeline = await this.device.createComputePipelineAsync({
          layout: 'auto',
          compute: { module: this.device.createShaderModule({ code: instantiate(name, defs), label: key }), entryPoint: 'main' },
          label: key,
        });
        if (!this.pipelines.has(key)) this.pipelines.set(key, { pipeline, layout: pipeline.getBindGroupLayout(0) });
      }),
    );
  }

  /** The default matmul variants, for `precompile`. */
  matmulSpecs(): [string, Record<string, string | number | boolean>][] {
    const out: [string, Record<string, string | number | boolean>][] = [];
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        const base = { TRANS_A: ta, TRANS_B: tb, WX: this.tile.wx, WY: this.tile.wy, BK: this.tile.bk };
        const vec4 = this.matmulVariant === 'direct'
          ? { TRANS_A: ta, TRANS_B: tb, WX: this.tile.wx, WY: this.tile.wy, TM: this.tile.tm ?? 4 }
          : { ...base, TM: this.tile.tm ?? 4 };
        out.push(['matmul/tiled', base], [`matmul/${this.matmulVariant === 'direct' ? 'direct4' : 'tiled4'}`, vec4]);
      }
      out.push(['matmul/gemv', { TRANS_A: false, TRANS_B: ta }]);
    }
    return out;
  }

  private dispatch(k: Kernel, params: readonly number[], buffers: readonly (Slab | GPUBuffer)[], groups: [number, number, number]): void {
    this.check();
    this.dispatches++;
    if (params.length > PARAM_WORDS) throw new Error(`webgpu: kernel parameters exceed ${PARAM_WORDS} words`);
    if (this.slot === this.maxDispatches) this.flush();
    const slot = this.slot++;
    const base = slot * PARAM_WORDS;
    for (let i = 0; i < params.length; i++) this.params[base + i] = params[i]! >>> 0;
    const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: this.paramBuffer, offset: slot * PARAM_BYTES, size: PARAM_BYTES } }];
    for (let i = 0; i < buffers.length; i++) {
      const b = buffers[i]!;
      if ('lastEpoch' in b) {
        b.lastEpoch = this.epoch;
        entries.push({ binding: i + 1, resource: { buffer: b.gpu } });
      } else {
        entries.push({ binding: i + 1, resource: { buffer: b } });
      }
    }
    const bindGroup = this.device.createBindGroup({ layout: k.layout, entries });
    this.encoder ??= this.device.createCommandEncoder();
    this.pass ??= this.encoder.beginComputePass();
    this.pass.setPipeline(k.pipeline);
    this.pass.setBindGroup(0, bindGroup);
    this.pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
  }

  /** A 1-D grid of `n` workgroups, folded into (x, y) past the 65535 per-dimension limit. */
  private grid(n: number): [number, number, number] {
    if (n <= MAX_GROUPS) return [Math.max(n, 1), 1, 1];
    const y = Math.ceil(n / MAX_GROUPS);
    if (y > MAX_GROUPS) throw new Error(`webgpu: ${n} workgroups exceed the dispatch limit`);
    return [Math.ceil(n / y), y, 1];
  }

  private upload(slab: Slab, words: Float32Array | Int32Array | Uint32Array): void {
    if (words.length === 0) return;
    if (slab.lastEpoch === this.epoch && this.encoder) {
      // queue.writeBuffer would land before the pending commands that still read this
      // (recycled) buffer; a copy recorded in the encoder lands after them.
      const staging = this.device.createBuffer({ size: words.byteLength, usage: USAGE.MAP_WRITE | USAGE.COPY_SRC, mappedAtCreation: true });
      new Uint32Array(staging.getMappedRange()).set(new Uint32Array(words.buffer, words.byteOffset, words.length));
      staging.unmap();
      this.copyEncoder().copyBufferToBuffer(staging, 0, slab.gpu, 0, words.byteLength);
      this.destroyAfterSubmit.push(staging);
    } else {
      this.queue.writeBuffer(slab.gpu, 0, words.buffer, words.byteOffset, words.byteLength);
    }
  }

  // ---------------------------------------------------------------- transfer

  fromTyped(data: TypedArray, dtype: DType): BackendBuffer {
    this.check();
    const word = wordOf(dtype);
    let words: Float32Array | Int32Array | Uint32Array;
    if (word === 'f32') words = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
    else if (word === 'i32') words = data instanceof Int32Array ? data : Int32Array.from(data as ArrayLike<number>);
    else words = Uint32Array.from(data as ArrayLike<number>, (v) => (v ? 1 : 0));
    const out = this.alloc(data.length);
    this.upload(out.slab, words);
    return out;
  }

  full(size: number, dtype: DType, value: number): BackendBuffer {
    const word = wordOf(dtype);
    const bits = word === 'f32' ? floatBits(value) : word === 'i32' ? value | 0 : value ? 1 : 0;
    const out = this.alloc(size);
    this.fill(out.slab, size, bits);
    return out;
  }

  private fill(slab: Slab, n: number, bits: number): void {
    if (n === 0) return;
    this.dispatch(this.kernel('elementwise/fill'), [n, bits], [slab], this.grid(Math.ceil(n / 256)));
  }

  private acquireStaging(bytes: number): GPUBuffer {
    const cls = sizeClass(bytes);
    return this.staging.get(cls)?.pop() ?? this.device.createBuffer({ size: cls, usage: USAGE.MAP_READ | USAGE.COPY_DST });
  }

  private releaseStaging(b: GPUBuffer): void {
    if (this.destroyed) {
      b.destroy();
      return;
    }
    let list = this.staging.get(b.size);
    if (!list) this.staging.set(b.size, (list = []));
    list.push(b);
  }

  async read(buf: BackendBuffer, dtype: DType, size: number): Promise<TypedArray> {
    this.check();
    const slab = this.own(buf, 'read');
    const word = wordOf(dtype);
    const bytes = size * 4;
    const checkErr = this.errPending;
    if (size === 0 && !checkErr) {
      this.flush();
      return dtype === 'float32' ? new Float32Array(0) : dtype === 'int32' ? new Int32Array(0) : new Uint8Array(0);
    }
    const total = bytes + (checkErr ? 16 : 0);
    const staging = this.acquireStaging(total);
    const enc = this.copyEncoder();
    if (bytes > 0) enc.copyBufferToBuffer(slab.gpu, 0, staging, 0, bytes);
    if (checkErr) {
      // The flag travels in the same readback, so checking it costs no extra round trip.
      enc.copyBufferToBuffer(this.errBuffer, 0, staging, bytes, 16);
      enc.clearBuffer(this.errBuffer);
      this.errPending = false;
    }
    this.flush();
    try {
      await staging.mapAsync(MAP_READ, 0, total);
    } catch (e) {
      this.check();
      throw e;
    }
    const mapped = staging.getMappedRange(0, total);
    let out: TypedArray;
    if (word === 'f32') out = new Float32Array(mapped.slice(0, bytes));
    else if (word === 'i32') out = new Int32Array(mapped.slice(0, bytes));
    else out = Uint8Array.from(new Uint32Array(mapped, 0, size), (v) => (v ? 1 : 0));
    const err = checkErr ? new Int32Array(mapped.slice(bytes, bytes + 16)) : null;
    staging.unmap();
    this.releaseStaging(staging);
    this.checkGpuError();
    if (err && err[0] !== 0) throw new Error(`gather: index ${err[1]} out of range [0, ${err[2]})`);
    return out;
  }

  // ---------------------------------------------------------------- elementwise

  unary(op: UnaryOp, x: BufferView): BackendBuffer {
    const src = this.own(x.buf, 'unary');
    const word = wordOf(x.dtype);
    let expr: string | undefined;
    if (op === 'not') {
      if (x.dtype !== 'bool') throw new Error(`unary: 'not' expects bool, got ${x.dtype}`);
      expr = 'select(1u, 0u, x != 0u)';
    } else if (word === 'f32') expr = UNARY_F32[op];
    else if (word === 'i32') expr = UNARY_I32[op];
    if (expr === undefined) throw new Error(`unary: '${op}' is not defined on ${x.dtype}`);
    return this.map1(src, sizeOf(x.shape), word, word, expr);
  }

  private map1(src: Slab, n: number, from: Word, to: Word, expr: string): WebGpuBuffer {
    const out = this.alloc(n);
    if (n > 0) {
      const k = this.kernel('elementwise/unary', { X: from, O: to, EXPR: expr });
      this.dispatch(k, [n], [out.slab, src], this.grid(Math.ceil(n / 256)));
    }
    return out;
  }

  binary(op: BinaryOp | CompareOp | LogicalOp, a: BufferView, b: BufferView, outShape: Shape): BackendBuffer {
    const sa = this.own(a.buf, 'binary');
    const sb = this.own(b.buf, 'binary');
    if (a.dtype !== b.dtype) throw new Error(`binary: '${op}' dtypes differ (${a.dtype} vs ${b.dtype})`);
    const word = wordOf(a.dtype);
    let expr: string | undefined;
    let outWord: Word = word;
    if (op in COMPARE) {
      expr = `select(0u, 1u, ${COMPARE[op as CompareOp]})`;
      outWord = 'u32';
    } else if (op in LOGICAL) {
      if (a.dtype !== 'bool') throw new Error(`binary: '${op}' expects bool inputs, got ${a.dtype} and ${b.dtype}`);
      expr = `select(0u, 1u, ${LOGICAL[op as LogicalOp]})`;
      outWord = 'u32';
    } else {
      expr = ARITH[op as BinaryOp]?.[word];
    }
    if (expr === undefined) throw new Error(`binary: '${op}' is not supported on ${a.dtype} by the WebGPU backend`);
    const n = sizeOf(outShape);
    const out = this.alloc(n);
    if (n === 0) return out;
    const strided = sizeOf(a.shape) !== n || sizeOf(b.shape) !== n;
    const k = this.kernel('elementwise/binary', { X: word, O: outWord, EXPR: expr, STRIDED: strided });
    const params = [n, 0, 0, 0];
    if (strided) {
      const c = collapseDims(outShape, [broadcastStrides(a.shape, outShape), broadcastStrides(b.shape, outShape)]);
      this.checkRank('binary', c.shape.length, 3);
      params[1] = c.shape.length;
      params.push(...c.shape, ...c.strides[0]!, ...c.strides[1]!);
    }
    this.dispatch(k, params, [out.slab, sa, sb], this.grid(Math.ceil(n / 256)));
    return out;
  }

  private checkRank(op: string, rank: number, vectors: number, header = 4): void {
    if (header + vectors * rank > PARAM_WORDS) {
      throw new Error(`${op}: rank ${rank} after merging contiguous dims exceeds what the WebGPU kernel supports`);
    }
  }

  where(cond: BufferView, a: BufferView, b: BufferView, outShape: Shape): BackendBuffer {
    const sc = this.own(cond.buf, 'where');
    const sa = this.own(a.buf, 'where');
    const sb = this.own(b.buf, 'where');
    if (cond.dtype !== 'bool') throw new Error(`where: condition must be bool, got ${cond.dtype}`);
    if (a.dtype !== b.dtype) throw new Error(`where: branch dtypes differ (${a.dtype} vs ${b.dtype})`);
    wordOf(a.dtype);
    const n = sizeOf(outShape);
    const out = this.alloc(n);
    if (n === 0) return out;
    const c = collapseDims(outShape, [
      broadcastStrides(cond.shape, outShape), broadcastStrides(a.shape, outShape), broadcastStrides(b.shape, outShape),
    ]);
    this.checkRank('where', c.shape.length, 4);
    const params = [n, c.shape.length, 0, 0, ...c.shape, ...c.strides[0]!, ...c.strides[1]!, ...c.strides[2]!];
    this.dispatch(this.kernel('elementwise/where'), params, [out.slab, sc, sa, sb], this.grid(Math.ceil(n / 256)));
    return out;
  }

  cast(x: BufferView, dtype: DType): BackendBuffer {
    const src = this.own(x.buf, 'cast');
    const from = wordOf(x.dtype);
    const to = wordOf(dtype);
    let expr: string;
    if (from === to) expr = 'x';
    else if (to === 'u32') expr = from === 'f32' ? 'select(0u, 1u, x != 0.0 || isNan(x))' : 'select(0u, 1u, x != 0)';
    // NaN → 0 as on the CPU; out-of-range values saturate here but wrap on the CPU.
    else if (to === 'i32') expr = from === 'f32' ? 'select(i32(x), 0, isNan(x))' : 'i32(x)';
    else expr = 'f32(x)';
    return this.map1(src, sizeOf(x.shape), from, to, expr);
  }

  // ---------------------------------------------------------------- reductions

  reduce(op: ReduceOp, x: BufferView, axes: readonly number[]): BackendBuffer {
    const src = this.own(x.buf, 'reduce');
    const word = wordOf(x.dtype);
    const shape = x.shape;
    for (const a of axes) {
      if (!Number.isInteger(a) || a < 0 || a >= shape.length) throw new Error(`reduce: axis ${a} is out of range for rank ${shape.length}`);
    }
    const isArg = op === 'argmax' || op === 'argmin';
    if (isArg && axes.length !== 1) throw new Error(`reduce: ${op} takes exactly one axis, got [${axes.join(',')}]`);
    let nOut = 1;
    let R = 1;
    shape.forEach((d, i) => (axes.includes(i) ? (R *= d) : (nOut *= d)));
    const out = this.alloc(nOut);
    if (nOut === 0) return out;
    if (R === 0) {
      if (isArg) throw new Error(`reduce: ${op} over an axis of size 0`);
      const id = op === 'sum' || word === 'u32' ? 0 : op === 'max' ? -Infinity : Infinity;
      this.fill(out.slab, nOut, word === 'f32' ? floatBits(id) : word === 'u32' ? (op === 'min' ? 1 : 0) : id > 0 ? 0x7fffffff : id < 0 ? 0x80000000 : 0);
      return out;
    }
    // Kept and reduced dims, each merged where contiguous in the input.
    const strides = stridesOf(shape);
    const kept: number[][] = [[], []];
    const red: number[][] = [[], []];
    shape.forEach((d, i) => {
      if (d === 1) return;
      const list = axes.includes(i) ? red : kept;
      const last = list[0]!.length - 1;
      if (last >= 0 && list[1]![last] === strides[i]! * d) {
        list[0]![last] *= d;
        list[1]![last] = strides[i]!;
      } else {
        list[0]!.push(d);
        list[1]!.push(strides[i]!);
      }
    });
    if (4 + 2 * kept[0]!.length + 2 * red[0]!.length > PARAM_WORDS) throw new Error(`reduce: rank ${shape.length} too large for the WebGPU kernel`);
    const params = [nOut, R, kept[0]!.length, red[0]!.length, ...kept[0]!, ...kept[1]!, ...red[0]!, ...red[1]!];
    const defs = reduceDefs(op, word);
    const perThread = R <= 64 || (nOut >= 16384 && R <= 1024);
    if (perThread) {
      this.dispatch(this.kernel('reduce/thread', defs), params, [out.slab, src], this.grid(Math.ceil(nOut / 256)));
    } else {
      this.dispatch(this.kernel('reduce/rows', defs), params, [out.slab, src], this.grid(nOut));
    }
    return out;
  }

  // ---------------------------------------------------------------- matmul

  matmul(a: BufferView, b: BufferView, transA: boolean, transB: boolean, batchShape: Shape): BackendBuffer {
    const sa = this.own(a.buf, 'matmul');
    const sb = this.own(b.buf, 'matmul');
    if (a.dtype !== 'float32' || b.dtype !== 'float32') throw new Error(`matmul: expects float32 inputs, got ${a.dtype} and ${b.dtype}`);
    const ra = a.shape.length;
    const rb = b.shape.length;
    if (ra < 2 || rb < 2) throw new Error(`matmul: inputs need rank ≥ 2 (${fmtShape(a.shape)} · ${fmtShape(b.shape)})`);
    const M = transA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
    const K = transA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
    const Kb = transB ? b.shape[rb - 1]! : b.shape[rb - 2]!;
    const N = transB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
    if (K !== Kb) throw new Error(`matmul: inner dimensions differ (${fmtShape(a.shape)} · ${fmtShape(b.shape)})`);
    const Z = sizeOf(batchShape);
    const out = this.alloc(Z * M * N);
    if (Z * M * N === 0) return out;
    if (K === 0) {
      this.fill(out.slab, Z * M * N, 0);
      return out;
    }
    const batchStrides = (shape: Shape, mat: number): number[] => {
      const dims = shape.slice(0, -2);
      const s = broadcastStrides(dims, batchShape);
      return s.map((v) => v * mat);
    };
    const c = collapseDims(batchShape, [batchStrides(a.shape, M * K), batchStrides(b.shape, K * N), stridesOf(batchShape)]);
    if (8 + 3 * c.shape.length > PARAM_WORDS) throw new Error(`matmul: batch rank ${batchShape.length} too large for the WebGPU kernel`);
    const tail = [...c.shape, ...c.strides[0]!, ...c.strides[1]!];
    const gemv = M === 1;
    const t = this.tile;
    const tm = t.tm ?? 4;
    // vec4 loads need every contiguous row of both operands to be whole vec4s.
    const vec4 = (transA ? M : K) % 4 === 0 && (transB ? K : N) % 4 === 0 && t.bk % 4 === 0;
    const k = gemv
      ? this.kernel('matmul/gemv', { TRANS_A: false, TRANS_B: transB })
      : vec4
        ? this.matmulVariant === 'direct'
          ? this.kernel('matmul/direct4', { TRANS_A: transA, TRANS_B: transB, WX: t.wx, WY: t.wy, TM: tm })
          : this.kernel('matmul/tiled4', { TRANS_A: transA, TRANS_B: transB, WX: t.wx, WY: t.wy, BK: t.bk, TM: tm })
        : this.kernel('matmul/tiled', { TRANS_A: transA, TRANS_B: transB, WX: t.wx, WY: t.wy, BK: t.bk });
    const gx = gemv ? Math.ceil(N / 256) : Math.ceil(N / (4 * t.wx));
    const gy = gemv ? 1 : Math.ceil(M / ((vec4 ? tm : 4) * t.wy));
    if (gx > MAX_GROUPS || gy > MAX_GROUPS) throw new Error(`matmul: output [${M},${N}] too large for one dispatch`);
    for (let z0 = 0; z0 < Z; z0 += MAX_GROUPS) {
      const gz = Math.min(MAX_GROUPS, Z - z0);
      this.dispatch(k, [M, N, K, c.shape.length, z0, 0, 0, 0, ...tail], [out.slab, sa, sb], [gx, gy, gz]);
    }
    return out;
  }

  // ---------------------------------------------------------------- fused kernels

  runFused(kernel: FusedKernel, inputs: readonly BackendBuffer[]): BackendBuffer[] {
    const ins = inputs.map((b) => this.own(b, 'runFused'));
    const outs = kernel.outputs.map((o) => this.alloc(fusedOutputSize(kernel, o)));
    if (kernel.shape.some((d) => d === 0)) {
      kernel.outputs.forEach((o, j) => {
        if (o.reduce) this.fill(outs[j]!.slab, fusedOutputSize(kernel, o), 0);
      });
      return outs;
    }
    const key = `fused:${fusedKernelKey(kernel)}`;
    let entry = this.fused.get(key);
    if (!entry) entry = this.compileGenerated(key, fusedKernelWgsl(kernel));
    this.dispatchGenerated(entry, outs, ins);
    return outs;
  }

  /** Phased kernels (jit's row fusion): one dispatch for a reduction and the kernels that use its rows. */
  runPhased(kernel: PhasedKernel, inputs: readonly BackendBuffer[]): BackendBuffer[] {
    const ins = inputs.map((b) => this.own(b, 'runPhased'));
    if (kernel.shape.some((d) => d === 0)) throw new Error('webgpu: a phased kernel over an empty space (jit does not make them)');
    const outs = kernel.written.map(([p, o]) => this.alloc(phasedOutputSize(kernel, p, o)));
    const key = `phased:${phasedKernelKey(kernel)}`;
    let entry = this.fused.get(key);
    if (!entry) entry = this.compileGenerated(key, phasedKernelWgsl(kernel));
    this.dispatchGenerated(entry, outs, ins);
    return outs;
  }

  /** dynamicUpdateSlice whose update is an elementwise kernel: the kernel writes into the result directly. */
  runFusedInto(kernel: FusedKernel, inputs: readonly BackendBuffer[], x: BufferView, index: BufferView, into: FusedInto, reuse: boolean): BackendBuffer {
    const ins = inputs.map((b) => this.own(b, 'runFusedInto'));
    const idx = this.own(index.buf, 'runFusedInto');
    if (index.dtype !== 'int32') throw new Error(`dynamicUpdateSlice: index must be int32, got ${index.dtype}`);
    const out = this.updateTarget(x, reuse, 'runFusedInto');
    if (kernel.shape.some((d) => d === 0)) return out;
    const key = `into:${fusedKernelKey(kernel)}|${fusedIntoKey(into)}`;
    let entry = this.fused.get(key);
    if (!entry) entry = this.compileGenerated(key, fusedKernelWgsl(kernel, into));
    this.dispatchGenerated(entry, [out], [...ins, idx]);
    return out;
  }

  /** Independent elementwise kernels and fused updates (jit's horizontal fusion) as one dispatch. */
  runHorizontal(members: readonly HorizontalMember[]): BackendBuffer[][] {
    const outs: WebGpuBuffer[][] = members.map((m) => {
      if (!m.into) return m.kernel.outputs.map((o) => this.alloc(fusedOutputSize(m.kernel, o)));
      if (m.into.index.dtype !== 'int32') throw new Error(`dynamicUpdateSlice: index must be int32, got ${m.into.index.dtype}`);
      return [this.updateTarget(m.into.x, m.into.reuse, 'runHorizontal')];
    });
    // Bindings: every output, then each distinct input buffer once.
    const slabs: Slab[] = [];
    const words: Word[] = [];
    const writable: boolean[] = [];
    const bind = (slab: Slab, w: Word, write: boolean): number => {
      const k = slabs.indexOf(slab);
      if (k >= 0) {
        if (write || writable[k] || words[k] !== w) throw new Error('internal: a horizontal kernel would bind one buffer twice in conflicting ways');
        return k;
      }
      slabs.push(slab);
      words.push(w);
      writable.push(write);
      return slabs.length - 1;
    };
    const outBindings = members.map((m, j) => outs[j]!.map((o, q) => bind(o.slab, wordOf(m.kernel.outputs[q]!.dtype), true)));
    const parts: HorizontalPart[] = members.map((m, j) => ({
      kernel: m.kernel,
      ...(m.into ? { into: m.into.spec } : {}),
      outputs: outBindings[j]!,
      inputs: m.inputs.map((b, q) => bind(this.own(b, 'runHorizontal'), wordOf(m.kernel.inputs[q]!.dtype), false)),
      index: m.into ? bind(this.own(m.into.index.buf, 'runHorizontal'), 'i32', false) : -1,
    }));
    const key = `horizontal:${parts.map((p) => `${fusedKernelKey(p.kernel)}${p.into ? `|${fusedIntoKey(p.into)}` : ''}@${p.outputs}/${p.inputs}/${p.index}`).join('||')}`;
    let entry = this.fused.get(key);
    if (!entry) entry = this.compileGenerated(key, horizontalWgsl(parts, words, writable));
    if (entry.gen.invocations > 0) this.dispatch(entry.kernel, [entry.gen.invocations], slabs, this.grid(Math.ceil(entry.gen.invocations / 256)));
    return outs;
  }

  private compileGenerated(key: string, gen: FusedWgsl): { kernel: Kernel; gen: FusedWgsl } {
    const code = `${WGSL['common']}\n${gen.code}`;
    const pipeline = this.device.createComputePipeline({
      layout: 'auto', compute: { module: this.device.createShaderModule({ code, label: key }), entryPoint: 'main' }, label: key,
    });
    const entry = { kernel: { pipeline, layout: pipeline.getBindGroupLayout(0) }, gen };
    this.fused.set(key, entry);
    return entry;
  }

  private dispatchGenerated(entry: { kernel: Kernel; gen: FusedWgsl }, outs: readonly { slab: Slab }[], ins: readonly Slab[]): void {
    const { gen } = entry;
    const groups = gen.groupPerOutput ? gen.invocations : Math.ceil(gen.invocations / gen.workgroupSize);
    this.dispatch(entry.kernel, [gen.invocations], [...outs.map((o) => o.slab), ...ins], this.grid(groups));
  }

  // ---------------------------------------------------------------- movement

  /** out[outOff + Σ i·outStrides] = in[inOff + Σ i·inStrides] over `shape`. */
  private copy(dst: Slab, src: Slab, shape: readonly number[], inOff: number, inStrides: readonly number[], outOff: number, outStrides: readonly number[]): void {
    const n = sizeOf(shape);
    if (n === 0) return;
    const c = collapseDims(shape, [inStrides, outStrides]);
    this.checkRank('copy', c.shape.length, 3);
    const params = [n, c.shape.length, inOff, outOff, ...c.shape, ...c.strides[0]!, ...c.strides[1]!];
    this.dispatch(this.kernel('movement/copy'), params, [dst, src], this.grid(Math.ceil(n / 256)));
  }

  transpose(x: BufferView, perm: readonly number[]): BackendBuffer {
    const src = this.own(x.buf, 'transpose');
    const xs = stridesOf(x.shape);
    const shape = perm.map((p) => x.shape[p]!);
    const out = this.alloc(sizeOf(shape));
    this.copy(out.slab, src, shape, 0, perm.map((p) => xs[p]!), 0, stridesOf(shape));
    return out;
  }

  broadcastTo(x: BufferView, shape: Shape): BackendBuffer {
    const src = this.own(x.buf, 'broadcastTo');
    const out = this.alloc(sizeOf(shape));
    this.copy(out.slab, src, shape, 0, broadcastStrides(x.shape, shape), 0, stridesOf(shape));
    return out;
  }

  slice(x: BufferView, starts: readonly number[], sizes: readonly number[]): BackendBuffer {
    const src = this.own(x.buf, 'slice');
    const xs = stridesOf(x.shape);
    const out = this.alloc(sizeOf(sizes));
    let off = 0;
    starts.forEach((s, i) => (off += s * xs[i]!));
    this.copy(out.slab, src, sizes, off, xs, 0, stridesOf(sizes));
    return out;
  }

  pad(x: BufferView, before: readonly number[], after: readonly number[]): BackendBuffer {
    const src = this.own(x.buf, 'pad');
    const shape = x.shape.map((d, i) => before[i]! + d + after[i]!);
    const n = sizeOf(shape);
    const out = this.alloc(n);
    if (n !== sizeOf(x.shape)) this.fill(out.slab, n, 0);
    const os = stridesOf(shape);
    let off = 0;
    before.forEach((b, i) => (off += b * os[i]!));
    this.copy(out.slab, src, x.shape, 0, stridesOf(x.shape), off, os);
    return out;
  }

  concat(xs: readonly BufferView[], axis: number): BackendBuffer {
    if (xs.length === 0) throw new Error('concat: no inputs');
    const first = xs[0]!.shape;
    const shape = first.slice();
    shape[axis] = xs.reduce((s, x) => s + x.shape[axis]!, 0);
    const out = this.alloc(sizeOf(shape));
    const os = stridesOf(shape);
    let at = 0;
    for (const x of xs) {
      const src = this.own(x.buf, 'concat');
      this.copy(out.slab, src, x.shape, 0, stridesOf(x.shape), at * os[axis]!, os);
      at += x.shape[axis]!;
    }
    return out;
  }

  /** copy() with a start read on the device: index clamped to [0, maxStart], times `axisStride`, added to one side. */
  private dynamicCopy(
    dst: Slab, src: Slab, index: Slab, shape: readonly number[], inStrides: readonly number[], outStrides: readonly number[],
    maxStart: number, axisStride: number, side: 'input' | 'output',
  ): void {
    const n = sizeOf(shape);
    if (n === 0) return;
    const c = collapseDims(shape, [inStrides, outStrides]);
    if (4 + 3 * c.shape.length > 60) throw new Error(`dynamicSlice: rank ${c.shape.length} after merging contiguous dims exceeds what the WebGPU kernel supports`);
    const params = new Array<number>(63).fill(0);
    [n, c.shape.length, 0, 0, ...c.shape, ...c.strides[0]!, ...c.strides[1]!].forEach((v, i) => (params[i] = v));
    params[60] = maxStart;
    params[61] = axisStride;
    params[62] = side === 'input' ? 0 : 1;
    this.dispatch(this.kernel('movement/dyncopy'), params, [dst, src, index], this.grid(Math.ceil(n / 256)));
  }

  dynamicSlice(x: BufferView, index: BufferView, axis: number, size: number): BackendBuffer {
    const src = this.own(x.buf, 'dynamicSlice');
    const idx = this.own(index.buf, 'dynamicSlice');
    if (index.dtype !== 'int32') throw new Error(`dynamicSlice: index must be int32, got ${index.dtype}`);
    const xs = stridesOf(x.shape);
    const sizes = x.shape.map((d, i) => (i === axis ? size : d));
    const out = this.alloc(sizeOf(sizes));
    this.dynamicCopy(out.slab, src, idx, sizes, xs, stridesOf(sizes), x.shape[axis]! - size, xs[axis]!, 'input');
    return out;
  }

  dynamicUpdateSlice(x: BufferView, update: BufferView, index: BufferView, axis: number, reuse: boolean): BackendBuffer {
    const src = this.own(x.buf, 'dynamicUpdateSlice');
    const upd = this.own(update.buf, 'dynamicUpdateSlice');
    const idx = this.own(index.buf, 'dynamicUpdateSlice');
    if (index.dtype !== 'int32') throw new Error(`dynamicUpdateSlice: index must be int32, got ${index.dtype}`);
    const xs = stridesOf(x.shape);
    const out = this.updateTarget(x, reuse, 'dynamicUpdateSlice');
    this.dynamicCopy(out.slab, upd, idx, update.shape, stridesOf(update.shape), xs, x.shape[axis]! - update.shape[axis]!, xs[axis]!, 'output');
    return out;
  }

  /** Where a dynamicUpdateSlice of x writes: x's buffer itself when it may be reused, else a copy of x. */
  private updateTarget(x: BufferView, reuse: boolean, op: string): WebGpuBuffer {
    const src = this.own(x.buf, op);
    if (reuse) return x.buf as WebGpuBuffer;
    const xs = stridesOf(x.shape);
    const out = this.alloc(sizeOf(x.shape));
    this.copy(out.slab, src, x.shape, 0, xs, 0, xs);
    return out;
  }

  gather(x: BufferView, indices: BufferView, axis: number): BackendBuffer {
    const src = this.own(x.buf, 'gather');
    const idx = this.own(indices.buf, 'gather');
    if (indices.dtype !== 'int32') throw new Error(`gather: indices must be int32, got ${indices.dtype}`);
    wordOf(x.dtype);
    const pre = sizeOf(x.shape.slice(0, axis));
    const D = x.shape[axis]!;
    const post = sizeOf(x.shape.slice(axis + 1));
    const J = sizeOf(indices.shape);
    const n = pre * J * post;
    const out = this.alloc(n);
    if (n === 0) return out;
    if (D === 0) throw new Error(`gather: index out of range [0, 0) (axis ${axis} of ${fmtShape(x.shape)} is empty)`);
    this.dispatch(this.kernel('gather/take'), [n, D, J, post], [out.slab, src, idx, this.errBuffer], this.grid(Math.ceil(n / 256)));
    this.errPending = true;
    return out;
  }

  scatterAdd(updates: BufferView, indices: BufferView, axis: number, outShape: Shape): BackendBuffer {
    const upd = this.own(updates.buf, 'scatterAdd');
    const idx = this.own(indices.buf, 'scatterAdd');
    if (indices.dtype !== 'int32') throw new Error(`scatterAdd: indices must be int32, got ${indices.dtype}`);
    const word = wordOf(updates.dtype);
    if (word === 'u32') throw new Error('scatterAdd: bool updates are not supported');
    const pre = sizeOf(outShape.slice(0, axis));
    const D = outShape[axis]!;
    const post = sizeOf(outShape.slice(axis + 1));
    const J = sizeOf(indices.shape);
    const n = pre * D * post;
    if (sizeOf(updates.shape) !== pre * J * post) {
      throw new Error(`scatterAdd: updates ${fmtShape(updates.shape)} do not match outShape ${fmtShape(outShape)} with ${J} indices on axis ${axis}`);
    }
    const out = this.alloc(n);
    if (n === 0) return out;
    const grid = this.grid(Math.ceil(n / 256));
    if (J <= this.scatterDirectMax || pre * post === 0) {
      this.dispatch(this.kernel('scatter/direct', { T: word }), [n, D, J, post], [out.slab, upd, idx], grid);
      if (J > 0 && pre * post > 0) this.checkIndicesLater(idx, J, D);
      return out;
    }
    const counts = this.alloc(D);
    const offsets = this.alloc(D + 1);
    const perm = this.alloc(J);
    this.fill(counts.slab, D, 0);
    const jGrid = this.grid(Math.ceil(J / 256));
    this.dispatch(this.kernel('scatter/count'), [J, D], [counts.slab, idx, this.errBuffer], jGrid);
    this.errPending = true;
    this.dispatch(this.kernel('scatter/scan'), [D], [offsets.slab, counts.slab], [1, 1, 1]);
    this.dispatch(this.kernel('scatter/fill'), [J, D], [perm.slab, idx, offsets.slab, counts.slab], jGrid);
    this.dispatch(this.kernel('scatter/sort'), [D], [perm.slab, offsets.slab], this.grid(Math.ceil(D / 256)));
    this.dispatch(this.kernel('scatter/sum', { T: word }), [n, D, J, post], [out.slab, upd, perm.slab, offsets.slab], grid);
    // Later commands in the same encoder run after these, so the temporaries can be recycled now.
    this.free(counts);
    this.free(offsets);
    this.free(perm);
    return out;
  }

  /** The direct scatter path skips bad indices silently; this records them like gather does. */
  private checkIndicesLater(idx: Slab, J: number, D: number): void {
    const counts = this.alloc(Math.max(D, 1));
    this.dispatch(this.kernel('scatter/count'), [J, D], [counts.slab, idx, this.errBuffer], this.grid(Math.ceil(J / 256)));
    this.errPending = true;
    this.free(counts);
  }

  randomUniform(key: readonly [number, number], size: number, dtype: DType): BackendBuffer {
    if (dtype !== 'float32') throw new Error(`randomUniform: dtype ${dtype} is not supported by the WebGPU backend (float32 only)`);
    const out = this.alloc(size);
    if (size === 0) return out;
    this.dispatch(this.kernel('random/uniform'), [size, key[0] >>> 0, key[1] >>> 0], [out.slab], this.grid(Math.ceil(size / 512)));
    return out;
  }
}

function reduceDefs(op: ReduceOp, word: Word): Record<string, string> {
  const T = word;
  const nanCheck = word === 'f32';
  // Bools reduce as u32 0/1; their "sum" is "any" (as on the CPU), i.e. max.
  const eff = word === 'u32' && op === 'sum' ? 'max' : op;
  const lowest = word === 'f32' ? '-infF()' : word === 'i32' ? 'i32(-2147483647 - 1)' : '0u';
  const highest = word === 'f32' ? 'infF()' : word === 'i32' ? '2147483647' : '1u';
  const nanFirst = nanCheck ? 'if (isNan(a.v)) { return a; } if (isNan(b.v)) { return b; }' : '';
  switch (eff) {
    case 'sum':
      return { T, O: T, IDENTITY: `${T}(0)`, COMBINE: 'return S(a.v + b.v, 0);', RESULT: 's.v' };
    case 'max':
    case 'min':
      return {
        T, O: T, IDENTITY: eff === 'max' ? lowest : highest,
        COMBINE: `${nanFirst} return S(${eff}(a.v, b.v), 0);`, RESULT: 's.v',
      };
    default: {
      const better = op === 'argmax' ? '>' : '<';
      // i < 0 marks the empty state, which must lose even to an equal value (all -inf rows).
      const nan = nanCheck
        ? 'let an = isNan(a.v); let bn = isNan(b.v); if (an || bn) { if (an && (!bn || a.i < b.i)) { return a; } return b; }'
        : '';
      return {
        T, O: 'i32', IDENTITY: op === 'argmax' ? lowest : highest,
        COMBINE: `if (a.i < 0) { return b; } if (b.i < 0) { return a; } ${nan} if (b.v ${better} a.v || (b.v == a.v && b.i < a.i)) { return b; } return a;`,
        RESULT: 's.i',
      };
    }
  }
}

/** Fills a kernel template's {{NAME}} placeholders; the common prelude goes first. */
export function instantiate(name: string, defs: Record<string, string | number | boolean>): string {
  const body = WGSL[name];
  if (body === undefined) throw new Error(`webgpu: no shader named '${name}'`);
  const code = `${WGSL['common']}\n${body}`.replace(/\{\{(\w+)\}\}/g, (_, key: string) => {
    const v = defs[key];
    if (v === undefined) throw new Error(`webgpu: shader '${name}' needs a value for {{${key}}}`);
    return String(v);
  });
  return code;
}

const DEFAULT_PRECOMPILE: [string, Record<string, string | number | boolean>][] = [
  ['elementwise/fill', {}],
  ['movement/copy', {}],
];
