#!/usr/bin/env node
/**
 * The `softgrad` command. Exit codes: 0 done; 1 bad data or a failure (the message names
 * the file, and the line or tensor); 2 a usage error (flags, or files that are not what a
 * flag needs); 130 stopped by Ctrl-C at a safe point.
 */
import { RunDirectoryInUseError, ResumeMismatchError, SettingsError } from '@softgrad/softtokens';
import { UsageError } from './args.js';
import { version } from './common.js';
import { demoCommand } from './demo.js';
import { evalCommand } from './eval.js';
import { pretrainCommand } from './pretrain.js';
import { trainCommand } from './train.js';

const COMMANDS: Record<string, { summary: string; run: (argv: string[]) => Promise<number> }> = {
  demo: { summary: 'the whole pipeline on the built-in task, with a report (what npm start runs)', run: demoCommand },
  train: { summary: 'RL with hard, soft or fuzzy chain of thought (RLOO)', run: trainCommand },
  eval: { summary: 'evaluate in the six inference modes (pass@k, entropy, out-of-domain)', run: evalCommand },
  pretrain: { summary: 'train the built-in base model (supervised)', run: pretrainCommand },
};

function usage(): string {
  return ['usage: softgrad <command> [flags]   (softgrad <command> --help for flags; softgrad --version)', '', 'Commands:',
    ...Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`)].join('\n');
}

async function main(): Promise<number> {
  const [cmd, ...rest] = process.argv.slice(2);
  if (!cmd || cmd === '--help' || cmd === 'help') {
    console.log(usage());
    return 0;
  }
  if (cmd === '--version' || cmd === 'version') {
    console.log(`softgrad ${version()}`);
    return 0;
  }
  const c = COMMANDS[cmd];
  if (!c) throw new UsageError(`unknown command "${cmd}"\n${usage()}`);
  return c.run(rest);
}

const isUsage = (e: unknown) =>
  e instanceof UsageError || e instanceof SettingsError || e instanceof ResumeMismatchError || e instanceof RunDirectoryInUseError;

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`softgrad: ${msg}\n`);
    if (process.env.SOFTGRAD_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    process.exit(isUsage(e) ? 2 : 1);
  },
);
