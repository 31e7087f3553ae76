/**
 * The `softgrad` command as a user meets it: clear one-line errors with a non-zero exit, and
 * nothing already written lost. Runs the compiled CLI (npm test builds it first).
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '@softgrad/tensor';
import { initParams, parseConfig, saveModel } from '@softgrad/transformer';
import { builtinTokenizer } from '@softgrad/softtokens';

const MAIN = join(__dirname, '..', 'packages', 'cli', 'dist', 'main.js');
let dir = '';
let modelDir = '';

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build first (npm run build)`);
  dir = mkdtempSync(join(tmpdir(), 'softgrad-cli-'));
  modelDir = join(dir, 'model');
  const tokenizer = builtinTokenizer();
  const config = parseConfig({
    model_type: 'llama', vocab_size: tokenizer.vocabSize, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1,
    num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 256, tie_word_embeddings: true,
  }, 'tiny');
  const params = initParams(config, 0);
  await saveModel(modelDir, config, params);
  await tokenizer.save(modelDir);
  T.treeDispose(params);
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the softgrad command', () => {
  it('explains itself with --help', () => {
    for (const c of ['train', 'eval', 'demo', 'pretrain']) {
      const r = cli(c, '--help');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`softgrad ${c}`);
    }
    const train = cli('train', '--help').stdout;
    for (const flag of ['--mode', '--tau', '--noise-scale', '--batch-prompts', '--samples', '--max-cot', '--lr', '--steps', '--seed', '--backend', '--resume']) {
      expect(train).toContain(flag);
    }
  });

  it('rejects unknown commands, flags and flag values with one clear line and exit code 2', () => {
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /unknown command "frobnicate"/],
      [['train', '--mode', 'lukewarm'], /--mode must be one of hard, soft, fuzzy; got "lukewarm"/],
      [['train', '--lr', 'fast'], /--lr must be a number, got "fast"/],
      [['train', '--samples', '1'], /--samples must be ≥ 2, got 1/],
      [['eval', '--modes', 'hard-greedy,telepathic'], /unknown mode "telepathic"/],
      [['eval', '--bogus'], /unknown flag --bogus/],
      [['eval', '--model', join(dir, 'nope')], /model directory not found/],
      [['eval', '--model', modelDir, '--data', join(dir, 'missing.jsonl')], /data file not found/],
    ];
    for (const [args, re] of cases) {
      const r = cli(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n')[0]).toMatch(re);
    }
  });

  it('names the file and line of a malformed JSONL record, and keeps earlier results', () => {
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, '{"question": "1+1?", "answer": "#### 2"}\n{"question": "oops", \n');
    const out = join(dir, 'results');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'results.json'), 'earlier results');
    const r = cli('eval', '--model', modelDir, '--data', bad, '--out', out, '--modes', 'hard-greedy', '--max-cot', '4');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bad\.jsonl:2: .*JSON/);
    expect(readFileSync(join(out, 'results.json'), 'utf8')).toBe('earlier results');
  });

  it('evaluates a model directory and writes its results atomically', () => {
    const data = join(dir, 'gsm8k.jsonl');
    writeFileSync(data, ['{"question": "Tom has 1 apple.", "answer": "1\\n#### 1"}', '{"question": "Ann has 2 pens.", "answer": "2\\n#### 2"}'].join('\n'));
    const out = join(dir, 'eval');
    const r = cli('eval', '--model', modelDir, '--data', data, '--out', out, '--modes', 'hard-greedy,soft-sample', '--samples', '2', '--max-cot', '4', '--choices', 'builtin', '--choice-count', '3');
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect(res.modes.map((m: { mode: string }) => m.mode)).toEqual(['hard-greedy', 'soft-sample']);
    expect(res.modes[1].samples).toBe(2);
    expect(res.choices.items).toBe(3);
    expect(r.stdout).toContain('| hard-greedy |');
  });
});
