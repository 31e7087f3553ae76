/**
 * Rollouts of the method (docs/method.md, "Rollouts"): B prompts × G samples decoded together with a KV cache. The chain of
 * thought is hard (sampled or greedy tokens) or soft/fuzzy (the probability-weighted mixture
 * of the full embedding matrix at temperature τ, plus Gaussian noise σ when sampling), with
 * an argmax *shadow* sequence that decides when the CoT stops. Then the answer prefill and
 * up to `maxAnswer` hard answer tokens.
 *
 * Everything stays on the device: the KV cache is preallocated for the whole rollout and
 * written in place, and each decoding step — choosing the next input from the logits
 * (sampling, the mixture, the noise, the entropy) and running the model one position — is one
 * jitted program. The only value read back per step is the [rows] vector of tokens the stop
 * test needs; the entropies come back once at the end and the soft inputs h̃ stay on the
 * device (RolloutBatch.softInputs) for the estimator.
 */
import * as T from '@softgrad/tensor';
import {
  createDecodeState, decodeStep, disposeDecodeParams, disposeDecodeState, prepareDecodeParams, type DecodeParams, type DecodeState,
  type ModelParams, type Tokenizer, type TransformerConfig,
} from '@softgrad/transformer';
import { type CotKind, type CotSettings, noiseSigma } from './modes.js';
import { extractLastBoxed } from './rewards.js';
import { chooseAnswerPrefill, STOP_PHRASE, StopDetector } from './stop.js';

export interface Rollout {
  /** Index of the prompt in the request, and of the sample within its group. */
  promptIndex: number;
  sampleIndex: number;
  promptIds: number[];
  kind: CotKind;
  /** Hard: the CoT tokens fed to the model. Soft/fuzzy: the argmax shadow tokens. */
  cotTokens: number[];
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
  /**
   * Soft/fuzzy: the noisy inputs h̃ fed to the model, on the device in the model's dtype,
   * [rows, maxCot, hidden]; row r's step t is at [r, t] for t < cotTokens.length. Null for hard
   * CoTs (and when the request did not keep them). The batch owns it: free it with
   * disposeRolloutBatch.
   */
  softInputs: T.Tensor | null;
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
  /**
   * Keep the soft inputs h̃ (RolloutBatch.softInputs), which scoring needs (default true).
   * Evaluation does not score, so it saves the [rows, maxCot, hidden] buffer.
   */
  keepSoftInputs?: boolean;
  /**
   * Shrink the decoding batch as rows finish (default true). Rows are decoded exactly as in a
   * full batch (each row's noise is its own), so this changes speed, not results; false keeps
   * every row to the end (for measuring what it saves, and for tests).
   */
  compactBatch?: boolean;
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

function entropyOf(z: T.Tensor): T.Tensor {
  const lp = T.logSoftmax(z, -1);
  return T.neg(T.sum(T.mul(T.exp(lp), lp), -1));
}

/** Static settings of a decoding step: part of the jit signature, so fixed per kind. */
interface StepMode {
  kind: CotKind | 'answer';
  sample: boolean;
  invTau: number;
  trace: boolean;
}

interface CotState {
  decode: DecodeState;
  /** Logits of each row's last position, [N, V]. */
  z: T.Tensor;
  entropies: T.Tensor;
  softInputs: T.Tensor | null;
}

/** Prefill S tokens per row (ids [N, S], padding where newValid is 0) at writeAt, attending to the first `attend` positions. */
function prefill(config: TransformerConfig, dp: DecodeParams, state: DecodeState, ids: T.Tensor, newValid: T.Tensor, writeAt: T.Tensor, attend: number) {
  return decodeStep(config, dp, state, T.gather(dp.embed, ids, 0), newValid, writeAt, attend);
}

/**
 * One step: choose each row's next input from z (mode.kind: a sampled or greedy token, or
 * the mixture softmax(z/τ)·E plus σ-noise with its argmax shadow), record the entropy, and
 * run the model on it at writeAt (rows with active = 0 are padded).
 */
function decideAndFeed(
  config: TransformerConfig, params: DecodeParams, st: CotState, stepIndex: T.Tensor, writeAt: T.Tensor, active: T.Tensor,
  sigma: T.Tensor, key: T.PRNGKey, mode: StepMode, attend: number, rowIds: T.Tensor, allRows: number,
) {
  const { z } = st;
  const [N, V] = z.shape as [number, number];
  const d = config.hidden_size;
  const [kSample, kNoise] = T.split(key);
  const place = { dtype: z.dtype, backend: z.backend };
  // Noise is drawn for every rollout row and each batch row takes its own (rowIds): a row's
  // sample does not depend on which other rows are still in the batch.
  const rowNoise = (draw: (rows: number) => T.Tensor) => T.gather(draw(allRows), rowIds, 0);
  let y: T.Tensor;
  let embeds: T.Tensor;
  let softInputs = st.softInputs;
  let mixture: T.Tensor | null = null;
  if (mode.kind === 'hard' || mode.kind === 'answer') {
    if (mode.sample) {
      const g = rowNoise((n) => T.gumbel(kSample!, [n, V], place));
      y = T.argmax(T.add(mode.invTau === 1 ? z : T.mul(z, mode.invTau), g), -1);
    } else {
      y = T.argmax(z, -1);
    }
    embeds = T.reshape(T.gather(params.embed, y, 0), [N, 1, d]);
  } else {
    const probs = T.softmax(T.mul(z, mode.invTau), -1);
    const h0 = T.matmul(probs, params.embed);
    const h = mode.sample ? T.add(h0, T.mul(rowNoise((n) => T.normal(kNoise!, [n, d], place)), sigma)) : h0;
    y = T.argmax(z, -1);
    embeds = T.reshape(h, [N, 1, d]);
    if (softInputs) softInputs = T.dynamicUpdateSlice(softInputs, embeds, stepIndex, 1);
    if (mode.trace) mixture = probs;
  }
  const entropy = mode.kind === 'answer' ? null : entropyOf(z);
  const entropies = entropy ? T.dynamicUpdateSlice(st.entropies, T.reshape(entropy, [N, 1]), stepIndex, 1) : st.entropies;
  const out = decodeStep(config, params, st.decode, embeds, T.reshape(active, [N, 1]), writeAt, attend);
  void V;
  return {
    y,
    entropy: mode.trace ? entropy : null,
    mixture,
    state: { decode: out.state, z: out.logits, entropies, softInputs },
  };
}

const jPrefill = T.jit(prefill, { name: 'rollout prefill', donateArgnums: [2] });
const jStep = T.jit(decideAndFeed, { name: 'rollout step', donateArgnums: [2] });

/** Tokens the answer prefill can take at most (the longest text chooseAnswerPrefill gives, plus slack). */
function maxPrefillTokens(tokenizer: Tokenizer): number {
  const texts = [`${STOP_PHRASE} `, STOP_PHRASE].map((cot) => chooseAnswerPrefill(cot, true));
  texts.push(chooseAnswerPrefill('x ', false), chooseAnswerPrefill('x', false));
  return Math.max(...texts.map((t) => tokenizer.encode(t).length)) + 2;
}

const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;

/** Positions attention reads once `filled` are written: rounded up, so a jitted step retraces only per bucket. */
const attendBucket = (filled: number, capacity: number) => Math.min(capacity, roundUp(filled, 32));

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
  const dtype = params.embed.dtype;
  const padId = tokenizer.padId ?? 0;
  const eosId = tokenizer.eosId;
  const embedRms = await embeddingRms(params.embed);
  const traceRow = req.cotTrace?.row ?? 0;
  const traceTopK = req.cotTrace?.topK ?? 5;
  if (!Number.isInteger(traceRow) || traceRow < 0 || traceRow >= N) throw new Error(`rollout: cotTrace.row must be a row index below ${N}, got ${traceRow}`);
  if (!Number.isInteger(traceTopK) || traceTopK < 1) throw new Error(`rollout: cotTrace.topK must be a positive integer, got ${traceTopK}`);
  const sigma = cot.kind !== 'hard' && cot.sample ? noiseSigma(cot.noiseScale, embedRms, d, cot.noiseConvention) : 0;
  const floats = (xs: ArrayLike<number>, shape: number[]) =>
    T.tensor(dtype === 'float64' ? Float64Array.from(xs) : Float32Array.from(xs), { shape, dtype, backend });
  const int = (v: number) => T.scalar(v, { dtype: 'int32', backend });
  let tokensProcessed = 0;

  // --- Prompts, left-padded to a length rounded up so that batches of similar prompts share
  // one compiled program; the cache holds the whole rollout.
  const promptIds = req.prompts.map((p) => tokenizer.encode(p, { addSpecialTokens: true }));
  const P = roundUp(Math.max(...promptIds.map((p) => p.length)), 8);
  const F = maxPrefillTokens(tokenizer);
  const capacity = roundUp(P + req.maxCot + F + maxAnswer, 32);
  if (capacity > config.max_position_embeddings) {
    throw new Error(`rollout: prompt (${P} tokens) + maxCot ${req.maxCot} + answer prefill and ${maxAnswer} answer tokens need ${capacity} positions; the model has ${config.max_position_embeddings}`);
  }
  const idsData = new Int32Array(B * P).fill(padId);
  const validData = new Float64Array(B * P);
  promptIds.forEach((p, b) => {
    idsData.set(p, b * P + (P - p.length));
    validData.fill(1, b * P + (P - p.length), (b + 1) * P);
  });
  const rowOf = Int32Array.from({ length: N }, (_, r) => Math.floor(r / G));

  // The weights in decoding's layout, made once for the whole rollout.
  const dp = prepareDecodeParams(config, params);
  // --- Prefill the B distinct prompts once, then repeat each row G times.
  let st: CotState;
  {
    const ids = T.tensor(idsData, { shape: [B, P], dtype: 'int32', backend });
    const valid = floats(validData, [B, P]);
    const at = int(0);
    const pre = jPrefill(config, dp, createDecodeState(config, B, capacity, { dtype, backend }), ids, valid, at, attendBucket(P, capacity));
    T.treeDispose([ids, valid, at]);
    const rows = T.tensor(rowOf, { dtype: 'int32', backend });
    const repeat = (t: T.Tensor) => {
      const r = T.gather(t, rows, 0);
      t.dispose();
      return r;
    };
    st = {
      decode: {
        keys: pre.state.keys.map(repeat), values: pre.state.values.map(repeat),
        valid: repeat(pre.state.valid), positions: repeat(pre.state.positions),
      },
      z: repeat(pre.logits),
      entropies: T.zeros([N, req.maxCot], { dtype, backend }),
      softInputs: cot.kind === 'hard' || req.keepSoftInputs === false ? null : T.zeros([N, req.maxCot, d], { dtype, backend }),
    };
    rows.dispose();
    tokensProcessed += promptIds.reduce((a, p) => a + p.length, 0);
  }
  let written = P;

  const rows = Array.from({ length: N }, (_, r) => ({
    cotTokens: [] as number[],
    entropies: [] as number[],
    stoppedEarly: false,
    cotText: '',
    prefillIds: [] as number[],
    answerIds: [] as number[],
    answerText: '',
    promptIndex: Math.floor(r / G),
    stop: new StopDetector(tokenizer),
  }));
  const sigmaT = floats([sigma], []);
  const trace = !!req.cotTrace;
  // Rows finish at very different steps (a few run to maxCot long after the rest stopped), so
  // the device batch shrinks as they do: `batchRows[i]` is the rollout row at batch position i
  // (-1: filler, inactive). When at most half the batch is still generating, the live rows are
  // gathered into a batch half as large (or smaller) and the old state is parked: the finished
  // rows' caches, entropies and soft inputs are taken back from it when the answer needs them.
  let batchRows = Array.from({ length: N }, (_, r) => r);
  const parked: { st: CotState; batchRows: number[] }[] = [];
  const minBatch = req.compactBatch === false ? N : Math.min(N, 8);
  const stateRows = (s0: CotState, index: readonly number[]): CotState => {
    const idx = T.tensor(Int32Array.from(index), { dtype: 'int32', backend });
    const g = (t: T.Tensor) => T.gather(t, idx, 0);
    const out: CotState = {
      decode: { keys: s0.decode.keys.map(g), values: s0.decode.values.map(g), valid: g(s0.decode.valid), positions: g(s0.decode.positions) },
      z: g(s0.z), entropies: g(s0.entropies), softInputs: s0.softInputs ? g(s0.softInputs) : null,
    };
    idx.dispose();
    return out;
  };
  const disposeState = (s0: CotState) => {
    disposeDecodeState(s0.decode);
    T.treeDispose([s0.z, s0.entropies, s0.softInputs]);
  };
  /** Shrinks the batch to the rows `live` says are generating, when that halves it; `park` keeps the old state. */
  const compact = (live: (r: number) => boolean, park: boolean) => {
    const keep = batchRows.flatMap((r, i) => (r >= 0 && live(r) ? [i] : []));
    const n = batchRows.length;
    if (n <= minBatch || keep.length === 0 || keep.length > n / 2) return;
    let size = minBatch;
    while (size < keep.length) size *= 2;
    const index = [...keep, ...new Array<number>(size - keep.length).fill(keep[0]!)];
    const next = stateRows(st, index);
    if (park) parked.push({ st, batchRows });
    else disposeState(st);
    st = next;
    batchRows = index.map((i, j) => (j < keep.length ? batchRows[i]! : -1));
  };
  /** All N rows again, in order: each from the current batch or the parked state it was left in. */
  const unpark = () => {
    if (parked.length === 0) return;
    const sources = [...parked, { st, batchRows }];
    const where = new Array<number>(N).fill(-1);
    let offset = 0;
    for (const src of sources) {
      src.batchRows.forEach((r, i) => {
        if (r >= 0) where[r] = offset + i; // later sources hold a row's newer state
      });
      offset += src.batchRows.length;
    }
    const cat = (f: (s0: CotState) => T.Tensor) => T.concat(sources.map((src) => f(src.st)), 0);
    const merged: CotState = {
      decode: {
        keys: st.decode.keys.map((_, l) => cat((s0) => s0.decode.keys[l]!)),
        values: st.decode.values.map((_, l) => cat((s0) => s0.decode.values[l]!)),
        valid: cat((s0) => s0.decode.valid), positions: cat((s0) => s0.decode.positions),
      },
      z: cat((s0) => s0.z), entropies: cat((s0) => s0.entropies), softInputs: st.softInputs ? cat((s0) => s0.softInputs!) : null,
    };
    const all = stateRows(merged, where);
    disposeState(merged);
    for (const src of sources) disposeState(src.st);
    parked.length = 0;
    st = all;
    batchRows = Array.from({ length: N }, (_, r) => r);
  };

  /** One decoding step for the rows of the batch; `active(r)` says which rollout rows take a token. Returns per-row results (rows not in the batch: undefined). */
  const run = async (stepIndex: number, mode: StepMode, active: (r: number) => boolean, key: T.PRNGKey) => {
    const si = int(stepIndex);
    const at = int(written);
    const on = batchRows.map((r) => r >= 0 && active(r));
    const act = floats(on.map((a) => (a ? 1 : 0)), [batchRows.length]);
    const ids = T.tensor(Int32Array.from(batchRows, (r) => Math.max(r, 0)), { dtype: 'int32', backend });
    const out = jStep(config, dp, st, si, at, act, sigmaT, key, mode, attendBucket(written + 1, capacity), ids, N);
    T.treeDispose([si, at, act, ids]);
    st = out.state;
    written++;
    tokensProcessed += on.filter(Boolean).length;
    const yb = await out.y.data();
    const eb = out.entropy ? await out.entropy.data() : null;
    const y = new Array<number>(N).fill(-1);
    const ent = new Array<number>(N).fill(NaN);
    batchRows.forEach((r, i) => {
      if (r < 0) return;
      y[r] = yb[i]!;
      if (eb) ent[r] = eb[i]!;
    });
    let mix: T.TypedArray | null = null;
    const tracePos = batchRows.indexOf(traceRow);
    if (out.mixture && tracePos >= 0) {
      const row = T.scope(() => T.reshape(T.slice(out.mixture!, [tracePos, 0], [1, -1]), [-1]));
      mix = await row.data();
      row.dispose();
    }
    T.treeDispose([out.y, out.entropy, out.mixture]);
    return { y, ent, mix };
  };

  let entropies: Float32Array | Float64Array;
  let softInputs: T.Tensor | null = null;
  try {
    // --- Chain of thought.
    const cotMode: StepMode = { kind: cot.kind, sample: cot.kind === 'hard' ? cot.sample : sigma > 0, invTau: 1 / cot.tau, trace };
    const active = new Array<boolean>(N).fill(true);
    for (let t = 0; t < req.maxCot && active.some(Boolean); t++) {
      const before = [...active];
      const { y, ent, mix } = await run(t, cotMode, (r) => before[r]!, T.foldIn(req.key, t));
      for (let r = 0; r < N; r++) {
        if (!before[r]) continue;
        const row = rows[r]!;
        row.cotTokens.push(y[r]!);
        if (row.stop.push(y[r]!) !== null) {
          row.stoppedEarly = true;
          active[r] = false;
        } else if (t === req.maxCot - 1) {
          active[r] = false;
        }
      }
      req.onStep?.('cot', t, active.filter(Boolean).length);
      req.cotTrace?.onCotStep({
        step: t,
        tokens: before.map((a, r) => (a ? y[r]! : -1)),
        entropies: before.map((a, r) => (a ? ent[r]! : NaN)),
        stopped: before.map((a, r) => a && rows[r]!.stoppedEarly),
        topMixture: mix && before[traceRow] ? largestWeights(mix, traceTopK) : null,
      });
      if (active.some(Boolean)) compact((r) => active[r]!, true);
    }
    unpark();
    // The answer steps neither read nor write the soft inputs: the batch takes them now.
    softInputs = st.softInputs;
    st = { ...st, softInputs: null };
    entropies = (await st.entropies.data()) as Float32Array | Float64Array;
    for (let r = 0; r < N; r++) {
      const row = rows[r]!;
      row.entropies = Array.from(entropies.subarray(r * req.maxCot, r * req.maxCot + row.cotTokens.length));
    }

    // --- Answer prefill, right-aligned so every row's next position is its answer start.
    for (const row of rows) row.cotText = tokenizer.decode(row.cotTokens);
    const prefillText = rows.map((r) => chooseAnswerPrefill(r.cotText, r.stoppedEarly));
    for (let r = 0; r < N; r++) rows[r]!.prefillIds = tokenizer.encode(prefillText[r]!);
    const preIds = new Int32Array(N * F).fill(padId);
    const preValid = new Float64Array(N * F);
    rows.forEach((row, r) => {
      if (row.prefillIds.length > F) throw new Error(`rollout: answer prefill of ${row.prefillIds.length} tokens exceeds the ${F} reserved`);
      preIds.set(row.prefillIds, r * F + (F - row.prefillIds.length));
      preValid.fill(1, r * F + (F - row.prefillIds.length), (r + 1) * F);
    });
    {
      const ids = T.tensor(preIds, { shape: [N, F], dtype: 'int32', backend });
      const valid = floats(preValid, [N, F]);
      const at = int(written);
      const pre = jPrefill(config, dp, st.decode, ids, valid, at, attendBucket(written + F, capacity));
      T.treeDispose([ids, valid, at, st.z]);
      st = { ...st, decode: pre.state, z: pre.logits };
      written += F;
      tokensProcessed += rows.reduce((a, r) => a + r.prefillIds.length, 0);
    }

    // --- Answer: hard tokens until EOS, a closed \boxed{...}, or maxAnswer.
    const answerMode: StepMode = { kind: 'answer', sample: req.answerSample, invTau: 1 / answerTau, trace: false };
    const answering = new Array<boolean>(N).fill(true);
    for (let a = 0; a < maxAnswer; a++) {
      const { y } = await run(0, answerMode, (r) => answering[r]!, T.foldIn(req.key, 1_000_000 + a));
      for (let r = 0; r < N; r++) {
        if (!answering[r]) continue;
        const row = rows[r]!;
        row.answerIds.push(y[r]!);
        row.answerText = prefillText[r]! + tokenizer.decode(row.answerIds, { skipSpecialTokens: true });
        if (y[r] === eosId || extractLastBoxed(row.answerText) !== null) answering[r] = false;
      }
      const still = answering.filter(Boolean).length;
      req.onStep?.('answer', a, still);
      if (still === 0) break;
      compact((r) => answering[r]!, false);
    }
  } catch (e) {
    softInputs?.dispose();
    st.softInputs?.dispose();
    throw e;
  } finally {
    disposeDecodeState(st.decode);
    T.treeDispose([st.z, st.entropies, sigmaT]);
    for (const p of parked) disposeState(p.st);
    disposeDecodeParams(dp);
  }

  const rollouts: Rollout[] = rows.map((row, r) => ({
    promptIndex: row.promptIndex,
    sampleIndex: r % G,
    promptIds: promptIds[row.promptIndex]!,
    kind: cot.kind,
    cotTokens: row.cotTokens,
    stoppedEarly: row.stoppedEarly,
    prefillIds: row.prefillIds,
    answerIds: row.answerIds,
    cotText: row.cotText,
    answerText: row.answerText,
    entropies: row.entropies,
  }));
  return { rollouts, softInputs, cot, sigma, embedRms, answerSample: req.answerSample, answerTau, tokensProcessed };
}

/** Frees what a batch holds on the device (the soft inputs). */
export function disposeRolloutBatch(batch: RolloutBatch): void {
  batch.softInputs?.dispose();
}

/** Row r's soft inputs h̃, [cotLength × hidden] row-major (a readback, for inspection and tests). */
export async function rolloutSoftInputs(batch: RolloutBatch, r: number): Promise<Float64Array> {
  if (!batch.softInputs) throw new Error('rolloutSoftInputs: a hard batch has no soft inputs');
  const ro = batch.rollouts[r];
  if (!ro) throw new Error(`rolloutSoftInputs: no rollout ${r} in a batch of ${batch.rollouts.length}`);
  const [, L, d] = batch.softInputs.shape as [number, number, number];
  const all = await batch.softInputs.data();
  return Float64Array.from(all.subarray(r * L * d, r * L * d + ro.cotTokens.length * d));
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
