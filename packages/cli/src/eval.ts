/** `softgrad eval`: the six inference modes, pass@k, entropy profiles and out-of-domain scores. */
import { join, resolve } from 'node:path';
import * as T from '@softgrad/tensor';
import { writeFileAtomicSync } from '@softgrad/transformer';
import {
  EVAL_MODES, EvaluationInterrupted, SettingsError, checkChoicesFit, checkProblemsFit, evaluateChoices, evaluateMode, markdownTable,
  parseEvalMode, type ChoiceResult, type EvalModeName, type ModeResult, type NoiseConvention, DEFAULT_NOISE_SCALE,
} from '@softgrad/softtokens';
import { helpText, parseFlags, type FlagSpecs, UsageError } from './args.js';
import {
  BACKEND_FLAG, TOKENIZER_FLAG, commandLine, interruptOnSigint, loadChoiceSpec, loadModelDir, loadProblemSpec, modelDirOf,
  prepareOutputDir, selectBackend, version,
} from './common.js';
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
  out: { type: 'string', help: 'write results.json and results.md here (after every mode, so an interrupted run keeps what it finished)' },
  quiet: { type: 'boolean', help: 'no progress output' },
  ...TOKENIZER_FLAG,
  ...BACKEND_FLAG,
  help: { type: 'boolean', help: 'show this help' },
};

/** What an evaluation was run with: enough to run it again and to read its numbers. */
export interface EvalSettings {
  modes: EvalModeName[];
  count: number;
  samples: number;
  maxCot: number;
  maxAnswer: number;
  noiseScale: number;
  noiseConvention: NoiseConvention;
  seed: number;
  choices: string;
  choiceCount: number | null;
}

export interface EvalReport {
  model: string;
  data: string;
  settings?: EvalSettings;
  /** False while modes are still running, or when the evaluation was interrupted. */
  complete?: boolean;
  softgrad?: string;
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

export async function evalCommand(argv: string[]): Promise<number> {
  const f = parseFlags(argv, EVAL_FLAGS);
  if (f.help) {
    console.log(helpText('eval', 'evaluate a model in the six inference modes', EVAL_FLAGS));
    return 0;
  }
  // Everything the evaluation needs is checked here, before the first mode runs.
  const modes = parseModes(String(f.modes));
  const seed = Number(f.seed);
  const out = f.out === undefined ? undefined : resolve(String(f.out));
  if (out) prepareOutputDir('out', out);
  modelDirOf(String(f.model));
  const problems = loadProblemSpec('data', String(f.data), f.count as number | undefined, seed + 1);
  const choiceSet = String(f.choices) === 'none' ? undefined : loadChoiceSpec(String(f.choices), f['choice-count'] as number | undefined, seed + 2);
  const backend = await selectBackend(String(f.backend));
  const model = await loadModelDir(String(f.model), backend, { strictTokenizer: !f['lenient-tokenizer'] });
  const budget = { maxCot: Number(f['max-cot']), maxAnswer: Number(f['max-answer']) };
  try {
    checkProblemsFit(problems, model.tokenizer, model.config, budget);
    if (choiceSet) checkChoicesFit(choiceSet, model.tokenizer, model.config);
  } catch (e) {
    T.treeDispose(model.params);
    if (e instanceof SettingsError) throw new UsageError(`--max-cot ${budget.maxCot} --max-answer ${budget.maxAnswer}: ${e.message}`);
    throw e;
  }

  const report: EvalReport = {
    model: model.dir,
    data: problems.source,
    settings: {
      modes, count: problems.items.length, samples: Number(f.samples), maxCot: budget.maxCot, maxAnswer: budget.maxAnswer,
      noiseScale: Number(f['noise-scale']), noiseConvention: String(f['noise-convention']) as NoiseConvention, seed,
      choices: choiceSet?.source ?? 'none', choiceCount: choiceSet ? choiceSet.items.length : null,
    },
    complete: false,
    softgrad: version(),
    modes: [],
  };
  // After every mode, so that an interrupted or killed evaluation keeps what it finished.
  const save = () => {
    if (!out) return;
    writeFileAtomicSync(join(out, 'results.json'), `${JSON.stringify(report, null, 1)}\n`);
    writeFileAtomicSync(join(out, 'results.md'), `${evalMarkdown(report)}\n`);
  };
  const interrupt = interruptOnSigint('eval');
  try {
    for (const mode of modes) {
      const bar = new Progress(`eval ${mode}`, problems.items.length, !!f.quiet);
      const res = await evaluateMode({
        config: model.config, params: model.params, tokenizer: model.tokenizer, problems: problems.items, mode,
        samples: Number(f.samples), maxCot: budget.maxCot, maxAnswer: budget.maxAnswer,
        noiseScale: Number(f['noise-scale']), noiseConvention: String(f['noise-convention']) as NoiseConvention,
        seed, batchRows: Number(f['batch-rows']), onProgress: (d) => bar.update(d), signal: interrupt.signal,
      });
      report.modes.push(res);
      save();
    }
    if (choiceSet && !interrupt.signal.aborted) report.choices = await evaluateChoices(model.config, model.params, model.tokenizer, choiceSet.items);
    if (interrupt.signal.aborted) throw new EvaluationInterrupted(modes[report.modes.length] ?? modes[modes.length - 1]!, 0);
  } catch (e) {
    T.treeDispose(model.params);
    if (!(e instanceof EvaluationInterrupted)) throw e;
    save();
    console.log(evalMarkdown(report));
    const done = report.modes.map((m) => m.mode).join(', ') || 'none';
    log(`eval: interrupted; finished modes: ${done}${out ? ` (in ${join(out, 'results.json')}, marked "complete": false)` : ''}`);
    log(`eval: to run it all again: ${commandLine('eval', argv)}`);
    return 130;
  } finally {
    interrupt.dispose();
  }
  report.complete = true;
  save();
  console.log(evalMarkdown(report));
  if (out) log(`eval: wrote ${join(out, 'results.json')} and results.md`);
  T.treeDispose(model.params);
  return 0;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}`;

export function evalMarkdown(r: EvalReport): string {
  // pass@k at k = min(32, samples): the paper's pass@32 when there are 32 samples.
  const maxSamples = Math.max(1, ...r.modes.map((m) => m.samples));
  const k = Math.min(32, maxSamples);
  const passKHeader = k > 1 ? `pass@${k} %` : 'pass@k %';
  const rows = r.modes.map((m) => [
    m.mode, String(m.problems), String(m.samples), pct(m.passAt1), m.samples >= k && m.samples > 1 ? pct(m.passAtK[k - 1]!) : '–',
    pct(m.formatRate), m.meanCotLength.toFixed(1), pct(m.stopRate), Number.isFinite(m.meanEntropy) ? m.meanEntropy.toFixed(3) : '–',
    m.seconds.toFixed(1),
  ]);
  const s = r.settings;
  const settings = s
    ? `Settings: ${s.count} problems, ${s.samples} samples, max CoT ${s.maxCot}, max answer ${s.maxAnswer}, noise γ ${s.noiseScale} (${s.noiseConvention}), seed ${s.seed}\n`
    : '';
  const status = r.complete === false ? 'Status: incomplete (interrupted or still running); the modes below are finished\n' : '';
  let md = `Model: ${r.model}\nData: ${r.data}\n${settings}${status}\n` + markdownTable(
    ['mode', 'problems', 'samples', 'pass@1 %', passKHeader, 'boxed %', 'CoT len', 'stopped %', 'mean entropy', 'seconds'], rows);
  if (r.choices) md += `\n\nMultiple choice (${r.choices.items} items): accuracy ${pct(r.choices.accuracy)}%, NLL of the correct choice ${r.choices.meanNll.toFixed(3)} nats per token\n`;
  return md;
}
