/**
 * Answer extraction, normalisation and the paper's reward (docs/method.md): 100 for a correct
 * boxed answer, 10 for a boxed answer that parses but is wrong, 0 otherwise (an empty box,
 * `\boxed{}`, has nothing to parse and earns 0).
 *
 * Correctness is mathematical equivalence, not string equality: numbers are compared as
 * exact BigInt rationals (so `0.5` = `1/2` = `\frac{1}{2}` while `0.333` ≠ `1/3`), and
 * only answers that are not numbers fall back to comparing normalised strings.
 */

export const REWARD_CORRECT = 100;
export const REWARD_FORMAT = 10;
export const REWARD_NONE = 0;

// ---------------------------------------------------------------------------------------
// Exact rationals

/** A reduced fraction num/den with den > 0. */
export interface Rational {
  readonly num: bigint;
  readonly den: bigint;
}

function bigAbs(x: bigint): bigint {
  return x < 0n ? -x : x;
}

function gcd(a: bigint, b: bigint): bigint {
  a = bigAbs(a);
  b = bigAbs(b);
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

export function rational(num: bigint, den: bigint = 1n): Rational {
  if (den === 0n) throw new Error('rational: zero denominator');
  if (den < 0n) {
    num = -num;
    den = -den;
  }
  const g = gcd(num, den);
  return g > 1n ? { num: num / g, den: den / g } : { num, den };
}

function ratAdd(a: Rational, b: Rational): Rational {
  return rational(a.num * b.den + b.num * a.den, a.den * b.den);
}

function ratDiv(a: Rational, b: Rational): Rational | null {
  if (b.num === 0n) return null;
  return rational(a.num * b.den, a.den * b.num);
}

function ratNeg(a: Rational): Rational {
  return { num: -a.num, den: a.den };
}

export function rationalEquals(a: Rational, b: Rational): boolean {
  return a.num === b.num && a.den === b.den;
}

/**
 * Canonical text of a rational: an integer, a terminating decimal, or `p/q`. Decimals are
 * preferred where exact because that is how GSM8K-style references read.
 */
export function formatRational(r: Rational): string {
  if (r.den === 1n) return r.num.toString();
  let d = r.den;
  let twos = 0;
  let fives = 0;
  while (d % 2n === 0n) {
    d /= 2n;
    twos++;
  }
  while (d % 5n === 0n) {
    d /= 5n;
    fives++;
  }
  if (d !== 1n) return `${r.num}/${r.den}`;
  const digits = Math.max(twos, fives);
  const scaled = (bigAbs(r.num) * 10n ** BigInt(digits)) / r.den;
  const s = scaled.toString().padStart(digits + 1, '0');
  return `${r.num < 0n ? '-' : ''}${s.slice(0, -digits)}.${s.slice(-digits)}`;
}

// ---------------------------------------------------------------------------------------
// Boxed extraction

const BOX_COMMANDS = ['\\boxed', '\\fbox'];

/**
 * Content of the LAST `\boxed{…}` (or `\boxed {…}`, `\fbox{…}`) in `text`, braces nested.
 * Returns null when there is none or when the last one is not closed: a truncated answer
 * must not be rewarded as if it had been finished.
 */
export function extractLastBoxed(text: string): string | null {
  let start = -1;
  let openAt = -1;
  for (const cmd of BOX_COMMANDS) {
    let from = text.length;
    while (from >= 0) {
      const at = text.lastIndexOf(cmd, from);
      if (at < 0) break;
      let j = at + cmd.length;
      // `\boxedfoo` is a different command, not a box.
      while (j < text.length && /\s/.test(text[j]!)) j++;
      if (text[j] === '{') {
        if (at > start) {
          start = at;
          openAt = j;
        }
        break;
      }
      from = at - 1;
    }
  }
  if (start < 0) return null;
  let depth = 0;
  for (let i = openAt; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '\\') {
      i++; // `\{` and `\}` are literal braces, not grouping.
      continue;
    }
    if (ch === '{') depth++;
    else if (ch === '}') {
      depth--;
      if (depth === 0) return text.slice(openAt + 1, i);
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------
// Normalisation

/** Index just past the brace group opening at `open` (text[open] === '{'), or -1. */
function matchBrace(s: string, open: number): number {
  let depth = 0;
  for (let i = open; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === '\\') {
      i++;
      continue;
    }
    if (ch === '{') depth++;
    else if (ch === '}' && --depth === 0) return i + 1;
  }
  return -1;
}

const TEXT_COMMANDS = ['\\text', '\\mbox', '\\textbf', '\\textit', '\\textrm', '\\mathrm', '\\mathbf', '\\textnormal'];

/** Replaces every `\text{X}`-like group by `replace(X)`; unbalanced groups are left alone. */
function mapTextGroups(s: string, replace: (inner: string) => string): string {
  let out = '';
  let i = 0;
  while (i < s.length) {
    let matched = false;
    if (s[i] === '\\') {
      for (const cmd of TEXT_COMMANDS) {
        if (!s.startsWith(cmd, i)) continue;
        let j = i + cmd.length;
        while (j < s.length && s[j] === ' ') j++;
        if (s[j] !== '{') continue;
        const end = matchBrace(s, j);
        if (end < 0) continue;
        out += replace(s.slice(j + 1, end - 1));
        i = end;
        matched = true;
        break;
      }
    }
    if (!matched) out += s[i++];
  }
  return out;
}

/**
 * Removes the notation that never changes an answer's value: dollar signs, percent signs,
 * degree marks, thin spaces, `\left`/`\right`, `\dfrac`/`\tfrac` spelling, a trailing period.
 * The result still has spaces and `\text{…}` groups; callers decide what those mean.
 */
function stripNoise(input: string): string {
  let s = input.normalize('NFKC');
  s = s.replace(/\u2212/g, '-'); // Unicode minus, common in pasted answers.
  s = s.replace(/\\(?:displaystyle|textstyle)\b/g, '');
  s = s.replace(/\\[dt]frac/g, '\\frac');
  s = s.replace(/\\left\b\s*/g, '').replace(/\\right\b\s*/g, '');
  s = s.replace(/\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°/g, '');
  s = s.replace(/\{,\}/g, ','); // `10{,}000`: LaTeX's way to stop the comma adding space.
  s = s.replace(/\\[!,;:]/g, '').replace(/\\ /g, ' ').replace(/~/g, ' ');
  s = s.replace(/\\\$|\$/g, '');
  s = s.replace(/\\%|%/g, '');
  s = s.trim();
  // Trailing sentence punctuation ("7.", "5 ."); "7.5" never ends in a period. A loop, not
  // /[\s.]+$/, which is quadratic on long runs of ". . . x".
  let end = s.length;
  while (end > 0 && (s[end - 1] === '.' || /\s/.test(s[end - 1]!))) end--;
  return s.slice(0, end);
}

/** `\frac12` → `\frac{1}{2}`, `\frac1{x}` → `\frac{1}{x}`, `\sqrt2` → `\sqrt{2}`. */
function braceShorthand(s: string): string {
  return s
    .replace(/\\frac\s*([^{\s\\])\s*([^{\s\\])/g, '\\frac{$1}{$2}')
    .replace(/\\frac\s*([^{\s\\])\s*\{/g, '\\frac{$1}{')
    .replace(/\\frac\s*(\{(?:[^{}]|\{[^{}]*\})*\})\s*([^{\s\\])/g, '\\frac$1{$2}')
    .replace(/\\sqrt\s*([^{\s\\[])/g, '\\sqrt{$1}');
}

// ---------------------------------------------------------------------------------------
// Numeric parsing

const PLAIN_NUMBER = /^(\d+(?:,\d{3})*|\d+)?(?:\.(\d*))?$/;

/** A signless decimal like `1,234.50` or `.5`; commas only as thousands separators. */
function parseUnsignedDecimal(s: string): Rational | null {
  if (s === '' || s === '.') return null;
  const m = PLAIN_NUMBER.exec(s);
  if (!m) return null;
  const intPart = (m[1] ?? '').replace(/,/g, '');
  const fracPart = m[2] ?? '';
  if (intPart === '' && fracPart === '') return null;
  const digits = (intPart === '' ? '0' : intPart) + fracPart;
  return rational(BigInt(digits), 10n ** BigInt(fracPart.length));
}

/** Splits `\frac{A}{B}` at the start of s into [A, B, rest], or null. */
function splitFrac(s: string): [string, string, string] | null {
  if (!s.startsWith('\\frac{')) return null;
  const endA = matchBrace(s, 5);
  if (endA < 0 || s[endA] !== '{') return null;
  const endB = matchBrace(s, endA);
  if (endB < 0) return null;
  return [s.slice(6, endA - 1), s.slice(endA + 1, endB - 1), s.slice(endB)];
}

/** Value of a whitespace-free numeric expression, or null if it is not one. */
function parseNumericExpr(s: string, depth = 0): Rational | null {
  if (s === '' || depth > 8) return null;
  if (s[0] === '+' || s[0] === '-') {
    if (s[1] === '+' || s[1] === '-') return null;
    const v = parseNumericExpr(s.slice(1), depth + 1);
    return v && s[0] === '-' ? ratNeg(v) : v;
  }
  // Redundant grouping: `{5}` from `\boxed{{5}}`, `(5)`.
  if ((s[0] === '{' && matchBrace(s, 0) === s.length) || (s[0] === '(' && s.endsWith(')') && !s.slice(1, -1).includes(','))) {
    return parseNumericExpr(s.slice(1, -1), depth + 1);
  }
  const frac = splitFrac(s);
  if (frac) {
    if (frac[2] !== '') return null;
    const a = parseNumericExpr(frac[0], depth + 1);
    const b = parseNumericExpr(frac[1], depth + 1);
    return a && b ? ratDiv(a, b) : null;
  }
  // Mixed number: `2\frac{1}{2}` is 5/2 in MATH's answers.
  const mixed = /^(\d+)(\\frac\{.*)$/.exec(s);
  if (mixed) {
    const f = splitFrac(mixed[2]!);
    if (!f || f[2] !== '') return null;
    const whole = parseUnsignedDecimal(mixed[1]!);
    const a = parseUnsignedDecimal(f[0]);
    const b = parseUnsignedDecimal(f[1]);
    const part = a && b ? ratDiv(a, b) : null;
    return whole && part ? ratAdd(whole, part) : null;
  }
  const slash = s.indexOf('/');
  if (slash >= 0) {
    if (s.indexOf('/', slash + 1) >= 0) return null;
    const a = parseUnsignedDecimal(s.slice(0, slash));
    const b = parseNumericExpr(s.slice(slash + 1), depth + 1);
    return a && b ? ratDiv(a, b) : null;
  }
  return parseUnsignedDecimal(s);
}

/** Drops `x =` in front of an answer: `x = 5` and `5` are the same answer. */
function dropVariableAssignment(s: string): string {
  const m = /^[A-Za-z]\s*=\s*(.+)$/.exec(s);
  return m ? m[1]! : s;
}

function numericValue(text: string): Rational | null {
  const direct = parseNumericExpr(text.replace(/\s+/g, ''));
  if (direct) return direct;
  // Trailing bare unit words ("7 apples", "3 cm") with the number before them. Split into
  // words rather than one regex, which backtracks quadratically on long word runs.
  const words = text.trim().split(/\s+/);
  let keep = words.length;
  while (keep > 0 && /^[A-Za-z]+$/.test(words[keep - 1]!)) keep--;
  if (keep === 0 || keep === words.length) return null;
  return parseNumericExpr(words.slice(0, keep).join(''));
}

/**
 * Value of an answer as an exact rational, or null when it is not a number. Units
 * written as `\text{…}`/`\mbox{…}` are dropped first; if nothing numeric remains the
 * groups are unwrapped instead, so `\text{5 apples}` is still 5.
 */
export function parseNumber(answer: string): Rational | null {
  const base = dropVariableAssignment(braceShorthand(stripNoise(answer)));
  const withoutUnits = stripNoise(mapTextGroups(base, () => ' '));
  if (withoutUnits !== '') {
    const v = numericValue(withoutUnits);
    if (v) return v;
  }
  return numericValue(stripNoise(mapTextGroups(base, (inner) => ` ${inner} `)));
}

// ---------------------------------------------------------------------------------------
// Structured answers and equivalence

type ParsedAnswer =
  | { kind: 'number'; value: Rational }
  | { kind: 'tuple'; open: string; close: string; items: ParsedAnswer[] }
  | { kind: 'text'; text: string };

/** Splits on commas outside any bracket. */
function splitTopLevel(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let last = 0;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === '\\') {
      i++;
      continue;
    }
    if ('([{'.includes(ch)) depth++;
    else if (')]}'.includes(ch)) depth--;
    else if (ch === ',' && depth === 0) {
      parts.push(s.slice(last, i));
      last = i + 1;
    }
  }
  parts.push(s.slice(last));
  return parts;
}

/** The string form used when an answer is not a number: no spaces, no noise, text unwrapped. */
export function normalizeText(answer: string): string {
  let s = braceShorthand(stripNoise(answer));
  s = mapTextGroups(s, (inner) => inner);
  s = dropVariableAssignment(s.trim());
  return s.replace(/\s+/g, '');
}

function parseAnswer(answer: string, depth = 0): ParsedAnswer {
  const value = parseNumber(answer);
  if (value) return { kind: 'number', value };
  const s = stripNoise(answer);
  const open = s[0];
  const close = s[s.length - 1];
  if (depth < 4 && open && close && '(['.includes(open) && ')]'.includes(close)) {
    const items = splitTopLevel(s.slice(1, -1));
    if (items.length > 1) {
      return { kind: 'tuple', open, close, items: items.map((x) => parseAnswer(x, depth + 1)) };
    }
  }
  return { kind: 'text', text: normalizeText(answer) };
}

function parsedEqual(a: ParsedAnswer, b: ParsedAnswer): boolean {
  if (a.kind === 'number' && b.kind === 'number') return rationalEquals(a.value, b.value);
  if (a.kind === 'tuple' && b.kind === 'tuple') {
    return (
      a.open === b.open &&
      a.close === b.close &&
      a.items.length === b.items.length &&
      a.items.every((x, i) => parsedEqual(x, b.items[i]!))
    );
  }
  if (a.kind === 'text' && b.kind === 'text' && isWords(a.text) && isWords(b.text)) {
    return a.text.toLowerCase() === b.text.toLowerCase();
  }
  return canonical(a) === canonical(b);
}

/**
 * Words rather than a formula: letters and sentence punctuation only. `Blue` and `blue`
 * are one answer; `2X+1` and `2x+1` (digits, operators) stay case-sensitive, since a
 * formula's variables may differ by case.
 */
function isWords(text: string): boolean {
  return /^[\p{L}'’.,()\-]+$/u.test(text);
}

function canonical(p: ParsedAnswer): string {
  switch (p.kind) {
    case 'number':
      return formatRational(p.value);
    case 'tuple':
      return `${p.open}${p.items.map(canonical).join(',')}${p.close}`;
    case 'text':
      return p.text;
  }
}

/**
 * The canonical form of an answer: `1,234` → `1234`, `\frac{1}{2}` → `0.5`, `2/6` → `1/3`,
 * `x^2 + 1` → `x^2+1`. Two answers with the same canonical form are equivalent, but
 * `answersEquivalent` is the comparison to use.
 */
export function normalizeAnswer(answer: string): string {
  return canonical(parseAnswer(answer));
}

/** Mathematical equivalence of two answers (exact for numbers, normalised text otherwise). */
export function answersEquivalent(a: string, b: string): boolean {
  return parsedEqual(parseAnswer(a), parseAnswer(b));
}

// ---------------------------------------------------------------------------------------
// References and the reward

/** GSM8K's reference: the text after the last `####`, normalised; null if there is none. */
export function gsm8kReference(answerField: string): string | null {
  const at = answerField.lastIndexOf('####');
  if (at < 0) return null;
  const ref = answerField.slice(at + 4).trim();
  return ref === '' ? null : normalizeAnswer(ref);
}

/** MATH's reference: the content of the solution's last `\boxed{…}`; null if there is none. */
export function mathReference(solution: string): string | null {
  const boxed = extractLastBoxed(solution);
  return boxed === null || boxed.trim() === '' ? null : boxed.trim();
}

/**
 * The paper's reward for one answer text (which should include the prefilled `\boxed{`):
 * REWARD_CORRECT if its last boxed answer is equivalent to `reference`, REWARD_FORMAT if a
 * boxed answer parses but is wrong, REWARD_NONE if there is no complete boxed answer or the
 * box holds nothing to parse (`\boxed{}`, `\boxed{ }`, `\boxed{\text{}}`): with the `\boxed{`
 * prefill, closing the brace at once would otherwise earn the format reward for no answer.
 */
export function reward(answerText: string, reference: string): number {
  const boxed = extractLastBoxed(answerText);
  if (boxed === null || normalizeAnswer(boxed) === '') return REWARD_NONE;
  return answersEquivalent(boxed, reference) ? REWARD_CORRECT : REWARD_FORMAT;
}
