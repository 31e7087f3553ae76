/** Composite functions built from primitives; their gradients come from the primitives'. */
import { arange } from './creation.js';
import { isFloat } from './dtype.js';
import {
  abs, add, cast, div, equal, exp, expandDims, less, log, max, mean, mul, neg, reshape, rsqrt, sigmoid, stopGradient, sub, sum, where,
} from './ops.js';
import { fmtShape, normalizeAxis } from './shape.js';
import type { Tensor } from './tensor.js';
import { scope } from './scope.js';

function requireFloat(op: string, x: Tensor): void {
  if (!isFloat(x.dtype)) throw new Error(`${op}: expected a float tensor, got ${x.dtype} ${fmtShape(x.shape)}`);
}

/** log Σ exp(x) over axes, stable: the max is shifted out as a constant. */
export function logsumexp(x: Tensor, axes: number | readonly number[] = -1, keepdims = false): Tensor {
  requireFloat('logsumexp', x);
  return scope(() => {
    // A non-finite max (a slice of all −∞, or a +∞) is not shifted out: x − m would be NaN,
    // while log Σ exp(x) is −∞ (or +∞) there.
    const mx = max(x, axes, true);
    const m = stopGradient(where(less(abs(mx), Infinity), mx, 0));
    const s = log(sum(exp(sub(x, m)), axes, true));
    const r = add(s, m);
    if (keepdims) return r;
    const ax = (typeof axes === 'number' ? [axes] : axes).map((a) => normalizeAxis('logsumexp', a, x.rank));
    return reshape(r, x.shape.filter((_, i) => !ax.includes(i)));
  });
}

export function logSoftmax(x: Tensor, axis = -1): Tensor {
  requireFloat('logSoftmax', x);
  return scope(() => sub(x, logsumexp(x, axis, true)));
}

export function softmax(x: Tensor, axis = -1): Tensor {
  requireFloat('softmax', x);
  return scope(() => {
    const m = stopGradient(max(x, axis, true));
    const e = exp(sub(x, m));
    return div(e, sum(e, axis, true));
  });
}

/** One-hot encoding along a new last axis: out[..., k] = (labels[...] == k). */
export function oneHot(labels: Tensor, depth: number, dtype: Tensor['dtype'] = 'float32'): Tensor {
  if (labels.dtype !== 'int32') throw new Error(`oneHot: labels must be int32, got ${labels.dtype}`);
  return scope(() => {
    const classes = arange(0, depth, 1, { dtype: 'int32', backend: labels.backend });
    return cast(equal(expandDims(labels, -1), classes), dtype);
  });
}

/** x[..., labels[...]] along the last axis, differentiable in x (via a one-hot contraction). */
export function takeAlongLastAxis(x: Tensor, labels: Tensor): Tensor {
  const v = x.shape[x.rank - 1]!;
  if (labels.rank !== x.rank - 1 || labels.shape.some((d, i) => d !== x.shape[i])) {
    throw new Error(`takeAlongLastAxis: labels ${fmtShape(labels.shape)} must match ${fmtShape(x.shape)} without its last axis`);
  }
  return scope(() => sum(mul(x, oneHot(labels, v, x.dtype)), -1));
}

export type Reduction = 'mean' | 'sum' | 'none';

/**
 * Softmax cross-entropy of logits [..., V] against int32 labels [...] (class indices).
 * Labels outside [0, V) are rejected up front on backends that read synchronously (the CPU);
 * elsewhere they select nothing and contribute a loss of 0.
 */
export function crossEntropy(logits: Tensor, labels: Tensor, reduction: Reduction = 'mean'): Tensor {
  requireFloat('crossEntropy', logits);
  if (labels.dtype !== 'int32') throw new Error(`crossEntropy: labels must be int32 class indices, got ${labels.dtype}`);
  if (labels.rank !== logits.rank - 1 || labels.shape.some((d, i) => d !== logits.shape[i])) {
    throw new Error(`crossEntropy: labels ${fmtShape(labels.shape)} must match logits ${fmtShape(logits.shape)} without the class axis`);
  }
  const v = logits.shape[logits.rank - 1]!;
  if (labels.backend.readSync && !labels.backend.tracing) {
    // As documented: reject bad labels where that is cheap, rather than silently scoring them 0.
    const data = labels.dataSync();
    for (let i = 0; i < data.length; i++) {
      const l = data[i]!;
      if (l < 0 || l >= v) throw new Error(`crossEntropy: label ${l} (at flat index ${i} of labels ${fmtShape(labels.shape)}) is out of range [0, ${v})`);
    }
  }
  return scope(() => {
    const nll = neg(takeAlongLastAxis(logSoftmax(logits, -1), labels));
    if (reduction === 'none') return nll;
    return reduction === 'sum' ? sum(nll) : mean(nll);
  });
}

export function silu(x: Tensor): Tensor {
  requireFloat('silu', x);
  return scope(() => mul(x, sigmoid(x)));
}

/** RMSNorm over the last axis: x / sqrt(mean(x²) + eps) · weight. */
export function rmsNorm(x: Tensor, weight: Tensor, eps = 1e-6): Tensor {
  requireFloat('rmsNorm', x);
  const d = x.shape[x.rank - 1];
  if (weight.rank !== 1 || weight.shape[0] !== d) {
    throw new Error(`rmsNorm: weight ${fmtShape(weight.shape)} must be [${d}] for input ${fmtShape(x.shape)}`);
  }
  return scope(() => mul(mul(x, rsqrt(add(mean(mul(x, x), -1, true), eps))), weight));
}
