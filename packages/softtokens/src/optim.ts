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

interface AdamWStatic {
  b1: number;
  b2: number;
  eps: number;
  weightDecay: number;
  maxGradNorm: number | null;
}

/**
 * The whole update as one traced program: the global norm, the clipping scale and every
 * parameter's new (p, m, v), all on the device. Under jit each parameter's update is a single
 * fused kernel with three outputs. `hyper` = [lr, 1/(1−β₁ᵗ), 1/(1−β₂ᵗ)] changes every step, so
 * it is a tensor, not a constant baked into the program.
 */
function adamwUpdate<P>(params: P, grads: P, m: P, v: P, hyper: T.Tensor, c: AdamWStatic): { params: P; m: P; v: P; gradNorm: T.Tensor } {
  const pl = T.treeLeaves(params);
  const gl = T.treeLeaves(grads);
  const ml = T.treeLeaves(m);
  const vl = T.treeLeaves(v);
  if (gl.length !== pl.length || ml.length !== pl.length || vl.length !== pl.length) {
    throw new Error('adamwStep: params, grads and state have different structures');
  }
  const sq = gl.map((g) => T.sum(T.square(g)));
  const gradNorm = T.sqrt(sq.reduce((a, b) => T.add(a, b)));
  const lr = T.reshape(T.slice(hyper, [0], [1]), []);
  const rbc1 = T.reshape(T.slice(hyper, [1], [1]), []);
  const rbc2 = T.reshape(T.slice(hyper, [2], [1]), []);
  // Clipping: scale = min(1, maxNorm/norm); a zero norm never divides.
  const scale = c.maxGradNorm === null ? null : T.minimum(T.div(c.maxGradNorm, T.maximum(gradNorm, 1e-30)), 1);
  const out = pl.map((p, i) => {
    const g = scale ? T.mul(gl[i]!, scale) : gl[i]!;
    const mNew = T.add(T.mul(ml[i]!, c.b1), T.mul(g, 1 - c.b1));
    const vNew = T.add(T.mul(vl[i]!, c.b2), T.mul(T.square(g), 1 - c.b2));
    const update = T.div(T.mul(mNew, rbc1), T.add(T.sqrt(T.mul(vNew, rbc2)), c.eps));
    const decayed = c.weightDecay > 0 ? T.sub(p, T.mul(p, T.mul(lr, c.weightDecay))) : p;
    return { p: T.sub(decayed, T.mul(update, lr)), m: mNew, v: vNew };
  });
  return {
    params: T.treeMap(params, (_, i) => out[i]!.p),
    m: T.treeMap(m, (_, i) => out[i]!.m),
    v: T.treeMap(v, (_, i) => out[i]!.v),
    gradNorm,
  };
}

const jittedUpdate = T.jit(adamwUpdate, { name: 'adamwStep' });

/**
 * One AdamW update at learning rate `lr`. The returned params and state are new tensors;
 * the caller disposes the old ones (and the grads) when it no longer needs them. The update
 * runs as one jitted program (traced once per parameter structure); the only value read
 * back is the gradient norm, to refuse a non-finite update before anything is replaced.
 */
export async function adamwStep<P>(params: P, grads: P, state: AdamWState<P>, cfg: AdamWConfig, lr: number): Promise<AdamWStepResult<P>> {
  const b1 = cfg.beta1 ?? 0.9;
  const b2 = cfg.beta2 ?? 0.999;
  const step = state.step + 1;
  const first = T.treeLeaves(params)[0];
  if (!first) throw new Error('adamwStep: no parameters');
  const hyperData = [lr, 1 / (1 - b1 ** step), 1 / (1 - b2 ** step)];
  const hyper = T.tensor(first.dtype === 'float64' ? Float64Array.from(hyperData) : Float32Array.from(hyperData), { dtype: first.dtype, backend: first.backend });
  const statics: AdamWStatic = { b1, b2, eps: cfg.eps ?? 1e-8, weightDecay: cfg.weightDecay ?? 0, maxGradNorm: cfg.maxGradNorm ?? null };
  let out: ReturnType<typeof adamwUpdate<P>>;
  try {
    out = jittedUpdate(params, grads, state.m, state.v, hyper, statics);
  } finally {
    hyper.dispose();
  }
  const gradNorm = await out.gradNorm.item();
  out.gradNorm.dispose();
  if (!Number.isFinite(gradNorm)) {
    T.treeDispose([out.params, out.m, out.v]);
    throw new Error(`adamwStep: gradient norm is ${gradNorm}; refusing to update`);
  }
  const clipped = cfg.maxGradNorm !== undefined && gradNorm > cfg.maxGradNorm;
  return { params: out.params, state: { step, m: out.m, v: out.v }, gradNorm, lr, clipped };
}
