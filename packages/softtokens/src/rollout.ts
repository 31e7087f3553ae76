/**
 * Rollouts of SPEC §1: B prompts × G samples decoded together with a KV cache. The chain of
 * thought is hard (sampled or greedy tokens) or soft/fuzzy (the probability-weighted mixture
 * of the full embedding matrix at temperature τ, plus Gaussian noise σ when sampling), with
 * an argmax *shadow* sequence that decides when the CoT stops. Then the answer prefill and
 * up to `maxAnswer` hard answer tokens.
 *
 * A rollout records what the estimator needs: the stored noisy inputs h̃ (soft/fuzzy), the
 * sampled tokens, and which positions were generated or prefilled.
 */
import * as T from '@softgrad/tensor';
import {
  disposeCache, forward, type KVCache, type ModelParams, type Tokenizer, type TransformerConfig,
} from '@softgrad/transformer';
import { type CotKind, type CotSettings, noiseSigma } from './modes.js';
import { extractLastBoxed } from './rewards.js';
import { chooseAnswerPrefill, StopDetector } from './stop.js';

export interface Rollout {
  /** Index of the prompt in the request, and of the sample within its group. */
  promptIndex: number;
  sampleIndex: number;
  promptIds: number[];
  kind: CotKind;
  /** Hard: the CoT tokens fed to the model. Soft/fuzzy: the argmax shadow tokens. */
  cotTokens: number[];
  /** Soft/fuzzy only: the noisy inputs h̃_t fed to the model, [cotLength × hidden] row-major. */
  cotInputs: Float64Array | null;
  /** True when the CoT ended on the stop string, false when it hit maxCot. */
  stoppedEarly: boolean;
  prefillIds: number[];
  answerIds: number[];
  /** Decoded CoT (the shadow text for soft/fuzzy). */
  cotText: string;
  /** Prefill + answer, decoded: the text the reward reads. */
  answerText: string;
  /** Entropy (nats) of the model's next-token distribution softmax(z) at each CoT step. */
  entropies: number[];
}

export interface RolloutBatch {
  rollouts: Rollout[];
  cot: CotSettings;
  /** Per-coordinate noise standard deviation actually used (0 when greedy or hard). */
  sigma: number;
  /** RMS of the embedding rows' norms when the batch was drawn. */
  embedRms: number;
  answerSample: boolean;
  answerTau: number;
  /** Tokens the model processed (prefill + decode), for throughput figures. */
  tokensProcessed: number;
}

export interface RolloutRequest {
  config: TransformerConfig;
  params: ModelParams;
  tokenizer: Tokenizer;
  /** Fully formatted prompt texts. */
  prompts: readonly string[];
  /** Samples per prompt (G). */
  samples: number;
  cot: CotSettings;
  maxCot: number;
  maxAnswer?: number;
  /** Sample answer tokens at answerTau (training) or take the argmax (evaluation). */
  answerSample: boolean;
  answerTau?: number;
  key: T.PRNGKey;
  /** Called after each decoding step with the number of rows still generating. */
  onStep?: (phase: 'cot' | 'answer', step: number, active: number) => void;
  /** Watch the CoT as it is generated (live displays). */
  cotTrace?: CotTraceRequest;
}

export interface CotTraceRequest {
  /** Called after each CoT step. */
  onCotStep: (trace: CotStepTrace) => void;
  /** The row whose mixture weights are reported (default 0). */
  row?: number;
  /** How many of its largest mixture weights (default 5). */
  topK?: number;
}

export interface CotStepTrace {
  step: number;
  /** Each row's token at this step (hard: the token fed; soft/fuzzy: the argmax shadow token), -1 once a row has finished. */
  tokens: number[];
  /** Entropy of each row's next-token distribution at this step (NaN once a row has finished). */
  entropies: number[];
  /** Whether each row's CoT stopped on the stop phrase at this step. */
  stopped: boolean[];
  /**
   * Soft/fuzzy: the traced row's largest weights of softmax(z/τ), the mixture its input was
   * made of, largest first (one extra readback of one row per step, only when tracing); null
   * for hard CoTs and once the traced row has finished.
   */
  topMixture: { id: number; weight: number }[] | null;
}

/** RMS over rows of ‖E_i‖. */
export async function embeddingRms(embed: T.Tensor): Promise<number> {
  const m = T.scope(() => T.sqrt(T.mean(T.sum(T.square(embed), -1))));
  const v = await m.item();
  m.dispose();
  return v;
}

function checkRequest(r: RolloutRequest): void {
  if (r.prompts.length === 0) throw new Error('rollout: no prompts');
  if (!Number.isInteger(r.samples) || r.samples < 1) throw new Error(`rollout: samples must be a positive integer, got ${r.samples}`);
  if (!Number.isInteger(r.maxCot) || r.maxCot < 1) throw new Error(`rollout: maxCot must be a positive integer, got ${r.maxCot}`);
  const { kind, sample, tau, noiseScale } = r.cot;
  if (sample && !(tau > 0)) throw new Error(`rollout: ${kind} sampling needs τ > 0, got ${tau}`);
  if (kind !== 'hard' && !(tau > 0)) throw new Error(`rollout: ${kind} CoT needs τ > 0, got ${tau}`);
  if (!(noiseScale >= 0)) throw new Error(`rollout: noise scale must be ≥ 0, got ${noiseScale}`);
}

function lastPosition(logits: T.Tensor): T.Tensor {
  const [B, S, V] = logits.shape as [number, number, number];
  return T.reshape(T.slice(logits, [0, S - 1, 0], [B, 1, V]), [B, V]);
}

function entropyOf(z: T.Tensor): T.Tensor {
  const lp = T.logSoftmax(z, -1);
  return T.neg(T.sum(T.mul(T.exp(lp), lp), -1));
}

function keepAll<Tr>(tree: Tr): Tr {
  for (const t of T.treeLeaves(tree)) T.keep(t);
  return tree;
}

/** Decode B prompts × G samples. Rows are ordered prompt-major: row = prompt·G + sample. */
export async function rollout(req: RolloutRequest): Promise<RolloutBatch> {
  checkRequest(req);
  const { config, params, tokenizer, cot } = req;
  const maxAnswer = req.maxAnswer ?? 32;
  const answerTau = req.answerTau ?? 1;
  const B = req.prompts.length;
  const G = req.samples;
  const N = B * G;
  const d = config.hidden_size;
  const backend = params.embed.backend;
  const padId = tokenizer.padId ?? 0;
  const eosId = tokenizer.eosId;
  const embedRms = await embeddingRms(params.embed);
  const traceRow = req.cotTrace?.row ?? 0;
  const traceTopK = req.cotTrace?.topK ?? 5;
  if (!Number.isInteger(traceRow) || traceRow < 0 || traceRow >= N) throw new Error(`rollout: cotTrace.row must be a row index below ${N}, got ${traceRow}`);
  if (!Number.isInteger(traceTopK) || traceTopK < 1) throw new Error(`rollout: cotTrace.topK must be a positive integer, got ${traceTopK}`);
  const sigma = cot.kind !== 'hard' && cot.sample ? noiseSigma(cot.noiseScale, embedRms, d, cot.noiseConvention) : 0;
  let tokensProcessed = 0;

  // --- Prefill the B distinct prompts once, then repeat each row G times.
  const promptIds = req.prompts.map((p) => tokenizer.encode(p, { addSpecialTokens: true }));
  const P = Math.max(...promptIds.map((p) => p.length));
  const idsData = new Int32Array(B * P).fill(padId);
  const promptMask = promptIds.map((p) => [...new Array<boolean>(P - p.length).fill(false), ...new Array<boolean>(p.length).fill(true)]);
  promptIds.forEach((p, b) => idsData.set(p, b * P + (P - p.length)));
  const rowOf = Int32Array.from({ length: N }, (_, r) => Math.floor(r / G));
  let cache: KVCache;
  let z: T.Tensor;
  {
    const pre = T.scope(() => {
      const ids = T.tensor(idsData, { shape: [B, P], dtype: 'int32', backend });
      const out = forward(config, params, { ids, mask: promptMask, useCache: true });
      const rows = T.tensor(rowOf, { dtype: 'int32', backend });
      const c = out.cache!;
      return {
        z: T.gather(lastPosition(out.logits), rows, 0),
        keys: c.keys.map((k) => T.gather(k, rows, 0)),
        values: c.values.map((v) => T.gather(v, rows, 0)),
        mask: c.mask,
        nextPosition: c.nextPosition,
        length: c.length,
      };
    });
    tokensProcessed += promptIds.reduce((a, p) => a + p.length, 0);
    z = keepAll(pre.z);
    cache = keepAll({
      keys: pre.keys, values: pre.values,
      mask: Array.from({ length: N }, (_, r) => [...pre.mask[rowOf[r]!]!]),
      nextPosition: Array.from({ length: N }, (_, r) => pre.nextPosition[rowOf[r]!]!),
      length: pre.length,
    });
  }

  const rows = Array.from({ length: N }, (_, r) => ({
    cotTokens: [] as number[],
    cotInputs: [] as Float64Array[],
    entropies: [] as number[],
    stoppedEarly: false,
    cotText: '',
    prefillIds: [] as number[],
    answerIds: [] as number[],
    answerText: '',
    promptIndex: Math.floor(r / G),
    stop: new StopDetector(tokenizer),
  }));
  const step = (inputs: { ids?: T.Tensor; embeds?: T.Tensor }, mask: boolean[]): void => {
    const out = forward(config, params, { ...inputs, mask: mask.map((m) => [m]), cache });
    const nz = T.keep(lastPosition(out.logits));
    out.logits.dispose();
    out.hidden.dispose();
    disposeCache(cache);
    cache = keepAll(out.cache!);
    z.dispose();
    z = nz;
    tokensProcessed += mask.filter(Boolean).length;
  };

  try {
    // --- Chain of thought.
    const active = new Array<boolean>(N).fill(true);
    for (let t = 0; t < req.maxCot && active.some(Boolean); t++) {
      const k = T.foldIn(req.key, t);
      const [kSample, kNoise] = T.split(k);
      const dev = T.scope((): { ent: T.Tensor; y: T.Tensor; h?: T.Tensor; mix?: T.Tensor } => {
        const ent = entropyOf(z);
        if (cot.kind === 'hard') {
          const y = cot.sample ? T.categorical(kSample!, T.mul(z, 1 / cot.tau)) : T.argmax(z, -1);
          return { ent, y };
        }
        const probs = T.softmax(T.mul(z, 1 / cot.tau), -1);
        const h0 = T.matmul(probs, params.embed);
        const h = sigma > 0 ? T.add(h0, T.mul(T.normal(kNoise!, [N, d], { dtype: h0.dtype, backend }), sigma)) : h0;
        const mix = req.cotTrace ? T.reshape(T.slice(probs, [traceRow, 0], [1, probs.shape[1]!]), [-1]) : undefined;
        return { ent, y: T.argmax(z, -1), h, mix };
      });
      const [entH, yH, hH, mixH] = await Promise.all([dev.ent.data(), dev.y.data(), dev.h ? dev.h.data() : null, dev.mix ? dev.mix.data() : null]);
      const traceActive = [...active];
      const ending = new Array<boolean>(N).fill(false);
      for (let r = 0; r < N; r++) {
        if (!active[r]) continue;
        const row = rows[r]!;
        row.cotTokens.push(yH[r]!);
        row.entropies.push(entH[r]!);
        if (hH) row.cotInputs.push(Float64Array.from(hH.subarray(r * d, (r + 1) * d)));
        if (row.stop.push(yH[r]!) !== null) {
          row.stoppedEarly = true;
          ending[r] = true;
        } else if (t === req.maxCot - 1) {
          ending[r] = true;
        }
      }
      // Feed this step's inputs (rows that already finished are masked out).
      T.scope(() => {
        if (cot.kind === 'hard') step({ ids: T.reshape(dev.y, [N, 1]) }, active);
        else step({ embeds: T.reshape(dev.h!, [N, 1, d]) }, active);
      });
      T.treeDispose(dev);
      for (let r = 0; r < N; r++) if (ending[r]) active[r] = false;
      req.onStep?.('cot', t, active.filter(Boolean).length);
      req.cotTrace?.onCotStep({
        step: t,
        tokens: traceActive.map((a, r) => (a ? yH[r]! : -1)),
        entropies: traceActive.map((a, r) => (a ? entH[r]! : NaN)),
        stopped: traceActive.map((a, r) => a && rows[r]!.stoppedEarly),
        topMixture: mixH && traceActive[traceRow] ? largestWeights(mixH, traceTopK) : null,
      });
    }

    // --- Answer prefill, right-aligned so every row's next position is its answer start.
    for (const row of rows) row.cotText = tokenizer.decode(row.cotTokens);
    const prefillText = rows.map((r) => chooseAnswerPrefill(r.cotText, r.stoppedEarly));
    for (let r = 0; r < N; r++) rows[r]!.prefillIds = tokenizer.encode(prefillText[r]!);
    const F = Math.max(...rows.map((r) => r.prefillIds.length));
    const preIds = new Int32Array(N * F).fill(padId);
    const preMask = rows.map((row, r) => {
      preIds.set(row.prefillIds, r * F + (F - row.prefillIds.length));
      return [...new Array<boolean>(F - row.prefillIds.length).fill(false), ...new Array<boolean>(row.prefillIds.length).fill(true)];
    });
    {
      const out = T.scope(() => {
        const ids = T.tensor(preIds, { shape: [N, F], dtype: 'int32', backend });
        const o = forward(config, params, { ids, mask: preMask, cache });
        return { z: lastPosition(o.logits), cache: o.cache! };
      });
      disposeCache(cache);
      cache = keepAll(out.cache);
      z.dispose();
      z = T.keep(out.z);
      tokensProcessed += rows.reduce((a, r) => a + r.prefillIds.length, 0);
    }

    // --- Answer: hard tokens until EOS, a closed \boxed{...}, or maxAnswer.
    const answering = new Array<boolean>(N).fill(true);
    for (let a = 0; a < maxAnswer; a++) {
      const k = T.foldIn(req.key, 1_000_000 + a);
      const y = T.scope(() => (req.answerSample ? T.categorical(k, T.mul(z, 1 / answerTau)) : T.argmax(z, -1)));
      const yH = await y.data();
      for (let r = 0; r < N; r++) {
        if (!answering[r]) continue;
        const row = rows[r]!;
        row.answerIds.push(yH[r]!);
        row.answerText = prefillText[r]! + tokenizer.decode(row.answerIds, { skipSpecialTokens: true });
        if (yH[r] === eosId || extractLastBoxed(row.answerText) !== null) answering[r] = false;
      }
      const still = answering.filter(Boolean).length;
      req.onStep?.('answer', a, still);
      if (still === 0 || a === maxAnswer - 1) {
        y.dispose();
        break;
      }
      T.scope(() => step({ ids: T.reshape(y, [N, 1]) }, answering));
      y.dispose();
    }
  } finally {
    disposeCache(cache);
    z.dispose();
  }

  const rollouts: Rollout[] = rows.map((row, r) => ({
    promptIndex: row.promptIndex,
    sampleIndex: r % G,
    promptIds: promptIds[row.promptIndex]!,
    kind: cot.kind,
    cotTokens: row.cotTokens,
    cotInputs: cot.kind === 'hard' ? null : concatRows(row.cotInputs, d),
    stoppedEarly: row.stoppedEarly,
    prefillIds: row.prefillIds,
    answerIds: row.answerIds,
    cotText: row.cotText,
    answerText: row.answerText,
    entropies: row.entropies,
  }));
  return { rollouts, cot, sigma, embedRms, answerSample: req.answerSample, answerTau, tokensProcessed };
}

/** The k largest entries of a weight vector with their indices, largest first. */
function largestWeights(weights: ArrayLike<number>, k: number): { id: number; weight: number }[] {
  const top: { id: number; weight: number }[] = [];
  for (let id = 0; id < weights.length; id++) {
    const weight = weights[id]!;
    if (top.length === k && weight <= top[k - 1]!.weight) continue;
    let at = top.length;
    while (at > 0 && top[at - 1]!.weight < weight) at--;
    top.splice(at, 0, { id, weight });
    if (top.length > k) top.pop();
  }
  return top;
}

function concatRows(parts: Float64Array[], d: number): Float64Array {
  const out = new Float64Array(parts.length * d);
  parts.forEach((p, i) => out.set(p, i * d));
  return out;
}
