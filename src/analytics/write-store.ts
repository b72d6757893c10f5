// The analytics store's write side on one connection: the backend opened, its
// schema brought up to date, today's and the next days' partitions made, key
// records and request rows written, and retention run (at start and on its
// timer when given one). The writer thread opens this alone (it serves no
// reads, so it never loads the query layer); the CLI's and tests' stores add
// the queries over the same connection (store.ts).
import { CompiledQuery } from "kysely";
import { KeywardError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Backend } from "./backend.ts";
import { postgresPassword, storeFailed } from "./backend.ts";
import { applyRetention, requestsFrom, type RetentionResult } from "./retention.ts";
import type { AnalyticsWriter, KeyRecord, RequestRow } from "./row.ts";
import { applyMigrations, DAY_MS } from "./schema.ts";
import { openSqlite } from "./sqlite-backend.ts";
import type { AnalyticsStoreOptions } from "./store.ts";
import { upsertKeys, writeRequests } from "./writer.ts";

export interface WriteStore extends AnalyticsWriter {
  readonly backend: Backend;
  runRetention(): Promise<RetentionResult>;
  /** The SQLite connection's page cache from now on (KiB; SQLite frees what is over it); nothing on PostgreSQL. */
  pageCache(kib: number): Promise<void>;
  close(): Promise<void>;
}

/** Opens the backend and migrates it; a store that cannot be opened, reached or written is AnalyticsStoreFailed (ConfigInvalid without a URL). */
export async function openWriteStore(options: AnalyticsStoreOptions, log: Logger): Promise<WriteStore> {
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
    backend,
    writeRequests: (rows: readonly RequestRow[]) => writeRequests(backend, rows, { keepRequestsFrom: keepFrom }),
    upsertKeys: (keys: readonly KeyRecord[]) => upsertKeys(backend, keys, now()),
    runRetention,
    pageCache: async (kib) => {
      if (backend.kind === "sqlite") await backend.db.executeQuery(CompiledQuery.raw(`pragma cache_size = -${Math.max(1, Math.floor(kib))}`));
    },
    close: async () => {
      if (timer) clearInterval(timer);
      await running;
      await backend.close();
    },
  };
}

/**
 * The writer thread's SQLite page cache (KiB), smaller than the store's own (sqlite-file.ts): its
 * writes touch the newest segment's pages and the day's rollups, and a page missing from the
 * cache is read back from the kernel's cache of the file. Measured (`node
 * bench/analytics-writer.ts --seed-rows 2000000 --cache-kib N`, 100,000 keys in turn): 11.6 µs of
 * the store's CPU per row at 2 MiB, 11.7 at 8 MiB, 12.0 at 1 MiB. Up to 6 MiB less resident once
 * the writer's traffic has filled its cache (idle after a start it had not: no change there).
 */
export const WRITER_SQLITE_CACHE_KIB = 2048;

/** The write store as the writer thread opens it: openWriteStore, with the writer's page cache. */
export async function openWriterThreadStore(options: AnalyticsStoreOptions, log: Logger): Promise<WriteStore> {
  const store = await openWriteStore(options, log);
  try {
    await store.pageCache(WRITER_SQLITE_CACHE_KIB);
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
  return store;
}
