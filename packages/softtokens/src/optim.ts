/**
 * AdamW (decoupled weight decay) with a linear warm-up + cosine schedule and optional
 * global gradient-norm clipping, as pure functions of pytrees:
 * (params, grads, state) → (params, state). Old tensors are left to the caller.
 */
import * as T from '@softgrad/tensor';

export interface AdamWConfig {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Clip the global gradient norm to this value (none when undefined). */
  maxGradNorm?: number;
}

export interface AdamWState<P> {
  step: number;
  m: P;
  v: P;
}

export function adamwInit<P>(params: P): AdamWState<P> {
  return {
    step: 0,
    m: T.treeMap(params, (p) => T.zerosLike(p)),
    v: T.treeMap(params, (p) => T.zerosLike(p)),
  };
}

/** Linear warm-up over `warmup` steps to `peak`, then cosine decay to `minRatio`·peak at `total`. */
export function cosineSchedule(step: number, peak: number, warmup: number, total: number, minRatio = 0): number {
  if (warmup > 0 && step < warmup) return (peak * (step + 1)) / warmup;
  const span = Math.max(1, total - warmup);
  const progress = Math.min(1, (step - warmup) / span);
  return peak * (minRatio + (1 - minRatio) * 0.5 * (1 + Math.cos(Math.PI * progress)));
}

/** √Σ‖g‖² over every leaf, as a host number. */
export async function globalNorm(grads: unknown): Promise<number> {
  const s = T.scope(() => {
    const parts = T.treeLeaves(grads).map((g) => T.sum(T.square(g)));
    return parts.reduce((a, b) => T.add(a, b));
  });
  const v = await s.item();
  s.dispose();
  return Math.sqrt(v);
}

export interface AdamWStepResult<P> {
  params: P;
  state: AdamWState<P>;
  gradNorm: number;
  lr: number;
  clipped: boolean;
}

/**
 * One AdamW update at learning rate `lr`. The returned params and state are new tensors;
 * the caller disposes the old ones (and the grads) when it no longer needs them.
 */
export async function adamwStep<P>(params: P, grads: P, state: AdamWState<P>, cfg: AdamWConfig, lr: number): Promise<AdamWStepResult<P>> {
  const b1 = cfg.beta1 ?? 0.9;
  const b2 = cfg.beta2 ?? 0.999;
  const eps = cfg.eps ?? 1e-8;
  const wd = cfg.weightDecay ?? 0;
  const gradNorm = await globalNorm(grads);
  if (!Number.isFinite(gradNorm)) throw new Error(`adamwStep: gradient norm is ${gradNorm}; refusing to update`);
  const clipped = cfg.maxGradNorm !== undefined && gradNorm > cfg.maxGradNorm;
  const scale = clipped ? cfg.maxGradNorm! / gradNorm : 1;
  const step = state.step + 1;
  const bc1 = 1 - b1 ** step;
  const bc2 = 1 - b2 ** step;
  const pl = T.treeLeaves(params);
  const gl = T.treeLeaves(grads);
  const ml = T.treeLeaves(state.m);
  const vl = T.treeLeaves(state.v);
  if (gl.length !== pl.length || ml.length !== pl.length) throw new Error('adamwStep: params, grads and state have different structures');
  const out = pl.map((p, i) =>
    T.scope(() => {
      const g = scale === 1 ? gl[i]! : T.mul(gl[i]!, scale);
      const m = T.add(T.mul(ml[i]!, b1), T.mul(g, 1 - b1));
      const v = T.add(T.mul(vl[i]!, b2), T.mul(T.square(g), 1 - b2));
      const update = T.div(T.mul(m, 1 / bc1), T.add(T.sqrt(T.mul(v, 1 / bc2)), eps));
      const decayed = wd > 0 ? T.mul(p, 1 - lr * wd) : p;
      return { p: T.sub(decayed, T.mul(update, lr)), m, v };
    }),
  );
  return {
    params: T.treeMap(params, (_, i) => out[i]!.p),
    state: { step, m: T.treeMap(state.m, (_, i) => out[i]!.m), v: T.treeMap(state.v, (_, i) => out[i]!.v) },
    gradNorm,
    lr,
    clipped,
  };
}
