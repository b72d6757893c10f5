// The SQLite store's file, opened with node:sqlite alone (no Kysely): its
// connection settings and the probe write that fails start-up at once when the
// file or its directory cannot be written or is not a database. `keyward authz`
// probes the file this way on its main thread before Ready (ADR 61), while the
// writer thread loads the query layer, migrates and opens its own connection;
// openSqlite (sqlite-backend.ts) opens every connection through it.
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { storeFailed } from "./backend.ts";

export interface SqliteFileOptions {
  /** The database file; created with its directory when missing. `:memory:` for a private in-memory store. */
  path: string;
  /** How long a write waits for another process holding the file's write lock. */
  busyTimeoutMs?: number;
}

const PRAGMAS = [
  // Readers never block the writer, nor the writer readers.
  "journal_mode = WAL",
  // Durable at each checkpoint; a power cut may lose the last batches, never corrupt the file.
  "synchronous = NORMAL",
  "temp_store = MEMORY",
  // 8 MiB of page cache per connection (negative: KiB): the reader's thread and the CLI's store
  // have one, the writer thread lowers its own to 2 MiB (WRITER_SQLITE_CACHE_KIB, write-store.ts);
  // the kernel's page cache holds the file as well (docs/benchmarks.md, ADR 56).
  "cache_size = -8192",
  // Keep the WAL from growing past ~64 MiB between checkpoints.
  "journal_size_limit = 67108864",
  "foreign_keys = OFF",
];

/** Where a SQLite store is, for messages and logs. */
export const sqliteWhere = (path: string): string => `sqlite ${path}`;

/** Opens the file with keyward's settings and writes to it once; a file that cannot be opened or written is AnalyticsStoreFailed. */
export function openSqliteFile(options: SqliteFileOptions): DatabaseSync {
  let raw: DatabaseSync | undefined;
  try {
    if (options.path !== ":memory:") mkdirSync(dirname(options.path), { recursive: true });
    raw = new DatabaseSync(options.path, { timeout: options.busyTimeoutMs ?? 5000 });
    for (const p of PRAGMAS) raw.exec(`pragma ${p}`);
    // Fails now, not at the first batch, when the file or its directory cannot be written.
    raw.exec("begin immediate; create table if not exists keyward_probe (x integer); drop table keyward_probe; commit");
    return raw;
  } catch (err) {
    if (raw?.isOpen) raw.close();
    throw storeFailed(sqliteWhere(options.path), err);
  }
}

/** Opens, writes and closes the file: what makes a bad path fail start-up before the writer thread has opened it. */
export function probeSqliteFile(options: SqliteFileOptions): void {
  openSqliteFile(options).close();
}
