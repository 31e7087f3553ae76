/**
 * Worker threads for the WebAssembly backend: each runs the same compiled kernels on the same
 * shared memory, so a kernel call can be split into ranges that the calling thread and the
 * workers compute together, synchronously.
 *
 * A call is a list of chunks (argument lists, each computing its own range of the outputs). The
 * chunks go into a job table in the shared memory and every thread — the caller and the workers
 * it woke — claims the next unclaimed one (compare-and-swap on one word) until none is left;
 * the caller returns when all are done. Which thread runs a chunk never changes what it
 * computes, so results are the same on any thread count, but a worker that wakes late or is
 * descheduled no longer holds the caller up: on a 2-core machine the caller used to wait about
 * 1 ms, some 30 times per RL step, for a worker that had not yet started its half.
 *
 * Waking is through one control slot per worker (a job counter) with Atomics.notify/wait
 * (bounded, see CALLER_WAIT_MS), after a short spin because kernels come in quick succession.
 * Compiled modules reach a worker over a MessagePort; a worker that wakes to a function it has
 * not instantiated yet takes the pending messages synchronously (receiveMessageOnPort), so no
 * call ever waits for an event loop. Workers are unref'd: they never keep a process alive.
 */

export const SLOT_WORDS = 32;
export const MAX_ARGS = 24;
/** Chunks one call may have (the claim word holds the index and count in 6 bits each). */
export const MAX_CHUNKS = 63;
/** Slot words: the job the worker is woken for, and -1 in FN to stop. */
const SEQ = 0;
const FN = 2;
/** Job table words: the job's number, its claim word (tag·4096 + chunks·64 + next), chunks done, function id, arguments per chunk, an error flag, then the arguments chunk by chunk. */
const J_SEQ = 0;
const J_CLAIM = 1;
const J_DONE = 2;
const J_FN = 3;
const J_NARGS = 4;
const J_ERROR = 5;
const J_ARGS = 8;
const JOB_WORDS = J_ARGS + MAX_CHUNKS * MAX_ARGS;
/** Workers a pool may have (their control slots come before the job table). */
export const MAX_WORKERS = 31;
/** Bytes of the reserved control area the pool uses, from its base: the worker slots, then the job table. */
export const CONTROL_BYTES = MAX_WORKERS * SLOT_WORDS * 4 + JOB_WORDS * 4;
const TAG_MASK = 0x7ffff;
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
const { memory, slot, job, port, spin } = workerData;
const ctrl = new Int32Array(memory.buffer, slot, ${SLOT_WORDS});
const J = new Int32Array(memory.buffer, job, ${JOB_WORDS});
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
  if (ctrl[${FN}] < 0) break;
  const tag = seen & ${TAG_MASK};
  for (;;) {
    // Only the job this worker was woken for, while it still has unclaimed chunks.
    if (Atomics.load(J, ${J_SEQ}) !== seen) break;
    const c = Atomics.load(J, ${J_CLAIM});
    if ((c >>> 12) !== tag) break;
    const i = c & 63;
    if (i >= ((c >>> 6) & 63)) break;
    if (Atomics.compareExchange(J, ${J_CLAIM}, c, c + 1) !== c) continue;
    // Claimed: the job cannot finish before this chunk, so its table stays as it is.
    const id = J[${J_FN}];
    let fn = fns[id];
    if (fn === undefined) { drain(); fn = fns[id]; }
    const n = J[${J_NARGS}];
    const args = new Array(n);
    const at = ${J_ARGS} + i * ${MAX_ARGS};
    for (let a = 0; a < n; a++) args[a] = J[at + a];
    try { fn(...args); } catch (e) { Atomics.store(J, ${J_ERROR}, 1); }
    Atomics.add(J, ${J_DONE}, 1);
    Atomics.notify(J, ${J_DONE});
  }
}
`;

interface WorkerHandle {
  worker: { unref(): void; terminate(): Promise<number> };
  port: { postMessage(m: unknown): void; close(): void };
  ctrl: Int32Array;
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
  private seq = 0;
  private readonly job: Int32Array;

  private constructor(readonly memory: WebAssembly.Memory, controlBase: number) {
    this.job = new Int32Array(memory.buffer, controlBase + MAX_WORKERS * SLOT_WORDS * 4, JOB_WORDS);
    this.job.fill(0);
  }

  /** A pool with `threads − 1` workers (the caller is the first thread); null when threads cannot run here. */
  static create(wt: WorkerThreads | undefined, memory: WebAssembly.Memory, threads: number, controlBase: number): ThreadPool | null {
    if (threads <= 1 || !wt || typeof SharedArrayBuffer === 'undefined' || !(memory.buffer instanceof SharedArrayBuffer)) return null;
    if (threads > MAX_WORKERS + 1) throw new Error(`wasm threads: at most ${MAX_WORKERS + 1} threads, got ${threads}`);
    const pool = new ThreadPool(memory, controlBase);
    for (let w = 0; w < threads - 1; w++) {
      const slot = controlBase + w * SLOT_WORDS * 4;
      const ctrl = new Int32Array(memory.buffer, slot, SLOT_WORDS);
      ctrl.fill(0);
      const { port1, port2 } = new wt.MessageChannel();
      const worker = new wt.Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { memory, slot, job: pool.job.byteOffset, port: port2, spin: WORKER_SPIN_MS },
        transferList: [port2],
      });
      worker.unref();
      port1.unref();
      pool.workers.push({ worker, port: port1, ctrl, known: new Set() });
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
   * Runs `k` once with each argument list of `chunks` (at most MAX_CHUNKS, all the same
   * length), on this thread and on up to chunks − 1 workers, each thread taking the next
   * unclaimed chunk; returns when all are done.
   */
  run(k: KernelFunction, chunks: readonly (readonly number[])[]): void {
    const n = chunks.length;
    const helpers = Math.min(this.workers.length, n - 1);
    if (helpers <= 0) {
      for (const args of chunks) k.fn(...args);
      return;
    }
    if (n > MAX_CHUNKS) throw new Error(`wasm threads: ${n} chunks, at most ${MAX_CHUNKS}`);
    const J = this.job;
    const nargs = chunks[0]!.length;
    if (nargs > MAX_ARGS) throw new Error(`wasm threads: ${nargs} arguments, at most ${MAX_ARGS}`);
    chunks.forEach((args, i) => {
      if (args.length !== nargs) throw new Error('wasm threads: chunks must have the same number of arguments');
      J.set(args, J_ARGS + i * MAX_ARGS);
    });
    const seq = (this.seq = (this.seq + 1) | 0) === 0 ? (this.seq = 1) : this.seq;
    J[J_FN] = k.id;
    J[J_NARGS] = nargs;
    J[J_DONE] = 0;
    J[J_ERROR] = 0;
    Atomics.store(J, J_SEQ, seq);
    Atomics.store(J, J_CLAIM, ((seq & TAG_MASK) << 12) | (n << 6));
    for (let w = 0; w < helpers; w++) {
      const h = this.workers[w]!;
      if (!h.known.has(k.id)) {
        h.port.postMessage({ id: k.id, module: k.module, name: k.name });
        h.known.add(k.id);
      }
      h.ctrl[FN] = 0;
      Atomics.store(h.ctrl, SEQ, seq);
      Atomics.notify(h.ctrl, SEQ);
    }
    let error: unknown;
    for (;;) {
      const c = Atomics.load(J, J_CLAIM);
      const i = c & 63;
      if (i >= n) break;
      if (Atomics.compareExchange(J, J_CLAIM, c, c + 1) !== c) continue;
      try {
        k.fn(...chunks[i]!);
      } catch (e) {
        error ??= e;
      }
      Atomics.add(J, J_DONE, 1);
    }
    let spins = 0;
    while (Atomics.load(J, J_DONE) !== n) {
      if (++spins > 2000) {
        Atomics.wait(J, J_DONE, Atomics.load(J, J_DONE), CALLER_WAIT_MS);
        spins = 0;
      }
    }
    if (error) throw error;
    if (J[J_ERROR]) throw new Error('wasm threads: a kernel failed on a worker thread (out-of-bounds memory access?)');
  }

  destroy(): void {
    for (const w of this.workers) {
      w.ctrl[FN] = -1;
      Atomics.store(w.ctrl, SEQ, Atomics.load(w.ctrl, SEQ) + 1);
      Atomics.notify(w.ctrl, SEQ);
      w.port.close();
      void w.worker.terminate();
    }
    this.workers.length = 0;
  }
}
