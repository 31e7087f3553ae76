/**
 * The paper's zero-shot prompt (docs/method.md) and the strings that delimit a rollout: the stop
 * string ending the chain of thought and the two answer prefills.
 */

/** The paper's prompt, verbatim (docs/method.md); `QUESTION` is replaced by the question. */
export const PROMPT_TEMPLATE =
  'A conversation between User and Assistant. The user asks a question, and the Assistant solves it. ' +
  'The assistant first shows the complete reasoning process step by step, then provides the final answer in \\boxed{}. ' +
  "The assistant must always follow the format: 'User: [question] Assistant: [detailed reasoning] The final answer is: \\boxed{[answer]}.' " +
  'User: QUESTION Assistant:';

/** The CoT ends when the (shadow) decoded text ends with this. */
export const STOP_STRING = 'The final answer is: ';
/** Prefilled after the CoT stopped on STOP_STRING. */
export const PREFILL_STOPPED = '\\boxed{';
/** Prefilled after the CoT reached its maximum length without the stop string. */
export const PREFILL_AT_LIMIT = 'The final answer is: \\boxed{';

/**
 * The prompt for one question. It ends with `Assistant:` and no space: completions start
 * with a space, as BPE tokenizers attach it to the following word.
 */
export function formatPrompt(question: string): string {
  // A function replacement, so `$&`-like sequences in the question are not interpreted.
  return PROMPT_TEMPLATE.replace('QUESTION', () => question.trim());
}

export interface SupervisedTargetOptions {
  /** Keep GSM8K's `<<3+4=7>>` calculator annotations (default false: they are not reasoning). */
  readonly keepAnnotations?: boolean;
  /** Joins the worked steps (default a newline, as in GSM8K). */
  readonly lineSeparator?: string;
}

/**
 * The supervised target for pre-training the base model on a GSM8K answer field
 * (worked steps, then `#### n`): ` steps The final answer is: \boxed{n}.`, so that
 * `formatPrompt(q) + formatSupervisedTarget(a)` is exactly the text an RL rollout produces
 * when the model reasons, emits the stop string, and answers after the `\boxed{` prefill.
 */
export function formatSupervisedTarget(answerField: string, options: SupervisedTargetOptions = {}): string {
  const at = answerField.lastIndexOf('####');
  if (at < 0) throw new Error('formatSupervisedTarget: the answer has no "#### <answer>" line');
  const final = answerField
    .slice(at + 4)
    .trim()
    .replace(/(\d),(?=\d{3}\b)/g, '$1');
  if (final === '') throw new Error('formatSupervisedTarget: nothing after "####"');
  let steps = answerField.slice(0, at);
  if (!options.keepAnnotations) steps = steps.replace(/<<[^<>]*>>/g, '');
  const lines = steps
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const reasoning = lines.join(options.lineSeparator ?? '\n');
  const prefix = reasoning === '' ? '' : ` ${reasoning}`;
  return `${prefix} ${STOP_STRING}${PREFILL_STOPPED}${final}}.`;
}
