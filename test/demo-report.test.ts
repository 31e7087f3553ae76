/**
 * The demo report's statistics on synthetic evaluations whose answers are known: the
 * headline and each finding's verdict must follow from paired intervals, and equal models
 * must come out at parity, different ones not.
 */
import { describe, expect, it } from 'vitest';
import { EVAL_MODES, SeededRng, type ModeResult, type StepMetrics } from '@softgrad/softtokens';
import { buildDemoReport, MODEL_COLOURS, type DemoReportInput, type EvalPair } from '../packages/cli/src/demo-report.js';
import { resolveDemoSettings, DEMO_PRESETS } from '../packages/cli/src/demo.js';
import type { EvalReport } from '../packages/cli/src/eval.js';

const N = 200;
const SAMPLES = 32;

/** A model whose sampled CoTs solve problem i with probability p(i), greedy iff p(i) > 0.5. */
function model(name: string, p: (i: number) => number, seed: number, opts: { entropy?: number; nll?: number } = {}): EvalPair {
  const rng = new SeededRng(seed);
  const modes: ModeResult[] = EVAL_MODES.map((mode) => {
    const greedy = mode.endsWith('greedy');
    const outcomes = Array.from({ length: N }, (_, i) => {
      const n = greedy ? 1 : SAMPLES;
      const rewards = Array.from({ length: n }, () => ((greedy ? p(i) > 0.5 : rng.nextFloat() < p(i)) ? 100 : 10));
      return { question: `q${i}`, reference: '1', rewards, meanEntropy: (opts.entropy ?? 0.4) + 0.05 * (rng.nextFloat() - 0.5), cotText: 'c', answerText: '\\boxed{1}' };
    });
    const frac = outcomes.map((o) => o.rewards.filter((r) => r === 100).length / o.rewards.length);
    const passAt1 = frac.reduce((a, b) => a + b, 0) / N;
    return {
      mode, samples: greedy ? 1 : SAMPLES, problems: N, passAt1, passAtK: greedy ? [passAt1] : Array.from({ length: SAMPLES }, () => passAt1),
      meanReward: 0, formatRate: 1, meanCotLength: 10, stopRate: 1, entropyByPosition: [0.4, 0.3], entropyCounts: [N, N], meanEntropy: 0.35, outcomes, seconds: 1,
    };
  });
  const itemNll = Array.from({ length: N }, () => (opts.nll ?? 1) + 0.1 * (rng.nextFloat() - 0.5));
  const test: EvalReport = {
    model: name, data: 'builtin:test', modes,
    choices: { items: N, accuracy: 0.5, meanNll: 1, nllStdErr: 0.01, itemNll, itemCorrect: itemNll.map((_, i) => i % 2 === 0) },
  };
  const ood: EvalReport = { model: name, data: 'builtin:ood', modes: [modes[0]!] };
  return { test, ood };
}

const difficulty = (i: number) => ((i * 37) % 100) / 100; // a spread of problem difficulties in [0, 1)

function input(trained: DemoReportInput['trained'], seeds = [0]): DemoReportInput {
  const metrics: StepMetrics[] = Array.from({ length: 10 }, (_, i) => ({
    step: i + 1, reward: 20 + i, accuracy: 0.1, loss: 0, gradNorm: 100, lr: 1e-3, cotLength: 10, entropy: 0.3, stopRate: 1, sigma: 0.1, tokensPerSecond: 1, seconds: 0.5,
  }));
  const per = <T>(v: T) => ({ hard: seeds.map(() => v), soft: seeds.map(() => v), fuzzy: seeds.map(() => v) });
  return {
    base: model('base', (i) => 0.3 * difficulty(i) + 0.1, 1),
    trained, seeds,
    metrics: per(metrics),
    validation: per([{ step: 0, accuracy: 0.2 }, { step: 10, accuracy: 0.3 }]),
    best: per({ step: 10, accuracy: 0.3, mode: 'hard-greedy' }),
    settings: { 'batch-prompts': 4, samples: 16, 'eval-samples': SAMPLES, 'max-grad-norm': 0, 'weight-decay': 0, 'noise-scale': 0.33, warmup: 20, sigma: '1e-1' },
    lr: { hard: 1e-3, soft: 1e-3, fuzzy: 1e-3 },
    margins: { pass: 0.05, nll: 0.05, entropy: 0.05 },
    bootstrap: { resamples: 2000, seed: 0 },
    passK: 32, wallSeconds: 100, phases: [{ name: 'RL', seconds: 60 }], preset: 'test',
  };
}

describe('demo report statistics', () => {
  it('calls a large paired gain an improvement, and equal models parity', () => {
    const better = (i: number) => Math.min(1, 0.3 * difficulty(i) + 0.4); // +30 points on every problem
    const r = buildDemoReport(input({
      hard: [model('hard', better, 2, { entropy: 0.2, nll: 1.3 })],
      soft: [model('soft', better, 3, { nll: 1.0 })],
      fuzzy: [model('fuzzy', better, 4, { nll: 1.0 })],
    }));
    const h = r.summary.headline[0]!;
    expect(h.a).toBe('hard-trained');
    expect(h.verdict).toBe('improved');
    expect(h.difference.estimate).toBeGreaterThan(0.25);
    expect(h.difference.lo).toBeGreaterThan(0.2);
    expect(r.markdown.split('\n')[2]).toMatch(/^\*\*Hard RL improved the base model\*\*/);
    // Greedy pass@1 gets McNemar as well.
    expect(r.summary.headline[1]!.mcnemarP).toBeLessThan(1e-6);
    const f = Object.fromEntries(r.summary.findings.map((x) => [x.id, x]));
    // Same policy, different sampling noise: parity on sampled pass@1.
    expect(f[1]!.verdict).toBe('consistent');
    expect(f[1]!.comparisons.filter((c) => !c.secondary).every((c) => c.verdict === 'parity')).toBe(true);
    // pass@32 equal: no direction shown.
    expect(f[2]!.verdict).toBe('inconclusive');
    // Hard raises NLL by 0.3 nats/token, soft/fuzzy keep it; hard halves the entropy.
    expect(f[3]!.verdict).toBe('consistent');
    expect(f[4]!.verdict).toBe('consistent');
    expect(r.svgs['val-accuracy.svg']).toContain(MODEL_COLOURS.hard);
    expect(r.svgs['val-accuracy.svg']).toContain('hard-trained');
    expect(r.markdown).toContain('Gradient clipping: none');
  });

  it('calls no change inconclusive, and a harmful one worse', () => {
    const same = (i: number) => 0.3 * difficulty(i) + 0.1;
    const worse = (i: number) => Math.max(0, 0.3 * difficulty(i) - 0.1);
    const r = buildDemoReport(input({
      hard: [model('hard', same, 2)], soft: [model('soft', worse, 3)], fuzzy: [model('fuzzy', same, 4)],
    }));
    expect(r.summary.headline[0]!.verdict).toBe('no change shown');
    expect(r.summary.headline[2]!.verdict).toBe('worse');
    expect(r.markdown).toMatch(/\*\*Hard RL did not measurably change the base model\*\*/);
    const f1 = r.summary.findings[0]!;
    expect(f1.verdict).toBe('contradicted'); // soft is 20 points below hard: beyond the 5-point margin
    // Finding 5: no cell is reliably best.
    expect(['inconclusive', 'contradicted']).toContain(r.summary.findings[4]!.verdict);
  });

  it('averages seeds per problem, reports mean ± sd, and draws the spread', () => {
    const p = (d: number) => (i: number) => Math.min(1, 0.3 * difficulty(i) + d);
    const r = buildDemoReport(input({
      hard: [model('h0', p(0.3), 2), model('h1', p(0.35), 5), model('h2', p(0.4), 6)],
      soft: [model('s0', p(0.3), 3), model('s1', p(0.3), 7), model('s2', p(0.3), 8)],
      fuzzy: [model('f0', p(0.3), 4), model('f1', p(0.3), 9), model('f2', p(0.3), 10)],
    }, [0, 1, 2]));
    expect(r.markdown).toMatch(/\| hard-trained +\| [\d.]+ ± [\d.]+ /);
    expect(r.summary.table1[1]!.cells['hard']!.seedSd).toBeDefined();
    expect(r.summary.headline[1]!.mcnemarP).toBeUndefined(); // McNemar needs one binary outcome per problem
    expect(r.svgs['reward.svg']).toContain('<polygon');
  });

  it('refuses evaluations on different problems', () => {
    const other = model('hard', () => 0.5, 2);
    other.test.modes[0]!.outcomes[3]!.question = 'another question';
    const ok = model('x', () => 0.5, 3);
    expect(() => buildDemoReport(input({ hard: [other], soft: [ok], fuzzy: [ok] }))).toThrow(/other problems than the base model/);
  });
});

describe('demo presets', () => {
  it('fill what the flags leave unset, and flags win', () => {
    const s = resolveDemoSettings({ preset: 'default', lr: 0.01, 'lr-soft': 0.002, seed: 0, 'margin-pass': 5, 'margin-nll': 0.05, 'margin-entropy': 0.05 });
    expect(s['batch-prompts']).toBe(DEMO_PRESETS['default']!.values['batch-prompts']);
    expect(s['lr-hard']).toBe(0.01);
    expect(s['lr-soft']).toBe(0.002);
    expect(s['lr-fuzzy']).toBe(0.01);
    const paper = resolveDemoSettings({ preset: 'paper', steps: 7, 'margin-pass': 5, 'margin-nll': 0.05, 'margin-entropy': 0.05 });
    expect([paper['batch-prompts'], paper.samples, paper.warmup, paper.seeds, paper.steps]).toEqual([2, 32, 20, 3, 7]);
    expect(() => resolveDemoSettings({ preset: 'nope' })).toThrow(/--preset nope: unknown/);
    expect(() => resolveDemoSettings({ preset: 'default', 'eval-samples': 1, 'margin-pass': 5, 'margin-nll': 0.05, 'margin-entropy': 0.05 })).toThrow(/--eval-samples 1/);
  });
});
