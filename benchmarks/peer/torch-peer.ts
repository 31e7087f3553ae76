/**
 * A client of benchmarks/peer/torch_peer.py: one JSON command per line in, one JSON reply per
 * line out. The peer runs under SOFTGRAD_TORCH_PYTHON, else python3, else /usr/bin/python3 (the
 * first with torch), with `threads` intra-op threads.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export class TorchPeer {
  private readonly lines: AsyncIterator<string>;
  private readonly exited: Promise<never>;
  info: Record<string, unknown> = {};

  private constructor(private readonly proc: ChildProcessWithoutNullStreams, readonly python: string) {
    this.lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
    this.exited = new Promise<never>((_, reject) => proc.once('exit', (code) => reject(new Error(`the peer exited (${code})`))));
    this.exited.catch(() => undefined);
  }

  /** A started peer, or why none could start. */
  static async start(threads: number): Promise<TorchPeer | string> {
    const script = fileURLToPath(new URL('./torch_peer.py', import.meta.url));
    const candidates = [process.env['SOFTGRAD_TORCH_PYTHON'], 'python3', '/usr/bin/python3'].filter((p): p is string => !!p);
    const reasons: string[] = [];
    for (const python of candidates) {
      const env = { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) };
      const proc = spawn(python, [script], { env });
      proc.on('error', () => undefined);
      const peer = new TorchPeer(proc, python);
      try {
        peer.info = await peer.send({ cmd: 'info' });
        await peer.send({ cmd: 'threads', n: threads });
        return peer;
      } catch (e) {
        reasons.push(`${python}: ${(e as Error).message.split('\n')[0]}`);
        proc.kill();
      }
    }
    return `no Python with torch (${reasons.join('; ')})`;
  }

  async send(cmd: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.proc.stdin.write(`${JSON.stringify(cmd)}\n`);
    const next = await Promise.race([this.lines.next(), this.exited]);
    if (next.done) throw new Error('the peer closed its output');
    const reply = JSON.parse(next.value) as Record<string, unknown>;
    if (reply['error']) throw new Error(`peer: ${String(reply['error'])}`);
    return reply;
  }

  /** Median seconds of a timed command. */
  async seconds(cmd: Record<string, unknown>): Promise<number> {
    const xs = [...((await this.send(cmd))['seconds'] as number[])].sort((a, b) => a - b);
    return xs[Math.floor(xs.length / 2)]!;
  }

  stop(): void {
    this.proc.stdin.end();
    this.proc.kill();
  }
}
