// The SQLite store's reads on a thread of their own (ADR 56): node:sqlite runs
// a statement to its end on the thread that calls it, and a view over raw rows
// or the alert evaluation can take seconds. A Kysely dialect whose one
// connection posts each compiled statement to the keyward-reader thread
// (sqlite-reader-worker.ts) and awaits its rows, so the views, the alert
// evaluator and its alert state keep their Kysely queries unchanged and the
// thread answering checks only waits for the answer. One statement or
// transaction at a time, as on a single SQLite connection.
//
// The thread (a V8 isolate with its modules and an SQLite page cache, about
// 30 MiB) starts at the first read, not with the store: on a replica that is
// not the alert evaluator's leader and serves no views, it never starts. After
// `idleMs` without a statement it closes its connection and ends; the next
// read starts it again. The store's file was probed on the caller's thread and
// migrated by the writer thread before the first read (store.ts), so a file
// that cannot be opened still fails the start, not the first read.
import { Kysely, type CompiledQuery, type DatabaseConnection, type Driver, type QueryResult } from "kysely";
import { systemClock, type Clock } from "../k8s/clock.ts";
import type { Logger } from "../log.ts";
import type { AnalyticsDB } from "./schema.ts";
import { SqliteDialectOver, SqliteTransactions } from "./sqlite-dialect.ts";
import { startThreadCalls, type ThreadCalls } from "./thread-calls.ts";
import type { ReaderCall } from "./thread-wire.ts";

/**
 * The reader thread's V8 young generation (MiB; threadYoungGeneration): 4 MiB semi-spaces, what
 * the chart's `--max-semi-space-size=4` gave it before the store's threads set their own. A view
 * over raw rows makes its garbage in large result sets.
 */
export const READER_YOUNG_GENERATION_MB = 12;

/** The OS name of the reader thread. */
export const READER_THREAD_NAME = "keyward-reader";

class ThreadConnection implements DatabaseConnection {
  readonly #calls: ThreadCalls<ReaderCall>;
  constructor(calls: ThreadCalls<ReaderCall>) {
    this.#calls = calls;
  }
  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    return (await this.#calls.call({ op: "query", sql: query.sql, parameters: query.parameters })) as QueryResult<R>;
  }
  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    await Promise.resolve();
    throw new Error("the SQLite reader thread does not stream");
  }
}

export interface SqliteReaderOptions {
  /** The thread ends after this long without a statement (ms); 0: it stays once started. */
  idleMs: number;
  clock?: Clock;
  /** The nice value the thread lowers itself to (ThreadOptions.nice). */
  nice?: number;
}

class ThreadDriver extends SqliteTransactions implements Driver {
  readonly #calls: ThreadCalls<ReaderCall>;
  readonly #connection: ThreadConnection;
  readonly #idleMs: number;
  readonly #clock: Clock;
  /** Settles when the connection's current holder releases it. */
  #held: Promise<void> = Promise.resolve();
  #release: (() => void) | undefined;
  #cancelIdle: (() => void) | undefined;

  constructor(calls: ThreadCalls<ReaderCall>, options: SqliteReaderOptions) {
    super();
    this.#calls = calls;
    this.#connection = new ThreadConnection(calls);
    this.#idleMs = options.idleMs;
    this.#clock = options.clock ?? systemClock;
  }
  async init(): Promise<void> {}
  async acquireConnection(): Promise<DatabaseConnection> {
    for (;;) {
      const held = this.#held;
      await held;
      if (held === this.#held) break;
    }
    this.#held = new Promise((resolve) => { this.#release = resolve; });
    this.#cancelIdle?.();
    this.#cancelIdle = undefined;
    return this.#connection;
  }
  releaseConnection(): Promise<void> {
    const r = this.#release;
    this.#release = undefined;
    r?.();
    // Idle from now: a transaction holds the connection across its statements, so it is never cut.
    if (this.#idleMs > 0 && this.#calls.running) {
      this.#cancelIdle?.();
      this.#cancelIdle = this.#clock.setTimer(() => {
        this.#cancelIdle = undefined;
        if (this.#release === undefined) void this.#calls.retire({ op: "close" });
      }, this.#idleMs);
    }
    return Promise.resolve();
  }
  destroy(): Promise<void> {
    this.#cancelIdle?.();
    this.#cancelIdle = undefined;
    return this.#calls.close({ op: "close" });
  }
}

/**
 * The reads on the SQLite file at `path` (its schema already migrated), on a reader thread
 * started at the first statement and ended after `idleMs` without one; its Kysely's destroy()
 * ends the thread for good.
 */
export async function openSqliteReader(path: string, log: Logger, options: SqliteReaderOptions): Promise<Kysely<AnalyticsDB>> {
  const calls = await startThreadCalls<ReaderCall>({ url: new URL("./sqlite-reader-worker.ts", import.meta.url), name: READER_THREAD_NAME, what: "analytics reader", data: path, log, lazy: true, youngGenerationMb: READER_YOUNG_GENERATION_MB, ...(options.nice !== undefined ? { nice: options.nice } : {}) });
  return new Kysely<AnalyticsDB>({ dialect: new SqliteDialectOver(() => new ThreadDriver(calls, options)) });
}
