/** @softgrad/softtokens — soft-token RL: rollouts, RLOO, rewards, training, evaluation, the built-in task. */
export {
  COT_KINDS, type CotKind, type CotSettings, DEFAULT_NOISE_SCALE, DEFAULT_TAU, EVAL_MODES, type EvalModeName,
  evalModeSettings, type NoiseConvention, noiseSigma, parseEvalMode, trainingCotSettings,
} from './modes.js';
export {
  formatPrompt, formatSupervisedTarget, PREFILL_AT_LIMIT, PREFILL_STOPPED,
  PROMPT_TEMPLATE, STOP_STRING, type SupervisedTargetOptions,
} from './prompt.js';
export {
  answersEquivalent, extractLastBoxed, formatRational, gsm8kReference, mathReference, normalizeAnswer, normalizeText,
  parseNumber, rational, type Rational, rationalEquals, reward, REWARD_CORRECT, REWARD_FORMAT, REWARD_NONE,
} from './rewards.js';
export { countCorrect, meanPassAtK, meanPassAtKCurve, passAtK, passAtKCurve, type SampleCounts } from './passk.js';
export {
  applyOp, type ArithmeticOp, type ChoiceKind, type ChoiceTaskItem, evaluateChain, fnv1a32, generateChoiceTask,
  type GenerateChoiceTaskOptions, generateTask, type GenerateTaskOptions, inDistributionSplit, isHeldOutCombination,
  type ProblemMeta, SeededRng, TASK_ITEMS, TASK_NAMES, TASK_SPLITS, type TaskItem, type TaskSplit, TEMPLATE_NAMES,
  shortcutAnswer, type TemplateName, toGsm8kRecord,
} from './task.js';
export {
  type ChoiceFormat, type ChoiceItem, type ChoiceSet, loadChoiceItems, loadChoiceSet, loadGsm8k, loadMath,
  loadProblems, loadProblemSet, parseChoiceItems, parseChoiceSet, parseProblems, parseProblemSet, type ProblemFormat,
  type ProblemItem, type ProblemSet,
} from './datasets.js';
export { DataFileError, type JsonlLine, parseJsonl, readJsonl, readTextFile, toJsonl, writeJsonl } from './io.js';
export {
  escapeXml, formatPercent, type LineChartOptions, lineChartSvg, type LineSeries, markdownTable, niceTicks,
  SERIES_COLOURS, type TableCell,
} from './report.js';
export {
  type CotStepTrace, type CotTraceRequest, disposeRolloutBatch, embeddingRms, rollout, type Rollout,
  type RolloutBatch, type RolloutRequest, rolloutSoftInputs,
} from './rollout.js';
export { STOP_PHRASE, StopDetector, chooseAnswerPrefill, naiveStopMatch, stopMatchOf, type StopMatch } from './stop.js';
export {
  disposePacked, flatAdvantages, gaussianLogDensity, packedLogProbs, type PackedRollouts, type PackOptions,
  packRollouts, rlooAdvantages, rlooLoss, rlooSurrogate, rlooValueAndGrad, sequenceLogProbs, type TensorPlace,
} from './estimator.js';
export {
  type AdamWConfig, adamwInit, type AdamWState, adamwStep, type AdamWStepResult, cosineSchedule, globalNorm,
} from './optim.js';
export {
  completionLogProbs, completionLoss, type EncodedExample, encodeExample, type SupervisedExample,
  type SupervisedTrainOptions, trainSupervised,
} from './sft.js';
export { builtinBaseModelDir, builtinModelConfig, builtinProblems, builtinTokenizer, promptPieces } from './builtin.js';
export {
  choicePrompt, type ChoiceResult, type EvalOptions, evaluateChoices, evaluateMode, EvaluationInterrupted,
  type ModeResult, type ProblemOutcome, yieldToEventLoop,
} from './evaluate.js';
export {
  defaultValMode, type ExplicitRlSettings, explicitSettings, NothingToResumeError, precheckRun, promptsForStep, ResumeMismatchError,
  type RlRunOptions, type RlRunResult, type RlSettings, runDifferences, RunDirectoryInUseError, type StepMetrics,
  trainRl,
} from './train.js';
export {
  checkChoicesFit, checkProblemsFit, type Located, positionsAfterPrompt, type RolloutBudget, SettingsError,
} from './preflight.js';
export {
  type BootstrapOptions, directionalVerdict, discordantPairs, equivalenceVerdict, type Interval, mcnemarExact, mean,
  pairedBootstrap, quantileSorted, sampleSd,
} from './stats.js';
