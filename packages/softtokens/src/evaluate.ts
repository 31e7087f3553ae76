/**
 * Evaluation (docs/method.md, "Evaluation"): the six inference modes with a greedy answer, greedy pass@1, sampled
 * pass@1 and pass@k (unbiased, from n ≥ k samples), the mean next-token entropy per CoT
 * position, and multiple-choice likelihood scoring for out-of-domain robustness.
 */
import * as T from '@softgrad/tensor';
import type { ModelParams, Tokenizer, TransformerConfig } from '@softgrad/transformer';
import type { ChoiceItem, ProblemItem } from './datasets.js';
import { evalModeSettings, type EvalModeName, type NoiseConvention } from './modes.js';
import { meanPassAtKCurve } from './passk.js';
import { formatPrompt } from './prompt.js';
import { REWARD_CORRECT, REWARD_FORMAT, reward } from './rewards.js';
import { rollout, type Rollout } from './rollout.js';
import { completionLogProbs, type EncodedExample } from './sft.js';

export interface EvalOptions {
  config: TransformerConfig;
  params: ModelParams;
  tokenizer: Tokenizer;
  problems: readonly ProblemItem[];
  mode: EvalModeName;
  /** Samples per problem in the sampling modes (greedy modes use 1). */
  samples: number;
  maxCot: number;
  maxAnswer?: number;
  noiseScale?: number;
  noiseConvention?: NoiseConvention;
  seed: number;
  /** Rows (prompts × samples) decoded together. */
  batchRows?: number;
  /** Called with (problems done, total). */
  onProgress?: (done: number, total: number) => void;
  /** Stops the evaluation between batches (it then throws EvaluationInterrupted). */
  signal?: AbortSignal;
}

/**
 * Lets the event loop run. On the CPU backend a rollout is a chain of already-resolved
 * promises, which never gives the event loop a turn: without this, a Ctrl-C (delivered
 * through the event loop) would wait for the whole evaluation or run.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** An evaluation stopped by its signal; the modes finished before it are complete. */
export class EvaluationInterrupted extends Error {
  constructor(readonly mode: EvalModeName, readonly problemsDone: number) {
    super(`evaluation of ${mode} interrupted after ${problemsDone} problem(s)`);
    this.name = 'EvaluationInterrupted';
  }
}

export interface ProblemOutcome {
  question: string;
  reference: string;
  rewards: number[];
  /**
   * Mean next-token entropy (nats) over this problem's CoT steps, all samples pooled (NaN when
   * no sample has a CoT step): the per-problem score that paired entropy comparisons use.
   */
  meanEntropy: number;
  /** First sample's texts, for reading. */
  cotText: string;
  answerText: string;
}

export interface ModeResult {
  mode: EvalModeName;
  samples: number;
  problems: number;
  /** Mean over problems of the fraction of correct samples (pass@1). */
  passAt1: number;
  /** pass@k for k = 1..samples (sampling modes); [pass@1] for greedy. */
  passAtK: number[];
  meanReward: number;
  /** Fraction of samples whose answer had a parseable \boxed{}. */
  formatRate: number;
  meanCotLength: number;
  /** Fraction of CoTs that ended on the stop string. */
  stopRate: number;
  /** Mean entropy (nats) of the next-token distribution at CoT position t (index t), over samples reaching t. */
  entropyByPosition: number[];
  /** How many samples reached each CoT position. */
  entropyCounts: number[];
  /**
   * Mean entropy (nats) over every generated CoT step (NaN when there are none): positions weigh
   * by how many samples reached them, so the few longest CoTs do not dominate.
   */
  meanEntropy: number;
  outcomes: ProblemOutcome[];
  seconds: number;
}

export async function evaluateMode(opts: EvalOptions): Promise<ModeResult> {
  const t0 = performance.now();
  const settings = evalModeSettings(opts.mode, opts.noiseScale, opts.noiseConvention);
  const n = settings.sample ? opts.samples : 1;
  if (!Number.isInteger(n) || n < 1) throw new Error(`evaluateMode: samples must be a positive integer, got ${opts.samples}`);
  const perBatch = Math.max(1, Math.floor((opts.batchRows ?? 256) / n));
  const outcomes: ProblemOutcome[] = [];
  const entSum: number[] = [];
  const entCount: number[] = [];
  let cotLen = 0;
  let stops = 0;
  let formatted = 0;
  let rewardSum = 0;
  let total = 0;
  for (let start = 0; start < opts.problems.length; start += perBatch) {
    if (opts.signal) {
      await yieldToEventLoop();
      if (opts.signal.aborted) throw new EvaluationInterrupted(opts.mode, start);
    }
    const chunk = opts.problems.slice(start, start + perBatch);
    const batch = await rollout({
      config: opts.config, params: opts.params, tokenizer: opts.tokenizer,
      prompts: chunk.map((p) => formatPrompt(p.question)), samples: n, cot: settings,
      maxCot: opts.maxCot, maxAnswer: opts.maxAnswer, answerSample: false,
      key: T.foldIn(T.key(opts.seed), start), keepSoftInputs: false,
    });
    chunk.forEach((p, b) => {
      const rows: Rollout[] = batch.rollouts.slice(b * n, (b + 1) * n);
      const rewards = rows.map((r) => reward(r.answerText, p.reference));
      let problemEntSum = 0;
      let problemEntCount = 0;
      for (const r of rows) {
        for (const e of r.entropies) {
          problemEntSum += e;
          problemEntCount++;
        }
        cotLen += r.cotTokens.length;
        if (r.stoppedEarly) stops++;
        r.entropies.forEach((e, t) => {
          entSum[t] = (entSum[t] ?? 0) + e;
          entCount[t] = (entCount[t] ?? 0) + 1;
        });
      }
      for (const w of rewards) {
        rewardSum += w;
        if (w >= REWARD_FORMAT) formatted++;
        total++;
      }
      outcomes.push({
        question: p.question, reference: p.reference, rewards, meanEntropy: problemEntCount > 0 ? problemEntSum / problemEntCount : NaN,
        cotText: rows[0]!.cotText, answerText: rows[0]!.answerText,
      });
    });
    opts.onProgress?.(Math.min(start + perBatch, opts.problems.length), opts.problems.length);
  }
  const counts = outcomes.map((o) => ({ n: o.rewards.length, c: o.rewards.filter((r) => r === REWARD_CORRECT).length }));
  const ks = Array.from({ length: n }, (_, i) => i + 1);
  const passAtK = meanPassAtKCurve(counts, ks);
  return {
    mode: opts.mode, samples: n, problems: outcomes.length,
    passAt1: passAtK[0]!, passAtK,
    meanReward: rewardSum / Math.max(1, total),
    formatRate: formatted / Math.max(1, total),
    meanCotLength: cotLen / Math.max(1, total),
    stopRate: stops / Math.max(1, total),
    entropyByPosition: entSum.map((s, t) => s / entCount[t]!),
    entropyCounts: entCount,
    meanEntropy: entCount.reduce((a, c) => a + c, 0) > 0 ? entSum.reduce((a, v) => a + v, 0) / entCount.reduce((a, c) => a + c, 0) : NaN,
    outcomes,
    seconds: (performance.now() - t0) / 1000,
  };
}

export interface ChoiceResult {
  items: number;
  accuracy: number;
  /**
   * Mean over items of the negative log-likelihood of the correct choice **per token** (nats):
   * the choice's summed NLL divided by its number of tokens, as the paper reports it.
   */
  meanNll: number;
  /** Standard error of meanNll over items. */
  nllStdErr: number;
  /** Per item, in order: NLL per token of the correct choice (the scores paired comparisons use). */
  itemNll: number[];
  /** Per item: whether the highest-likelihood choice was the correct one. */
  itemCorrect: boolean[];
}

/**
 * The text a choice is scored after: the question, then `Answer:` (the MMLU layout of
 * lm-evaluation-harness). No "Question:" label in front: the built-in tokenizer has no "Q",
 * and its strict mode showed that the label had been encoded as the unknown token.
 */
export function choicePrompt(question: string): string {
  return `${question}\nAnswer:`;
}

/**
 * Likelihood scoring of multiple-choice items: each choice is scored as the completion
 * ` choice` of `question\nAnswer:`; the prediction is the choice with the highest total
 * log-likelihood, and the NLL reported is the correct choice's per token.
 */
export async function evaluateChoices(
  config: TransformerConfig,
  params: ModelParams,
  tokenizer: Tokenizer,
  items: readonly ChoiceItem[],
  batchSize = 64,
): Promise<ChoiceResult> {
  const seqs: { item: number; choice: number; ex: EncodedExample }[] = [];
  const correctTokens: number[] = [];
  items.forEach((it, i) => {
    const p = tokenizer.encode(choicePrompt(it.question), { addSpecialTokens: true });
    it.choices.forEach((c, j) => {
      const ids = [...p, ...tokenizer.encode(` ${c}`)];
      if (ids.length === p.length) throw new Error(`evaluateChoices: item ${i} choice ${j} (${JSON.stringify(c)}) encodes to no tokens`);
      if (j === it.answerIndex) correctTokens[i] = ids.length - p.length;
      seqs.push({ item: i, choice: j, ex: { ids, start: p.length } });
    });
  });
  const scores = items.map((it) => new Array<number>(it.choices.length).fill(-Infinity));
  for (let s = 0; s < seqs.length; s += batchSize) {
    const chunk = seqs.slice(s, s + batchSize);
    const { logProbs } = completionLogProbs(config, params, chunk.map((c) => c.ex), tokenizer.padId ?? 0);
    const lp = await logProbs.data();
    logProbs.dispose();
    chunk.forEach((c, i) => (scores[c.item]![c.choice] = lp[i]!));
  }
  let correct = 0;
  const nlls: number[] = [];
  const itemCorrect: boolean[] = [];
  items.forEach((it, i) => {
    const sc = scores[i]!;
    const best = sc.indexOf(Math.max(...sc));
    if (best === it.answerIndex) correct++;
    itemCorrect.push(best === it.answerIndex);
    nlls.push(-sc[it.answerIndex]! / correctTokens[i]!);
  });
  const n = Math.max(1, items.length);
  const meanNll = nlls.reduce((a, b) => a + b, 0) / n;
  const variance = nlls.length > 1 ? nlls.reduce((a, v) => a + (v - meanNll) ** 2, 0) / (nlls.length - 1) : 0;
  return { items: items.length, accuracy: correct / n, meanNll, nllStdErr: Math.sqrt(variance / n), itemNll: nlls, itemCorrect };
}
