import { describe, expect, it } from 'vitest';
import {
  PREFILL_AT_LIMIT,
  PREFILL_STOPPED,
  PROMPT_TEMPLATE,
  STOP_STRING,
  formatPrompt,
  formatSupervisedTarget,
} from '../src/prompt.js';
import { chooseAnswerPrefill, stopMatchOf } from '../src/stop.js';
import { generateTask } from '../src/task.js';
import { reward } from '../src/rewards.js';

describe('prompt', () => {
  it('is the paper’s template verbatim', () => {
    expect(PROMPT_TEMPLATE).toBe(
      "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The assistant first shows the complete reasoning process step by step, then provides the final answer in \\boxed{}. The assistant must always follow the format: 'User: [question] Assistant: [detailed reasoning] The final answer is: \\boxed{[answer]}.' User: QUESTION Assistant:",
    );
  });

  it('inserts the question once, literally', () => {
    const p = formatPrompt('  What is $& 2 + 2? ');
    expect(p.endsWith("User: What is $& 2 + 2? Assistant:")).toBe(true);
    expect(p.startsWith('A conversation between User and Assistant.')).toBe(true);
    expect(p.includes('QUESTION')).toBe(false);
  });

  it('has the stop string and prefills of the method', () => {
    expect(STOP_STRING).toBe('The final answer is: ');
    expect(PREFILL_STOPPED).toBe('\\boxed{');
    expect(PREFILL_AT_LIMIT).toBe('The final answer is: \\boxed{');
  });
});

describe('formatSupervisedTarget', () => {
  it('turns a GSM8K answer into CoT + stop string + boxed answer', () => {
    expect(formatSupervisedTarget('Tom has 3 + 4 = 7 apples.\n#### 7')).toBe(' Tom has 3 + 4 = 7 apples. The final answer is: \\boxed{7}.');
    expect(formatSupervisedTarget('She sold 48/2 = <<48/2=24>>24 clips.\nIn all 48+24 = <<48+24=72>>72.\n#### 72')).toBe(
      ' She sold 48/2 = 24 clips.\nIn all 48+24 = 72. The final answer is: \\boxed{72}.',
    );
    expect(formatSupervisedTarget('a = <<1+1=2>>2\n#### 2', { keepAnnotations: true, lineSeparator: ' ' })).toBe(
      ' a = <<1+1=2>>2 The final answer is: \\boxed{2}.',
    );
    expect(formatSupervisedTarget('#### 1,234')).toBe(' The final answer is: \\boxed{1234}.');
    expect(() => formatSupervisedTarget('no marker')).toThrow('no "#### <answer>" line');
  });

  it('reproduces what a rollout produces: CoT up to the stop string, then prefill, then answer', () => {
    for (const item of generateTask({ seed: 1, split: 'train', count: 50 })) {
      const full = formatPrompt(item.question) + formatSupervisedTarget(item.answer);
      const stop = full.lastIndexOf(STOP_STRING) + STOP_STRING.length;
      const cot = full.slice(0, stop);
      expect(stopMatchOf(cot)).toBe('with-space');
      expect(chooseAnswerPrefill(cot, true)).toBe(PREFILL_STOPPED);
      const rest = full.slice(stop);
      expect(rest.startsWith(PREFILL_STOPPED)).toBe(true);
      expect(reward(rest, String(item.meta.result))).toBe(100);
      // The stop string must not occur earlier, or the CoT would stop too soon.
      expect(full.indexOf(STOP_STRING, full.indexOf('User: ' + item.question))).toBe(stop - STOP_STRING.length);
    }
  });
});
