/** `softgrad eval`: the six inference modes, pass@k, entropy profiles and out-of-domain scores. */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as T from '@softgrad/tensor';
import {
  EVAL_MODES, evaluateChoices, evaluateMode, markdownTable, parseEvalMode, writeFileAtomic, type ChoiceResult, type EvalModeName,
  type ModeResult, type NoiseConvention, DEFAULT_NOISE_SCALE,
} from '@softgrad/softtokens';
import { helpText, parseFlags, type FlagSpecs, UsageError } from './args.js';
import { BACKEND_FLAG, loadChoiceSpec, loadModelDir, loadProblemSpec, selectBackend } from './common.js';
import { log, Progress } from './progress.js';

export const EVAL_FLAGS: FlagSpecs = {
  model: { type: 'string', help: 'model directory or "builtin"', default: 'builtin' },
  data: { type: 'string', help: 'GSM8K/MATH JSONL file, or builtin:test / builtin:ood', default: 'builtin:test' },
  count: { type: 'int', help: 'evaluate the first N problems', min: 1 },
  modes: { type: 'string', help: `comma-separated modes or "all" (${EVAL_MODES.join(', ')})`, default: 'all' },
  samples: { type: 'int', help: 'samples per problem in sampling modes (pass@k for k ≤ samples)', default: 32, min: 1 },
  'max-cot': { type: 'int', help: 'maximum CoT length', default: 512, min: 1 },
  'max-answer': { type: 'int', help: 'maximum answer tokens', default: 32, min: 1 },
  'noise-scale': { type: 'number', help: 'γ for the soft/fuzzy sampling modes', default: DEFAULT_NOISE_SCALE, min: 0 },
  'noise-convention': { type: 'string', help: 'how γ becomes σ', default: 'norm', choices: ['norm', 'coordinate'] },
  choices: { type: 'string', help: 'multiple-choice JSONL (HellaSwag/ARC/MMLU) or "builtin"; "none" to skip', default: 'none' },
  'choice-count': { type: 'int', help: 'multiple-choice items', min: 1 },
  'batch-rows': { type: 'int', help: 'rollout rows decoded together', default: 256, min: 1 },
  seed: { type: 'int', help: 'seed', default: 0, min: 0 },
  out: { type: 'string', help: 'write results.json and results.md here' },
  quiet: { type: 'boolean', help: 'no progress output' },
  ...BACKEND_FLAG,
  help: { type: 'boolean', help: 'show this help' },
};

export interface EvalReport {
  model: string;
  data: string;
  modes: ModeResult[];
  choices?: ChoiceResult;
}

export function parseModes(spec: string): EvalModeName[] {
  if (spec === 'all') return [...EVAL_MODES];
  const modes = spec.split(',').map((s) => s.trim()).filter(Boolean);
  if (modes.length === 0) throw new UsageError('--modes is empty');
  try {
    return modes.map(parseEvalMode);
  } catch (e) {
    throw new UsageError(`--modes: ${(e as Error).message}`);
  }
}

export async function evalCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, EVAL_FLAGS);
  if (f.help) {
    console.log(helpText('eval', 'evaluate a model in the six inference modes', EVAL_FLAGS));
    return;
  }
  const modes = parseModes(String(f.modes));
  const backend = await selectBackend(String(f.backend));
  const seed = Number(f.seed);
  const model = await loadModelDir(String(f.model), backend);
  const problems = loadProblemSpec(String(f.data), f.count as number | undefined, seed + 1);
  const report: EvalReport = { model: model.dir, data: String(f.data), modes: [] };
  for (const mode of modes) {
    const bar = new Progress(`eval ${mode}`, problems.length, !!f.quiet);
    const res = await evaluateMode({
      config: model.config, params: model.params, tokenizer: model.tokenizer, problems, mode,
      samples: Number(f.samples), maxCot: Number(f['max-cot']), maxAnswer: Number(f['max-answer']),
      noiseScale: Number(f['noise-scale']), noiseConvention: String(f['noise-convention']) as NoiseConvention,
      seed, batchRows: Number(f['batch-rows']), onProgress: (d) => bar.update(d),
    });
    report.modes.push(res);
  }
  if (String(f.choices) !== 'none') {
    const items = loadChoiceSpec(String(f.choices), f['choice-count'] as number | undefined, seed + 2);
    report.choices = await evaluateChoices(model.config, model.params, model.tokenizer, items);
  }
  const md = evalMarkdown(report);
  console.log(md);
  if (f.out) {
    const out = resolve(String(f.out));
    mkdirSync(out, { recursive: true });
    writeFileAtomic(join(out, 'results.json'), `${JSON.stringify(report, null, 1)}\n`);
    writeFileAtomic(join(out, 'results.md'), `${md}\n`);
    log(`eval: wrote ${join(out, 'results.json')} and results.md`);
  }
  T.treeDispose(model.params);
}

const pct = (x: number) => `${(100 * x).toFixed(1)}`;

export function evalMarkdown(r: EvalReport): string {
  const rows = r.modes.map((m) => [
    m.mode, String(m.problems), String(m.samples), pct(m.passAt1), m.samples >= 32 ? pct(m.passAtK[31]!) : m.samples > 1 ? `${pct(m.passAtK[m.samples - 1]!)} (@${m.samples})` : '–',
    pct(m.formatRate), m.meanCotLength.toFixed(1), pct(m.stopRate), m.entropyByPosition.length ? (m.entropyByPosition.reduce((a, b) => a + b, 0) / m.entropyByPosition.length).toFixed(3) : '–',
    m.seconds.toFixed(1),
  ]);
  let md = `Model: ${r.model}\nData: ${r.data}\n\n` + markdownTable(
    ['mode', 'problems', 'samples', 'pass@1 %', 'pass@32 %', 'boxed %', 'CoT len', 'stopped %', 'mean entropy', 'seconds'], rows);
  if (r.choices) md += `\n\nMultiple choice (${r.choices.items} items): accuracy ${pct(r.choices.accuracy)}%, NLL of correct choice ${r.choices.meanNll.toFixed(3)} nats\n`;
  return md;
}
