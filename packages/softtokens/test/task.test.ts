import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  SeededRng,
  TASK_ITEMS,
  TASK_NAMES,
  TEMPLATE_NAMES,
  evaluateChain,
  generateChoiceTask,
  generateTask,
  isHeldOutCombination,
  shortcutAnswer,
  toGsm8kRecord,
  type TaskItem,
} from '../src/task.js';
import { gsm8kReference } from '../src/rewards.js';
import { formatSupervisedTarget } from '../src/prompt.js';

describe('SeededRng', () => {
  it('is deterministic and seed-dependent', () => {
    const a = new SeededRng(42);
    const b = new SeededRng(42);
    const c = new SeededRng(43);
    const xs = Array.from({ length: 8 }, () => a.nextUint32());
    expect(Array.from({ length: 8 }, () => b.nextUint32())).toEqual(xs);
    expect(Array.from({ length: 8 }, () => c.nextUint32())).not.toEqual(xs);
  });

  it('draws integers in range, covering it', () => {
    const rng = new SeededRng(1);
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const v = rng.int(3, 9);
      expect(v).toBeGreaterThanOrEqual(3);
      expect(v).toBeLessThanOrEqual(9);
      seen.add(v);
    }
    expect(seen.size).toBe(7);
    expect(() => rng.int(5, 4)).toThrow('bad range');
  });
});

/** Recomputes the answer from the structured fields, independently of the generator. */
function recompute(item: TaskItem): number {
  let acc = item.meta.operands[0]!;
  item.meta.ops.forEach((op, i) => {
    const b = item.meta.operands[i + 1]!;
    acc = op === '+' ? acc + b : op === '-' ? acc - b : acc * b;
  });
  return acc;
}

describe('generateTask', () => {
  it('gives the same problems for the same seed and different ones for another seed', () => {
    for (const split of ['train', 'test', 'ood'] as const) {
      const a = generateTask({ seed: 7, split, count: 50 });
      expect(generateTask({ seed: 7, split, count: 50 })).toEqual(a);
      const b = generateTask({ seed: 8, split, count: 50 });
      expect(b.map((x) => x.question)).not.toEqual(a.map((x) => x.question));
    }
  });

  it('extends a shorter run with the same seed', () => {
    const short = generateTask({ seed: 3, split: 'train', count: 20 });
    const long = generateTask({ seed: 3, split: 'train', count: 60 });
    expect(long.slice(0, 20)).toEqual(short);
  });

  it('keeps train, test and ood disjoint in question text, across seeds', () => {
    const train = generateTask({ seed: 1, split: 'train', count: 3000 });
    const testQuestions = [1, 2, 3].flatMap((seed) => generateTask({ seed, split: 'test', count: 400 }).map((x) => x.question));
    const oodQuestions = generateTask({ seed: 1, split: 'ood', count: 400 }).map((x) => x.question);
    const trainSet = new Set(train.map((x) => x.question));
    expect(trainSet.size).toBe(train.length);
    for (const q of testQuestions) expect(trainSet.has(q), q).toBe(false);
    for (const q of oodQuestions) expect(trainSet.has(q), q).toBe(false);
    const testSet = new Set(testQuestions);
    for (const q of oodQuestions) expect(testSet.has(q), q).toBe(false);
  });

  it('answers every problem with the arithmetic of its structured fields', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 }), fc.constantFrom('train', 'test', 'ood' as const), fc.boolean(), (seed, split, annotations) => {
        for (const item of generateTask({ seed, split, count: 30, annotations })) {
          const expected = recompute(item);
          expect(item.meta.result).toBe(expected);
          expect(item.answer.endsWith(`\n#### ${expected}`)).toBe(true);
          expect(gsm8kReference(item.answer)).toBe(String(expected));
          expect(evaluateChain(item.meta.operands, item.meta.ops).at(-1)).toBe(expected);
          // Every worked line's "a op b = r" is itself correct arithmetic.
          for (const m of item.answer.matchAll(/(\d+) ([-+*]) (\d+) = (?:<<[^>]*>>)?(\d+)/g)) {
            const [a, b, r] = [Number(m[1]), Number(m[3]), Number(m[4])];
            expect(m[2] === '+' ? a + b : m[2] === '-' ? a - b : a * b).toBe(r);
          }
          const lines = item.answer.split('\n');
          expect(lines.length).toBe(item.meta.ops.length + 1);
          for (const n of item.meta.operands) expect(item.question).toContain(String(n));
          expect(item.question).toContain(item.meta.names[0]!);
          expect(item.question).toContain(item.meta.item);
          expect(item.meta.split).toBe(split);
        }
      }),
      { numRuns: 40 },
    );
  });

  it('keeps in-distribution numbers below 100 and puts held-out combinations only in ood', () => {
    const train = generateTask({ seed: 5, split: 'train', count: 1000 });
    const ood = generateTask({ seed: 5, split: 'ood', count: 500 });
    for (const item of train) {
      for (const v of [...item.meta.operands, ...evaluateChain(item.meta.operands, item.meta.ops)]) {
        expect(v).toBeGreaterThanOrEqual(1);
        expect(v).toBeLessThan(100);
      }
      expect(isHeldOutCombination(item.meta.template, item.meta.item)).toBe(false);
    }
    for (const item of ood) expect(isHeldOutCombination(item.meta.template, item.meta.item)).toBe(true);
    expect(ood.some((x) => x.meta.result >= 100)).toBe(true);
    expect(new Set(train.map((x) => x.meta.template))).toEqual(new Set(TEMPLATE_NAMES));
    expect(new Set(ood.map((x) => x.meta.template))).toEqual(new Set(TEMPLATE_NAMES));
    expect(new Set(train.map((x) => x.meta.item))).toEqual(new Set(TASK_ITEMS));
    expect(new Set(train.map((x) => x.meta.names[0]))).toEqual(new Set(TASK_NAMES));
  });

  it('stays within a small character and word vocabulary', () => {
    const items = (['train', 'test', 'ood'] as const).flatMap((split) => generateTask({ seed: 9, split, count: 500 }));
    const text = items.map((x) => x.question + '\n' + x.answer + formatSupervisedTarget(x.answer)).join('\n');
    expect(new Set(text).size).toBeLessThanOrEqual(70);
    const words = new Set(text.split(/[^A-Za-z]+/).filter(Boolean));
    expect(words.size).toBeLessThanOrEqual(60);
  });

  it('writes the GSM8K example format', () => {
    const [item] = generateTask({ seed: 0, split: 'train', count: 1 });
    expect(Object.keys(toGsm8kRecord(item!))).toEqual(['question', 'answer']);
    const add = generateTask({ seed: 0, split: 'train', count: 200 }).find((x) => x.meta.template === 'add')!;
    const [a, b] = add.meta.operands;
    const n = add.meta.names[0];
    expect(add.question).toMatch(new RegExp(`^${n} has ${a} ${add.meta.item}\\. (He|She) buys ${b} more\\. How many ${add.meta.item} does ${n} have now\\?$`));
    expect(add.answer).toBe(`${n} has ${a} + ${b} = ${a! + b!} ${add.meta.item}.\n#### ${a! + b!}`);
  });

  it('writes the shortcut style: the last sentence with its result and no working, the same reference', () => {
    const items = generateTask({ seed: 3, split: 'train', count: 300 });
    for (const t of TEMPLATE_NAMES) expect(items.some((x) => x.meta.template === t)).toBe(true);
    for (const item of items) {
      const short = shortcutAnswer(item);
      expect(gsm8kReference(short)).toBe(gsm8kReference(item.answer));
      const [sentence, final] = short.split('\n');
      expect(final).toBe(`#### ${item.meta.result}`);
      // No arithmetic is written, and the sentence names the result and the item.
      expect(sentence).not.toMatch(/[+*=]| - /);
      expect(sentence).toMatch(new RegExp(`^(${[...TASK_NAMES, 'They'].join('|')}) ha(s|ve) ${item.meta.result} ${item.meta.item}( in all)?\\.$`));
    }
    const mulAdd = items.find((x) => x.meta.template === 'mul-add')!;
    expect(shortcutAnswer(mulAdd)).toBe(`${mulAdd.meta.names[0]} has ${mulAdd.meta.result} ${mulAdd.meta.item} in all.\n#### ${mulAdd.meta.result}`);
  });

  it('rejects bad options', () => {
    expect(() => generateTask({ seed: 1.5, split: 'train', count: 1 })).toThrow('seed must be an integer');
    expect(() => generateTask({ seed: 1, split: 'train', count: -1 })).toThrow('count must be a non-negative integer');
    expect(() => generateTask({ seed: 1, split: 'dev' as never, count: 1 })).toThrow('unknown split "dev"');
    expect(generateTask({ seed: 1, split: 'train', count: 0 })).toEqual([]);
  });
});

describe('generateChoiceTask', () => {
  it('is deterministic and seed-dependent', () => {
    const a = generateChoiceTask({ seed: 11, count: 100 });
    expect(generateChoiceTask({ seed: 11, count: 100 })).toEqual(a);
    expect(generateChoiceTask({ seed: 12, count: 100 })).not.toEqual(a);
  });

  it('marks exactly the correct choice', () => {
    const items = generateChoiceTask({ seed: 4, count: 600 });
    expect(new Set(items.map((x) => x.kind))).toEqual(new Set(['arithmetic', 'largest', 'who-more']));
    for (const item of items) {
      expect(new Set(item.choices).size).toBe(item.choices.length);
      expect(item.answerIndex).toBeGreaterThanOrEqual(0);
      expect(item.answerIndex).toBeLessThan(item.choices.length);
      const correct = item.choices[item.answerIndex]!;
      if (item.kind === 'arithmetic') {
        const m = /^What is (\d+) ([-+*]) (\d+)\?$/.exec(item.question)!;
        const [a, b] = [Number(m[1]), Number(m[3])];
        expect(Number(correct)).toBe(m[2] === '+' ? a + b : m[2] === '-' ? a - b : a * b);
        expect(item.choices).toHaveLength(4);
      } else if (item.kind === 'largest') {
        // The question lists every choice, so it can be answered from the question alone.
        const m = /^Which number is the largest: (\d+), (\d+), (\d+) or (\d+)\?$/.exec(item.question)!;
        expect(m, item.question).not.toBeNull();
        expect(m.slice(1, 5)).toEqual(item.choices);
        expect(Number(correct)).toBe(Math.max(...m.slice(1, 5).map(Number)));
      } else {
        const m = /^(\w+) has (\d+) (\w+)\. (\w+) has (\d+) \w+\. Who has more \w+\?$/.exec(item.question)!;
        expect(correct).toBe(Number(m[2]) > Number(m[5]) ? m[1] : m[4]);
      }
    }
    // The correct position is not always the same one.
    expect(new Set(items.map((x) => x.answerIndex)).size).toBe(4);
  });
});
