// The analytics store: opens the configured backend, brings its schema up to
// date, and offers the writer the ingest queue calls, the queries views read,
// and retention (run at start and then periodically on every replica: each
// step is idempotent and serialised where it must be).
import type { Config } from "../config/config.ts";
import type { Clock } from "../k8s/clock.ts";
import { KeywardError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Backend } from "./backend.ts";
import { postgresPassword, storeFailed } from "./backend.ts";
import { AlertQueries } from "./alert-queries.ts";
import { AnalyticsQueries } from "./queries.ts";
import { applyRetention, requestsFrom, type RetentionResult } from "./retention.ts";
import type { AnalyticsWriter, KeyRecord, RequestRow } from "./row.ts";
import { applyMigrations, DAY_MS } from "./schema.ts";
import { openSqlite } from "./sqlite-backend.ts";
import { upsertKeys, writeRequests } from "./writer.ts";
import { startWriterThread } from "./writer-thread.ts";
import { openSqliteReader } from "./sqlite-reader.ts";
import type { Kysely } from "kysely";
import type { AnalyticsDB } from "./schema.ts";

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
  };
}

export async function openAnalyticsStore(options: AnalyticsStoreOptions, log: Logger): Promise<AnalyticsStore> {
  const now = options.now ?? Date.now;
  if (options.store === "postgres" && !options.postgresUrl) throw new KeywardError("ConfigInvalid", "--analytics-store=postgres needs --analytics-postgres-url");
  const backend: Backend =
    options.store === "postgres"
      ? // The PostgreSQL client loads only for a PostgreSQL store (a few MiB in each thread that opens the store).
        await (await import("./postgres-backend.ts")).openPostgres({ url: options.postgresUrl, ...(options.poolSize ? { poolSize: options.poolSize } : {}), ...(options.connectTimeoutMs ? { connectTimeoutMs: options.connectTimeoutMs } : {}) }, log)
      : openSqlite({ path: options.sqlitePath, ...(options.sqliteDeleteBatch ? { deleteBatch: options.sqliteDeleteBatch } : {}) });
  const slog = log.child({ store: backend.where });
  const ahead = options.partitionsAhead ?? 2;
  const prepareAhead = async (): Promise<void> => {
    const today = Math.floor(now() / DAY_MS);
    await backend.prepareDays(Array.from({ length: ahead + 1 }, (_, i) => today + i));
  };
  try {
    const applied = await backend.withSchemaLock(() => applyMigrations(backend.db, backend.kind, now));
    if (applied.length) slog.info("analytics store schema migrated", { versions: applied });
    await prepareAhead();
  } catch (err) {
    await backend.close().catch(() => {});
    throw err instanceof KeywardError ? err : storeFailed(backend.where, err, options.store === "postgres" ? postgresPassword(options.postgresUrl) : undefined);
  }
  const keepFrom = (): number => requestsFrom(now(), options.retentionMs);
  if (options.writerThread && !(options.store === "sqlite" && options.sqlitePath === ":memory:")) {
    // The schema is ready: the thread opens its own connection, and its start-up errors are the store's.
    const thread = await startWriterThread(options, log).catch(async (err: unknown) => {
      await backend.close().catch(() => {});
      throw err;
    });
    // SQLite reads on a thread of their own too (node:sqlite runs them to their end on the caller's),
    // started at the first read; PostgreSQL's are asynchronous, on this thread's pool.
    let reads: Kysely<AnalyticsDB> = backend.db;
    if (backend.kind === "sqlite") {
      await backend.close();
      reads = await openSqliteReader(options.sqlitePath, log, { idleMs: options.readerIdleMs ?? 300_000, ...(options.readerClock ? { clock: options.readerClock } : {}) }).catch(async (err: unknown) => {
        await thread.close().catch(() => {});
        throw err;
      });
    }
    return {
      kind: backend.kind,
      where: backend.where,
      queries: new AnalyticsQueries(reads, { requestsFrom: keepFrom }),
      alerts: new AlertQueries(reads),
      writeRequests: (rows) => thread.writeRequests(rows),
      upsertKeys: (keys) => thread.upsertKeys(keys),
      placesGeography: true,
      runRetention: () => thread.runRetention(),
      close: async () => {
        await thread.close();
        if (reads === backend.db) await backend.close();
        else await reads.destroy();
      },
    };
  }
  const runRetention = async (): Promise<RetentionResult> => {
    await prepareAhead();
    const r = await applyRetention(backend, now(), { requestsMs: options.retentionMs, rollupsMs: options.rollupRetentionMs });
    if (r.requests || r.rollups) slog.info("analytics retention removed old records", { requests: r.requests, rollups: r.rollups, backend: backend.kind });
    return r;
  };
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  const interval = options.retentionIntervalMs ?? 3_600_000;
  if (interval > 0) {
    const tick = (): void => {
      running = runRetention().catch((err: unknown) => {
        slog.warn("analytics retention failed; retried at the next run", { err: storeFailed(backend.where, err, postgresPassword(options.postgresUrl)) });
      });
    };
    tick();
    timer = setInterval(tick, interval);
    timer.unref();
  }
  return {
    kind: backend.kind,
    where: backend.where,
    queries: new AnalyticsQueries(backend.db, { requestsFrom: keepFrom }),
    alerts: new AlertQueries(backend.db),
    writeRequests: (rows: readonly RequestRow[]) => writeRequests(backend, rows, { keepRequestsFrom: keepFrom }),
    upsertKeys: (keys: readonly KeyRecord[]) => upsertKeys(backend, keys, now()),
    runRetention,
    close: async () => {
      if (timer) clearInterval(timer);
      await running;
      await backend.close();
    },
  };
}
