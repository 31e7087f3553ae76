/**
 * A fast version of `npm start`: the whole demo pipeline (three RL runs, eight evaluations,
 * the report) on the shipped base model with tiny budgets. The full-size run is `npm start`
 * (`npm run demo:check` runs it and checks its wall time and headline).
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const MAIN = join(__dirname, '..', 'packages', 'cli', 'dist', 'main.js');

describe('softgrad demo', () => {
  it('trains, evaluates and writes a complete report', () => {
    const out = mkdtempSync(join(tmpdir(), 'softgrad-demo-'));
    try {
      const r = spawnSync(process.execPath, [MAIN, 'demo', '--out', out, '--steps', '2', '--batch-prompts', '2', '--samples', '2',
        '--max-cot', '24', '--test-count', '3', '--ood-count', '3', '--choice-count', '6', '--val-count', '2', '--eval-every', '1',
        '--eval-samples', '4', '--warmup', '1', '--bootstrap-resamples', '200'], { encoding: 'utf8', timeout: 300_000 });
      expect(r.status, r.stderr).toBe(0);
      const report = readFileSync(join(out, 'report.md'), 'utf8');
      // The headline comes first: did hard RL change the base model, with its interval.
      expect(report.split('\n')[2]).toMatch(/^\*\*Hard RL (improved|lowered|did not measurably change) the base model\*\*: .*paired 95 % bootstrap interval over 3 test problems/);
      expect(report).toContain('## Table 1');
      for (const row of ['base model', 'hard-trained', 'soft-trained', 'fuzzy-trained']) expect(report).toContain(`| ${row}`);
      expect(report).toContain('hard G@1');
      expect(report).toContain('NLL of correct choice, nats/token');
      expect(report).toContain('Gradient clipping: none');
      for (let id = 1; id <= 5; id++) expect(report).toMatch(new RegExp(`^${id}\\. \\*\\*.*\\*\\* → \\*\\*(consistent|contradicted|inconclusive)\\*\\*`, 'm'));
      for (const svg of ['reward.svg', 'val-accuracy.svg', 'passk-hard.svg', 'passk-soft.svg', 'passk-fuzzy.svg', 'entropy.svg']) {
        const text = readFileSync(join(out, svg), 'utf8');
        expect(text.startsWith('<svg')).toBe(true);
        expect(text.trimEnd().endsWith('</svg>')).toBe(true);
        expect(text).toContain('<polyline');
      }
      // Legends name trained models, and the validation curve starts at the base model (step 0).
      expect(readFileSync(join(out, 'val-accuracy.svg'), 'utf8')).toContain('>soft-trained<');
      for (const kind of ['hard', 'soft', 'fuzzy']) {
        expect(readFileSync(join(out, 'runs', `${kind}-s0`, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(2);
        expect(existsSync(join(out, 'runs', `${kind}-s0`, 'best', 'tokenizer.json'))).toBe(true);
        const state = JSON.parse(readFileSync(join(out, 'runs', `${kind}-s0`, 'checkpoint', 'state.json'), 'utf8'));
        expect(state.validation[0].step).toBe(0);
        // Each kind is validated in its own greedy mode.
        expect(JSON.parse(readFileSync(join(out, 'runs', `${kind}-s0`, 'run.json'), 'utf8')).definition.settings.valMode).toBe(`${kind}-greedy`);
      }
      const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
      expect(summary.table1).toHaveLength(4);
      expect(summary.findings).toHaveLength(5);
      expect(summary.headline[0].difference.level).toBe(0.95);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
