/**
 * Worker threads for the WebAssembly backend: each runs the same compiled kernels on the same
 * shared memory, so a kernel call can be split into ranges that the calling thread and the
 * workers compute together, synchronously.
 *
 * Hand-off is through a control block of 32-bit words in the shared memory (one slot per
 * worker: a job counter, a done counter, the function id and its arguments) with
 * Atomics.notify/wait (bounded, see CALLER_WAIT_MS), after a short spin because kernels come in quick succession. Compiled
 * modules reach a worker over a MessagePort; a worker that wakes to a function it has not
 * instantiated yet takes the pending messages synchronously (receiveMessageOnPort), so no
 * call ever waits for an event loop. Workers are unref'd: they never keep a process alive.
 */

export const SLOT_WORDS = 32;
export const MAX_ARGS = 24;
const SEQ = 0;
const DONE = 1;
const FN = 2;
const NARGS = 3;
const ARGS = 4;
const ERROR = 28;
/**
 * Waits are bounded: on Node 20 a notify is occasionally not seen by the thread waiting on
 * the same word (measured: about one hand-off in 100,000 then slept to its timeout), so a
 * sleeper rechecks its word after this long. The caller's bound is short since a kernel is
 * usually done within a fraction of a millisecond; an idle worker's costs nothing to recheck.
 */
const CALLER_WAIT_MS = 0.2;
const WORKER_WAIT_MS = 5;
/**
 * An idle worker spins this long before it sleeps: a decoding step's kernels come a few
 * hundred µs apart with host work between them, and waking a sleeper costs more than that
 * (RL steps of the shipped model about 5 % faster than with 0.1 ms, three interleaved pairs).
 */
const WORKER_SPIN_MS = 2;

/** The worker's program, run with `eval`: it must stand alone (plain JS, no imports of ours). */
const WORKER_SOURCE = `
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const { memory, slot, port, spin } = workerData;
const ctrl = new Int32Array(memory.buffer, slot, ${SLOT_WORDS});
const imports = { env: { memory }, m: { pow: Math.pow } };
const fns = [];
const drain = () => {
  for (;;) {
    const m = receiveMessageOnPort(port);
    if (!m) return;
    const { id, module, name } = m.message;
    fns[id] = new WebAssembly.Instance(module, imports).exports[name];
  }
};
let seen = 0;
for (;;) {
  let spins = 0;
  const idleFrom = performance.now();
  while (Atomics.load(ctrl, ${SEQ}) === seen) {
    if ((++spins & 1023) === 0 && performance.now() - idleFrom > spin) Atomics.wait(ctrl, ${SEQ}, seen, ${WORKER_WAIT_MS});
  }
  seen = Atomics.load(ctrl, ${SEQ});
  const id = ctrl[${FN}];
  if (id < 0) break;
  let fn = fns[id];
  if (fn === undefined) { drain(); fn = fns[id]; }
  const n = ctrl[${NARGS}];
  const args = new Array(n);
  for (let i = 0; i < n; i++) args[i] = ctrl[${ARGS} + i];
  try { fn(...args); ctrl[${ERROR}] = 0; } catch (e) { ctrl[${ERROR}] = 1; }
  Atomics.store(ctrl, ${DONE}, seen);
  Atomics.notify(ctrl, ${DONE});
}
`;

interface WorkerHandle {
  worker: { unref(): void; terminate(): Promise<number> };
  port: { postMessage(m: unknown): void; close(): void };
  ctrl: Int32Array;
  seq: number;
  known: Set<number>;
}

export interface KernelFunction {
  id: number;
  module: WebAssembly.Module;
  name: string;
  fn: (...args: number[]) => void;
}

type WorkerThreads = typeof import('node:worker_threads');

/**
 * node:worker_threads, when this host is Node (undefined in browsers). Synchronous, so the
 * default backend can be made on first use: Node ≥ 20.16 has process.getBuiltinModule.
 */
export function workerThreadsSync(): WorkerThreads | undefined {
  const p = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  return p?.getBuiltinModule?.('node:worker_threads') as WorkerThreads | undefined;
}

/** The same, for any Node 20 (dynamic import). */
export async function workerThreadsAsync(): Promise<WorkerThreads | undefined> {
  const sync = workerThreadsSync();
  if (sync) return sync;
  if (typeof process === 'undefined' || !process.versions?.node) return undefined;
  try {
    const name = 'node:worker_threads'; // a variable keeps bundlers from resolving it for browsers
    return (await import(name)) as WorkerThreads;
  } catch {
    return undefined;
  }
}

export class ThreadPool {
  private readonly workers: WorkerHandle[] = [];
  private nextId = 0;

  private constructor(readonly memory: WebAssembly.Memory) {}

  /** A pool with `threads − 1` workers (the caller is the first thread); null when threads cannot run here. */
  static create(wt: WorkerThreads | undefined, memory: WebAssembly.Memory, threads: number, controlBase: number): ThreadPool | null {
    if (threads <= 1 || !wt || typeof SharedArrayBuffer === 'undefined' || !(memory.buffer instanceof SharedArrayBuffer)) return null;
    const pool = new ThreadPool(memory);
    for (let w = 0; w < threads - 1; w++) {
      const slot = controlBase + w * SLOT_WORDS * 4;
      const ctrl = new Int32Array(memory.buffer, slot, SLOT_WORDS);
      ctrl.fill(0);
      const { port1, port2 } = new wt.MessageChannel();
      const worker = new wt.Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { memory, slot, port: port2, spin: WORKER_SPIN_MS },
        transferList: [port2],
      });
      worker.unref();
      port1.unref();
      pool.workers.push({ worker, port: port1, ctrl, seq: 0, known: new Set() });
    }
    return pool;
  }

  get threads(): number {
    return this.workers.length + 1;
  }

  register(module: WebAssembly.Module, name: string, fn: (...args: number[]) => void): KernelFunction {
    return { id: this.nextId++, module, name, fn };
  }

  /**
   * Runs `k` with argsPerThread[0] on this thread and argsPerThread[t] on worker t−1 (at most
   * `threads` entries), returning when all are done.
   */
  run(k: KernelFunction, argsPerThread: readonly (readonly number[])[]): void {
    const n = argsPerThread.length;
    for (let t = 1; t < n; t++) {
      const w = this.workers[t - 1]!;
      if (!w.known.has(k.id)) {
        w.port.postMessage({ id: k.id, module: k.module, name: k.name });
        w.known.add(k.id);
      }
      const args = argsPerThread[t]!;
      if (args.length > MAX_ARGS) throw new Error(`wasm threads: ${args.length} arguments, at most ${MAX_ARGS}`);
      w.ctrl[FN] = k.id;
      w.ctrl[NARGS] = args.length;
      for (let i = 0; i < args.length; i++) w.ctrl[ARGS + i] = args[i]!;
      w.seq++;
      Atomics.store(w.ctrl, SEQ, w.seq);
      Atomics.notify(w.ctrl, SEQ);
    }
    let error: unknown;
    try {
      k.fn(...argsPerThread[0]!);
    } catch (e) {
      error = e;
    }
    let failed = false;
    for (let t = 1; t < n; t++) {
      const w = this.workers[t - 1]!;
      let spins = 0;
      while (Atomics.load(w.ctrl, DONE) !== w.seq) {
        if (++spins > 2000) {
          Atomics.wait(w.ctrl, DONE, Atomics.load(w.ctrl, DONE), CALLER_WAIT_MS);
          spins = 0;
        }
      }
      if (w.ctrl[ERROR]) failed = true;
    }
    if (error) throw error;
    if (failed) throw new Error('wasm threads: a kernel failed on a worker thread (out-of-bounds memory access?)');
  }

  destroy(): void {
    for (const w of this.workers) {
      w.ctrl[FN] = -1;
      w.seq++;
      Atomics.store(w.ctrl, SEQ, w.seq);
      Atomics.notify(w.ctrl, SEQ);
      w.port.close();
      void w.worker.terminate();
    }
    this.workers.length = 0;
  }
}
