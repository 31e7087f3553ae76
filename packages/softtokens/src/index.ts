/** @softgrad/softtokens — soft-token RL: rollouts, RLOO, rewards, training, evaluation, the built-in task. */
export * from './modes.js';
export * from './prompt.js';
export * from './rewards.js';
export * from './passk.js';
export * from './task.js';
export * from './datasets.js';
export * from './io.js';
export * from './report.js';
export * from './rollout.js';
export { STOP_PHRASE, StopDetector, chooseAnswerPrefill, naiveStopMatch, stopMatchOf, type StopMatch } from './stop.js';
export * from './estimator.js';
export * from './optim.js';
export * from './sft.js';
export * from './builtin.js';
export * from './evaluate.js';
export * from './train.js';
export * from './preflight.js';
export {
  directionalVerdict, discordantPairs, equivalenceVerdict, mcnemarExact, mean, pairedBootstrap, quantileSorted, sampleSd,
  type BootstrapOptions, type Interval,
} from './stats.js';
