import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomicSync as writeFileAtomic } from '@softgrad/transformer';
import { DataFileError, parseJsonl, readJsonl, toJsonl, writeJsonl } from '../src/io.js';
import { loadChoiceItems, loadGsm8k, loadMath, loadProblems, parseChoiceItems, parseProblems } from '../src/datasets.js';
import { generateChoiceTask, generateTask, toGsm8kRecord } from '../src/task.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'softtokens-data-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function file(name: string, lines: string[]): string {
  const path = join(dir, name);
  writeFileSync(path, lines.join('\n') + '\n');
  return path;
}

describe('writeFileAtomic', () => {
  it('writes the whole content and leaves no temporary file', () => {
    const path = join(dir, 'out.json');
    writeFileAtomic(path, 'first');
    writeFileAtomic(path, 'second, longer');
    writeFileAtomic(join(dir, 'bytes.bin'), new Uint8Array([1, 2, 3]));
    expect(readFileSync(path, 'utf8')).toBe('second, longer');
    expect([...readFileSync(join(dir, 'bytes.bin'))]).toEqual([1, 2, 3]);
    expect(readdirSync(dir).sort()).toEqual(['bytes.bin', 'out.json']);
  });

  it('cleans up and keeps the old file when the rename fails', () => {
    const target = join(dir, 'taken');
    mkdirSync(target);
    writeFileSync(join(target, 'x'), 'x'); // a non-empty directory cannot be replaced by a file
    expect(() => writeFileAtomic(target, 'data')).toThrow();
    expect(readdirSync(dir)).toEqual(['taken']);
  });

  it('fails without leftovers when the directory is missing', () => {
    expect(() => writeFileAtomic(join(dir, 'missing', 'f.txt'), 'data')).toThrow();
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('JSONL', () => {
  it('round-trips records', () => {
    const path = join(dir, 'r.jsonl');
    const records = [{ a: 1 }, { b: 'two\nlines' }, [3]];
    writeJsonl(path, records);
    expect(readFileSync(path, 'utf8')).toBe(toJsonl(records));
    expect(readJsonl(path)).toEqual(records);
    expect(readdirSync(dir)).toEqual(['r.jsonl']);
  });

  it('skips blank lines but keeps their numbers, and tolerates CRLF and a BOM', () => {
    expect(parseJsonl('\uFEFF{"a":1}\r\n\r\n{"a":2}\r\n', 'x')).toEqual([
      { line: 1, value: { a: 1 } },
      { line: 3, value: { a: 2 } },
    ]);
  });

  it('names file and line for invalid JSON', () => {
    const path = file('bad.jsonl', ['{"a": 1}', '', '{"a": ']);
    expect(() => readJsonl(path)).toThrow(`${path}:3: invalid JSON`);
    try {
      readJsonl(path);
    } catch (e) {
      expect(e).toBeInstanceOf(DataFileError);
      expect((e as DataFileError).line).toBe(3);
      expect((e as DataFileError).file).toBe(path);
    }
  });
});

describe('GSM8K and MATH loaders', () => {
  it('loads GSM8K with the reference after ####', () => {
    const path = file('gsm8k.jsonl', [
      JSON.stringify({ question: 'Q1?', answer: 'Half of 48 is 48/2 = <<48/2=24>>24.\n#### 24' }),
      JSON.stringify({ question: 'Q2?', answer: 'Many.\n#### 1,234' }),
    ]);
    expect(loadGsm8k(path)).toEqual([
      { question: 'Q1?', solution: 'Half of 48 is 48/2 = <<48/2=24>>24.', reference: '24' },
      { question: 'Q2?', solution: 'Many.', reference: '1234' },
    ]);
  });

  it('loads the built-in task written as JSONL', () => {
    const items = generateTask({ seed: 2, split: 'test', count: 25 });
    const path = join(dir, 'task.jsonl');
    writeJsonl(path, items.map(toGsm8kRecord));
    const loaded = loadProblems(path);
    expect(loaded.map((x) => x.question)).toEqual(items.map((x) => x.question));
    expect(loaded.map((x) => x.reference)).toEqual(items.map((x) => String(x.meta.result)));
  });

  it('loads MATH from the boxed solution or from an answer field', () => {
    const path = file('math.jsonl', [
      JSON.stringify({ problem: 'P1', solution: 'So $\\boxed{\\frac{1}{2}}$.', level: 'Level 2' }),
      JSON.stringify({ problem: 'P2', solution: 'Long \\boxed{3} text', answer: '3' }),
      JSON.stringify({ problem: 'P3', answer: ' 7 ' }),
    ]);
    expect(loadMath(path)).toEqual([
      { question: 'P1', solution: 'So $\\boxed{\\frac{1}{2}}$.', reference: '\\frac{1}{2}' },
      { question: 'P2', solution: 'Long \\boxed{3} text', reference: '3' },
      { question: 'P3', solution: '', reference: '7' },
    ]);
  });

  it.each([
    ['gsm8k', [JSON.stringify({ question: 'q', answer: '#### 1' }), JSON.stringify({ question: 'q' })], ':2: missing field "answer"'],
    ['gsm8k', [JSON.stringify({ answer: '#### 1' })], ':1: missing field "question"'],
    ['gsm8k', [JSON.stringify({ question: 'q', answer: 'no marker' })], ':1: field "answer" has no "#### <answer>" line'],
    ['gsm8k', [JSON.stringify({ question: 'q', answer: 5 })], ':1: field "answer" must be a string, got number 5'],
    ...['abc', 'NaN', '1e400', '0x10', 'Infinity'].map((ref) =>
      ['gsm8k', [JSON.stringify({ question: 'q', answer: `#### ${ref}` })], `:1: field "answer": the reference after "####" is "${ref}"; expected a number`] as const),
    ['gsm8k', ['{"question": "q", "answer": "#### 1", "answer": "#### 2"}'], ':1: key "answer" appears twice in one record'],
    ['gsm8k', ['[1, 2]'], ':1: expected a JSON object, got an array'],
    ['gsm8k', ['{"question": "q", "answer": "#### 1"}', 'not json'], ':2: invalid JSON'],
    ['math', [JSON.stringify({ problem: 'p', solution: 'no box' })], ':1: field "solution" has no \\boxed{...} answer'],
    ['math', [JSON.stringify({ problem: 'p' })], ':1: missing field "solution" (and no "answer")'],
    ['math', [JSON.stringify({ solution: '\\boxed{1}' })], ':1: missing field "problem"'],
    ['auto', [JSON.stringify({ text: 'x' })], ':1: cannot tell the format'],
  ] as const)('reports a malformed %s line with file and line number: %j', (format, lines, message) => {
    const path = file('x.jsonl', [...lines]);
    expect(() => loadProblems(path, format)).toThrow(`${path}${message}`);
  });

  it('says what a path is when it is not a readable data file', () => {
    expect(() => loadProblems(dir)).toThrow(`${dir}: is a directory; expected a JSONL file`);
    expect(() => loadProblems(join(dir, 'none.jsonl'))).toThrow('none.jsonl: cannot read: no such file');
    const latin1 = join(dir, 'latin1.jsonl');
    writeFileSync(latin1, Buffer.from([0x7b, 0x22, 0xe9, 0x22, 0x7d]));
    expect(() => loadProblems(latin1)).toThrow('latin1.jsonl: not UTF-8 text');
  });

  it('parses text without the file system', () => {
    expect(parseProblems('{"question":"q","answer":"#### 2"}', 'mem')).toEqual([{ question: 'q', solution: '', reference: '2' }]);
    expect(() => parseProblems('{"question":"q"}', 'data/x.jsonl')).toThrow('data/x.jsonl:1: missing field "answer"');
  });
});

describe('multiple-choice loaders', () => {
  it('normalises HellaSwag, ARC (both layouts), MMLU and the built-in shape', () => {
    const path = file('mc.jsonl', [
      JSON.stringify({ ctx: 'A man is sitting on a roof. he', endings: ['a', 'b', 'c', 'd'], label: 3 }),
      JSON.stringify({ ctx_a: 'Context a.', ctx_b: 'then', endings: ['a', 'b'], label: '1' }),
      JSON.stringify({
        id: 'Mercury_1',
        question: { stem: 'Which is a gas?', choices: [{ text: 'rock', label: 'A' }, { text: 'air', label: 'B' }, { text: 'ice', label: 'C' }] },
        answerKey: 'B',
      }),
      JSON.stringify({ question: 'Numbered?', choices: { text: ['x', 'y', 'z', 'w'], label: ['1', '2', '3', '4'] }, answerKey: '4' }),
      JSON.stringify({ question: 'What is 2+2?', choices: ['3', '4', '5', '6'], answer: 1 }),
      JSON.stringify({ question: 'Letter?', choices: ['3', '4', '5', '6'], answer: 'C' }),
      JSON.stringify({ question: 'Built-in?', choices: ['no', 'yes'], answerIndex: 1 }),
    ]);
    expect(loadChoiceItems(path)).toEqual([
      { question: 'A man is sitting on a roof. he', choices: ['a', 'b', 'c', 'd'], answerIndex: 3 },
      { question: 'Context a. then', choices: ['a', 'b'], answerIndex: 1 },
      { question: 'Which is a gas?', choices: ['rock', 'air', 'ice'], answerIndex: 1 },
      { question: 'Numbered?', choices: ['x', 'y', 'z', 'w'], answerIndex: 3 },
      { question: 'What is 2+2?', choices: ['3', '4', '5', '6'], answerIndex: 1 },
      { question: 'Letter?', choices: ['3', '4', '5', '6'], answerIndex: 2 },
      { question: 'Built-in?', choices: ['no', 'yes'], answerIndex: 1 },
    ]);
  });

  it('loads the generated multiple-choice set', () => {
    const items = generateChoiceTask({ seed: 1, count: 30 });
    const path = join(dir, 'choice.jsonl');
    writeJsonl(path, items);
    expect(loadChoiceItems(path)).toEqual(items.map(({ question, choices, answerIndex }) => ({ question, choices, answerIndex })));
  });

  it.each([
    ['hellaswag', { ctx: 'c', endings: ['a', 'b'] }, ':1: missing field "label"'],
    ['hellaswag', { ctx: 'c', endings: ['a', 'b'], label: 2 }, ':1: field "label" (2) is out of range for 2 choices'],
    ['hellaswag', { ctx: 'c', endings: 'ab', label: 0 }, ':1: field "endings" must be an array of strings'],
    ['hellaswag', { endings: ['a', 'b'], label: 0 }, ':1: missing field "ctx"'],
    ['arc', { question: { stem: 's', choices: [{ text: 'a', label: 'A' }, { text: 'b', label: 'B' }] }, answerKey: 'E' }, ':1: field "answerKey" "E" is not one of the labels A, B'],
    ['arc', { question: { stem: 's', choices: [{ text: 'a' }, { text: 'b', label: 'B' }] }, answerKey: 'B' }, ':1: field "question.choices"[0] has no string "label"'],
    ['arc', { question: { choices: [] }, answerKey: 'A' }, ':1: missing field "stem"'],
    ['mmlu', { question: 'q', choices: ['a', 'b', 'c', 'd'], answer: 'E' }, ':1: field "answer" ("E") is out of range for 4 choices'],
    ['mmlu', { question: 'q', choices: ['a', 'b', 'c', 'd'], answer: 1.5 }, ':1: field "answer" (1.5) is out of range'],
    ['mmlu', { question: 'q', choices: ['a', 'b', 'c', 'd'] }, ':1: missing field "answer"'],
    ['mmlu', { question: 'q', choices: ['a'], answer: 0 }, ':1: field "choices" must have at least 2 choices'],
    ['auto', { prompt: 'q' }, ':1: cannot tell the format'],
  ] as const)('reports a malformed %s line: %j', (format, record, message) => {
    // Two lines before it (one valid in the auto case, one blank) so the number must be right.
    const first = format === 'auto' ? JSON.stringify({ question: 'ok', choices: ['a', 'b'], answerIndex: 0 }) : '';
    const path = file('mc.jsonl', [first, '', JSON.stringify(record)]);
    expect(() => loadChoiceItems(path, format)).toThrow(`${path}:3:${message.slice(3)}`);
    expect(() => parseChoiceItems(JSON.stringify(record), 'data/x.jsonl', format)).toThrow(`data/x.jsonl${message}`);
  });
});

