// The SQLite store's reads on a thread of their own (ADR 56): node:sqlite runs
// a statement to its end on the thread that calls it, and a view over raw rows
// or the alert evaluation can take seconds. A Kysely dialect whose one
// connection posts each compiled statement to the keyward-reader thread
// (sqlite-reader-worker.ts) and awaits its rows, so the views, the alert
// evaluator and its alert state keep their Kysely queries unchanged and the
// thread answering checks only waits for the answer. One statement or
// transaction at a time, as on a single SQLite connection.
import { Kysely, type CompiledQuery, type DatabaseConnection, type Driver, type QueryResult } from "kysely";
import type { Logger } from "../log.ts";
import type { AnalyticsDB } from "./schema.ts";
import { SqliteDialectOver, SqliteTransactions } from "./sqlite-dialect.ts";
import { startThreadCalls, type ThreadCalls } from "./thread-calls.ts";
import type { ReaderCall } from "./thread-wire.ts";

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

class ThreadDriver extends SqliteTransactions implements Driver {
  readonly #calls: ThreadCalls<ReaderCall>;
  readonly #connection: ThreadConnection;
  /** Settles when the connection's current holder releases it. */
  #held: Promise<void> = Promise.resolve();
  #release: (() => void) | undefined;

  constructor(calls: ThreadCalls<ReaderCall>) {
    super();
    this.#calls = calls;
    this.#connection = new ThreadConnection(calls);
  }
  async init(): Promise<void> {}
  async acquireConnection(): Promise<DatabaseConnection> {
    for (;;) {
      const held = this.#held;
      await held;
      if (held === this.#held) break;
    }
    this.#held = new Promise((resolve) => { this.#release = resolve; });
    return this.#connection;
  }
  releaseConnection(): Promise<void> {
    const r = this.#release;
    this.#release = undefined;
    r?.();
    return Promise.resolve();
  }
  destroy(): Promise<void> {
    return this.#calls.close({ op: "close" });
  }
}

/** Starts the reader thread on the SQLite file at `path` (its schema already migrated); its Kysely's destroy() ends the thread. */
export async function openSqliteReader(path: string, log: Logger): Promise<Kysely<AnalyticsDB>> {
  const calls = await startThreadCalls<ReaderCall>({ url: new URL("./sqlite-reader-worker.ts", import.meta.url), name: READER_THREAD_NAME, what: "analytics reader", data: path, log });
  return new Kysely<AnalyticsDB>({ dialect: new SqliteDialectOver(() => new ThreadDriver(calls)) });
}
