// The embedded backend: one SQLite file through node:sqlite, in WAL mode so
// views read while batches are written. Old per-request rows go in bounded
// range deletes, so retention never holds the write lock for long.
import { setImmediate as yieldToLoop } from "node:timers/promises";
import { Kysely, sql } from "kysely";
import type { Backend } from "./backend.ts";
import type { AnalyticsDB } from "./schema.ts";
import { NodeSqliteDialect } from "./sqlite-dialect.ts";
import { openSqliteFile, sqliteWhere } from "./sqlite-file.ts";

export interface SqliteOptions {
  /** The database file; created with its directory when missing. `:memory:` for a private in-memory store. */
  path: string;
  /** Rows one retention delete removes at most. */
  deleteBatch?: number;
  /** How long a write waits for another process holding the file's write lock. */
  busyTimeoutMs?: number;
}

export function openSqlite(options: SqliteOptions): Backend {
  const where = sqliteWhere(options.path);
  const raw = openSqliteFile(options);
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
