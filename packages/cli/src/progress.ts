/** Progress on stderr: a rewritten line on a terminal, a line every few seconds otherwise (logs, CI). */
export class Progress {
  private last = 0;
  private readonly tty = process.stderr.isTTY === true;
  private readonly t0 = performance.now();
  constructor(private readonly label: string, private readonly total: number, private readonly quiet = false) {}

  update(done: number, detail = ''): void {
    if (this.quiet) return;
    const now = performance.now();
    const finished = done >= this.total;
    if (!finished && now - this.last < (this.tty ? 200 : 5000)) return;
    this.last = now;
    const secs = (now - this.t0) / 1000;
    const eta = done > 0 && !finished ? ` eta ${formatDuration((secs / done) * (this.total - done))}` : '';
    const width = 24;
    const filled = Math.round((width * Math.min(done, this.total)) / Math.max(1, this.total));
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
    const line = `${this.label} ${bar} ${done}/${this.total} ${formatDuration(secs)}${eta}${detail ? `  ${detail}` : ''}`;
    if (this.tty) process.stderr.write(`\r\x1b[K${line}${finished ? '\n' : ''}`);
    else process.stderr.write(`${line}\n`);
  }
}

export function formatDuration(secs: number): string {
  if (secs < 60) return `${secs.toFixed(1)}s`;
  const m = Math.floor(secs / 60);
  return `${m}m${String(Math.round(secs - 60 * m)).padStart(2, '0')}s`;
}

export function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}
