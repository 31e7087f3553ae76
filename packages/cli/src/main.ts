#!/usr/bin/env node
/** The `softgrad` command. */
import { UsageError } from './args.js';
import { demoCommand } from './demo.js';
import { evalCommand } from './eval.js';
import { pretrainCommand } from './pretrain.js';
import { trainCommand } from './train.js';

const COMMANDS: Record<string, { summary: string; run: (argv: string[]) => Promise<void> }> = {
  demo: { summary: 'the whole pipeline on the built-in task, with a report (what npm start runs)', run: demoCommand },
  train: { summary: 'RL with hard, soft or fuzzy chain of thought (RLOO)', run: trainCommand },
  eval: { summary: 'evaluate in the six inference modes (pass@k, entropy, out-of-domain)', run: evalCommand },
  pretrain: { summary: 'train the built-in base model (supervised)', run: pretrainCommand },
};

function usage(): string {
  return ['usage: softgrad <command> [flags]   (softgrad <command> --help for flags)', '', 'Commands:',
    ...Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`)].join('\n');
}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  if (!cmd || cmd === '--help' || cmd === 'help') {
    console.log(usage());
    return;
  }
  const c = COMMANDS[cmd];
  if (!c) throw new UsageError(`unknown command "${cmd}"\n${usage()}`);
  await c.run(rest);
}

main().catch((e: unknown) => {
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`softgrad: ${msg}\n`);
  if (process.env.SOFTGRAD_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  process.exit(e instanceof UsageError ? 2 : 1);
});
