// Calls to one of the analytics store's threads (node:worker_threads), and
// their answers: each call is one message with an id, answered once with a
// result or an error. The thread is started at once and opened (`ready`, or the
// error it met, which rejects the start), or, `lazy`, at the first call; a
// thread that dies fails the calls in flight, and the next call starts a new
// one, as after `retire` (the reader thread's idle end); `renew` ends the thread
// and starts the next at once (the writer thread's, after the start's key
// records, ADR 63). Idle, the thread does not keep the process alive; a call in
// flight does.
import { setFlagsFromString } from "node:v8";
import { parentPort, Worker, workerData } from "node:worker_threads";
import type { Level, Logger } from "../log.ts";
import { lowerOwnPriority } from "./thread-priority.ts";
import { forwardingLogger, fromWire, toWire, unwireFields, type ThreadReply } from "./thread-wire.ts";

export interface ThreadCalls<C extends { op: string }> {
  /** `transfer`: buffers of the call moved to the thread, not copied (postMessage's transfer list). */
  call(c: C, transfer?: readonly ArrayBuffer[]): Promise<unknown>;
  /** Sends `last` (the thread's close), then ends the thread; nothing is started again. */
  close(last: C): Promise<void>;
  /** Sends `last` to the thread running now, if any, then ends it; the next call starts a new one. */
  retire(last: C): Promise<void>;
  /**
   * Sends `last` to the thread running now (after its calls in flight), ends it, then starts a
   * new one at once, which takes every call from here on (a call made meanwhile starts it
   * sooner): what the old thread's isolate and connection grew to goes with it, freed before the
   * new thread allocates. Resolves once the new thread is started.
   */
  renew(last: C): Promise<void>;
  /** Whether a thread is running (or starting) now. */
  readonly running: boolean;
  /** Settles when the thread started at once has opened, or rejects with what it met; resolved when `lazy`. */
  readonly opened: Promise<void>;
}

export interface ThreadOptions {
  /** The thread's module (its entry calls serveCalls). */
  url: URL;
  /** The OS thread's name (/proc/PID/task/TID/comm). */
  name: string;
  /** What the thread is, for log lines. */
  what: string;
  data: unknown;
  log: Logger;
  /** Starts the thread at the first call rather than now; its opening errors are then that call's. */
  lazy?: boolean;
  /**
   * The nice value the thread lowers itself to before it opens (thread-priority.ts): on a busy
   * CPU the thread answering checks goes first. Unset: the process's own.
   */
  nice?: number;
  /**
   * The thread's V8 young generation (MiB: its two semi-spaces and the new large objects, a third
   * each), whatever the process's `--max-semi-space-size` (threadYoungGeneration). Unset: the
   * process's.
   */
  youngGenerationMb?: number;
}

/**
 * `resourceLimits` of a Worker with this young generation (MiB). V8 sizes an isolate's young
 * generation from the process's `--max-semi-space-size` when it is set (the chart's
 * authz.nodeOptions sets it for the thread answering checks) and from the isolate's own limits
 * only when it is not, and reads the flag once, when it creates an isolate's heap. So the flag is
 * cleared here, before the thread's isolate is made: the main thread's young generation, sized at
 * start, stays as the flag gave it; every isolate made from now on has its own limits, and the
 * store's threads set theirs. Measured (docs/benchmarks.md, "The store's threads' young
 * generation and modules"): the writer thread with the chart's flag's 8 MiB of new space held
 * 4.8 MiB more RSS than with its own 2 MiB.
 */
export function threadYoungGeneration(mb: number): { maxYoungGenerationSizeMb: number } {
  setFlagsFromString("--max-semi-space-size=0");
  return { maxYoungGenerationSizeMb: mb };
}

const LEVELS: Level[] = ["debug", "info", "warn", "error"];

/** What a thread is started with. */
interface ThreadData {
  data: unknown;
  levels: Level[];
  /** ThreadOptions.what, for the thread's own log lines. */
  what: string;
  nice?: number;
}

type Pending = Map<number, { resolve: (v: unknown) => void; reject: (err: Error) => void }>;

interface Running {
  worker: Worker;
  ready: Promise<void>;
  exited: Promise<void>;
  /** The calls in flight on this thread (a retiring thread and its successor may overlap). */
  pending: Pending;
}

/** Starts the thread (unless `lazy`); resolves once it is open, rejects with the error it met opening. */
export async function startThreadCalls<C extends { op: string }>(o: ThreadOptions): Promise<ThreadCalls<C>> {
  const calls = threadCalls<C>(o);
  await calls.opened;
  return calls;
}

/** Starts the thread (unless `lazy`) and returns at once: `opened` says when it is open, calls wait for it. */
export function threadCalls<C extends { op: string }>(o: ThreadOptions): ThreadCalls<C> {
  const { log } = o;
  const data: ThreadData = { data: o.data, levels: LEVELS.filter((l) => log.enabled(l)), what: o.what, ...(o.nice !== undefined ? { nice: o.nice } : {}) };
  let nextId = 1;
  let closed = false;
  let running: Running | undefined;
  /** Threads ended on purpose (retired): their exit is no failure. */
  const retired = new WeakSet<Worker>();

  const spawn = (): Running => {
    const worker = new Worker(o.url, { name: o.name, workerData: data, ...(o.youngGenerationMb !== undefined ? { resourceLimits: threadYoungGeneration(o.youngGenerationMb) } : {}) });
    const pending: Pending = new Map();
    let settle: { resolve: () => void; reject: (err: Error) => void } | undefined;
    const ready = new Promise<void>((resolve, reject) => { settle = { resolve, reject }; });
    // Opening is work in flight, as a call is: the thread keeps the process alive until it is open.
    const idle = (): void => {
      if (pending.size === 0) worker.unref();
    };
    ready.then(idle, idle);
    worker.on("message", (r: ThreadReply) => {
      switch (r.op) {
        case "ready":
          settle?.resolve();
          break;
        case "failed":
          settle?.reject(fromWire(r.error));
          break;
        case "log":
          log[r.level](r.msg, unwireFields(r.fields));
          break;
        case "done":
        case "error": {
          const p = pending.get(r.id);
          if (!p) break;
          pending.delete(r.id);
          if (pending.size === 0) worker.unref();
          if (r.op === "done") p.resolve(r.result);
          else p.reject(fromWire(r.error));
          break;
        }
      }
    });
    worker.on("error", (err) => {
      log.error(`${o.what} thread failed`, { err });
    });
    const exited = new Promise<void>((resolve) => {
      worker.once("exit", (code) => {
        if (running?.worker === worker) running = undefined;
        const gone = new Error(`the ${o.what} thread exited (code ${code})`);
        settle?.reject(gone);
        for (const [id, p] of pending) {
          pending.delete(id);
          p.reject(gone);
        }
        if (!closed && code !== 0 && !retired.has(worker)) log.error(`${o.what} thread exited; a new one starts at the next call`, { code });
        resolve();
      });
    });
    return { worker, ready, exited, pending };
  };

  let opened = Promise.resolve();
  if (!o.lazy) {
    running = spawn();
    opened = running.ready;
    // Whoever starts the thread awaits `opened`; a call made meanwhile gets the same error.
    opened.catch(() => {});
  }

  /** `c` on the thread `r`; `transfer` moved to it. */
  const callOn = async (r: Running, c: C, transfer?: readonly ArrayBuffer[]): Promise<unknown> => {
    await r.ready;
    const id = nextId++;
    return new Promise((resolve, reject) => {
      r.worker.ref();
      r.pending.set(id, { resolve, reject });
      r.worker.postMessage({ ...c, id }, transfer);
    });
  };
  /** Threads being ended on purpose (retired, renewed): close waits for them. */
  const ending = new Set<Promise<void>>();
  /** Ends `r`, no longer `running`, after `last` (a thread ended on purpose: its exit is no failure). */
  const end = async (r: Running, last: C): Promise<void> => {
    retired.add(r.worker);
    const done = (async () => {
      try {
        await callOn(r, last);
      } finally {
        await r.worker.terminate();
        await r.exited;
      }
    })();
    ending.add(done);
    try {
      await done;
    } finally {
      ending.delete(done);
    }
  };
  const spawnUnlessClosed = (): void => {
    if (!closed) running ??= spawn();
  };
  const call = (c: C, transfer?: readonly ArrayBuffer[]): Promise<unknown> => {
    if (closed) return Promise.reject(new Error(`the ${o.what} is closed`));
    running ??= spawn();
    return callOn(running, c, transfer);
  };

  return {
    call,
    opened,
    get running() {
      return running !== undefined;
    },
    retire: async (last) => {
      const r = running;
      if (!r || closed) return;
      // The next call starts a new thread, whatever this one is still doing.
      running = undefined;
      await end(r, last);
    },
    renew: async (last) => {
      const r = running;
      if (closed) return;
      running = undefined;
      try {
        if (r) await end(r, last);
      } finally {
        // Not when closed meanwhile.
        spawnUnlessClosed();
      }
    },
    close: async (last) => {
      if (closed) return;
      const r = running;
      try {
        // A thread that never opened has nothing to close: it is only ended.
        if (r && (await r.ready.then(() => true, () => false))) await call(last);
      } finally {
        closed = true;
        if (r) {
          await r.worker.terminate();
          await r.exited;
        }
        // A thread being ended (retire, renew) has ended too when the close resolves.
        await Promise.allSettled(ending);
      }
    },
  };
}

/**
 * The thread's side: `open(data, log)` opens what the calls need (its failure is the start's),
 * then each call is handled by `handle`, one at a time in the order sent, and answered once.
 * After the call `last` is answered, the thread's port closes.
 */
export async function serveCalls<C extends { op: string; id: number }, S>(open: (data: unknown, log: Logger) => Promise<S>, handle: (state: S, call: C) => Promise<unknown>, last: C["op"]): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error("serveCalls runs in a worker thread");
  const { data, levels, what, nice } = workerData as ThreadData;
  const post = (r: ThreadReply): void => { port.postMessage(r); };
  const enabled = new Set(levels);
  const log = forwardingLogger(post, (l) => enabled.has(l));
  if (nice !== undefined) {
    try {
      const lowered = lowerOwnPriority(nice);
      if (lowered) log.debug("analytics thread priority lowered", { thread: what, tid: lowered.tid, nice: lowered.nice });
      else log.debug("analytics thread priority left as it is: no thread id on this system", { thread: what });
    } catch (err) {
      // Only the order of the checks and the store on a busy CPU depends on it: the thread runs on.
      log.warn("analytics thread priority could not be lowered; it runs at the process's", { thread: what, nice, err });
    }
  }
  let state: S;
  try {
    state = await open(data, log);
  } catch (err) {
    post({ op: "failed", error: toWire(err) });
    port.close();
    return;
  }
  let chain: Promise<void> = Promise.resolve();
  port.on("message", (call: C) => {
    chain = chain.then(async () => {
      try {
        const result = await handle(state, call);
        post(result === undefined ? { op: "done", id: call.id } : { op: "done", id: call.id, result });
      } catch (err) {
        post({ op: "error", id: call.id, error: toWire(err) });
      }
      if (call.op === last) port.close();
    });
  });
  post({ op: "ready" });
}
