// The analytics store's writer on its own thread (node:worker_threads, ADR 56):
// the thread answering checks only makes rows and queues them (ingest.ts and
// queue.ts: the bounded queue, oldest dropped first, drops counted), in columns
// (row-columns.ts, ADR 65); each batch the queue writes is copied from its
// columns, with the strings of its table the thread was not sent yet
// (row-batch.ts, ADR 57), and posted in one message, its buffers transferred; the thread's SQLite statements or PostgreSQL protocol work, the
// rollups, the day partitions, retention and the rows' networks and countries
// run there. The writer looks
// like any AnalyticsWriter to the queue: a write resolves when the store took
// the batch and rejects when it did not, so the queue's guarantees hold as they
// are. A thread that dies fails the call in flight and is started again at the
// next one (thread-calls.ts), so a refused batch is retried as for a store that
// was down. A thread with no call for `writerIdleMs` ends, and the next call
// starts a new one (ADR 71): an idle data plane holds no writer thread, no
// SQLite connection and none of what the store's modules take; retention is
// timed here, so it runs whether or not a thread is running.
import { isKeywardError } from "../errors.ts";
import { backgroundClock } from "../k8s/clock.ts";
import type { Logger } from "../log.ts";
import type { RetentionResult } from "./retention.ts";
import type { AnalyticsWriter, RequestRow } from "./row.ts";
import { batchTransfer, RowBatchEncoder } from "./row-batch.ts";
import { RowColumns, type RowTableLimits } from "./row-columns.ts";
import type { AnalyticsStoreOptions } from "./store.ts";
import { threadCalls } from "./thread-calls.ts";
import type { WriterCall } from "./thread-wire.ts";
import type { WriterWorkerData } from "./writer-worker.ts";

/** The OS name of the writer thread (/proc/PID/task/TID/comm), so tools can find and pin it. */
export const WRITER_THREAD_NAME = "keyward-writer";

/**
 * From this many ApiKeys listed at start, the writer thread writes their records with a SQLite
 * page cache of START_SQLITE_CACHE_KIB, then starts anew (ADR 63). Below it, what a new thread
 * costs (about 2 MiB more of glibc's heaps, half a second of a core) is more than what it sheds.
 */
export const RENEW_AFTER_KEY_RECORDS = 5000;

/**
 * The SQLite page cache (KiB) the start's key records are written with, in place of the writer's
 * WRITER_SQLITE_CACHE_KIB (write-store.ts): what the cache fills while upserting every ApiKey
 * stays in glibc's heaps after it is freed, with its thread (ADR 63). The thread started anew
 * after them has the writer's own.
 */
export const START_SQLITE_CACHE_KIB = 1024;

/**
 * The writer thread's V8 young generation (MiB; threadYoungGeneration): 1 MiB semi-spaces, where
 * the chart's `--max-semi-space-size=4` gave it 4. Its garbage per batch is the batch's decoded
 * rows and statement parameters; measured (`node bench/analytics-writer.ts --seed-rows 2000000`
 * with 1 and 4 MiB semi-spaces) at the same CPU per row, and 4.8 MiB less resident (ADR 66).
 */
export const WRITER_YOUNG_GENERATION_MB = 3;

export interface WriterThread extends AnalyticsWriter {
  /** Settles when the thread has opened the store, or rejects with the store's start-up error. */
  readonly opened: Promise<void>;
  writeColumns(rows: RowColumns): Promise<void>;
  runRetention(): Promise<RetentionResult>;
  /**
   * Ends the thread once its writes in flight have landed, then starts a new one, which opens the
   * store again and takes every write from now on: what the old one's V8 heap, SQLite page cache
   * and statements grew to goes with it (ADR 63). Resolves once the new one is started.
   */
  renew(): Promise<void>;
  /** From RENEW_AFTER_KEY_RECORDS ApiKeys, sets the page cache to START_SQLITE_CACHE_KIB for their records. */
  beforeKeyRecords(count: number): Promise<void>;
  /**
   * From RENEW_AFTER_KEY_RECORDS ApiKeys, starts the thread anew (renew); with an idle end
   * (`writerIdleMs`), ends it instead, and the next call starts the new one.
   */
  afterKeyRecords(count: number): Promise<void>;
  /** Whether a thread is running (or starting) now: none after its idle end, until the next call. */
  readonly running: boolean;
  /** Closes the store (after the call in flight) and ends the thread. */
  close(): Promise<void>;
}

/**
 * Starts the thread, which opens the store; returns at once. `opened` rejects with the store's
 * start-up error (AnalyticsStoreFailed, ConfigInvalid); writes wait for it.
 */
export function startWriterThread(options: AnalyticsStoreOptions, log: Logger, url = new URL("./writer-worker.ts", import.meta.url), limits?: RowTableLimits): WriterThread {
  const { now: _now, writerThread: _thread, readerClock: _clock, writerClock = backgroundClock, writerIdleMs = 0, threadNice, retentionIntervalMs = 3_600_000, ...rest } = options;
  // Retention is timed here, not on the thread: a thread that ends when idle would take its timer with it.
  const data: WriterWorkerData = { ...rest, retentionIntervalMs: 0 };
  const calls = threadCalls<WriterCall>({ url, name: WRITER_THREAD_NAME, what: "analytics writer", data, log, youngGenerationMb: WRITER_YOUNG_GENERATION_MB, ...(threadNice !== undefined ? { nice: threadNice } : {}) });
  const encoder = new RowBatchEncoder(limits);
  let closed = false;
  /** Calls made and not settled: the thread is idle when there are none. */
  let inFlight = 0;
  let cancelIdle: (() => void) | undefined;
  const stopIdle = (): void => {
    cancelIdle?.();
    cancelIdle = undefined;
  };
  /** Ends the running thread (after its calls in flight); the next call starts a new one, which holds no string table. */
  const retire = (): Promise<void> => {
    encoder.reset();
    return calls.retire({ op: "close" });
  };
  const armIdle = (): void => {
    stopIdle();
    if (writerIdleMs <= 0 || closed || !calls.running) return;
    cancelIdle = writerClock.setTimer(() => {
      cancelIdle = undefined;
      if (inFlight > 0 || closed || !calls.running) return;
      log.debug("analytics writer thread idle; it ends, and the next write starts a new one", { idleMs: writerIdleMs });
      retire().catch((err: unknown) => {
        log.warn("analytics writer thread could not be ended when idle", { err });
      });
    }, writerIdleMs);
  };
  /** `c` on the thread, counted in flight: no idle end while it runs, and the idle time counts from its end. */
  const call = (c: WriterCall, transfer?: readonly ArrayBuffer[]): Promise<unknown> => {
    stopIdle();
    inFlight++;
    const settled = (): void => {
      if (--inFlight === 0) armIdle();
    };
    const p = calls.call(c, transfer);
    p.then(settled, settled);
    return p;
  };
  const send = async (rows: readonly RequestRow[] | RowColumns): Promise<void> => {
    const batch = rows instanceof RowColumns ? encoder.encodeColumns(rows) : encoder.encode(rows);
    try {
      await call({ op: "rows", batch }, batchTransfer(batch));
    } catch (err) {
      // The thread may not hold this batch's strings (it died, or refused the batch): the next batch carries its whole table.
      encoder.reset();
      throw err;
    }
  };
  const write = async (rows: readonly RequestRow[] | RowColumns): Promise<void> => {
    try {
      await send(rows);
    } catch (err) {
      // A thread started anew holds no table: the batch goes again at once, with its whole table.
      if (!isKeywardError(err, "AnalyticsBatchOutOfStep")) throw err;
      await send(rows);
    }
  };
  const renew = (): Promise<void> => {
    // The new thread holds no string table: the next batch carries its whole table (before any other batch is encoded).
    encoder.reset();
    return calls.renew({ op: "close" });
  };
  const runRetention = async (): Promise<RetentionResult> => ((await call({ op: "retention" })) as RetentionResult | undefined) ?? { requests: 0, rollups: 0 };
  // At start, once the store is open, and every interval after the last run ended.
  let cancelRetention: (() => void) | undefined;
  const retention = (): void => {
    cancelRetention = undefined;
    if (closed) return;
    runRetention()
      .catch((err: unknown) => {
        log.warn("analytics retention failed; retried at the next run", { err });
      })
      .finally(() => {
        if (!closed && retentionIntervalMs > 0) cancelRetention = writerClock.setTimer(retention, retentionIntervalMs);
      });
  };
  if (retentionIntervalMs > 0) {
    calls.opened.then(retention, () => {});
  }
  return {
    opened: calls.opened,
    get running() {
      return calls.running;
    },
    writeRequests: write,
    writeColumns: write,
    // Not async: the records are the thread's copy once posted, and no frame here holds them
    // while it writes them.
    upsertKeys: (keys) => call({ op: "keys", keys }).then(() => undefined),
    runRetention,
    renew,
    beforeKeyRecords: async (count) => {
      if (count >= RENEW_AFTER_KEY_RECORDS) await call({ op: "pageCache", kib: START_SQLITE_CACHE_KIB });
    },
    afterKeyRecords: async (count) => {
      if (count < RENEW_AFTER_KEY_RECORDS) return;
      // With an idle end and no write in flight, a thread started now would only wait for its end.
      if (writerIdleMs > 0 && inFlight === 0) {
        stopIdle();
        await retire();
        return;
      }
      await renew();
    },
    close: () => {
      closed = true;
      stopIdle();
      cancelRetention?.();
      return calls.close({ op: "close" });
    },
  };
}
