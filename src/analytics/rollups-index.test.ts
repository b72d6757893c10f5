// The rollups' index by key (migration 3, rollups_uid_day): SQLite's planner reads one key's
// rollups through it for the key page's queries, as keyward compiles them, and a store made
// before the index gets it at the next start.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { Kysely } from "kysely";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../log.ts";
import { keyPageRollupStatements, PLAN_LAST_DAY, seedPlanRollups, statementRecorder } from "./plans.test-support.ts";
import { applyMigrations, DAY_MS, MIGRATIONS, type AnalyticsDB } from "./schema.ts";
import { NodeSqliteDialect } from "./sqlite-dialect.ts";
import { openAnalyticsStore } from "./store.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A SQLite file with the given migrations applied and the plan seed, and a Kysely that records its statements. */
async function sqliteWith(migrations: typeof MIGRATIONS): Promise<{ raw: DatabaseSync; db: Kysely<AnalyticsDB>; recorded: ReturnType<typeof statementRecorder>; path: string }> {
  const dir = mkdtempSync(join(tmpdir(), "keyward-plans-"));
  dirs.push(dir);
  const path = join(dir, "a.sqlite");
  const raw = new DatabaseSync(path);
  const recorded = statementRecorder();
  const db = new Kysely<AnalyticsDB>({ dialect: new NodeSqliteDialect(raw), log: recorded.log });
  await applyMigrations(db, "sqlite", () => 0, migrations);
  // No ANALYZE: keyward never runs it, so the planner goes by the schema alone.
  await seedPlanRollups(db, { keys: 40, days: 12 });
  return { raw, db, recorded, path };
}

/** SQLite's plan of a statement, its `detail` lines joined. */
function plan(raw: DatabaseSync, statement: { sql: string; parameters: readonly unknown[] }): string {
  const rows = raw.prepare(`explain query plan ${statement.sql}`).all(...(statement.parameters as (string | number | null)[])) as { detail: string }[];
  return rows.map((r) => r.detail).join("\n");
}

describe("rollups_uid_day", () => {
  it("serves every rollups read of the key page on SQLite: no scan of the rollups", async () => {
    const { raw, db, recorded } = await sqliteWith(MIGRATIONS);
    const statements = await keyPageRollupStatements(db, recorded.statements);
    expect(statements.length).toBe(3);
    for (const s of statements) {
      const p = plan(raw, s);
      expect(p, s.sql).toMatch(/SEARCH (rollups|t|r) USING (COVERING )?INDEX rollups_uid_day \(uid=\?/);
      expect(p, s.sql).not.toMatch(/SCAN/);
    }
    await db.destroy();
  });

  it("without it, the same statements scan the rollups (what the index is for)", async () => {
    const { raw, db, recorded } = await sqliteWith(MIGRATIONS.filter((m) => m.version !== 3));
    const statements = await keyPageRollupStatements(db, recorded.statements);
    expect(statements.map((s) => plan(raw, s)).filter((p) => p.includes("rollups_uid_day"))).toEqual([]);
    // The version history and the last use scan every key's rollups; the timeline every key's in its range.
    expect(statements.map((s) => /SCAN (rollups|r)\b|SEARCH t USING INDEX sqlite_autoindex_rollups_1 \(day>/.test(plan(raw, s)))).toEqual([true, true, true]);
    await db.destroy();
  });

  it("is added to a store made before it at the next start, which keeps its rollups and records version 3 (and those after it)", async () => {
    const { db, path } = await sqliteWith(MIGRATIONS.filter((m) => m.version < 3));
    await db.destroy();
    const lines: string[] = [];
    const now = (PLAN_LAST_DAY + 1) * DAY_MS;
    const store = await openAnalyticsStore({ store: "sqlite", sqlitePath: path, postgresUrl: "", retentionMs: 30 * DAY_MS, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => now }, createLogger({ sink: (l) => lines.push(l) }));
    const later = MIGRATIONS.filter((m) => m.version >= 3).map((m) => m.version);
    expect(lines.join("\n")).toContain(`"versions":${JSON.stringify(later)}`);
    expect((await store.queries.keyVersions("uid-0007")).map((v) => v.keyId)).toEqual(["kw_uid-0007"]);
    await store.close();
    const raw = new DatabaseSync(path);
    expect(raw.prepare("select version from keyward_schema order by version").all().map((r) => r.version)).toEqual(MIGRATIONS.map((m) => m.version));
    const index = raw.prepare("select sql from sqlite_master where type = 'index' and name = 'rollups_uid_day'").get() as { sql: string } | undefined;
    expect(index?.sql).toMatch(/on "rollups" \("uid", "day"\)/i);
    raw.close();
  });
});
