// What the tests of the store's query plans share: rollups for many keys, and the
// statements the key page's queries send to the rollups, as keyward compiles them.
import type { CompiledQuery, Kysely, LogEvent } from "kysely";
import { AnalyticsQueries } from "./queries.ts";
import { DAY_MS, type AnalyticsDB, type RollupsTable } from "./schema.ts";

/** The seed's last day (days since the epoch). */
export const PLAN_LAST_DAY = Math.floor(Date.UTC(2026, 5, 15) / DAY_MS);
const ROUTES = ["GET /orders/{id}", "POST /orders", ""];

/** `size.keys` keys in namespace `plans` (at least 8), each with `size.days` days of rollups (at least 10) on three routes. */
export async function seedPlanRollups(db: Kysely<AnalyticsDB>, size: { keys: number; days: number }): Promise<void> {
  const keys = Array.from({ length: size.keys }, (_, i) => ({
    uid: `uid-${String(i).padStart(4, "0")}`,
    namespace: "plans",
    name: `key-${String(i)}`,
    owner: "o",
    scopes: "[]",
    created_at: 0,
    expires_at: null,
    deleted_at: null,
    updated_at: 0,
  }));
  for (let i = 0; i < keys.length; i += 100) await db.insertInto("keys").values(keys.slice(i, i + 100)).execute();
  let batch: RollupsTable[] = [];
  for (let d = 0; d < size.days; d++) {
    for (const k of keys) {
      for (const [r, route] of ROUTES.entries()) {
        batch.push({
          day: PLAN_LAST_DAY - d,
          uid: k.uid,
          key_id: `kw_${k.uid}`,
          route,
          status: r === 2 ? 404 : 200,
          country: "DE",
          outcome: r === 2 ? "denied" : "allowed",
          n: 3,
          check_micros_sum: 30,
          check_micros_max: 20,
          upstream_n: 0,
          upstream_micros_sum: 0,
          upstream_micros_max: 0,
          request_bytes: 0,
          response_bytes: 0,
        });
        if (batch.length === 500) {
          await db.insertInto("rollups").values(batch).execute();
          batch = [];
        }
      }
    }
  }
  if (batch.length) await db.insertInto("rollups").values(batch).execute();
}

/** A Kysely `log` option that keeps every statement it runs. */
export function statementRecorder(): { log: (e: LogEvent) => void; statements: CompiledQuery[] } {
  const statements: CompiledQuery[] = [];
  return {
    statements,
    log: (e) => {
      if (e.level === "query") statements.push(e.query);
    },
  };
}

/**
 * The statements that read the rollups for one key's page: its version history, its daily
 * timeline and its last use. `db` must log into `recorded`.
 */
export async function keyPageRollupStatements(db: Kysely<AnalyticsDB>, recorded: CompiledQuery[]): Promise<CompiledQuery[]> {
  const from = recorded.length;
  const q = new AnalyticsQueries(db, { requestsFrom: () => (PLAN_LAST_DAY + 1) * DAY_MS });
  const versions = await q.keyVersions("uid-0007");
  const timeline = await q.timeline({ since: (PLAN_LAST_DAY - 9) * DAY_MS, until: (PLAN_LAST_DAY + 1) * DAY_MS, key: "plans/key-7" }, "day");
  const activity = await q.keyActivity({ key: "plans/key-7" });
  // The answers are the seed's: a query the index would change is still right.
  if (versions.length !== 1 || timeline.length !== 10 || activity[0]?.lastUsedAt !== PLAN_LAST_DAY * DAY_MS) {
    throw new Error(`unexpected answers: ${JSON.stringify({ versions, points: timeline.length, activity })}`);
  }
  return recorded.slice(from).filter((s) => /\brollups\b/.test(s.sql));
}
