/**
 * Loaders for the JSONL data sets the method is trained and evaluated on, normalised to
 * two shapes: reasoning problems (GSM8K, MATH) and multiple-choice items (HellaSwag, ARC,
 * MMLU). Every malformed line is reported as `file:line: problem`.
 */
import { DataFileError, parseJsonl, readTextFile, type JsonlLine } from './io.js';
import { gsm8kReference, mathReference, parseNumber } from './rewards.js';

/** A reasoning problem: the question, its worked solution, and the reference answer. */
export interface ProblemItem {
  readonly question: string;
  /** Worked solution ('' when the source has none, e.g. an answer-only MATH file). */
  readonly solution: string;
  /** The answer a boxed answer is compared with (see `answersEquivalent`). */
  readonly reference: string;
}

/** A multiple-choice item, whatever format it came from. */
export interface ChoiceItem {
  readonly question: string;
  readonly choices: readonly string[];
  readonly answerIndex: number;
}

export type ProblemFormat = 'gsm8k' | 'math';
export type ChoiceFormat = 'hellaswag' | 'arc' | 'mmlu' | 'choice';

type Obj = Record<string, unknown>;

class LineContext {
  constructor(
    readonly file: string,
    readonly line: number,
  ) {}

  fail(problem: string): never {
    throw new DataFileError(this.file, this.line, problem);
  }

  object(value: unknown): Obj {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      this.fail(`expected a JSON object, got ${describe(value)}`);
    }
    return value as Obj;
  }

  field(o: Obj, name: string): unknown {
    if (!(name in o) || o[name] === undefined || o[name] === null) this.fail(`missing field "${name}"`);
    return o[name];
  }

  string(o: Obj, name: string): string {
    const v = this.field(o, name);
    if (typeof v !== 'string') this.fail(`field "${name}" must be a string, got ${describe(v)}`);
    return v;
  }

  stringArray(v: unknown, name: string): string[] {
    if (!Array.isArray(v)) this.fail(`field "${name}" must be an array of strings, got ${describe(v)}`);
    v.forEach((x, i) => {
      if (typeof x !== 'string') this.fail(`field "${name}"[${i}] must be a string, got ${describe(x)}`);
    });
    if (v.length < 2) this.fail(`field "${name}" must have at least 2 choices, got ${v.length}`);
    return v as string[];
  }

  index(v: unknown, name: string, count: number): number {
    let i: number;
    if (typeof v === 'number') i = v;
    else if (typeof v === 'string' && /^\s*\d+\s*$/.test(v)) i = Number(v);
    else if (typeof v === 'string' && /^\s*[A-Za-z]\s*$/.test(v)) i = v.trim().toUpperCase().charCodeAt(0) - 65;
    else this.fail(`field "${name}" must be an index or a letter, got ${describe(v)}`);
    if (!Number.isInteger(i) || i < 0 || i >= count) {
      this.fail(`field "${name}" (${JSON.stringify(v)}) is out of range for ${count} choices`);
    }
    return i;
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v)}`;
}

function nonEmpty(o: Obj, name: string): boolean {
  return typeof o[name] === 'string' && (o[name] as string).trim() !== '';
}

// ---------------------------------------------------------------------------------------
// Reasoning problems

function gsm8kItem(cx: LineContext, o: Obj): ProblemItem {
  const question = cx.string(o, 'question');
  const answer = cx.string(o, 'answer');
  const reference = gsm8kReference(answer);
  if (reference === null) cx.fail('field "answer" has no "#### <answer>" line');
  // GSM8K answers are numbers; "#### abc", "NaN", "0x10" or "1e400" would make every
  // sample's reward a comparison of strings against garbage.
  const raw = answer.slice(answer.lastIndexOf('####') + 4).trim();
  if (parseNumber(raw) === null) cx.fail(`field "answer": the reference after "####" is ${describe(raw)}; expected a number`);
  const solution = answer.slice(0, answer.lastIndexOf('####')).trimEnd();
  return { question, solution, reference };
}

function mathItem(cx: LineContext, o: Obj): ProblemItem {
  const question = cx.string(o, 'problem');
  const hasSolution = 'solution' in o && o['solution'] !== null && o['solution'] !== undefined;
  const solution = hasSolution ? cx.string(o, 'solution') : '';
  // DeepScaleR-style files carry the answer separately; it is cleaner than re-extracting.
  if (nonEmpty(o, 'answer')) return { question, solution, reference: (o['answer'] as string).trim() };
  if (!hasSolution) cx.fail('missing field "solution" (and no "answer")');
  const reference = mathReference(solution);
  if (reference === null) cx.fail('field "solution" has no \\boxed{...} answer (and no "answer" field)');
  return { question, solution, reference };
}

function detectProblemFormat(cx: LineContext, o: Obj): ProblemFormat {
  if ('problem' in o) return 'math';
  if ('question' in o) return 'gsm8k';
  return cx.fail('cannot tell the format: expected "question" (GSM8K) or "problem" (MATH)');
}

/** Problems with the line each came from, for messages that point into the file. */
export interface ProblemSet {
  readonly source: string;
  readonly items: readonly ProblemItem[];
  /** 1-based line of each item. */
  readonly lines: readonly number[];
}

/** Parses GSM8K or MATH JSONL text, keeping each problem's line. */
export function parseProblemSet(text: string, source: string, format: ProblemFormat | 'auto' = 'auto'): ProblemSet {
  const items: ProblemItem[] = [];
  const lines: number[] = [];
  for (const { line, value } of parseJsonl(text, source) as JsonlLine[]) {
    const cx = new LineContext(source, line);
    const o = cx.object(value);
    const f = format === 'auto' ? detectProblemFormat(cx, o) : format;
    items.push(f === 'gsm8k' ? gsm8kItem(cx, o) : mathItem(cx, o));
    lines.push(line);
  }
  return { source, items, lines };
}

/** Parses GSM8K or MATH JSONL text; `format` 'auto' decides line by line. */
export function parseProblems(text: string, source: string, format: ProblemFormat | 'auto' = 'auto'): ProblemItem[] {
  return [...parseProblemSet(text, source, format).items];
}

export function loadProblemSet(path: string, format: ProblemFormat | 'auto' = 'auto'): ProblemSet {
  return parseProblemSet(readTextFile(path), path, format);
}

export function loadProblems(path: string, format: ProblemFormat | 'auto' = 'auto'): ProblemItem[] {
  return [...loadProblemSet(path, format).items];
}

/** GSM8K JSONL: `{ question, answer }` with the answer after `####`. */
export function loadGsm8k(path: string): ProblemItem[] {
  return loadProblems(path, 'gsm8k');
}

/** MATH JSONL: `{ problem, solution }` (boxed answer) or with an `answer` field. */
export function loadMath(path: string): ProblemItem[] {
  return loadProblems(path, 'math');
}

// ---------------------------------------------------------------------------------------
// Multiple choice

function hellaswagItem(cx: LineContext, o: Obj): ChoiceItem {
  let question: string;
  if (nonEmpty(o, 'ctx')) question = o['ctx'] as string;
  else if (nonEmpty(o, 'ctx_a')) question = `${o['ctx_a']} ${typeof o['ctx_b'] === 'string' ? o['ctx_b'] : ''}`.trim();
  else question = cx.string(o, 'ctx');
  const choices = cx.stringArray(cx.field(o, 'endings'), 'endings');
  const answerIndex = cx.index(cx.field(o, 'label'), 'label', choices.length);
  return { question, choices, answerIndex };
}

function arcItem(cx: LineContext, o: Obj): ChoiceItem {
  const q = cx.field(o, 'question');
  let stem: string;
  let texts: string[];
  let labels: string[];
  if (typeof q === 'string') {
    // The Hugging Face export: `choices: { text: [...], label: [...] }` beside the question.
    stem = q;
    const c = cx.object(cx.field(o, 'choices'));
    texts = cx.stringArray(cx.field(c, 'text'), 'choices.text');
    labels = cx.stringArray(cx.field(c, 'label'), 'choices.label');
    if (labels.length !== texts.length) cx.fail(`"choices.label" has ${labels.length} entries but "choices.text" ${texts.length}`);
  } else {
    // The AI2 release: `question: { stem, choices: [{ text, label }] }`.
    const qo = cx.object(q);
    stem = cx.string(qo, 'stem');
    const list = cx.field(qo, 'choices');
    if (!Array.isArray(list)) cx.fail(`field "question.choices" must be an array, got ${describe(list)}`);
    texts = [];
    labels = [];
    list.forEach((c, i) => {
      const co = cx.object(c);
      if (typeof co['text'] !== 'string') cx.fail(`field "question.choices"[${i}] has no string "text"`);
      if (typeof co['label'] !== 'string') cx.fail(`field "question.choices"[${i}] has no string "label"`);
      texts.push(co['text']);
      labels.push(co['label']);
    });
    if (texts.length < 2) cx.fail(`field "question.choices" must have at least 2 choices, got ${texts.length}`);
  }
  const key = cx.field(o, 'answerKey');
  if (typeof key !== 'string') cx.fail(`field "answerKey" must be a string, got ${describe(key)}`);
  const answerIndex = labels.indexOf(key.trim());
  if (answerIndex < 0) cx.fail(`field "answerKey" ${JSON.stringify(key)} is not one of the labels ${labels.join(', ')}`);
  return { question: stem, choices: texts, answerIndex };
}

function mmluItem(cx: LineContext, o: Obj): ChoiceItem {
  const question = cx.string(o, 'question');
  const choices = cx.stringArray(cx.field(o, 'choices'), 'choices');
  const answerIndex = cx.index(cx.field(o, 'answer'), 'answer', choices.length);
  return { question, choices, answerIndex };
}

function nativeChoiceItem(cx: LineContext, o: Obj): ChoiceItem {
  const question = cx.string(o, 'question');
  const choices = cx.stringArray(cx.field(o, 'choices'), 'choices');
  const answerIndex = cx.index(cx.field(o, 'answerIndex'), 'answerIndex', choices.length);
  return { question, choices, answerIndex };
}

function detectChoiceFormat(cx: LineContext, o: Obj): ChoiceFormat {
  if ('endings' in o) return 'hellaswag';
  if ('answerKey' in o) return 'arc';
  if ('answerIndex' in o) return 'choice';
  if ('choices' in o && 'question' in o) return 'mmlu';
  return cx.fail('cannot tell the format: expected HellaSwag ("endings"), ARC ("answerKey"), MMLU ("choices" + "answer") or "answerIndex"');
}

const CHOICE_PARSERS: Record<ChoiceFormat, (cx: LineContext, o: Obj) => ChoiceItem> = {
  hellaswag: hellaswagItem,
  arc: arcItem,
  mmlu: mmluItem,
  choice: nativeChoiceItem,
};

/** Multiple-choice items with the line each came from. */
export interface ChoiceSet {
  readonly source: string;
  readonly items: readonly ChoiceItem[];
  /** 1-based line of each item. */
  readonly lines: readonly number[];
}

/** Parses multiple-choice JSONL text, keeping each item's line. */
export function parseChoiceSet(text: string, source: string, format: ChoiceFormat | 'auto' = 'auto'): ChoiceSet {
  const items: ChoiceItem[] = [];
  const lines: number[] = [];
  for (const { line, value } of parseJsonl(text, source)) {
    const cx = new LineContext(source, line);
    const o = cx.object(value);
    items.push(CHOICE_PARSERS[format === 'auto' ? detectChoiceFormat(cx, o) : format](cx, o));
    lines.push(line);
  }
  return { source, items, lines };
}

/** Parses multiple-choice JSONL text; `format` 'auto' decides line by line. */
export function parseChoiceItems(text: string, source: string, format: ChoiceFormat | 'auto' = 'auto'): ChoiceItem[] {
  return [...parseChoiceSet(text, source, format).items];
}

export function loadChoiceSet(path: string, format: ChoiceFormat | 'auto' = 'auto'): ChoiceSet {
  return parseChoiceSet(readTextFile(path), path, format);
}

/** HellaSwag, ARC, MMLU or this package's own `{ question, choices, answerIndex }` JSONL. */
export function loadChoiceItems(path: string, format: ChoiceFormat | 'auto' = 'auto'): ChoiceItem[] {
  return [...loadChoiceSet(path, format).items];
}
