// The analytics store's writer on its own thread (node:worker_threads, ADR 56):
// the thread answering checks only makes rows and queues them (ingest.ts and
// queue.ts, unchanged: the bounded queue, oldest dropped first, drops counted);
// each batch the queue writes is posted to this thread in one message, and the
// thread's SQLite statements or PostgreSQL protocol work, the rollups, the day
// partitions and retention run there. The writer looks like any AnalyticsWriter
// to the queue: a write resolves when the store took the batch and rejects
// when it did not, so the queue's guarantees hold as they are.
//
// A thread that dies (it should not) fails the calls in flight; the next call
// starts a new one, so a refused batch is retried as for a store that was down.
import { Worker } from "node:worker_threads";
import type { Level, Logger } from "../log.ts";
import type { RetentionResult } from "./retention.ts";
import type { AnalyticsWriter, KeyRecord, RequestRow } from "./row.ts";
import type { AnalyticsStoreOptions } from "./store.ts";
import { fromWire, unwireFields, type WriterCall, type WriterReply } from "./thread-wire.ts";
import type { WriterWorkerData } from "./writer-worker.ts";

/** The OS name of the writer thread (/proc/PID/task/TID/comm), so tools can find and pin it. */
export const WRITER_THREAD_NAME = "keyward-writer";

export interface WriterThread extends AnalyticsWriter {
  runRetention(): Promise<RetentionResult>;
  /** Closes the store (after the call in flight) and ends the thread. */
  close(): Promise<void>;
}

const LEVELS: Level[] = ["debug", "info", "warn", "error"];

type Call = { op: "rows"; rows: readonly RequestRow[] } | { op: "keys"; keys: readonly KeyRecord[] } | { op: "retention" } | { op: "close" };

interface Running {
  worker: Worker;
  /** Resolves when the store is open on the thread; rejects with its start-up error. */
  ready: Promise<void>;
  exited: Promise<void>;
}

/** Starts the thread and opens the store on it; rejects with the store's start-up error (AnalyticsStoreFailed, ConfigInvalid). */
export async function startWriterThread(options: AnalyticsStoreOptions, log: Logger, workerUrl = new URL("./writer-worker.ts", import.meta.url)): Promise<WriterThread> {
  const { now: _now, writerThread: _thread, ...rest } = options;
  const data: WriterWorkerData = { options: rest, levels: LEVELS.filter((l) => log.enabled(l)) };
  const pending = new Map<number, { resolve: (r: WriterReply & { op: "done" }) => void; reject: (err: Error) => void }>();
  let nextId = 1;
  let closed = false;

  const spawn = (): Running => {
    const worker = new Worker(workerUrl, { name: WRITER_THREAD_NAME, workerData: data });
    // Idle, the thread does not keep the process alive; a call in flight does (see call()).
    worker.unref();
    let settle: { resolve: () => void; reject: (err: Error) => void } | undefined;
    const ready = new Promise<void>((resolve, reject) => { settle = { resolve, reject }; });
    worker.on("message", (r: WriterReply) => {
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
          if (r.op === "done") p.resolve(r);
          else p.reject(fromWire(r.error));
          break;
        }
      }
    });
    worker.on("error", (err) => {
      log.error("analytics writer thread failed", { err });
    });
    const exited = new Promise<void>((resolve) => {
      worker.once("exit", (code) => {
        if (running?.worker === worker) running = undefined;
        const gone = new Error(`the analytics writer thread exited (code ${code})`);
        settle?.reject(gone);
        for (const [id, p] of pending) {
          pending.delete(id);
          p.reject(gone);
        }
        if (!closed && code !== 0) log.error("analytics writer thread exited; a new one starts at the next write", { code });
        resolve();
      });
    });
    return { worker, ready, exited };
  };

  let running: Running | undefined = spawn();
  await running.ready;

  const call = async (c: Call): Promise<WriterReply & { op: "done" }> => {
    if (closed && c.op !== "close") throw new Error("the analytics writer is closed");
    running ??= spawn();
    const r = running;
    await r.ready;
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      r.worker.ref();
      const msg: WriterCall = { ...c, id };
      r.worker.postMessage(msg);
    });
  };

  return {
    writeRequests: async (rows) => { await call({ op: "rows", rows }); },
    upsertKeys: async (keys) => { await call({ op: "keys", keys }); },
    runRetention: async () => (await call({ op: "retention" })).retention ?? { requests: 0, rollups: 0 },
    close: async () => {
      if (closed) return;
      const r = running;
      if (!r) {
        closed = true;
        return;
      }
      try {
        await call({ op: "close" });
      } finally {
        closed = true;
        await r.worker.terminate();
        await r.exited;
      }
    },
  };
}
