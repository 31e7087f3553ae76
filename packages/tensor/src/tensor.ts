/**
 * Tensors and their lifetime.
 *
 * A Tensor is an immutable view (shape, dtype) of reference-counted backend storage.
 * Lifetimes are explicit: `dispose()` drops the tensor's own reference, and the storage is
 * freed as soon as no tensor or autodiff tape holds it. Nothing is left to the garbage
 * collector, and nothing depends on async context, so lifetimes are safe across `await`.
 * `scope(fn)` (for synchronous fn) disposes every tensor fn created except those it returns.
 */
import type { Backend, BackendBuffer, BufferView } from './backend.js';
import { allocTyped, type DType, type TypedArray } from './dtype.js';
import { fmtShape, type Shape, sizeOf, stridesOf } from './shape.js';

/** Backend storage shared by a tensor and its reshapes, tapes and aliases. */
export class Storage {
  rc = 1;
  constructor(readonly backend: Backend, readonly buf: BackendBuffer) {}
  retain(): void {
    if (this.rc <= 0) throw new Error('internal: retain of freed storage');
    this.rc++;
  }
  release(): void {
    if (this.rc <= 0) throw new Error('internal: release of freed storage');
    if (--this.rc === 0) this.backend.free(this.buf);
  }
}

/** Per-trace autodiff data attached to a tensor (see autodiff.ts). */
export interface AdSlot {
  traceId: number;
  /** Reverse mode: the tape node that produced this tensor. */
  node?: unknown;
  /** Forward mode: this tensor's tangent. */
  tangent?: Tensor;
}

let nextTensorId = 1;

export class Tensor {
  readonly id = nextTensorId++;
  readonly shape: readonly number[];
  readonly size: number;
  /** @internal */ _storage: Storage;
  /** @internal */ _owned = true;
  /** @internal autodiff slots, innermost last; empty outside transformations. */
  _ad: AdSlot[] | undefined;

  /** @internal Use the creation functions (`tensor`, `zeros`, ...) instead. */
  constructor(storage: Storage, shape: Shape, readonly dtype: DType) {
    this._storage = storage;
    this.shape = Object.freeze([...shape]);
    this.size = sizeOf(shape);
    registerInScope(this);
  }

  get backend(): Backend {
    return this._storage.backend;
  }
  get rank(): number {
    return this.shape.length;
  }
  /** True once this tensor's storage has been freed. */
  get isDisposed(): boolean {
    return this._storage.rc <= 0;
  }

  /** @internal The buffer, for kernels; throws if the tensor was disposed. */
  view(op: string): BufferView {
    if (this._storage.rc <= 0) {
      throw new Error(`${op}: input tensor ${fmtShape(this.shape)} ${this.dtype} has been disposed`);
    }
    return { buf: this._storage.buf, shape: this.shape, dtype: this.dtype };
  }

  /** Drop this tensor's reference. Idempotent; storage still used by a tape stays alive. */
  dispose(): void {
    if (!this._owned) return;
    this._owned = false;
    this._storage.release();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** The elements as a fresh typed array (Float32Array, Float64Array, Int32Array, or Uint8Array for bool). */
  async data(): Promise<TypedArray> {
    const v = this.view('data');
    return this.backend.read(v.buf, this.dtype, this.size);
  }

  /** Synchronous read where the backend allows it (the CPU backend). */
  dataSync(): TypedArray {
    const v = this.view('dataSync');
    if (!this.backend.readSync) {
      throw new Error(`dataSync: the ${this.backend.name} backend reads asynchronously; use await t.data()`);
    }
    return this.backend.readSync(v.buf, this.dtype, this.size);
  }

  /** Nested arrays (numbers; booleans for bool); a scalar tensor gives a number. */
  async toArray(): Promise<NestedArray> {
    return toNested(await this.data(), this.shape, this.dtype);
  }

  /** The single element of a size-1 tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item: tensor has ${this.size} elements (shape ${fmtShape(this.shape)}), expected 1`);
    return (await this.data())[0]!;
  }

  toString(): string {
    return `Tensor(${fmtShape(this.shape)}, ${this.dtype}, ${this.backend.name})`;
  }
}

export type NestedArray = number | boolean | NestedArray[];

function toNested(data: TypedArray, shape: Shape, dtype: DType): NestedArray {
  const strides = stridesOf(shape);
  const conv = dtype === 'bool' ? (v: number) => v !== 0 : (v: number) => v;
  const rec = (dim: number, off: number): NestedArray => {
    if (dim === shape.length) return conv(data[off]!);
    const out: NestedArray[] = [];
    for (let i = 0; i < shape[dim]!; i++) out.push(rec(dim + 1, off + i * strides[dim]!));
    return out;
  };
  return rec(0, 0);
}

// ---------------------------------------------------------------------------------------
// Default backend

let defaultBackend: Backend | undefined;
let defaultBackendFactory: (() => Backend) | undefined;

/** Set the backend new tensors go to when no `backend` option is given. */
export function setDefaultBackend(backend: Backend): void {
  defaultBackend = backend;
}

/** @internal Used by index.ts to install the CPU backend lazily. */
export function setDefaultBackendFactory(f: () => Backend): void {
  defaultBackendFactory = f;
}

export function getDefaultBackend(): Backend {
  if (!defaultBackend) {
    if (!defaultBackendFactory) throw new Error('no default backend');
    defaultBackend = defaultBackendFactory();
  }
  return defaultBackend;
}

/** Wrap a freshly computed backend buffer as a new tensor (takes ownership). */
export function fromBuffer(backend: Backend, buf: BackendBuffer, shape: Shape, dtype: DType): Tensor {
  return new Tensor(new Storage(backend, buf), shape, dtype);
}

/** A new tensor object sharing `t`'s storage (reshape, aliasing for autodiff). */
export function alias(t: Tensor, shape: Shape = t.shape): Tensor {
  t.view('alias');
  t._storage.retain();
  return new Tensor(t._storage, shape, t.dtype);
}

export function typedFor(dtype: DType, size: number): TypedArray {
  return allocTyped(dtype, size);
}

// ---------------------------------------------------------------------------------------
// Scopes

type ScopeFrame = Set<Tensor>;
const scopeStack: ScopeFrame[] = [];

function registerInScope(t: Tensor): void {
  const top = scopeStack[scopeStack.length - 1];
  if (top) top.add(t);
}

/** @internal Open a scope frame; pair with `closeScope`. */
export function openScope(): ScopeFrame {
  const f: ScopeFrame = new Set();
  scopeStack.push(f);
  return f;
}

/**
 * Close a frame: dispose every tensor it registered except `keep`, which move to the
 * enclosing frame (or become the caller's when there is none).
 */
export function closeScope(frame: ScopeFrame, keepList: Iterable<Tensor>): void {
  const top = scopeStack.pop();
  if (top !== frame) throw new Error('internal: scopes closed out of order');
  const kept = new Set(keepList);
  for (const t of frame) if (!kept.has(t)) t.dispose();
  const parent = scopeStack[scopeStack.length - 1];
  if (parent) for (const t of kept) if (frame.has(t)) parent.add(t);
}

/** Remove a tensor from every open scope: the caller now owns it and must dispose it. */
export function keep<T extends Tensor>(t: T): T {
  for (const f of scopeStack) f.delete(t);
  return t;
}

/** Number of open scopes (for tests and assertions). */
export function scopeDepth(): number {
  return scopeStack.length;
}
