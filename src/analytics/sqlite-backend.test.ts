import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "kysely";
import { afterEach, describe, expect, it } from "vitest";
import { openSqlite } from "./sqlite-backend.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("openSqlite", () => {
  it("bounds each connection's page cache at 8 MiB, and writes through a WAL", async () => {
    const dir = mkdtempSync(join(tmpdir(), "keyward-sqlite-"));
    dirs.push(dir);
    const backend = openSqlite({ path: join(dir, "a.sqlite") });
    try {
      // Each of the store's threads holds one connection: its cache is the process's to pay, per
      // thread, on top of the kernel's page cache of the same file.
      const cache = await sql<{ cache_size: number }>`pragma cache_size`.execute(backend.db);
      expect(cache.rows[0]?.cache_size).toBe(-8192);
      const journal = await sql<{ journal_mode: string }>`pragma journal_mode`.execute(backend.db);
      expect(journal.rows[0]?.journal_mode).toBe("wal");
    } finally {
      await backend.close();
    }
  });
});
