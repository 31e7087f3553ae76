/**
 * The REINFORCE leave-one-out (RLOO) estimator of SPEC §1.
 *
 * ℓ_{b,g} is the log-probability of everything the policy generated — hard CoT tokens
 * (log p(y_t)), soft/fuzzy CoT steps (the Gaussian log-density −‖h̃_t − p_{t−1}E‖²/(2σ²),
 * with p_{t−1}E recomputed differentiably from the stored noisy prefix), and answer tokens —
 * with prefilled tokens excluded. The loss is −(1/BG) Σ A_{b,g} ℓ_{b,g} with leave-one-out
 * advantages held constant.
 */
import * as T from '@softgrad/tensor';
import { forward, type ModelParams, type TransformerConfig } from '@softgrad/transformer';
import type { Rollout } from './rollout.js';

/** A_{b,g} = r_{b,g} − mean_{j≠g} r_{b,j} for each group (row of `rewards`). */
export function rlooAdvantages(rewards: readonly (readonly number[])[]): number[][] {
  return rewards.map((group, b) => {
    const G = group.length;
    if (G < 2) throw new Error(`rlooAdvantages: group ${b} has ${G} sample(s); leave-one-out needs at least 2`);
    const total = group.reduce((a, r) => a + r, 0);
    return group.map((r) => r - (total - r) / (G - 1));
  });
}

export interface ScoreSettings {
  /** CoT temperature τ used when the rollouts were drawn. */
  tau: number;
  /** Per-coordinate noise σ of the soft/fuzzy CoT steps (needed when any rollout is soft). */
  sigma: number;
  /** Temperature of the answer tokens (1 in training). */
  answerTau: number;
}

interface PackedBatch {
  R: number;
  N: number;
  ids: Int32Array;
  mask: boolean[][];
  isSoft: Uint8Array;
  softInputs: Float64Array;
  invTau: Float64Array;
  hardTarget: Int32Array;
  hardWeight: Float64Array;
  softTarget: Float64Array;
  softWeight: Float64Array;
}

/**
 * Lay the rollouts out as left-padded sequences: prompt, CoT, prefill, answer. Position i's
 * logits score the input at i+1 when that input was generated (not prompt, not prefill).
 */
export function packRollouts(rollouts: readonly Rollout[], hidden: number, s: ScoreSettings, padId = 0): PackedBatch {
  const R = rollouts.length;
  const lens = rollouts.map((r) => r.promptIds.length + r.cotTokens.length + r.prefillIds.length + r.answerIds.length);
  const N = Math.max(...lens);
  const ids = new Int32Array(R * N).fill(padId);
  const isSoft = new Uint8Array(R * N);
  const softInputs = new Float64Array(R * N * hidden);
  const invTau = new Float64Array(R * N).fill(1);
  const hardTarget = new Int32Array(R * N);
  const hardWeight = new Float64Array(R * N);
  const softTarget = new Float64Array(R * N * hidden);
  const softWeight = new Float64Array(R * N);
  const mask: boolean[][] = [];
  rollouts.forEach((ro, r) => {
    const off = N - lens[r]!;
    mask.push(Array.from({ length: N }, (_, i) => i >= off));
    let i = off;
    const put = (id: number) => (ids[r * N + i++] = id);
    for (const id of ro.promptIds) put(id);
    const k = ro.cotTokens.length;
    const soft = ro.kind !== 'hard';
    if (soft && (!ro.cotInputs || ro.cotInputs.length !== k * hidden)) {
      throw new Error(`packRollouts: rollout ${r} is ${ro.kind} but has ${ro.cotInputs?.length ?? 0} stored input values, expected ${k}×${hidden}`);
    }
    for (let t = 0; t < k; t++) {
      const pos = i;
      const pred = r * N + pos - 1;
      invTau[pred] = 1 / s.tau;
      if (soft) {
        isSoft[r * N + pos] = 1;
        softInputs.set(ro.cotInputs!.subarray(t * hidden, (t + 1) * hidden), (r * N + pos) * hidden);
        softTarget.set(ro.cotInputs!.subarray(t * hidden, (t + 1) * hidden), pred * hidden);
        softWeight[pred] = 1;
        i++;
      } else {
        hardTarget[pred] = ro.cotTokens[t]!;
        hardWeight[pred] = 1;
        put(ro.cotTokens[t]!);
      }
    }
    for (const id of ro.prefillIds) put(id);
    for (const id of ro.answerIds) {
      const pred = r * N + i - 1;
      invTau[pred] = 1 / s.answerTau;
      hardTarget[pred] = id;
      hardWeight[pred] = 1;
      put(id);
    }
  });
  return { R, N, ids, mask, isSoft, softInputs, invTau, hardTarget, hardWeight, softTarget, softWeight };
}

/**
 * ℓ for every rollout, [R], differentiable in the parameters: one full forward pass over
 * the packed sequences with the stored soft inputs as constants.
 */
export function sequenceLogProbs(config: TransformerConfig, params: ModelParams, rollouts: readonly Rollout[], s: ScoreSettings): T.Tensor {
  if (rollouts.length === 0) throw new Error('sequenceLogProbs: no rollouts');
  const d = config.hidden_size;
  const p = packRollouts(rollouts, d, s);
  const anySoft = p.softWeight.some((w) => w !== 0);
  if (anySoft && !(s.sigma > 0)) throw new Error(`sequenceLogProbs: soft/fuzzy steps need σ > 0 (got ${s.sigma}); greedy soft rollouts have no density to score`);
  const dtype = params.embed.dtype;
  const backend = params.embed.backend;
  const o = { dtype, backend };
  const f = (a: Float64Array) => (dtype === 'float64' ? a : Float32Array.from(a));
  const { R, N } = p;
  return T.scope(() => {
    const ids = T.tensor(p.ids, { shape: [R, N], dtype: 'int32', backend });
    const tokEmb = T.gather(params.embed, ids, 0);
    let embeds = tokEmb;
    if (anySoft) {
      const isSoft = T.tensor(p.isSoft, { shape: [R, N, 1], dtype: 'bool', backend });
      embeds = T.where(isSoft, T.tensor(f(p.softInputs), { shape: [R, N, d], ...o }), tokEmb);
    }
    const { logits } = forward(config, params, { embeds, mask: p.mask });
    const scaled = T.mul(logits, T.tensor(f(p.invTau), { shape: [R, N, 1], ...o }));
    const logp = T.logSoftmax(scaled, -1);
    const targets = T.tensor(p.hardTarget, { shape: [R, N], dtype: 'int32', backend });
    const hard = T.mul(T.takeAlongLastAxis(logp, targets), T.tensor(f(p.hardWeight), { shape: [R, N], ...o }));
    let total = T.sum(hard, -1);
    if (anySoft) {
      const mix = T.matmul(T.exp(logp), params.embed);
      const density = gaussianLogDensity(T.tensor(f(p.softTarget), { shape: [R, N, d], ...o }), mix, s.sigma);
      const gauss = T.mul(density, T.tensor(f(p.softWeight), { shape: [R, N], ...o }));
      total = T.add(total, T.sum(gauss, -1));
    }
    return total;
  });
}

/**
 * log N(x; mean, σ²I) over the last axis, up to the constant −(d/2)·log(2πσ²), which does
 * not depend on the parameters: −‖x − mean‖²/(2σ²).
 */
export function gaussianLogDensity(x: T.Tensor, mean: T.Tensor, sigma: number): T.Tensor {
  if (!(sigma > 0)) throw new Error(`gaussianLogDensity: σ must be > 0, got ${sigma}`);
  return T.scope(() => T.mul(T.sum(T.square(T.sub(x, mean)), -1), -1 / (2 * sigma * sigma)));
}

/** The surrogate −(1/R) Σ_r A_r ℓ_r whose gradient is the RLOO estimate of −∇E[reward]. */
export function rlooSurrogate(logProbs: T.Tensor, advantages: readonly number[]): T.Tensor {
  if (logProbs.rank !== 1 || logProbs.shape[0] !== advantages.length) {
    throw new Error(`rlooSurrogate: log-probabilities ${T.fmtShape(logProbs.shape)} do not match ${advantages.length} advantages`);
  }
  const dtype = logProbs.dtype;
  return T.scope(() => {
    const adv = T.tensor(dtype === 'float64' ? Float64Array.from(advantages) : Float32Array.from(advantages), { backend: logProbs.backend });
    return T.mul(T.sum(T.mul(adv, logProbs)), -1 / advantages.length);
  });
}

/**
 * The RLOO loss −(1/BG) Σ A·ℓ for rollouts ordered prompt-major (as `rollout` returns them)
 * with rewards[b][g]. Returns the scalar loss; differentiate it with valueAndGrad.
 */
export function rlooLoss(
  config: TransformerConfig,
  params: ModelParams,
  rollouts: readonly Rollout[],
  advantages: readonly (readonly number[])[],
  s: ScoreSettings,
): T.Tensor {
  const flat = rollouts.map((r) => {
    const a = advantages[r.promptIndex]?.[r.sampleIndex];
    if (a === undefined) throw new Error(`rlooLoss: no advantage for prompt ${r.promptIndex}, sample ${r.sampleIndex}`);
    return a;
  });
  return T.scope(() => rlooSurrogate(sequenceLogProbs(config, params, rollouts, s), flat));
}
