/**
 * Shared pieces of the model-level benchmarks: the machine table printed with every run,
 * and a tinybench wrapper that returns the median latency of a (possibly async) task.
 */
import os from 'node:os';
import { Bench } from 'tinybench';

export interface MachineInfo {
  cpu: string;
  cores: number;
  node: string;
  platform: string;
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return { cpu: cpus[0]?.model ?? 'unknown', cores: cpus.length, node: process.version, platform: `${os.platform()} ${os.arch()}` };
}

export function formatMachine(m: MachineInfo = machineInfo()): string {
  return formatTable(['cpu', 'cores', 'node', 'platform'], [[m.cpu, String(m.cores), m.node, m.platform]]);
}

/** A plain-text table; numbers are right-aligned, text left-aligned. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = (s: string) => /^[-+]?[\d.,]+(e[-+]?\d+)?[×x%]?$/.test(s);
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (numeric(c) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(line)].join('\n');
}

export interface TimingOptions {
  /** Minimum measuring time in ms (tinybench `time`). */
  timeMs: number;
  /** Minimum number of measured iterations (tinybench `iterations`). */
  iterations: number;
  /** Warm-up iterations (tinybench `warmupIterations`); the warm-up time is kept short. */
  warmup?: number;
}

export interface Timing {
  /** Median latency in ms. */
  medianMs: number;
  samples: number;
}

/**
 * Median latency of each named task, measured by tinybench, tasks run one after another in
 * the order given (so a peer measured in the same call sees the same machine state).
 */
export async function timeTasks(
  tasks: readonly (readonly [string, () => unknown])[],
  opts: TimingOptions,
): Promise<Map<string, Timing>> {
  const bench = new Bench({
    time: opts.timeMs,
    iterations: opts.iterations,
    warmup: (opts.warmup ?? 1) > 0,
    warmupIterations: opts.warmup ?? 1,
    warmupTime: 0,
    throws: true,
  });
  for (const [name, fn] of tasks) bench.add(name, fn as () => void);
  await bench.run();
  const out = new Map<string, Timing>();
  for (const [name] of tasks) {
    const r = bench.getTask(name)?.result;
    if (r === undefined || r.state !== 'completed') {
      const err = r && 'error' in r ? (r as { error?: unknown }).error : undefined;
      throw new Error(`bench: task "${name}" did not complete (${r?.state ?? 'no result'})${err ? `: ${String((err as Error).stack ?? err)}` : ''}`);
    }
    out.set(name, { medianMs: r.latency.p50, samples: r.latency.samplesCount });
  }
  return out;
}

export function fmt(x: number, digits = 1): string {
  if (!Number.isFinite(x)) return String(x);
  return x >= 100 ? Math.round(x).toString() : x.toFixed(digits);
}

/** Reads an enum-like environment variable, failing loudly on anything unexpected. */
export function envChoice<C extends string>(name: string, choices: readonly C[], fallback: C): C {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  if (!(choices as readonly string[]).includes(v)) throw new Error(`${name}=${v}: expected one of ${choices.join(', ')}`);
  return v as C;
}
