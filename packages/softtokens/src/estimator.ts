/**
 * The REINFORCE leave-one-out (RLOO) estimator of the soft-token method.
 *
 * ℓ_{b,g} is the log-probability of everything the policy generated — hard CoT tokens
 * (log p(y_t)), soft/fuzzy CoT steps (the Gaussian log-density −‖h̃_t − p_{t−1}E‖²/(2σ²),
 * with p_{t−1}E recomputed differentiably from the stored noisy prefix), and answer tokens —
 * with prefilled tokens excluded. The loss is −(1/BG) Σ A_{b,g} ℓ_{b,g} with leave-one-out
 * advantages held constant.
 *
 * Scoring packs the rollouts end to end (no row is padded to the longest: the token-wise
 * work runs over real tokens only), reads τ, σ and the kind from the batch itself (so they
 * cannot disagree with how it was drawn), takes the soft inputs from the batch's device
 * tensor without copying them through the host, and — in training — runs as one jitted
 * value-and-gradient program per bucketed shape.
 */
import * as T from '@softgrad/tensor';
import { forwardPacked, packLayout, type ModelParams, type PackedLayout, type PackLayoutOptions, type TransformerConfig } from '@softgrad/transformer';
import type { Rollout, RolloutBatch } from './rollout.js';

/** A_{b,g} = r_{b,g} − mean_{j≠g} r_{b,j} for each group (row of `rewards`). */
export function rlooAdvantages(rewards: readonly (readonly number[])[]): number[][] {
  return rewards.map((group, b) => {
    const G = group.length;
    if (G < 2) throw new Error(`rlooAdvantages: group ${b} has ${G} sample(s); leave-one-out needs at least 2`);
    const total = group.reduce((a, r) => a + r, 0);
    return group.map((r) => r - (total - r) / (G - 1));
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
export function rlooSurrogate(logProbs: T.Tensor, advantages: readonly number[] | T.Tensor): T.Tensor {
  const n = advantages instanceof T.Tensor ? advantages.size : advantages.length;
  if (logProbs.rank !== 1 || logProbs.shape[0] !== n) {
    throw new Error(`rlooSurrogate: log-probabilities ${T.fmtShape(logProbs.shape)} do not match ${n} advantages`);
  }
  const dtype = logProbs.dtype;
  return T.scope(() => {
    const adv = advantages instanceof T.Tensor
      ? advantages
      : T.tensor(dtype === 'float64' ? Float64Array.from(advantages) : Float32Array.from(advantages), { backend: logProbs.backend });
    return T.mul(T.sum(T.mul(adv, logProbs)), -1 / n);
  });
}

// ---------------------------------------------------------------------------------------
// Packing

/** The rollouts' tokens packed end to end, with what scoring each one needs; all on the device. */
export interface PackedRollouts {
  layout: PackedLayout;
  /** Token id of each packed position (0 where the input is a soft one), [T] int32. */
  ids: T.Tensor;
  /** 1 where the input is a stored soft input h̃ (taken from softSlot), [T, 1] bool. */
  isSoft: T.Tensor;
  /** Row-major index into the batch's soft inputs [rows·maxCot] of each soft input (0 elsewhere), [T] int32. */
  softSlot: T.Tensor;
  /** 1/τ of the distribution that generated the *next* position, [T, 1]. */
  invTau: T.Tensor;
  /** Next position's hard token and weight (1 when it was a generated hard token), [T] int32 / [T]. */
  hardTarget: T.Tensor;
  hardWeight: T.Tensor;
  /**
   * The soft steps, [S] each: the positions that predicted a soft step are packed first, so
   * positions [0, S) hold them (S: their count rounded up to a bucket, at most T; 1 for hard
   * batches) and the mixture p·E is recomputed there only. Per position: the step's slot in the
   * soft inputs, its weight (0 past the soft steps) and its rollout (rows past them).
   */
  softTarget: T.Tensor;
  softWeight: T.Tensor;
  softRow: T.Tensor;
  /** The rollout each token belongs to (rows for the bucket's fill tokens), [T] int32. */
  rowOf: T.Tensor;
  /** Rollouts scored, and whether any position is soft (static: part of a jit signature). */
  rows: number;
  soft: boolean;
}

/** Soft steps are scored in a count rounded up to a multiple of this. */
const SOFT_STEP_BUCKET = 128;

/** How rollouts are packed: token and width buckets, attention groups (see packLayout). */
export type PackOptions = PackLayoutOptions;

function checkSoftInputs(batch: RolloutBatch): number {
  if (batch.cot.kind === 'hard') return 0;
  const s = batch.softInputs;
  if (!s) throw new Error(`packRollouts: the batch is ${batch.cot.kind} but has no soft inputs`);
  if (s.isDisposed) throw new Error('packRollouts: the batch\'s soft inputs were disposed (disposeRolloutBatch) before scoring');
  const [n, L] = s.shape as [number, number, number];
  batch.rollouts.forEach((r, i) => {
    if (r.cotTokens.length > L) throw new Error(`packRollouts: rollout ${i} has ${r.cotTokens.length} CoT steps, the soft inputs hold ${L}`);
  });
  if (n < batch.rollouts.length) throw new Error(`packRollouts: ${batch.rollouts.length} rollouts but soft inputs for ${n}`);
  return L;
}

/**
 * Lays each rollout out as prompt, CoT, prefill, answer; position i's logits score the input
 * at i+1 when that input was generated (not prompt, not prefill). `rowsOf` picks (and orders)
 * the batch rows to score (default: all).
 */
export function packRollouts(batch: RolloutBatch, like: TensorPlace, options: PackOptions = {}, rowsOf?: readonly number[]): PackedRollouts {
  const L = checkSoftInputs(batch);
  const picked = rowsOf ?? batch.rollouts.map((_, i) => i);
  const rollouts = picked.map((i) => {
    const r = batch.rollouts[i];
    if (!r) throw new Error(`packRollouts: no rollout ${i} in a batch of ${batch.rollouts.length}`);
    return r;
  });
  if (rollouts.length === 0) throw new Error('packRollouts: no rollouts');
  const soft = batch.cot.kind !== 'hard';
  const invTauCot = 1 / batch.cot.tau;
  const invTauAnswer = 1 / batch.answerTau;
  const lens = rollouts.map((r) => r.promptIds.length + r.cotTokens.length + r.prefillIds.length + r.answerIds.length);
  const R = rollouts.length;
  // The samples of one prompt share its tokens but the last (whose logits predict each
  // sample's own first CoT step): packed once, attended to by all of them.
  const prefixOf = rollouts.map((ro) => (ro.promptIds.length >= 2 ? ro.promptIndex : -1));
  const prefixLengths: number[] = [];
  rollouts.forEach((ro) => {
    if (ro.promptIds.length >= 2) prefixLengths[ro.promptIndex] = ro.promptIds.length - 1;
  });
  // Row r's token promptLength − 1 + t predicts its CoT step t.
  const predictsSoftStep = (r: number, i: number) => {
    const ro = rollouts[r]!;
    return i >= ro.promptIds.length - 1 && i < ro.promptIds.length - 1 + ro.cotTokens.length;
  };
  const { layout, tokenIndex, tokens: Tn, leadingTokens } = packLayout(lens, like, options, { prefixOf, prefixLengths }, soft ? predictsSoftStep : undefined);
  const ids = new Int32Array(Tn);
  const isSoft = new Uint8Array(Tn);
  const softSlot = new Int32Array(Tn);
  const invTau = new Float64Array(Tn).fill(1);
  const hardTarget = new Int32Array(Tn);
  const hardWeight = new Float64Array(Tn);
  // Rounded up, like the token count, so that S (part of the jit signature) moves only in steps of the bucket.
  const S = soft ? Math.min(Tn, Math.max(1, Math.ceil(leadingTokens / SOFT_STEP_BUCKET) * SOFT_STEP_BUCKET)) : 1;
  const softTarget = new Int32Array(S);
  const softWeight = new Float64Array(S);
  const softRow = new Int32Array(S).fill(R);
  // Tokens that score nothing (prompt, prefill, fill) stay on the dropped row R.
  const rowOf = new Int32Array(Tn).fill(R);
  rollouts.forEach((ro, r) => {
    const row = picked[r]!;
    let i = 0;
    const at = (k: number) => tokenIndex(r, k);
    /** Position i scores the input at i + 1: its target and weights. */
    const predicts = () => {
      const pred = at(i - 1);
      rowOf[pred] = r;
      return pred;
    };
    for (const id of ro.promptIds) ids[at(i++)] = id;
    ro.cotTokens.forEach((tok, t) => {
      const pred = predicts();
      invTau[pred] = invTauCot;
      const here = at(i++);
      if (soft) {
        isSoft[here] = 1;
        softSlot[here] = row * L + t;
        if (pred >= leadingTokens) throw new Error(`internal: the predictor of rollout ${r}'s soft step ${t} is not packed first`);
        softTarget[pred] = row * L + t;
        softWeight[pred] = 1;
        softRow[pred] = r;
      } else {
        hardTarget[pred] = tok;
        hardWeight[pred] = 1;
        ids[here] = tok;
      }
    });
    for (const id of ro.prefillIds) ids[at(i++)] = id;
    for (const id of ro.answerIds) {
      const pred = predicts();
      invTau[pred] = invTauAnswer;
      hardTarget[pred] = id;
      hardWeight[pred] = 1;
      ids[at(i++)] = id;
    }
  });
  const { dtype, backend } = like;
  const f = (a: Float64Array, shape: number[]) => T.tensor(dtype === 'float64' ? a : Float32Array.from(a), { shape, dtype, backend });
  const i32 = (a: Int32Array, shape: number[]) => T.tensor(a, { shape, dtype: 'int32', backend });
  return {
    layout,
    ids: i32(ids, [Tn]),
    isSoft: T.tensor(isSoft, { shape: [Tn, 1], dtype: 'bool', backend }),
    softSlot: i32(softSlot, [Tn]),
    invTau: f(invTau, [Tn, 1]),
    hardTarget: i32(hardTarget, [Tn]),
    hardWeight: f(hardWeight, [Tn]),
    softTarget: i32(softTarget, [S]),
    softWeight: f(softWeight, [S]),
    softRow: i32(softRow, [S]),
    rowOf: i32(rowOf, [Tn]),
    rows: R,
    soft,
  };
}

export function disposePacked(p: PackedRollouts): void {
  T.treeDispose(p);
}

// ---------------------------------------------------------------------------------------
// Scoring

/** The model's dtype and backend, which packed tensors must share. */
export interface TensorPlace {
  dtype: T.DType;
  backend: T.Backend;
}

/**
 * ℓ for every packed rollout, [rows], differentiable in the parameters. `softInputs` is the
 * batch's [rows, maxCot, hidden] tensor (null for hard batches); `invTwoSigmaSq` = 1/(2σ²) as a
 * scalar tensor, so σ may change from step to step without a new trace.
 */
export function packedLogProbs(config: TransformerConfig, params: ModelParams, p: PackedRollouts, softInputs: T.Tensor | null, invTwoSigmaSq: T.Tensor | null): T.Tensor {
  return T.scope(() => {
    const d = config.hidden_size;
    const tokEmb = T.gather(params.embed, p.ids, 0);
    let flatSoft: T.Tensor | null = null;
    let embeds = tokEmb;
    if (p.soft) {
      if (!softInputs || !invTwoSigmaSq) throw new Error('packedLogProbs: soft rollouts need their soft inputs and σ');
      flatSoft = T.reshape(softInputs, [-1, d]);
      embeds = T.where(p.isSoft, T.gather(flatSoft, p.softSlot, 0), tokEmb);
    }
    const logits = forwardPacked(config, params, embeds, p.layout);
    const logp = T.logSoftmax(T.mul(logits, p.invTau), -1);
    const perToken = T.mul(T.takeAlongLastAxis(logp, p.hardTarget), p.hardWeight);
    // Per-rollout sums; the bucket's fill tokens go to an extra row that is dropped.
    let sums = T.scatterAdd(perToken, p.rowOf, 0, [p.rows + 1]);
    if (p.soft) {
      // The Gaussian log-density of each stored input under the mean p·E recomputed from the
      // logits that predicted it: at the soft steps only (about a third of the packed tokens),
      // packed first so that they are one slice (whose adjoint is a pad, not a scatter).
      const S = p.softWeight.shape[0]!;
      const mix = T.matmul(T.exp(T.slice(logp, [0, 0], [S, -1])), params.embed);
      const sq = T.sum(T.square(T.sub(T.gather(flatSoft!, p.softTarget, 0), mix)), -1);
      sums = T.sub(sums, T.scatterAdd(T.mul(T.mul(sq, invTwoSigmaSq!), p.softWeight), p.softRow, 0, [p.rows + 1]));
    }
    return T.slice(sums, [0], [p.rows]);
  });
}

function sigmaTensor(batch: RolloutBatch, like: TensorPlace): T.Tensor | null {
  if (batch.cot.kind === 'hard') return null;
  if (!(batch.sigma > 0)) {
    throw new Error(`sequenceLogProbs: soft/fuzzy steps need σ > 0 (got ${batch.sigma}); greedy soft rollouts have no density to score`);
  }
  const v = 1 / (2 * batch.sigma * batch.sigma);
  return T.tensor(like.dtype === 'float64' ? Float64Array.of(v) : Float32Array.of(v), { shape: [], dtype: like.dtype, backend: like.backend });
}

/**
 * ℓ for every rollout of the batch (or the rows `rowsOf` picks), [rows], differentiable in the
 * parameters. τ, σ and the kind come from the batch.
 */
export function sequenceLogProbs(config: TransformerConfig, params: ModelParams, batch: RolloutBatch, rowsOf?: readonly number[]): T.Tensor {
  const like = { dtype: params.embed.dtype, backend: params.embed.backend };
  const packed = packRollouts(batch, like, {}, rowsOf);
  const sig = sigmaTensor(batch, like);
  try {
    return packedLogProbs(config, params, packed, batch.softInputs, sig);
  } finally {
    disposePacked(packed);
    sig?.dispose();
  }
}

/** One advantage per rollout (prompt-major, as `rollout` orders them). */
export function flatAdvantages(rollouts: readonly Rollout[], advantages: readonly (readonly number[])[]): number[] {
  return rollouts.map((r) => {
    const a = advantages[r.promptIndex]?.[r.sampleIndex];
    if (a === undefined) throw new Error(`rlooLoss: no advantage for prompt ${r.promptIndex}, sample ${r.sampleIndex}`);
    return a;
  });
}

/**
 * The RLOO loss −(1/BG) Σ A·ℓ for a rollout batch with rewards' advantages[b][g]. Returns the
 * scalar loss; differentiate it with valueAndGrad (training uses rlooValueAndGrad, the same
 * loss as one jitted program).
 */
export function rlooLoss(config: TransformerConfig, params: ModelParams, batch: RolloutBatch, advantages: readonly (readonly number[])[]): T.Tensor {
  const flat = flatAdvantages(batch.rollouts, advantages);
  return T.scope(() => rlooSurrogate(sequenceLogProbs(config, params, batch), flat));
}

function packedLoss(config: TransformerConfig, params: ModelParams, p: PackedRollouts, softInputs: T.Tensor | null, invTwoSigmaSq: T.Tensor | null, advantages: T.Tensor): T.Tensor {
  return rlooSurrogate(packedLogProbs(config, params, p, softInputs, invTwoSigmaSq), advantages);
}

const jittedValueAndGrad = T.jit(T.valueAndGrad(packedLoss, { argnums: 1 }), { name: 'rlooValueAndGrad' });

/**
 * [loss, gradients] of rlooLoss, computed by one jitted program. Rows are packed into
 * bucketed shapes, so consecutive training steps re-use the compiled program; the result
 * equals valueAndGrad(rlooLoss) up to float rounding.
 */
export function rlooValueAndGrad(
  config: TransformerConfig, params: ModelParams, batch: RolloutBatch, advantages: readonly (readonly number[])[],
): [T.Tensor, ModelParams] {
  const like = { dtype: params.embed.dtype, backend: params.embed.backend };
  const flat = flatAdvantages(batch.rollouts, advantages);
  const packed = packRollouts(batch, like);
  const sig = sigmaTensor(batch, like);
  const adv = T.tensor(like.dtype === 'float64' ? Float64Array.from(flat) : Float32Array.from(flat), { dtype: like.dtype, backend: like.backend });
  try {
    return jittedValueAndGrad(config, params, packed, batch.softInputs, sig, adv) as [T.Tensor, ModelParams];
  } finally {
    disposePacked(packed);
    sig?.dispose();
    adv.dispose();
  }
}
