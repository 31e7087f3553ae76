/**
 * The built-in task (docs/method.md): small arithmetic word problems in GSM8K's format, generated
 * deterministically from a seed, small enough in numbers and vocabulary that a tiny
 * character-level model trained for a minute on a CPU can learn them.
 *
 * Splits:
 * - `train` and `test` share one distribution; a problem belongs to `test` iff a hash of
 *   its question text says so, so the two are disjoint for every pair of seeds.
 * - `ood` uses template×item combinations that `train`/`test` never contain, and numbers
 *   up to 199 where the others stay below 100.
 */
import type { ChoiceItem } from './datasets.js';

// ---------------------------------------------------------------------------------------
// Seeded PRNG (independent of the engine's Threefry: data generation must not change when
// the engine's RNG does).

/** Mulberry32: a 32-bit state generator; fast, and plenty for picking templates and numbers. */
export class SeededRng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  nextFloat(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [min, max], both inclusive. */
  int(min: number, max: number): number {
    if (!Number.isInteger(min) || !Number.isInteger(max) || max < min) {
      throw new Error(`SeededRng.int: bad range [${min}, ${max}]`);
    }
    return min + Math.floor(this.nextFloat() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('SeededRng.pick: empty list');
    return items[this.int(0, items.length - 1)]!;
  }

  /** Fisher–Yates shuffle into a new array. */
  shuffle<T>(items: readonly T[]): T[] {
    const out = items.slice();
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }
}

/** FNV-1a over UTF-16 code units: a stable hash for split assignment and seed mixing. */
export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function checkSeedAndCount(fn: string, seed: number, count: number): void {
  if (!Number.isInteger(seed)) throw new Error(`${fn}: seed must be an integer, got ${seed}`);
  if (!Number.isInteger(count) || count < 0) throw new Error(`${fn}: count must be a non-negative integer, got ${count}`);
}

// ---------------------------------------------------------------------------------------
// Word problems

export type TaskSplit = 'train' | 'test' | 'ood';
export const TASK_SPLITS: readonly TaskSplit[] = ['train', 'test', 'ood'];

export type ArithmeticOp = '+' | '-' | '*';

export const TEMPLATE_NAMES = ['add', 'sub', 'mul', 'together', 'add-sub', 'mul-add', 'add-add-sub'] as const;
export type TemplateName = (typeof TEMPLATE_NAMES)[number];

const PEOPLE: readonly { name: string; pronoun: 'He' | 'She' }[] = [
  { name: 'Tom', pronoun: 'He' },
  { name: 'Sam', pronoun: 'He' },
  { name: 'Ben', pronoun: 'He' },
  { name: 'Ann', pronoun: 'She' },
  { name: 'Mia', pronoun: 'She' },
  { name: 'Eva', pronoun: 'She' },
];
export const TASK_NAMES: readonly string[] = PEOPLE.map((p) => p.name);
export const TASK_ITEMS: readonly string[] = ['apples', 'pens', 'books', 'cards', 'eggs', 'coins'];

/** The structured problem behind a question; the answer is `operands` folded left to right by `ops`. */
export interface ProblemMeta {
  readonly template: TemplateName;
  readonly split: TaskSplit;
  readonly names: readonly string[];
  readonly item: string;
  readonly operands: readonly number[];
  readonly ops: readonly ArithmeticOp[];
  readonly result: number;
}

/** A generated problem: GSM8K's `{ question, answer }` plus the structure it came from. */
export interface TaskItem {
  readonly question: string;
  readonly answer: string;
  readonly meta: ProblemMeta;
}

export interface GenerateTaskOptions {
  readonly seed: number;
  readonly split: TaskSplit;
  readonly count: number;
  /** GSM8K's calculator annotations (`= <<3+4=7>>7`); off by default to keep targets short. */
  readonly annotations?: boolean;
}

export function applyOp(a: number, op: ArithmeticOp, b: number): number {
  return op === '+' ? a + b : op === '-' ? a - b : a * b;
}

/** Left-to-right evaluation with every intermediate value, the last being the result. */
export function evaluateChain(operands: readonly number[], ops: readonly ArithmeticOp[]): number[] {
  if (operands.length !== ops.length + 1 || operands.length === 0) {
    throw new Error(`evaluateChain: ${operands.length} operands need ${operands.length - 1} ops, got ${ops.length}`);
  }
  const values: number[] = [];
  let acc = operands[0]!;
  for (let i = 0; i < ops.length; i++) {
    acc = applyOp(acc, ops[i]!, operands[i + 1]!);
    values.push(acc);
  }
  return values.length ? values : [acc];
}

const TEMPLATE_OPS: Record<TemplateName, readonly ArithmeticOp[]> = {
  add: ['+'],
  sub: ['-'],
  mul: ['*'],
  together: ['+'],
  'add-sub': ['+', '-'],
  'mul-add': ['*', '+'],
  'add-add-sub': ['+', '+', '-'],
};

/** Held-out template×item pairs: only `ood` uses them, so `ood` tests recombination. */
export function isHeldOutCombination(template: TemplateName, item: string): boolean {
  const t = TEMPLATE_NAMES.indexOf(template);
  const i = TASK_ITEMS.indexOf(item);
  return (t + i) % 4 === 0;
}

/** Which of train/test an in-distribution question belongs to (20% test). */
export function inDistributionSplit(question: string): 'train' | 'test' {
  return fnv1a32(question) % 5 === 0 ? 'test' : 'train';
}

interface NumberRange {
  readonly addend: readonly [number, number];
  readonly factor: readonly [number, number];
  readonly multiplicand: readonly [number, number];
  readonly maxValue: number;
}

const IN_DISTRIBUTION: NumberRange = { addend: [2, 60], factor: [2, 9], multiplicand: [2, 9], maxValue: 99 };
const OUT_OF_DISTRIBUTION: NumberRange = { addend: [2, 120], factor: [2, 9], multiplicand: [2, 20], maxValue: 199 };

function sampleOperands(rng: SeededRng, ops: readonly ArithmeticOp[], range: NumberRange): number[] | null {
  const operands: number[] = [];
  if (ops[0] === '*') operands.push(rng.int(...range.factor));
  else operands.push(rng.int(...range.addend));
  for (const op of ops) operands.push(op === '*' ? rng.int(...range.multiplicand) : rng.int(...range.addend));
  // Every value a pupil writes down stays in range and positive (no "0 apples", no debts).
  const values = evaluateChain(operands, ops);
  return values.every((v) => v >= 1 && v <= range.maxValue) ? operands : null;
}

function step(a: number, op: ArithmeticOp, b: number, r: number, annotations: boolean): string {
  return annotations ? `${a} ${op} ${b} = <<${a}${op}${b}=${r}>>${r}` : `${a} ${op} ${b} = ${r}`;
}

function render(
  template: TemplateName,
  people: readonly { name: string; pronoun: string }[],
  item: string,
  x: readonly number[],
  v: readonly number[],
  ann: boolean,
): { question: string; steps: string[] } {
  const { name: n, pronoun: p } = people[0]!;
  switch (template) {
    case 'add':
      return {
        question: `${n} has ${x[0]} ${item}. ${p} buys ${x[1]} more. How many ${item} does ${n} have now?`,
        steps: [`${n} has ${step(x[0]!, '+', x[1]!, v[0]!, ann)} ${item}.`],
      };
    case 'sub':
      return {
        question: `${n} has ${x[0]} ${item}. ${p} gives away ${x[1]}. How many ${item} does ${n} have now?`,
        steps: [`${n} has ${step(x[0]!, '-', x[1]!, v[0]!, ann)} ${item}.`],
      };
    case 'mul':
      return {
        question: `${n} has ${x[0]} bags. Each bag has ${x[1]} ${item}. How many ${item} does ${n} have?`,
        steps: [`${n} has ${step(x[0]!, '*', x[1]!, v[0]!, ann)} ${item}.`],
      };
    case 'together': {
      const m = people[1]!.name;
      return {
        question: `${n} has ${x[0]} ${item}. ${m} has ${x[1]} ${item}. How many ${item} do they have together?`,
        steps: [`They have ${step(x[0]!, '+', x[1]!, v[0]!, ann)} ${item}.`],
      };
    }
    case 'add-sub':
      return {
        question: `${n} has ${x[0]} ${item}. ${p} buys ${x[1]} more and then gives away ${x[2]}. How many ${item} does ${n} have now?`,
        steps: [
          `${n} has ${step(x[0]!, '+', x[1]!, v[0]!, ann)} ${item}.`,
          `Then ${n} has ${step(v[0]!, '-', x[2]!, v[1]!, ann)} ${item}.`,
        ],
      };
    case 'mul-add':
      return {
        question: `${n} has ${x[0]} bags with ${x[1]} ${item} in each bag. ${p} also has ${x[2]} more ${item}. How many ${item} does ${n} have in all?`,
        steps: [
          `The bags hold ${step(x[0]!, '*', x[1]!, v[0]!, ann)} ${item}.`,
          `${n} has ${step(v[0]!, '+', x[2]!, v[1]!, ann)} ${item} in all.`,
        ],
      };
    case 'add-add-sub':
      return {
        question: `${n} has ${x[0]} ${item}. ${p} buys ${x[1]} more, finds ${x[2]} more and then gives away ${x[3]}. How many ${item} does ${n} have now?`,
        steps: [
          `${n} has ${step(x[0]!, '+', x[1]!, v[0]!, ann)} ${item}.`,
          `Then ${n} has ${step(v[0]!, '+', x[2]!, v[1]!, ann)} ${item}.`,
          `Then ${n} has ${step(v[1]!, '-', x[3]!, v[2]!, ann)} ${item}.`,
        ],
      };
  }
}

function splitSeed(seed: number, salt: string): number {
  return fnv1a32(`${seed >>> 0}:${Math.floor(seed / 4294967296)}:${salt}`);
}

/**
 * `count` distinct problems of `split`, the same for the same options on every machine.
 * A longer run with the same seed extends a shorter one (the first `count` items agree).
 */
export function generateTask(options: GenerateTaskOptions): TaskItem[] {
  const { seed, split, count, annotations = false } = options;
  checkSeedAndCount('generateTask', seed, count);
  if (!TASK_SPLITS.includes(split)) throw new Error(`generateTask: unknown split "${split}" (expected train, test or ood)`);
  const rng = new SeededRng(splitSeed(seed, `task:${split}`));
  const range = split === 'ood' ? OUT_OF_DISTRIBUTION : IN_DISTRIBUTION;
  const seen = new Set<string>();
  const out: TaskItem[] = [];
  const maxAttempts = 1000 + 200 * count;
  for (let attempt = 0; out.length < count; attempt++) {
    if (attempt >= maxAttempts) {
      throw new Error(`generateTask: found only ${out.length} distinct ${split} problems of ${count} requested`);
    }
    const template = rng.pick(TEMPLATE_NAMES);
    const item = rng.pick(TASK_ITEMS);
    const first = rng.pick(PEOPLE);
    const second = rng.pick(PEOPLE.filter((q) => q !== first));
    const ops = TEMPLATE_OPS[template];
    const operands = sampleOperands(rng, ops, range);
    if (operands === null) continue;
    if (isHeldOutCombination(template, item) !== (split === 'ood')) continue;
    const values = evaluateChain(operands, ops);
    const { question, steps } = render(template, [first, second], item, operands, values, annotations);
    if (split !== 'ood' && inDistributionSplit(question) !== split) continue;
    if (seen.has(question)) continue;
    seen.add(question);
    const result = values[values.length - 1]!;
    const names = template === 'together' ? [first.name, second.name] : [first.name];
    out.push({
      question,
      answer: `${steps.join('\n')}\n#### ${result}`,
      meta: { template, split, names, item, operands, ops, result },
    });
  }
  return out;
}

/**
 * The same problem's answer in the *shortcut* style: only the last sentence, with the result
 * stated and no working (`Eva has 64 coins in all.` for `The bags hold 6 * 5 = 30 coins.` /
 * `Eva has 30 + 34 = 64 coins in all.`). The built-in base model is pretrained on a mixture
 * of both styles (`softgrad pretrain --shortcut-fraction`), so that, like a real base model,
 * it can reason in a careful way and in a less reliable one: a tiny model that writes no
 * working gets the arithmetic wrong far more often, and which style to use is a choice RL can
 * learn from every problem at once (docs/demo.md).
 */
export function shortcutAnswer(item: TaskItem): string {
  const at = item.answer.lastIndexOf('\n#### ');
  const lines = item.answer.slice(0, at).split('\n');
  const last = lines[lines.length - 1]!.replace(/\d+ [+*-] \d+ = (?:<<[^<>]*>>)?(\d+)/, '$1').replace(/^Then /, '');
  if (!last.includes(String(item.meta.result))) throw new Error(`shortcutAnswer: no result in "${last}"`);
  return `${last}\n#### ${item.meta.result}`;
}

/** Drops `meta`: exactly GSM8K's record shape, for writing JSONL. */
export function toGsm8kRecord(item: TaskItem): { question: string; answer: string } {
  return { question: item.question, answer: item.answer };
}

// ---------------------------------------------------------------------------------------
// Multiple-choice out-of-domain set

export type ChoiceKind = 'arithmetic' | 'largest' | 'who-more';

export interface ChoiceTaskItem extends ChoiceItem {
  readonly kind: ChoiceKind;
}

export interface GenerateChoiceTaskOptions {
  readonly seed: number;
  readonly count: number;
}

/** `n` distinct non-negative numbers including `correct`, in random order. */
function numericChoices(rng: SeededRng, correct: number, n: number): { choices: string[]; answerIndex: number } {
  const values = new Set<number>([correct]);
  while (values.size < n) {
    const candidate = correct + rng.pick([-1, 1]) * rng.int(1, 10);
    if (candidate >= 0) values.add(candidate);
  }
  const shuffled = rng.shuffle([...values]);
  return { choices: shuffled.map(String), answerIndex: shuffled.indexOf(correct) };
}

/**
 * Multiple-choice questions about the task's world phrased differently from its word
 * problems (bare arithmetic, comparisons), for the out-of-domain accuracy/NLL check.
 */
export function generateChoiceTask(options: GenerateChoiceTaskOptions): ChoiceTaskItem[] {
  const { seed, count } = options;
  checkSeedAndCount('generateChoiceTask', seed, count);
  const rng = new SeededRng(splitSeed(seed, 'choice'));
  const seen = new Set<string>();
  const out: ChoiceTaskItem[] = [];
  const maxAttempts = 1000 + 200 * count;
  for (let attempt = 0; out.length < count; attempt++) {
    if (attempt >= maxAttempts) throw new Error(`generateChoiceTask: found only ${out.length} distinct items of ${count} requested`);
    const kind = rng.pick<ChoiceKind>(['arithmetic', 'largest', 'who-more']);
    let item: ChoiceTaskItem;
    if (kind === 'arithmetic') {
      const op = rng.pick<ArithmeticOp>(['+', '-', '*']);
      let a = op === '*' ? rng.int(2, 9) : rng.int(2, 50);
      let b = op === '*' ? rng.int(2, 9) : rng.int(2, 50);
      if (op === '-' && b > a) [a, b] = [b, a];
      const { choices, answerIndex } = numericChoices(rng, applyOp(a, op, b), 4);
      item = { kind, question: `What is ${a} ${op} ${b}?`, choices, answerIndex };
    } else if (kind === 'largest') {
      const values = new Set<number>();
      while (values.size < 4) values.add(rng.int(1, 99));
      const choices = [...values].map(String);
      // The question lists the numbers: likelihood scoring reads only the question before the
      // choice, so a question without them could not be answered.
      const listed = `${choices.slice(0, -1).join(', ')} or ${choices[choices.length - 1]}`;
      item = { kind, question: `Which number is the largest: ${listed}?`, choices, answerIndex: choices.indexOf(String(Math.max(...values))) };
    } else {
      const first = rng.pick(PEOPLE);
      const second = rng.pick(PEOPLE.filter((q) => q !== first));
      const thing = rng.pick(TASK_ITEMS);
      const a = rng.int(1, 50);
      let b = rng.int(1, 49);
      if (b >= a) b++; // never equal, so exactly one answer is right
      const choices = rng.shuffle([first.name, second.name]);
      const winner = a > b ? first.name : second.name;
      item = {
        kind,
        question: `${first.name} has ${a} ${thing}. ${second.name} has ${b} ${thing}. Who has more ${thing}?`,
        choices,
        answerIndex: choices.indexOf(winner),
      };
    }
    const key = `${item.question}|${item.choices.join('|')}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(item);
  }
  return out;
}
