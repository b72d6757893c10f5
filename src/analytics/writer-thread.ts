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
// was down.
import { isKeywardError } from "../errors.ts";
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
  /** From RENEW_AFTER_KEY_RECORDS ApiKeys, starts the thread anew (renew). */
  afterKeyRecords(count: number): Promise<void>;
  /** Closes the store (after the call in flight) and ends the thread. */
  close(): Promise<void>;
}

/**
 * Starts the thread, which opens the store; returns at once. `opened` rejects with the store's
 * start-up error (AnalyticsStoreFailed, ConfigInvalid); writes wait for it.
 */
export function startWriterThread(options: AnalyticsStoreOptions, log: Logger, url = new URL("./writer-worker.ts", import.meta.url), limits?: RowTableLimits): WriterThread {
  const { now: _now, writerThread: _thread, readerClock: _clock, threadNice, ...rest } = options;
  const data: WriterWorkerData = rest;
  const calls = threadCalls<WriterCall>({ url, name: WRITER_THREAD_NAME, what: "analytics writer", data, log, youngGenerationMb: WRITER_YOUNG_GENERATION_MB, ...(threadNice !== undefined ? { nice: threadNice } : {}) });
  const encoder = new RowBatchEncoder(limits);
  const send = async (rows: readonly RequestRow[] | RowColumns): Promise<void> => {
    const batch = rows instanceof RowColumns ? encoder.encodeColumns(rows) : encoder.encode(rows);
    try {
      await calls.call({ op: "rows", batch }, batchTransfer(batch));
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
  return {
    opened: calls.opened,
    writeRequests: write,
    writeColumns: write,
    // Not async: the records are the thread's copy once posted, and no frame here holds them
    // while it writes them.
    upsertKeys: (keys) => calls.call({ op: "keys", keys }).then(() => undefined),
    runRetention: async () => ((await calls.call({ op: "retention" })) as RetentionResult | undefined) ?? { requests: 0, rollups: 0 },
    renew,
    beforeKeyRecords: async (count) => {
      if (count >= RENEW_AFTER_KEY_RECORDS) await calls.call({ op: "pageCache", kib: START_SQLITE_CACHE_KIB });
    },
    afterKeyRecords: async (count) => {
      if (count >= RENEW_AFTER_KEY_RECORDS) await renew();
    },
    close: () => calls.close({ op: "close" }),
  };
}
