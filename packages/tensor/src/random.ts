/**
 * JAX-style counter-based randomness. A key is two uint32 words held on the host; it is
 * never mutated: derive new keys with `split` or `foldIn`. Sampling runs on the tensor's
 * backend with the Threefry-2x32 rule of Backend.randomUniform, so a key gives the same
 * uniform numbers bit for bit on every backend (normal and categorical samples are built
 * from them with the backend's own log/cos, hence equal to float rounding).
 */
import type { Backend, TracingBackend } from './backend.js';
import { isFloat, type DType } from './dtype.js';
import { argmax, add, cos, log, max, mul, neg, sqrt, sub } from './ops.js';
import { checkShapeDims, fmtShape, sizeOf } from './shape.js';
import { fromBuffer, getDefaultBackend, type Tensor } from './tensor.js';
import { threefry2x32 } from './threefry.js';

/**
 * How a key inside a function `jit` traces derives from the function's key arguments, so the
 * compiled program computes the right words from whatever keys it is called with.
 */
export type KeyExpr =
  | { kind: 'words'; words: readonly [number, number] }
  | { kind: 'arg'; leaf: number }
  | { kind: 'split'; of: KeyExpr; index: number }
  | { kind: 'foldIn'; of: KeyExpr; data: number };

export class PRNGKey {
  readonly words: readonly [number, number];
  /** @internal Set by jit on key arguments while tracing, and inherited by derived keys. */
  _trace: KeyExpr | undefined;
  constructor(k0: number, k1: number, trace?: KeyExpr) {
    this.words = [k0 >>> 0, k1 >>> 0];
    this._trace = trace;
  }
  toString(): string {
    return `PRNGKey(${this.words[0]}, ${this.words[1]})`;
  }
  /** For checkpoints: the two words. */
  toJSON(): [number, number] {
    return [this.words[0], this.words[1]];
  }
  static fromJSON(w: unknown): PRNGKey {
    if (!Array.isArray(w) || w.length !== 2 || !w.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32)) {
      throw new Error(`PRNGKey.fromJSON: expected two uint32 words, got ${JSON.stringify(w)}`);
    }
    return new PRNGKey(w[0], w[1]);
  }
}

/** A key from an integer seed (0 ≤ seed < 2^53). */
export function key(seed: number): PRNGKey {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`key: seed must be a non-negative safe integer, got ${seed}`);
  return new PRNGKey(Math.floor(seed / 2 ** 32), seed >>> 0);
}

// Split and foldIn use counter high words 1 and 2; sampling uses 0, so a key's own samples
// and its children are independent streams.
export function split(k: PRNGKey, n = 2): PRNGKey[] {
  if (!Number.isInteger(n) || n < 1) throw new Error(`split: n must be a positive integer, got ${n}`);
  return Array.from({ length: n }, (_, i) => {
    const [a, b] = threefry2x32(k.words[0], k.words[1], i, 1);
    return new PRNGKey(a, b, k._trace && { kind: 'split', of: k._trace, index: i });
  });
}

export function foldIn(k: PRNGKey, data: number): PRNGKey {
  const [a, b] = threefry2x32(k.words[0], k.words[1], data >>> 0, 2);
  return new PRNGKey(a, b, k._trace && { kind: 'foldIn', of: k._trace, data: data >>> 0 });
}

/** Uniform [0, 1) floats for key `k` by the Backend.randomUniform rule (never traced by autodiff: no inputs). */
function randomUniformRaw(k: PRNGKey, shape: readonly number[], dtype: DType, backend: Backend): Tensor {
  if (!isFloat(dtype)) throw new Error(`uniform: dtype must be float, got ${dtype}`);
  if (!backend.supportsDType(dtype)) throw new Error(`uniform: the ${backend.name} backend does not support ${dtype}`);
  checkShapeDims('uniform', shape);
  const size = sizeOf(shape);
  const buf = backend.tracing
    ? (backend as TracingBackend).randomUniformKeyed(k._trace ?? { kind: 'words', words: k.words }, size, dtype)
    : backend.randomUniform(k.words, size, dtype);
  return fromBuffer(backend, buf, shape, dtype);
}

export interface RandomOptions {
  dtype?: DType;
  backend?: Backend;
}

function checkKey(op: string, k: unknown): asserts k is PRNGKey {
  if (!(k instanceof PRNGKey)) throw new Error(`${op}: expected a PRNGKey (from key(seed) or split), got ${typeof k}`);
}

/** Uniform in [minval, maxval). */
export function uniform(k: PRNGKey, shape: readonly number[], opts: RandomOptions & { minval?: number; maxval?: number } = {}): Tensor {
  checkKey('uniform', k);
  const u = randomUniformRaw(k, shape, opts.dtype ?? 'float32', opts.backend ?? getDefaultBackend());
  const lo = opts.minval ?? 0;
  const hi = opts.maxval ?? 1;
  if (lo === 0 && hi === 1) return u;
  const scaled = mul(u, hi - lo);
  u.dispose();
  const out = add(scaled, lo);
  scaled.dispose();
  return out;
}

/** Standard normal samples (Box–Muller on two independent uniform streams). */
export function normal(k: PRNGKey, shape: readonly number[], opts: RandomOptions = {}): Tensor {
  checkKey('normal', k);
  const [k1, k2] = split(k);
  const dtype = opts.dtype ?? 'float32';
  const backend = opts.backend ?? getDefaultBackend();
  const u1 = randomUniformRaw(k1!, shape, dtype, backend);
  const u2 = randomUniformRaw(k2!, shape, dtype, backend);
  const oneMinus = sub(1, u1);
  const lg = log(oneMinus);
  const r2 = mul(lg, -2);
  const r = sqrt(r2);
  const angle = mul(u2, 2 * Math.PI);
  const c = cos(angle);
  const z = mul(r, c);
  for (const t of [u1, u2, oneMinus, lg, r2, r, angle, c]) t.dispose();
  return z;
}

/** Gumbel(0, 1) noise: −log(−log u). */
export function gumbel(k: PRNGKey, shape: readonly number[], opts: RandomOptions = {}): Tensor {
  checkKey('gumbel', k);
  const u = randomUniformRaw(k, shape, opts.dtype ?? 'float32', opts.backend ?? getDefaultBackend());
  const a = log(u);
  const b = neg(a);
  const c = log(b);
  const g = neg(c);
  for (const t of [u, a, b, c]) t.dispose();
  return g;
}

/** Sample indices from softmax(logits) along `axis` (Gumbel-max), int32, with that axis removed. */
export function categorical(k: PRNGKey, logits: Tensor, axis = -1): Tensor {
  checkKey('categorical', k);
  if (logits.dtype !== 'float32' && logits.dtype !== 'float64') {
    throw new Error(`categorical: logits must be float, got ${logits.dtype} ${fmtShape(logits.shape)}`);
  }
  if (logits.backend.readSync && !logits.backend.tracing) {
    // A row with no finite logit is no distribution; argmax of it would quietly give index 0.
    const m = max(logits, axis);
    const top = m.dataSync();
    m.dispose();
    for (let i = 0; i < top.length; i++) {
      const v = top[i]!;
      if (Number.isNaN(v) || v === -Infinity) {
        throw new Error(`categorical: row ${i} of logits ${fmtShape(logits.shape)} has ${Number.isNaN(v) ? 'a NaN' : 'only −∞'} along axis ${axis}: there is nothing to sample`);
      }
    }
  }
  const g = gumbel(k, logits.shape, { dtype: logits.dtype, backend: logits.backend });
  const z = add(logits, g);
  const out = argmax(z, axis);
  g.dispose();
  z.dispose();
  return out;
}
