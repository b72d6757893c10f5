// The analytics store: opens the configured backend, brings its schema up to
// date, and offers the writer the ingest queue calls, the queries views read,
// and retention (run at start and then periodically on every replica: each
// step is idempotent and serialised where it must be).
//
// With its writer on a thread (what `keyward authz` and `keyward run` use, ADR
// 56) the thread opens, migrates and writes the store, and this thread loads
// the query layer (Kysely) only at the first read (ADR 61): a SQLite file is
// probed here with node:sqlite alone, so a bad path still fails start-up
// first, and the thread's own start (its modules, the migrations) may overlap
// the rest of start-up until `opened` settles (startAnalyticsStore).
import type { Config } from "../config/config.ts";
import type { Clock } from "../k8s/clock.ts";
import type { Logger } from "../log.ts";
import type { AlertQueries } from "./alert-queries.ts";
import type { AnalyticsQueries } from "./queries.ts";
import type { RetentionResult } from "./retention.ts";
import type { AnalyticsWriter } from "./row.ts";
import type { AnalyticsDB } from "./schema.ts";
import { probeSqliteFile, sqliteWhere } from "./sqlite-file.ts";
import { startWriterThread, type WriterThread } from "./writer-thread.ts";
import type { Kysely } from "kysely";

export interface AnalyticsStoreOptions {
  store: "sqlite" | "postgres";
  /** The SQLite file (store sqlite). */
  sqlitePath: string;
  /** postgres:// URL (store postgres); its password is never logged or put in an error. */
  postgresUrl: string;
  /** How long per-request rows are kept (ms). */
  retentionMs: number;
  /** How long daily rollups are kept (ms); 0 keeps them for good. */
  rollupRetentionMs: number;
  /** How often retention runs; 0: only when runRetention() is called. */
  retentionIntervalMs?: number;
  /** PostgreSQL connections per process. */
  poolSize?: number;
  /** How long connecting to PostgreSQL may take. */
  connectTimeoutMs?: number;
  /** Rows one SQLite retention delete removes at most. */
  sqliteDeleteBatch?: number;
  /** Day partitions created ahead of today (PostgreSQL). */
  partitionsAhead?: number;
  now?: () => number;
  /**
   * Writes (batches, key records, day partitions, retention) on a thread of their own, with
   * its own connection (writer-thread.ts, ADR 56); queries and the alert state stay on the
   * caller's. Not for `:memory:` SQLite, which one connection alone sees: it writes inline.
   * `now` does not reach the thread.
   */
  writerThread?: boolean;
  /** With writerThread: the country database the thread places rows with (empty: the shipped GeoLite2). */
  countryDatabase?: string;
  /**
   * With writerThread on SQLite: the reader thread starts at the first read and ends after this
   * long without one (ms; sqlite-reader.ts); 0 keeps it once started. Default five minutes.
   */
  readerIdleMs?: number;
  /** The reader thread's idle timer (tests). */
  readerClock?: Clock;
  /**
   * With writerThread: the writer thread ends after this long without a call (ms; ADR 71), and
   * the next write starts a new one; 0 keeps it. Retention is timed on the caller's thread.
   */
  writerIdleMs?: number;
  /** The writer thread's idle and retention timers (tests). */
  writerClock?: Clock;
  /**
   * The nice value the writer and reader threads lower themselves to (thread-priority.ts): on a
   * saturated CPU checks go first and the store drops rows. Unset: the process's own.
   */
  threadNice?: number;
}

export interface AnalyticsStore extends AnalyticsWriter {
  readonly kind: "sqlite" | "postgres";
  /** Where the store is, without credentials. */
  readonly where: string;
  readonly queries: AnalyticsQueries;
  /** What the alert evaluator reads and the alert state it keeps (src/alerts). */
  readonly alerts: AlertQueries;
  runRetention(): Promise<RetentionResult>;
  close(): Promise<void>;
}

/** The store's options from keyward's configuration; undefined when --analytics-store=off. */
export function analyticsStoreOptions(c: Config): AnalyticsStoreOptions | undefined {
  if (c.analyticsStore === "off") return undefined;
  return {
    store: c.analyticsStore === "postgres" ? "postgres" : "sqlite",
    sqlitePath: c.analyticsSqlitePath,
    postgresUrl: c.analyticsPostgresUrl,
    retentionMs: c.analyticsRetention,
    rollupRetentionMs: c.analyticsRollupRetention,
    poolSize: c.analyticsPostgresPoolSize,
    connectTimeoutMs: c.analyticsConnectTimeout,
    countryDatabase: c.analyticsCountryDatabase,
    readerIdleMs: c.analyticsReaderIdle,
    writerIdleMs: c.analyticsWriterIdle,
    // 0 leaves the threads at the process's priority, whatever it is.
    ...(c.analyticsThreadNice > 0 ? { threadNice: c.analyticsThreadNice } : {}),
  };
}

export interface StartedStore {
  store: AnalyticsStore;
  /**
   * Settles once the writer thread has opened the store (its migrations and probe write done), or
   * rejects with what it met (AnalyticsStoreFailed, ConfigInvalid); resolved already without a
   * writer thread. Writes wait for it.
   */
  opened: Promise<void>;
}

/** Reads over `db`: the query layer, loaded on demand. */
async function readsOver(db: Kysely<AnalyticsDB>, retentionMs: number, now: () => number): Promise<{ queries: AnalyticsQueries; alerts: AlertQueries }> {
  const [{ AnalyticsQueries }, { AlertQueries }, { requestsFrom }] = await Promise.all([import("./queries.ts"), import("./alert-queries.ts"), import("./retention.ts")]);
  return { queries: new AnalyticsQueries(db, { requestsFrom: () => requestsFrom(now(), retentionMs) }), alerts: new AlertQueries(db) };
}

/**
 * An object whose every method awaits `load()` (which loads once) and calls the loaded object's: the reads'
 * classes have only asynchronous methods, so callers see no difference but the first call's wait.
 */
export function onDemand<T extends object>(load: () => Promise<T>): T {
  return new Proxy({} as T, {
    // Not a thenable (`then`), nor anything keyed by a symbol: only the reads' named methods.
    get: (_, prop) => (prop === "then" || typeof prop === "symbol" ? undefined : async (...args: unknown[]) => {
      const target = await load();
      const method = Reflect.get(target, prop) as unknown;
      if (typeof method !== "function") throw new TypeError(`${prop} is not a method of the store's reads`);
      return (method as (...a: unknown[]) => unknown).apply(target, args);
    }),
  });
}

/**
 * Opens the store. With `writerThread`, the writer thread opens it while the caller goes on:
 * what this awaits is only what must fail start-up first (the SQLite file probed; PostgreSQL
 * opened and migrated here, where its reads run), and `opened` the thread's own start.
 */
export async function startAnalyticsStore(options: AnalyticsStoreOptions, log: Logger): Promise<StartedStore> {
  const now = options.now ?? Date.now;
  // Every path opens PostgreSQL here first (openWriteStore), which refuses a missing URL.
  if (!options.writerThread || (options.store === "sqlite" && options.sqlitePath === ":memory:")) {
    // Writes inline, reads on the same connection (the CLI, tests; an in-memory SQLite store, which one connection alone sees).
    const ws = await (await import("./write-store.ts")).openWriteStore(options, log);
    const reads = await readsOver(ws.backend.db, options.retentionMs, now);
    const store: AnalyticsStore = {
      kind: ws.backend.kind,
      where: ws.backend.where,
      ...reads,
      writeRequests: (rows) => ws.writeRequests(rows),
      upsertKeys: (keys) => ws.upsertKeys(keys),
      runRetention: () => ws.runRetention(),
      close: () => ws.close(),
    };
    return { store, opened: Promise.resolve() };
  }
  // PostgreSQL's reads are asynchronous, on a pool of this thread: opened (and migrated) here, as
  // before the writer thread, so a wrong password or an unreachable host fails start-up here.
  const main = options.store === "postgres" ? await (await import("./write-store.ts")).openWriteStore({ ...options, retentionIntervalMs: 0 }, log) : undefined;
  // SQLite: the file probed (opened, written) here with node:sqlite alone; the thread migrates it.
  if (!main) probeSqliteFile({ path: options.sqlitePath });
  let thread: WriterThread;
  try {
    thread = startWriterThread(options, log);
  } catch (err) {
    await main?.close().catch(() => {});
    throw err;
  }
  let readsDb: Kysely<AnalyticsDB> | undefined;
  // SQLite reads on a thread of their own too (node:sqlite runs them to their end on the caller's),
  // started at the first read, once the writer has migrated the file.
  let loading: ReturnType<typeof readsOver> | undefined;
  const loadReads = (): ReturnType<typeof readsOver> =>
    (loading ??= (async () => {
      if (main) readsDb = main.backend.db;
      else {
        await thread.opened;
        const { openSqliteReader } = await import("./sqlite-reader.ts");
        readsDb ??= await openSqliteReader(options.sqlitePath, log, { idleMs: options.readerIdleMs ?? 300_000, ...(options.readerClock ? { clock: options.readerClock } : {}), ...(options.threadNice !== undefined ? { nice: options.threadNice } : {}) });
      }
      return readsOver(readsDb, options.retentionMs, now);
    })().catch((err: unknown) => {
      loading = undefined;
      throw err;
    }));
  const store: AnalyticsStore = {
    kind: options.store,
    where: main?.backend.where ?? sqliteWhere(options.sqlitePath),
    queries: onDemand(async () => (await loadReads()).queries),
    alerts: onDemand(async () => (await loadReads()).alerts),
    writeRequests: (rows) => thread.writeRequests(rows),
    writeColumns: (rows) => thread.writeColumns(rows),
    upsertKeys: (keys) => thread.upsertKeys(keys),
    beforeKeyRecords: (count) => thread.beforeKeyRecords(count),
    afterKeyRecords: (count) => thread.afterKeyRecords(count),
    placesGeography: true,
    runRetention: () => thread.runRetention(),
    close: async () => {
      await thread.close();
      if (main) await main.close();
      else await readsDb?.destroy();
    },
  };
  return { store, opened: thread.opened };
}

export async function openAnalyticsStore(options: AnalyticsStoreOptions, log: Logger): Promise<AnalyticsStore> {
  const { store, opened } = await startAnalyticsStore(options, log);
  try {
    await opened;
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
  return store;
}
