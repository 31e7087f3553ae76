/**
 * Wall time of one soft-token RL step on the CPU backend, for each CoT kind: a rollout of
 * B = 2 prompts × G = 8 samples (max CoT 64, answer up to 32 tokens), the RLOO loss's value
 * and gradient, and one AdamW update — what `trainRl` does per step, minus logging,
 * validation and checkpoints. The model is the built-in task's architecture (built-in
 * tokenizer, ~0.1M parameters) with random weights, so every CoT runs to its 64-token limit
 * and the workload is the same from step to step.
 *
 * No peer exists for soft-token RL (no other engine implements these rollouts and their
 * estimator), so this benchmark prints "no peer" instead of a comparison.
 *
 *   SOFTGRAD_RL_STEPS=n   timed steps per kind (default 3, after one warm-up step)
 */
import { expect, it } from 'vitest';
import * as T from '@softgrad/tensor';
import { initParams, parameterCount, type ModelParams } from '@softgrad/transformer';
import {
  adamwInit, adamwStep, builtinModelConfig, builtinProblems, builtinTokenizer, COT_KINDS, formatPrompt, reward,
  disposeRolloutBatch, rlooAdvantages, rlooValueAndGrad, rollout, trainingCotSettings, type AdamWState, type CotKind,
} from '@softgrad/softtokens';
import { fmt, formatMachine, formatTable, timeTasks } from './bench-util.js';

const PROMPTS = 2;
const SAMPLES = 8;
const MAX_COT = 64;
const MAX_ANSWER = 32;
const STEPS = Number(process.env['SOFTGRAD_RL_STEPS'] ?? 3);

interface Phases {
  rolloutMs: number;
  lossGradMs: number;
  adamwMs: number;
  rolloutTokens: number;
  scoredTokens: number;
  cotLength: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

it('RL step wall time (rollout + RLOO valueAndGrad + AdamW), CPU', async () => {
  if (!(Number.isInteger(STEPS) && STEPS >= 1)) throw new Error(`SOFTGRAD_RL_STEPS must be a positive integer, got ${process.env['SOFTGRAD_RL_STEPS']}`);
  const tokenizer = builtinTokenizer();
  const config = builtinModelConfig(tokenizer.vocabSize);
  const backend = T.createCpuBackend();
  const problems = builtinProblems('train', PROMPTS, 0);
  const prompts = problems.map((p) => formatPrompt(p.question));
  const rows: string[][] = [];
  const t0 = performance.now();
  let nParams = 0;

  for (const kind of COT_KINDS) {
    let params: ModelParams = initParams(config, 0, { backend, dtype: 'float32' });
    nParams = parameterCount(params);
    let opt: AdamWState<ModelParams> = adamwInit(params);
    const cot = trainingCotSettings(kind);
    const phases: Phases[] = [];
    let step = 0;
    const rlStep = async () => {
      const a = performance.now();
      const batch = await rollout({
        config, params, tokenizer, prompts, samples: SAMPLES, cot, maxCot: MAX_COT, maxAnswer: MAX_ANSWER,
        answerSample: true, answerTau: 1, key: T.foldIn(T.key(1), step++),
      });
      const b = performance.now();
      const rewards = problems.map((p, i) =>
        batch.rollouts.slice(i * SAMPLES, (i + 1) * SAMPLES).map((r) => reward(r.answerText, p.reference)),
      );
      const [loss, grads] = rlooValueAndGrad(config, params, batch, rlooAdvantages(rewards));
      disposeRolloutBatch(batch);
      await loss.item();
      const c = performance.now();
      const res = await adamwStep(params, grads, opt, { lr: 1e-4, maxGradNorm: 1 }, 1e-4);
      const leaves = T.treeLeaves(res.params);
      await leaves[leaves.length - 1]!.data();
      const d = performance.now();
      loss.dispose();
      T.treeDispose(grads);
      T.treeDispose(params);
      T.treeDispose(opt);
      params = res.params;
      opt = res.state;
      const ros = batch.rollouts;
      phases.push({
        rolloutMs: b - a,
        lossGradMs: c - b,
        adamwMs: d - c,
        rolloutTokens: batch.tokensProcessed,
        // Sequences are packed left-padded to the longest one for the scoring forward.
        scoredTokens: ros.length * Math.max(...ros.map((r) => r.promptIds.length + r.cotTokens.length + r.prefillIds.length + r.answerIds.length)),
        cotLength: ros.reduce((s, r) => s + r.cotTokens.length, 0) / ros.length,
      });
    };
    const timing = (await timeTasks([[kind, rlStep]], { timeMs: 0, iterations: STEPS, warmup: 1 })).get(kind)!;
    const timed = phases.slice(-timing.samples);
    const stepMs = timing.medianMs;
    const tok = median(timed.map((p) => p.rolloutTokens));
    const scored = median(timed.map((p) => p.scoredTokens));
    rows.push([
      kind,
      fmt(stepMs),
      fmt(median(timed.map((p) => p.rolloutMs))),
      fmt(median(timed.map((p) => p.lossGradMs))),
      fmt(median(timed.map((p) => p.adamwMs))),
      fmt(median(timed.map((p) => p.cotLength))),
      String(tok),
      fmt((tok / stepMs) * 1000),
      fmt((tok / median(timed.map((p) => p.rolloutMs))) * 1000),
      String(scored),
      fmt(((tok + scored) / stepMs) * 1000),
      String(timing.samples),
      'no peer',
    ]);
    console.log(`[cpu] RL step ${kind}: ${fmt(stepMs)} ms (${fmt((tok / stepMs) * 1000)} rollout tok/s); no peer`);
    T.treeDispose(params);
    T.treeDispose(opt);
    expect(stepMs).toBeGreaterThan(0);
  }
  expect(backend.stats().liveBuffers).toBe(0);

  console.log(
    [
      '',
      formatMachine(),
      '',
      `[cpu] RL step: built-in tokenizer (vocab ${tokenizer.vocabSize}) and model config (hidden ${config.hidden_size}, ${config.num_hidden_layers} layers, ` +
        `${config.num_attention_heads} heads / ${config.num_key_value_heads} KV, tied embeddings; ${nParams.toLocaleString('en-US')} parameters, random weights), float32; ` +
        `B=${PROMPTS} prompts × G=${SAMPLES} samples, max CoT ${MAX_COT}, max answer ${MAX_ANSWER}`,
      formatTable(
        ['kind', 'step ms', 'rollout ms', 'rlooLoss value+grad ms', 'adamw ms', 'mean CoT len', 'rollout tokens', 'rollout tok/s (over whole step)', 'rollout tok/s (rollout only)', 'scored tokens (padded)', '(rollout+scored) tok/s', 'steps', 'peer'],
        rows,
      ),
      '[cpu] Peer: no peer — no other engine implements soft-token RL rollouts and their RLOO estimator; figures stand alone.',
      '[cpu] rollout tokens = prompt prefill + CoT + answer prefill + answer tokens the model processed (RolloutBatch.tokensProcessed);',
      '[cpu] scored tokens = rows × longest packed sequence fed to the rlooLoss forward/backward. Medians over the timed steps, after one warm-up step.',
      `[cpu] total bench time ${((performance.now() - t0) / 1000).toFixed(0)} s`,
      '',
    ].join('\n'),
  );
}, 600_000);
