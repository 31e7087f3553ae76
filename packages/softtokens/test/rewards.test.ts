import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  REWARD_CORRECT,
  REWARD_FORMAT,
  REWARD_NONE,
  answersEquivalent,
  extractLastBoxed,
  formatRational,
  gsm8kReference,
  mathReference,
  normalizeAnswer,
  normalizeText,
  parseNumber,
  rational,
  reward,
} from '../src/rewards.js';

describe('extractLastBoxed', () => {
  const cases: [string, string | null][] = [
    ['The final answer is: \\boxed{7}.', '7'],
    ['\\boxed{1} and then \\boxed{2}', '2'],
    ['\\boxed {42}', '42'],
    ['\\fbox{5}', '5'],
    ['\\boxed{1} then \\fbox{3}', '3'],
    ['\\fbox{3} then \\boxed{4}', '4'],
    ['\\boxed{\\frac{1}{2}}', '\\frac{1}{2}'],
    ['\\boxed{\\frac{\\sqrt{2}}{2}} end', '\\frac{\\sqrt{2}}{2}'],
    ['\\boxed{\\{1, 2\\}}', '\\{1, 2\\}'],
    ['\\boxed{}', ''],
    ['no box here', null],
    ['\\boxed{7', null],
    ['\\boxed{7} then truncated \\boxed{8', null],
    ['\\boxed{{5}', null],
    ['\\boxedx{5}', null],
    ['\\boxed 5', null],
  ];
  it.each(cases)('extracts the last boxed answer of %j', (text, expected) => {
    expect(extractLastBoxed(text)).toBe(expected);
  });
});

// [answer text, reference, expected reward]
const REWARD_CASES: [string, string, number][] = [
  // plain integers and formatting
  ['\\boxed{7}', '7', 100],
  ['The final answer is: \\boxed{7}.', '7', 100],
  ['\\boxed{ 7 }', '7', 100],
  ['\\boxed{7.}', '7', 100],
  ['\\boxed{7 .}', '7', 100],
  ['\\boxed{1,234}', '1234', 100],
  ['\\boxed{1234}', '1,234', 100],
  ['\\boxed{1,234,567}', '1234567', 100],
  ['\\boxed{1\\,234}', '1234', 100],
  ['\\boxed{10{,}000}', '10000', 100],
  ['\\boxed{1\\!234}', '1234', 100],
  ['\\boxed{+5}', '5', 100],
  ['\\boxed{-5}', '-5', 100],
  ['\\boxed{−5}', '-5', 100],
  ['\\boxed{-5}', '5', 10],
  ['\\boxed{5}', '-5', 10],
  ['\\boxed{007}', '7', 100],
  // decimals and exact rationals
  ['\\boxed{5.00}', '5', 100],
  ['\\boxed{0.5}', '1/2', 100],
  ['\\boxed{.5}', '0.5', 100],
  ['\\boxed{0.5}', '\\frac{1}{2}', 100],
  ['\\boxed{\\frac{1}{2}}', '1/2', 100],
  ['\\boxed{\\dfrac{1}{2}}', '0.5', 100],
  ['\\boxed{\\tfrac{1}{2}}', '0.5', 100],
  ['\\boxed{\\frac12}', '0.5', 100],
  ['\\boxed{\\frac1{2}}', '0.5', 100],
  ['\\boxed{\\frac{3}4}', '0.75', 100],
  ['\\boxed{\\frac{2}{4}}', '\\frac{1}{2}', 100],
  ['\\boxed{-\\frac{3}{4}}', '-0.75', 100],
  ['\\boxed{\\frac{-3}{4}}', '-3/4', 100],
  ['\\boxed{\\frac{3}{-4}}', '-0.75', 100],
  ['\\boxed{2\\frac{1}{2}}', '5/2', 100],
  ['\\boxed{1.25}', '\\frac{5}{4}', 100],
  ['\\boxed{0.333}', '\\frac{1}{3}', 10],
  ['\\boxed{0.3333333333}', '1/3', 10],
  ['\\boxed{\\frac{1}{3}}', '2/6', 100],
  ['\\boxed{1/0}', '1', 10],
  // units and currency noise
  ['\\boxed{\\$5}', '5', 100],
  ['\\boxed{$5$}', '5', 100],
  ['\\boxed{\\$1,234.50}', '1234.5', 100],
  ['\\boxed{50\\%}', '50', 100],
  ['\\boxed{50%}', '50', 100],
  ['\\boxed{5 \\text{ apples}}', '5', 100],
  ['\\boxed{5\\text{apples}}', '5', 100],
  ['\\boxed{5 \\mbox{ cm}}', '5', 100],
  ['\\boxed{\\dfrac{1}{2}\\text{ cup}.}', '0.5', 100],
  ['\\boxed{\\textbf{5}}', '5', 100],
  ['\\boxed{\\text{5 apples}}', '5', 100],
  ['\\boxed{5 apples}', '5', 100],
  ['\\boxed{12 \\text{ dollars}}', '13', 10],
  ['\\boxed{90^\\circ}', '90', 100],
  ['\\boxed{90^{\\circ}}', '90', 100],
  ['\\boxed{x = 5}', '5', 100],
  // grouping
  ['\\boxed{\\left( 1, 2 \\right)}', '(1,2)', 100],
  ['\\boxed{(0.5, 3)}', '(\\frac{1}{2}, 3)', 100],
  ['\\boxed{(1, 2)}', '(2, 1)', 10],
  ['\\boxed{(1, 2)}', '[1, 2]', 10],
  ['\\boxed{{5}}', '5', 100],
  ['\\boxed{(5)}', '5', 100],
  // non-numeric MATH answers: normalised strings
  ['\\boxed{x^2 + 1}', 'x^2+1', 100],
  ['\\boxed{\\sqrt2}', '\\sqrt{2}', 100],
  ['\\boxed{\\frac{\\sqrt{3}}{2}}', '\\dfrac{\\sqrt{3}}{2}', 100],
  ['\\boxed{\\text{(A)}}', '(A)', 100],
  ['\\boxed{2\\sqrt{2}}', '\\sqrt{2}', 10],
  ['\\boxed{x^2 + 2}', 'x^2+1', 10],
  // words compare without case; formulas keep it (variables may differ by case)
  ['\\boxed{Blue}', 'blue', 100],
  ['\\boxed{\\text{Blue}}', 'BLUE', 100],
  ['\\boxed{Red}', 'blue', 10],
  ['\\boxed{2X+1}', '2x+1', 10],
  // wrong, empty, missing and unparseable
  ['\\boxed{8}', '7', 10],
  ['\\boxed{}', '7', 0],
  ['\\boxed{ }', '7', 0],
  ['\\boxed{\\text{}}', '7', 0],
  ['\\boxed{.}', '7', 0],
  ['\\boxed{seven}', '7', 10],
  ['The answer is 7.', '7', 0],
  ['The final answer is: 7', '7', 0],
  ['\\boxed{7', '7', 0],
  ['\\boxed{7} but wait \\boxed{8', '7', 0],
  ['\\boxed{8} no, \\boxed{7}', '7', 100],
  ['\\boxed{7} no, \\boxed{8}', '7', 10],
  ['', '7', 0],
];

describe('reward', () => {
  it('has the paper’s constants', () => {
    expect([REWARD_CORRECT, REWARD_FORMAT, REWARD_NONE]).toEqual([100, 10, 0]);
  });

  it.each(REWARD_CASES)('reward(%j, %j) = %d', (answer, reference, expected) => {
    expect(reward(answer, reference)).toBe(expected);
  });

  it('has at least 40 table cases', () => {
    expect(REWARD_CASES.length).toBeGreaterThanOrEqual(40);
  });
});

describe('normalisation', () => {
  it('gives canonical forms', () => {
    expect(normalizeAnswer('1,234')).toBe('1234');
    expect(normalizeAnswer('\\frac{2}{4}')).toBe('0.5');
    expect(normalizeAnswer('2/6')).toBe('1/3');
    expect(normalizeAnswer('-0.750')).toBe('-0.75');
    expect(normalizeAnswer(' x^2 + 1 ')).toBe('x^2+1');
    expect(normalizeText('\\text{ yes }')).toBe('yes');
  });

  it('keeps numbers with malformed thousands separators out of the numeric path', () => {
    expect(parseNumber('1,2')).toBeNull();
    expect(parseNumber('12,34')).toBeNull();
    expect(answersEquivalent('1,2', '12')).toBe(false);
  });

  it('formats rationals as integers, terminating decimals or p/q', () => {
    expect(formatRational(rational(10n, 2n))).toBe('5');
    expect(formatRational(rational(-1n, 8n))).toBe('-0.125');
    expect(formatRational(rational(1n, 20n))).toBe('0.05');
    expect(formatRational(rational(2n, -6n))).toBe('-1/3');
  });

  it('reads references from GSM8K and MATH', () => {
    expect(gsm8kReference('Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72')).toBe('72');
    expect(gsm8kReference('a #### 1 then\n#### 1,234 ')).toBe('1234');
    expect(gsm8kReference('no marker')).toBeNull();
    expect(gsm8kReference('####   ')).toBeNull();
    expect(mathReference('So $x = \\boxed{3}$ and then $\\boxed{\\frac{1}{2}}$.')).toBe('\\frac{1}{2}');
    expect(mathReference('no box')).toBeNull();
  });
});

// ---------------------------------------------------------------------------------------
// Properties

function withCommas(n: bigint): string {
  return n.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Decimal digits of |num|/den when den has only factors 2 and 5 (independent of formatRational). */
function terminatingDecimal(num: bigint, den: bigint, commas: boolean, extraZeros: number): string | null {
  let digits = 0;
  while (10n ** BigInt(digits) % den !== 0n) {
    if (++digits > 40) return null;
  }
  const abs = num < 0n ? -num : num;
  const scaled = (abs * 10n ** BigInt(digits)) / den;
  const intPart = scaled / 10n ** BigInt(digits);
  const fracPart = digits === 0 ? '' : (scaled % 10n ** BigInt(digits)).toString().padStart(digits, '0');
  const frac = fracPart + '0'.repeat(extraZeros);
  const whole = commas ? withCommas(intPart) : intPart.toString();
  return `${num < 0n ? '-' : ''}${whole}${frac ? '.' + frac : ''}`;
}

const rationalArb = fc
  .record({
    num: fc.bigInt({ min: -2_000_000n, max: 2_000_000n }),
    den: fc.constantFrom(1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n, 10n, 12n, 16n, 20n, 25n, 40n, 125n),
  })
  .map(({ num, den }) => rational(num, den));

function equivalentForms(r: { num: bigint; den: bigint }, k: bigint): string[] {
  const neg = r.num < 0n;
  const abs = neg ? -r.num : r.num;
  const sign = neg ? '-' : '';
  const forms = [
    `\\frac{${r.num}}{${r.den}}`,
    `${sign}\\frac{${abs}}{${r.den}}`,
    `${sign}\\dfrac{${withCommas(abs * k)}}{${r.den * k}}`,
    `${r.num * k}/${r.den * k}`,
    `${sign}${withCommas(abs)}/${r.den} \\text{ apples}`,
  ];
  if (r.den === 1n) {
    forms.push(`${r.num}`, `${sign}${withCommas(abs)}`, `${neg ? '-' : '+'}${abs} \\text{ apples}`, `\\$${sign}${withCommas(abs)}`);
  }
  for (const [commas, zeros] of [[false, 0], [true, 0], [true, 2]] as const) {
    const dec = terminatingDecimal(r.num, r.den, commas, zeros);
    if (dec !== null) forms.push(dec, `${dec}\\mbox{ cm}`);
  }
  return forms;
}

describe('reward properties', () => {
  it('scores every equivalent form of a rational 100 against every other', () => {
    fc.assert(
      fc.property(rationalArb, fc.bigInt({ min: 1n, max: 9n }), (r, k) => {
        const forms = equivalentForms(r, k);
        for (const a of forms) {
          for (const b of forms) {
            expect(reward(`So the result is \\boxed{${a}}.`, b), `${a} vs ${b}`).toBe(100);
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it('scores a different number 10', () => {
    fc.assert(
      fc.property(rationalArb, rationalArb, fc.bigInt({ min: 1n, max: 9n }), (r, s, k) => {
        fc.pre(r.num !== s.num || r.den !== s.den);
        for (const a of equivalentForms(r, k)) {
          for (const b of equivalentForms(s, k)) {
            expect(reward(`\\boxed{${a}}`, b), `${a} vs ${b}`).toBe(10);
          }
        }
      }),
      { numRuns: 100 },
    );
  });

  it('scores text without a boxed answer 0', () => {
    fc.assert(
      fc.property(fc.string(), fc.integer(), (text, n) => {
        fc.pre(!text.includes('\\boxed') && !text.includes('\\fbox'));
        expect(reward(`${text} The final answer is: ${n}`, String(n))).toBe(0);
      }),
    );
  });

  it('never throws on arbitrary input', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (a, b) => {
        expect([0, 10, 100]).toContain(reward(`\\boxed{${a}}`, b));
        expect([0, 10, 100]).toContain(reward(a, b));
      }),
    );
  });
});

describe('reward on long adversarial answers', () => {
  it.each([
    ['word runs', 'a '.repeat(10000) + '!'],
    ['period runs', '. '.repeat(10000) + 'x'],
    ['unclosed braces', '{'.repeat(10000)],
    ['nested fractions', '\\frac{'.repeat(3000)],
    ['nested text groups', '\\text{'.repeat(5000) + '}'.repeat(5000)],
    ['nested parentheses', '('.repeat(5000) + ')'.repeat(5000)],
  ])('stays fast on %s (no regex backtracking blow-up)', (_, body) => {
    const t0 = performance.now();
    reward(`\\boxed{${body}}`, '5');
    reward(body, body);
    expect(performance.now() - t0).toBeLessThan(500);
  });
});
