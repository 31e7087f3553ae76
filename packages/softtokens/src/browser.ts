/**
 * @softgrad/softtokens/browser — the part of the package that runs in a web page: rollouts,
 * the stop rule, rewards, the RLOO estimator, AdamW, greedy evaluation, the built-in task and
 * SVG charts. It leaves out what reads or writes files (datasets from JSONL paths, trainRl's
 * run directories, the atomic-write helpers, the shipped model's path on disk); a page fetches
 * its model and data itself and trains with the pieces below.
 */
export {
  COT_KINDS, DEFAULT_NOISE_SCALE, DEFAULT_TAU, EVAL_MODES, evalModeSettings, noiseSigma, parseEvalMode, trainingCotSettings,
  type CotKind, type CotSettings, type EvalModeName, type NoiseConvention,
} from './modes.js';
export { PREFILL_AT_LIMIT, PREFILL_STOPPED, PROMPT_TEMPLATE, STOP_STRING, formatPrompt, formatSupervisedTarget } from './prompt.js';
export { STOP_PHRASE, StopDetector, chooseAnswerPrefill, naiveStopMatch, stopMatchOf, type StopMatch } from './stop.js';
export {
  REWARD_CORRECT, REWARD_FORMAT, REWARD_NONE, answersEquivalent, extractLastBoxed, gsm8kReference, mathReference, reward,
} from './rewards.js';
export {
  disposeRolloutBatch, embeddingRms, rollout, rolloutSoftInputs, type CotStepTrace, type CotTraceRequest, type Rollout, type RolloutBatch, type RolloutRequest,
} from './rollout.js';
export { rlooAdvantages, rlooLoss, rlooValueAndGrad, sequenceLogProbs } from './estimator.js';
export { adamwInit, adamwStep, cosineSchedule, globalNorm, type AdamWConfig, type AdamWState, type AdamWStepResult } from './optim.js';
export { evaluateMode, type EvalOptions, type ModeResult, type ProblemOutcome } from './evaluate.js';
export { builtinModelConfig, builtinProblems, builtinTokenizer } from './builtin.js';
export { generateTask, type TaskItem } from './task.js';
export type { ProblemItem } from './datasets.js';
export { lineChartSvg, formatPercent, type LineChartOptions, type LineSeries } from './report.js';
