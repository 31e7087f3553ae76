/**
 * Chain-of-thought kinds and the decoding settings of docs/method.md: temperature τ, noise scale
 * γ with its σ convention, and the six evaluation modes.
 */
export type CotKind = 'hard' | 'soft' | 'fuzzy';
export const COT_KINDS: readonly CotKind[] = ['hard', 'soft', 'fuzzy'];

/**
 * How γ becomes the per-coordinate noise σ. r is the root-mean-square of the Euclidean norms
 * of the embedding rows.
 * - 'norm' (default): σ = γ·r/√d, so the noise vector's norm is about γ·r (a third of a
 *   typical embedding's norm at γ = 0.33).
 * - 'coordinate': σ = γ·r per coordinate (the literal reading of "0.33 × the RMS norm").
 */
export type NoiseConvention = 'norm' | 'coordinate';

export interface CotSettings {
  kind: CotKind;
  /** Sample (hard: draw tokens; soft/fuzzy: add noise) or decode greedily. */
  sample: boolean;
  /** CoT temperature τ (hard greedy ignores it). */
  tau: number;
  /** Noise scale γ for soft/fuzzy sampling. */
  noiseScale: number;
  noiseConvention: NoiseConvention;
}

export const DEFAULT_TAU: Record<CotKind, number> = { hard: 1.0, soft: 0.5, fuzzy: 0.0001 };
export const DEFAULT_NOISE_SCALE = 0.33;

export type EvalModeName =
  | 'hard-greedy' | 'hard-sample' | 'soft-greedy' | 'soft-sample' | 'fuzzy-greedy' | 'fuzzy-sample';
export const EVAL_MODES: readonly EvalModeName[] = [
  'hard-greedy', 'hard-sample', 'soft-greedy', 'soft-sample', 'fuzzy-greedy', 'fuzzy-sample',
];

/** The table of docs/method.md ("Evaluation"): the CoT settings of an evaluation mode (the answer is always greedy). */
export function evalModeSettings(mode: EvalModeName, noiseScale = DEFAULT_NOISE_SCALE, noiseConvention: NoiseConvention = 'norm'): CotSettings {
  const [kind, how] = mode.split('-') as [CotKind, 'greedy' | 'sample'];
  const sample = how === 'sample';
  return {
    kind,
    sample,
    tau: kind === 'hard' && !sample ? 0 : DEFAULT_TAU[kind],
    noiseScale: kind !== 'hard' && sample ? noiseScale : 0,
    noiseConvention,
  };
}

/** The CoT settings RL training uses for a kind (always sampled, docs/method.md). */
export function trainingCotSettings(kind: CotKind, tau = DEFAULT_TAU[kind], noiseScale = DEFAULT_NOISE_SCALE, noiseConvention: NoiseConvention = 'norm'): CotSettings {
  return { kind, sample: true, tau, noiseScale: kind === 'hard' ? 0 : noiseScale, noiseConvention };
}

export function parseEvalMode(s: string): EvalModeName {
  if (!(EVAL_MODES as readonly string[]).includes(s)) {
    throw new Error(`unknown mode "${s}" (expected one of ${EVAL_MODES.join(', ')})`);
  }
  return s as EvalModeName;
}

/** σ from γ and the embedding statistics. */
export function noiseSigma(noiseScale: number, embedRms: number, hidden: number, convention: NoiseConvention): number {
  return convention === 'norm' ? (noiseScale * embedRms) / Math.sqrt(hidden) : noiseScale * embedRms;
}
