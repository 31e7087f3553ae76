/**
 * The `softgrad` command as a user meets it: clear one-line errors with consistent exit codes
 * (2 usage, 1 bad data, 130 Ctrl-C), everything checked before work starts, and nothing
 * already written lost — under bad input, Ctrl-C and kill -9. Runs the compiled CLI (npm
 * test builds it first).
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '@softgrad/tensor';
import { initParams, parseConfig, saveModel } from '@softgrad/transformer';
import { builtinTokenizer } from '@softgrad/softtokens';

const ROOT = join(__dirname, '..');
const MAIN = join(ROOT, 'packages', 'cli', 'dist', 'main.js');
let dir = '';
let modelDir = '';
let otherModelDir = '';

interface Result { code: number | null; stdout: string; stderr: string }

function cli(...args: string[]): Result {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The first line softgrad wrote about an error. */
const errorLine = (r: Result) => r.stderr.split('\n').find((l) => l.startsWith('softgrad: ')) ?? r.stderr;

/** Starts the CLI, waits until `ready()` holds, sends `signal`, and resolves with how it ended. */
function runUntil(args: string[], ready: () => boolean, signal: NodeJS.Signals): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setInterval(() => {
      if (ready()) {
        clearInterval(timer);
        child.kill(signal);
      }
    }, 20);
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function metricLines(run: string): Record<string, unknown>[] {
  return readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').filter(Boolean).map((l) => {
    const m = JSON.parse(l) as Record<string, unknown>;
    delete m.seconds;
    delete m.tokensPerSecond;
    return m;
  });
}

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build first (npm run build)`);
  dir = mkdtempSync(join(tmpdir(), 'softgrad-cli-'));
  const tokenizer = builtinTokenizer();
  const config = parseConfig({
    model_type: 'llama', vocab_size: tokenizer.vocabSize, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1,
    num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 256, tie_word_embeddings: true,
  }, 'tiny');
  for (const [d, seed] of [[join(dir, 'model'), 0], [join(dir, 'other-model'), 1]] as const) {
    const params = initParams(config, seed, { std: 0.3 });
    await saveModel(d, config, params);
    await tokenizer.save(d);
    T.treeDispose(params);
  }
  modelDir = join(dir, 'model');
  otherModelDir = join(dir, 'other-model');
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const FAST_EVAL = ['--modes', 'hard-greedy', '--max-cot', '4', '--max-answer', '4', '--quiet'];
const fastTrainOf = (model: string, out: string, ...more: string[]) => [
  'train', '--model', model, '--out', out, '--mode', 'hard', '--batch-prompts', '1', '--samples', '2', '--max-cot', '4', '--max-answer', '3',
  '--lr', '0.01', '--warmup', '1', '--val-count', '1', '--eval-every', '2', '--checkpoint-every', '2', '--seed', '3', '--quiet', ...more,
];
const fastTrain = (out: string, ...more: string[]) => fastTrainOf(modelDir, out, ...more);

describe('the softgrad command', () => {
  it('explains itself with --help and --version', () => {
    for (const c of ['train', 'eval', 'demo', 'pretrain']) {
      const r = cli(c, '--help');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`softgrad ${c}`);
    }
    const train = cli('train', '--help').stdout;
    for (const flag of ['--mode', '--tau', '--noise-scale', '--batch-prompts', '--samples', '--max-cot', '--lr', '--steps', '--seed', '--backend', '--resume', '--overwrite', '--lenient-tokenizer']) {
      expect(train).toContain(flag);
    }
    const version = JSON.parse(readFileSync(join(ROOT, 'packages', 'cli', 'package.json'), 'utf8')).version as string;
    expect(cli('--version')).toMatchObject({ code: 0, stdout: `softgrad ${version}\n` });
  });

  it('resolves as `npx softgrad` in the repository', () => {
    const r = spawnSync('npx', ['--offline', '--no-install', 'softgrad', '--version'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toMatch(/^softgrad \d+\.\d+\.\d+$/);
  });

  it('rejects wrong usage with one clear line and exit code 2, before any work', () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /unknown command "frobnicate"/],
      [['train', '--mode', 'lukewarm'], /--mode must be one of hard, soft, fuzzy; got "lukewarm"/],
      [['train', '--lr', 'fast'], /--lr must be a number, got "fast"/],
      [['train', '--samples', '1'], /--samples must be ≥ 2, got 1/],
      [['train', '--resume', '--overwrite', '--out', join(dir, 'ro')], /--resume and --overwrite contradict/],
      [['train', '--out', join(file, 'run')], /--out .*a-file\/run: cannot create or write this directory \(a part of the path is a file\)/],
      [['train', '--model', modelDir, '--out', join(dir, 'r-ctx'), '--max-cot', '300'], /--max-cot 300 --max-answer 32: .* more than the model's context of 256/],
      [['eval', '--modes', 'hard-greedy,telepathic'], /unknown mode "telepathic"/],
      [['eval', '--bogus'], /unknown flag --bogus/],
      [['pretrain', '--init', join(dir, 'nope'), '--out', join(dir, 'pt')], /--init .*nope: model directory not found/],
      [['demo', '--preset', 'quick'], /--preset must be one of default, seeds, paper; got "quick"/],
      [['demo', '--eval-samples', '1', '--out', join(dir, 'd1')], /--eval-samples 1: the sampling modes need at least 2 samples/],
      [['eval', '--model', join(dir, 'nope')], /--model .*nope: model directory not found/],
      [['eval', '--model', file], /--model .*a-file: not a directory/],
      [['eval', '--model', modelDir, '--data', join(dir, 'missing.jsonl')], /--data .*missing\.jsonl: file not found/],
      [['eval', '--model', modelDir, '--data', dir], /--data .*: is a directory; expected a JSONL file/],
      [['eval', '--model', modelDir, '--data', 'builtin:tset'], /unknown built-in set/],
      [['eval', '--model', modelDir, '--out', file], /--out .*a-file: is a file; expected a directory/],
      [['eval', '--model', modelDir, '--max-cot', '512'], /--max-cot 512 --max-answer 32: .* more than the model's context of 256/],
      // A missing choices file is found before the modes run, not after them.
      [['eval', '--model', modelDir, '--choices', join(dir, 'no-choices.jsonl'), '--modes', 'all', '--samples', '32'], /--choices .*no-choices\.jsonl: file not found/],
    ];
    for (const [args, re] of cases) {
      const t0 = performance.now();
      const r = cli(...args);
      expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(2);
      expect(errorLine(r)).toMatch(re);
      expect(r.stdout, args.join(' ')).not.toContain('| hard-greedy');
      expect(performance.now() - t0, args.join(' ')).toBeLessThan(20_000);
    }
  });

  it('names the file and line of bad data with exit code 1, and keeps earlier results', () => {
    const out = join(dir, 'results');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'results.json'), 'earlier results');
    const bad = (name: string, lines: string[]) => {
      const path = join(dir, name);
      writeFileSync(path, `${lines.join('\n')}\n`);
      return path;
    };
    const good = '{"question": "Tom has 1 apple.", "answer": "1\\n#### 1"}';
    const cases: [string[], RegExp][] = [
      [['--data', bad('broken.jsonl', [good, '{"question": "oops", '])], /broken\.jsonl:2: invalid JSON/],
      ...['abc', 'NaN', '1e400', '0x10'].map((ref): [string[], RegExp] => [
        ['--data', bad(`ref-${ref}.jsonl`, [good, `{"question": "How many?", "answer": "#### ${ref}"}`])],
        new RegExp(`ref-${ref}\\.jsonl:2: field "answer": the reference after "####" is "${ref}"; expected a number`),
      ]),
      [['--data', bad('twice.jsonl', [good, '{"question": "a", "question": "b", "answer": "#### 2"}'])], /twice\.jsonl:2: key "question" appears twice/],
      [['--data', bad('empty.jsonl', [])], /empty\.jsonl: no problems/],
      [['--data', bad('long.jsonl', [good, JSON.stringify({ question: 'Tom has 1 apple. '.repeat(20), answer: '#### 1' })])],
        /long\.jsonl:2: the prompt is \d+ tokens; with a CoT of 4 and an answer of 4 it needs \d+ positions, more than the model's context of 256/],
      [['--data', bad('snowman.jsonl', [good, '{"question": "Tom has 1 ☃.", "answer": "#### 1"}'])],
        /snowman\.jsonl:2: the question cannot be encoded: .*tokenizer\.json: cannot encode "☃" \(U\+2603\)/],
      [['--choices', bad('no-items.jsonl', [])], /no-items\.jsonl: no multiple-choice items/],
    ];
    for (const [args, re] of cases) {
      const r = cli('eval', '--model', modelDir, '--out', out, ...FAST_EVAL, ...args);
      expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(1);
      expect(errorLine(r)).toMatch(re);
    }
    expect(readFileSync(join(out, 'results.json'), 'utf8')).toBe('earlier results');
    // Opting out of the strict tokenizer maps the unknown character to the unknown token.
    const lenient = cli('eval', '--model', modelDir, '--data', join(dir, 'snowman.jsonl'), ...FAST_EVAL, '--lenient-tokenizer');
    expect(lenient.code, lenient.stderr).toBe(0);
  });

  it('evaluates a model directory and records what it ran with', () => {
    const data = join(dir, 'gsm8k.jsonl');
    writeFileSync(data, ['{"question": "Tom has 1 apple.", "answer": "1\\n#### 1"}', '{"question": "Ann has 2 pens.", "answer": "2\\n#### 2"}'].join('\n'));
    const out = join(dir, 'eval');
    const r = cli('eval', '--model', modelDir, '--data', data, '--out', out, '--modes', 'hard-greedy,soft-sample', '--samples', '4', '--max-cot', '4', '--choices', 'builtin', '--choice-count', '3', '--seed', '5', '--noise-scale', '0.5');
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect(res.modes.map((m: { mode: string }) => m.mode)).toEqual(['hard-greedy', 'soft-sample']);
    expect(res.modes[1].samples).toBe(4);
    expect(res.choices.items).toBe(3);
    expect(res.complete).toBe(true);
    expect(res.settings).toMatchObject({ samples: 4, maxCot: 4, maxAnswer: 32, seed: 5, noiseScale: 0.5, noiseConvention: 'norm', count: 2 });
    const md = readFileSync(join(out, 'results.md'), 'utf8');
    // The pass@k column is headed with the k it shows.
    expect(md).toContain('pass@4 %');
    expect(md).not.toContain('pass@32');
    expect(r.stdout).toContain('| hard-greedy |');
  });

  it('stops an evaluation on Ctrl-C with exit 130, keeping the modes it finished', async () => {
    const out = join(dir, 'eval-int');
    const r = await runUntil(
      ['eval', '--model', modelDir, '--data', 'builtin:test', '--count', '40', '--modes', 'hard-greedy,hard-sample', '--samples', '64',
        '--batch-rows', '64', '--max-cot', '8', '--out', out, '--quiet'],
      () => existsSync(join(out, 'results.json')), 'SIGINT');
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/eval: interrupted; finished modes: hard-greedy/);
    const res = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect(res.complete).toBe(false);
    expect(res.modes.map((m: { mode: string }) => m.mode)).toEqual(['hard-greedy']);
    expect(readFileSync(join(out, 'results.md'), 'utf8')).toContain('incomplete');
  });
});

describe('softgrad train runs', () => {
  it('refuses to start over an existing run, and refuses a resume that differs, in one line with exit 2', () => {
    const out = join(dir, 'run-a');
    const brokenModelDir = join(dir, 'broken-model');
    mkdirSync(brokenModelDir, { recursive: true });
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) writeFileSync(join(brokenModelDir, f), readFileSync(join(modelDir, f)));
    writeFileSync(join(brokenModelDir, 'model.safetensors'), 'not a safetensors file');
    const first = cli(...fastTrain(out, '--steps', '2'));
    expect(first.code, first.stderr).toBe(0);
    const log = readFileSync(join(out, 'metrics.jsonl'), 'utf8');
    const cases: [string[], RegExp][] = [
      [fastTrain(out, '--steps', '2'), /--out .*run-a already holds a run: pass --resume to continue it, --overwrite to start it again/],
      [fastTrain(out, '--steps', '2', '--resume', '--lr', '0.02'), /cannot resume .*run-a: --lr is 0\.01 in the run but 0\.02 now/],
      [fastTrain(out, '--steps', '4', '--resume'), /cannot resume .*: --steps is 2 in the run but 4 now/],
      [fastTrain(out, '--steps', '2', '--resume', '--max-grad-norm', '1'), /--max-grad-norm is null in the run but 1 now/],
      [fastTrain(out, '--steps', '2', '--resume', '--data', 'builtin:train', '--train-count', '7'), /the training data differs: the run used builtin:train \(sha256 [0-9a-f]+…, 1000 problems\), now builtin:train \(sha256 [0-9a-f]+…, 7 problems\)/],
      // Checked before the model is read: this model's weights are garbage.
      [fastTrainOf(brokenModelDir, out, '--steps', '2', '--resume', '--seed', '9'), /cannot resume .*: --seed is 3 in the run but 9 now/],
      [fastTrain(join(dir, 'never-ran'), '--steps', '2', '--resume'), /--resume: .*never-ran: nothing to resume: no run\.json/],
      [fastTrainOf(otherModelDir, out, '--steps', '2', '--resume'), /the starting model differs: the run started from .*\/model \(sha256 [0-9a-f]+…\), now .*other-model/],
    ];
    for (const [args, re] of cases) {
      const r = cli(...args);
      expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(2);
      expect(errorLine(r)).toMatch(re);
      expect(r.stderr.split('\n').filter((l) => l.startsWith('softgrad: '))).toHaveLength(1);
    }
    expect(readFileSync(join(out, 'metrics.jsonl'), 'utf8')).toBe(log);
    const again = cli(...fastTrain(out, '--steps', '1', '--overwrite'));
    expect(again.code, again.stderr).toBe(0);
    expect(metricLines(out).map((m) => m.step)).toEqual([1]);
  });

  it('holds out validation problems from a data file, and says so', () => {
    const data = join(dir, 'train.jsonl');
    writeFileSync(data, Array.from({ length: 6 }, (_, i) => JSON.stringify({ question: `Tom has ${i} apples.`, answer: `#### ${i}` })).join('\n'));
    const out = join(dir, 'run-file');
    const r = cli(...fastTrain(out, '--steps', '1', '--data', data, '--val-count', '2'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/train: hard CoT, 4 problems from .*train\.jsonl/);
    expect(r.stderr).toMatch(/validation on 2 problems from .*train\.jsonl \(last 2 problems, held out\)/);
    const run = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'));
    expect(run.definition.data).toMatchObject({ count: 4 });
    expect(run.definition.validation).toMatchObject({ count: 2 });
    expect(run.definition.settings.maxGradNorm).toBeNull();
  });

  it('stops on Ctrl-C at a safe point with exit 130, says how to resume, and the resumed run equals an uninterrupted one', async () => {
    const full = join(dir, 'run-full');
    const ref = cli(...fastTrain(full, '--steps', '6'));
    expect(ref.code, ref.stderr).toBe(0);
    const out = join(dir, 'run-int');
    const metrics = join(out, 'metrics.jsonl');
    const r = await runUntil(fastTrain(out, '--steps', '6'), () => existsSync(metrics) && readFileSync(metrics, 'utf8').split('\n').length > 2, 'SIGINT');
    expect(r.code, r.stderr).toBe(130);
    const resumeLine = /train: continue with: (softgrad train .* --resume)$/m.exec(r.stderr);
    expect(resumeLine, r.stderr).not.toBeNull();
    expect(r.stderr).toMatch(/train: stopped after step \d of 6; the checkpoint in .* holds it/);
    // Nothing half-written is left beside the run.
    expect(readFileSync(join(out, 'checkpoint', 'state.json'), 'utf8')).toContain('"step"');
    const resumed = cli(...resumeLine![1]!.split(' ').slice(1));
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(metricLines(out)).toEqual(metricLines(full));
  });

  it('survives kill -9 during checkpointing: --resume continues and matches the uninterrupted run', async () => {
    const full = join(dir, 'run-full-ck');
    const args = (out: string) => [...fastTrain(out, '--steps', '8'), '--checkpoint-every', '1'];
    const ref = cli(...args(full));
    expect(ref.code, ref.stderr).toBe(0);
    const out = join(dir, 'run-killed');
    // Killed at whatever instant follows the third step; with a checkpoint swap after every
    // step, that is often inside one (each swap is several renames and syncs).
    const metrics = join(out, 'metrics.jsonl');
    const r = await runUntil(args(out), () => existsSync(metrics) && readFileSync(metrics, 'utf8').split('\n').length > 3, 'SIGKILL');
    expect(r.code).toBeNull();
    const resumed = cli(...args(out), '--resume');
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(metricLines(out)).toEqual(metricLines(full));
    expect(readdirSync(out).filter((n) => n.startsWith('.'))).toEqual([]);
  });
});
