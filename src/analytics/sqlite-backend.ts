// The embedded backend: one SQLite file through node:sqlite, in WAL mode so
// views read while batches are written. Old per-request rows go in bounded
// range deletes, so retention never holds the write lock for long.
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { setImmediate as yieldToLoop } from "node:timers/promises";
import { Kysely, sql } from "kysely";
import type { Backend } from "./backend.ts";
import { storeFailed } from "./backend.ts";
import type { AnalyticsDB } from "./schema.ts";
import { NodeSqliteDialect } from "./sqlite-dialect.ts";

export interface SqliteOptions {
  /** The database file; created with its directory when missing. `:memory:` for a private in-memory store. */
  path: string;
  /** Rows one retention delete removes at most. */
  deleteBatch?: number;
  /** How long a write waits for another process holding the file's write lock. */
  busyTimeoutMs?: number;
}

const PRAGMAS = [
  // Readers never block the writer, nor the writer readers.
  "journal_mode = WAL",
  // Durable at each checkpoint; a power cut may lose the last batches, never corrupt the file.
  "synchronous = NORMAL",
  "temp_store = MEMORY",
  // 8 MiB of page cache per connection (negative: KiB): the writer's and the reader's thread each
  // have one; the kernel's page cache holds the file as well (docs/benchmarks.md, ADR 56).
  "cache_size = -8192",
  // Keep the WAL from growing past ~64 MiB between checkpoints.
  "journal_size_limit = 67108864",
  "foreign_keys = OFF",
];

export function openSqlite(options: SqliteOptions): Backend {
  const where = `sqlite ${options.path}`;
  let raw: DatabaseSync | undefined;
  try {
    if (options.path !== ":memory:") mkdirSync(dirname(options.path), { recursive: true });
    raw = new DatabaseSync(options.path, { timeout: options.busyTimeoutMs ?? 5000 });
    for (const p of PRAGMAS) raw.exec(`pragma ${p}`);
    // Fails now, not at the first batch, when the file or its directory cannot be written.
    raw.exec("begin immediate; create table if not exists keyward_probe (x integer); drop table keyward_probe; commit");
  } catch (err) {
    if (raw?.isOpen) raw.close();
    throw storeFailed(where, err);
  }
  const db = new Kysely<AnalyticsDB>({ dialect: new NodeSqliteDialect(raw) });
  const batch = options.deleteBatch ?? 5000;
  return {
    kind: "sqlite",
    db,
    where,
    // node:sqlite runs each statement to its end on this thread: 100 rows take about 3 ms.
    statementRows: 100,
    yieldBetweenStatements: true,
    // begin immediate (the migrations' transactions) already serialises processes on the file.
    withSchemaLock: (fn) => fn(),
    prepareDays: async () => {},
    dropRequestsBefore: async (cutoff) => {
      let removed = 0;
      for (;;) {
        const oldest = db.selectFrom("requests").select(sql<number>`rowid`.as("r")).where("at", "<", cutoff).limit(batch);
        const res = await db.deleteFrom("requests").where(sql<number>`rowid`, "in", oldest).executeTakeFirst();
        const n = Number(res.numDeletedRows);
        removed += n;
        if (n < batch) return removed;
        // Let writes and queries in between two batches.
        await yieldToLoop();
      }
    },
    close: async () => {
      await db.destroy();
    },
  };
}
