// The rollups' index by key (migration 3, rollups_uid_day) on a real PostgreSQL 15: a store
// made before it gets it when keyward next starts, and the planner then reads one key's
// rollups through it for the key page's statements, as keyward compiles them, where it
// read every key's rollups before.
import { Kysely, PostgresDialect, sql } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyPageRollupStatements, PLAN_LAST_DAY, seedPlanRollups, statementRecorder } from "../../src/analytics/plans.test-support.ts";
import { applyMigrations, DAY_MS, MIGRATIONS, type AnalyticsDB } from "../../src/analytics/schema.ts";
import { openAnalyticsStore } from "../../src/analytics/store.ts";
import { createLogger } from "../../src/log.ts";
import { havePostgres, startPostgres, type PostgresCluster } from "../support/postgres.ts";

describe.skipIf(!havePostgres())("rollups_uid_day on PostgreSQL", () => {
  let pgc: PostgresCluster;
  let db: Kysely<AnalyticsDB>;
  const recorded = statementRecorder();

  /** The plan PostgreSQL picks for each of the key page's rollups statements, after ANALYZE (autovacuum's job in a live store). */
  async function plans(): Promise<string[]> {
    await sql`analyze`.execute(db);
    const statements = await keyPageRollupStatements(db, recorded.statements);
    expect(statements.length).toBe(3);
    const out: string[] = [];
    for (const s of statements) {
      const r = await db.executeQuery<{ "QUERY PLAN": string }>({ ...s, sql: `explain ${s.sql}` });
      out.push(r.rows.map((x) => x["QUERY PLAN"]).join("\n"));
    }
    return out;
  }

  beforeAll(async () => {
    pgc = await startPostgres();
    db = new Kysely<AnalyticsDB>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: pgc.url(), max: 2 }) }), log: recorded.log });
    // A store as keyward made it before the index.
    await applyMigrations(db, "postgres", () => 0, MIGRATIONS.filter((m) => m.version < 3));
    await seedPlanRollups(db, { keys: 400, days: 30 });
  }, 120_000);

  afterAll(async () => {
    await db.destroy();
    await pgc.remove();
  });

  it("before the migration, each statement reads every key's rollups: the whole table, or every key's in the day range", async () => {
    const before = await plans();
    expect(before.map((p) => /Seq Scan on rollups|Index Scan using rollups_pk on rollups/.test(p))).toEqual([true, true, true]);
    expect(before.filter((p) => p.includes("rollups_uid_day"))).toEqual([]);
  });

  it("keyward's next start adds it, keeps the rollups, and the planner uses it for every statement", async () => {
    const lines: string[] = [];
    const now = (PLAN_LAST_DAY + 1) * DAY_MS;
    const store = await openAnalyticsStore(
      { store: "postgres", sqlitePath: "", postgresUrl: pgc.url(), retentionMs: 30 * DAY_MS, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => now },
      createLogger({ sink: (l) => lines.push(l) }),
    );
    const later = MIGRATIONS.filter((m) => m.version >= 3).map((m) => m.version);
    expect(lines.join("\n")).toContain(`"versions":${JSON.stringify(later)}`);
    expect((await store.queries.keyVersions("uid-0007")).map((v) => v.keyId)).toEqual(["kw_uid-0007"]);
    await store.close();
    for (const p of await plans()) {
      expect(p).toMatch(/Index (Only )?Scan using rollups_uid_day on rollups|Bitmap Index Scan on rollups_uid_day/);
      expect(p).not.toMatch(/Seq Scan on rollups/);
    }
    const versions = await db.selectFrom("keyward_schema").select("version").orderBy("version").execute();
    expect(versions.map((v) => v.version)).toEqual(MIGRATIONS.map((m) => m.version));
  });
});
