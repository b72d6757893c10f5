// The analytics store's life on real engines: retention drops whole days (a
// PostgreSQL partition, SQLite range deletes) and leaves the rollups; the
// schema is migrated once however many replicas start at once; a wrong
// password, an unreachable host or an unwritable file stops start-up with a
// clear error that never shows the password; and a PostgreSQL killed and
// restarted under write load costs the batches written while it was down,
// no more.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MIGRATIONS } from "../../src/analytics/schema.ts";
import { openAnalyticsStore, type AnalyticsStoreOptions } from "../../src/analytics/store.ts";
import type { RequestRow } from "../../src/analytics/row.ts";
import { isKeywardError, type KeywardError } from "../../src/errors.ts";
import { createLogger, errorFields } from "../../src/log.ts";
import { freePort } from "../controlplane/controlplane.ts";
import { DAY, HOUR, KEYS, NOW, seedRows } from "../support/analytics-seed.ts";
import { eventually } from "../support/k8s.ts";
import { havePostgres, KEYWARD_PASSWORD, startPostgres, type PostgresCluster } from "../support/postgres.ts";

const lines: string[] = [];
const log = createLogger({ level: "debug", sink: (l) => lines.push(l) });

function options(o: Partial<AnalyticsStoreOptions>): AnalyticsStoreOptions {
  return { store: "sqlite", sqlitePath: ":memory:", postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => NOW, ...o };
}

/** The start-up error of a store opened as the CLI opens it, and as keyward authz does (its writer on a thread): the same. */
async function startError(o: AnalyticsStoreOptions): Promise<KeywardError> {
  const one = async (writerThread: boolean): Promise<KeywardError> => {
    const err = await openAnalyticsStore({ ...o, writerThread }, log).then(
      async (s) => {
        await s.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    if (!isKeywardError(err)) throw new Error(`expected a KeywardError, got ${String(err)}`);
    return err;
  };
  const inline = await one(false);
  const threaded = await one(true);
  expect({ code: threaded.code, message: threaded.message }).toEqual({ code: inline.code, message: inline.message });
  return threaded;
}

describe.skipIf(!havePostgres())("analytics store lifecycle", () => {
  let pgc: PostgresCluster;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "keyward-analytics-"));
    pgc = await startPostgres();
  }, 120_000);

  afterAll(async () => {
    await pgc.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  async function freshDatabase(name: string): Promise<string> {
    await pgc.query(`create database ${name} owner keyward`);
    return pgc.url({ database: name });
  }

  for (const kind of ["sqlite", "postgres"] as const) {
    it(`${kind}: retention removes whole days of per-request rows and keeps the rollups`, async () => {
      let now = NOW;
      const url = kind === "postgres" ? await freshDatabase("retention") : "";
      const store = await openAnalyticsStore(options({ store: kind, postgresUrl: url, sqlitePath: join(dir, "retention.sqlite"), now: () => now, sqliteDeleteBatch: 7 }), log);
      try {
        const rows = seedRows();
        await store.upsertKeys(KEYS);
        await store.writeRequests(rows);
        const all = { since: 0, until: NOW + DAY };
        const firstKept = Math.floor((NOW - 30 * DAY) / DAY) * DAY;
        const days = async (): Promise<number[]> => [...new Set((await store.queries.timeline(all, "hour")).map((p) => Math.floor(p.at / DAY) * DAY))].sort((a, b) => a - b);
        expect((await days())[0]).toBe(firstKept);
        await store.runRetention();
        expect((await days())[0]).toBe(firstKept);
        // Two days later, the two oldest days go, and nothing else.
        now = NOW + 2 * DAY;
        const removed = await store.runRetention();
        expect(removed.requests).toBe(kind === "postgres" ? 2 : rows.filter((r) => r.at >= firstKept && r.at < firstKept + 2 * DAY).length);
        expect((await days())[0]).toBe(firstKept + 2 * DAY);
        const hourly = await store.queries.timeline(all, "hour");
        expect(hourly.reduce((n, p) => n + p.requests, 0)).toBe(rows.filter((r) => r.at >= firstKept + 2 * DAY).length);
        // The rollups keep every day, the deleted key's too.
        const daily = await store.queries.timeline(all, "day");
        expect(daily.reduce((n, p) => n + p.requests, 0)).toBe(rows.length);
        const billing = await store.queries.timeline({ ...all, key: "team-b/billing" }, "day");
        expect(billing.reduce((n, p) => n + p.requests, 0)).toBe(rows.filter((r) => r.uid === "u-billing").length);
      } finally {
        await store.close();
      }
    });

    it(`${kind}: rollups are kept for good unless a rollup retention is set`, async () => {
      const url = kind === "postgres" ? await freshDatabase("rollupret") : "";
      const store = await openAnalyticsStore(options({ store: kind, postgresUrl: url, sqlitePath: join(dir, "rollupret.sqlite"), rollupRetentionMs: 10 * DAY }), log);
      try {
        const rows = seedRows();
        await store.upsertKeys(KEYS);
        await store.writeRequests(rows);
        await store.runRetention();
        const daily = await store.queries.timeline({ since: 0, until: NOW + DAY }, "day");
        const firstDay = (Math.floor(NOW / DAY) - 10) * DAY;
        expect(daily[0]?.at).toBe(firstDay);
        expect(daily.reduce((n, p) => n + p.requests, 0)).toBe(rows.filter((r) => r.at >= firstDay).length);
      } finally {
        await store.close();
      }
    });
  }

  it("postgres: day partitions are created ahead and an old partition is dropped whole", async () => {
    const url = await freshDatabase("partitions");
    let now = NOW;
    const store = await openAnalyticsStore(options({ store: "postgres", postgresUrl: url, now: () => now, partitionsAhead: 2 }), log);
    const probe = await openAnalyticsStore(options({ store: "postgres", postgresUrl: url }), log);
    try {
      const { default: pg } = await import("pg");
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      const parts = async (): Promise<string[]> => (await c.query<{ name: string }>("select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = 'requests'::regclass order by 1")).rows.map((r) => r.name);
      expect(await parts()).toEqual(["requests_20260615", "requests_20260616", "requests_20260617"]);
      await store.writeRequests([{ ...seedRows()[0]!, at: NOW - 3 * DAY }]);
      expect(await parts()).toContain("requests_20260612");
      now = NOW + 30 * DAY - 2 * DAY;
      await store.runRetention();
      expect(await parts()).not.toContain("requests_20260612");
      expect(await parts()).toContain("requests_20260615");
      await c.end();
    } finally {
      await probe.close();
      await store.close();
    }
  });

  it("postgres: migrations run once when several replicas start at once, and again is a no-op", async () => {
    const url = await freshDatabase("concurrent");
    const replicas = await Promise.all(Array.from({ length: 6 }, () => openAnalyticsStore(options({ store: "postgres", postgresUrl: url }), log)));
    try {
      await Promise.all(replicas.map((s, i) => s.writeRequests(seedRows().slice(i * 50, i * 50 + 50))));
      await replicas[0]!.upsertKeys(KEYS);
      const again = await openAnalyticsStore(options({ store: "postgres", postgresUrl: url }), log);
      const top = await again.queries.topKeys({ since: 0, until: NOW + DAY });
      expect(top.reduce((n, k) => n + k.requests, 0)).toBe(300);
      await again.close();
      const { default: pg } = await import("pg");
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      expect((await c.query<{ version: number }>("select version from keyward_schema")).rows.map((r) => r.version).sort((a, b) => a - b)).toEqual(MIGRATIONS.map((m) => m.version));
      await c.end();
    } finally {
      await Promise.all(replicas.map((s) => s.close()));
    }
  });

  it("sqlite: a second open of the same file applies nothing and reads what the first wrote", async () => {
    const path = join(dir, "twice.sqlite");
    const a = await openAnalyticsStore(options({ sqlitePath: path }), log);
    await a.upsertKeys(KEYS);
    await a.writeRequests(seedRows().slice(0, 10));
    await a.close();
    lines.length = 0;
    const b = await openAnalyticsStore(options({ sqlitePath: path }), log);
    expect(lines.filter((l) => l.includes("schema migrated"))).toEqual([]);
    const top = await b.queries.topKeys({ since: 0, until: NOW + DAY });
    expect(top.reduce((n, k) => n + k.requests, 0)).toBe(10);
    await b.close();
  });

  it("replicas adding to the same rollups at once all count", async () => {
    const url = await freshDatabase("additive");
    const replicas = await Promise.all(Array.from({ length: 4 }, () => openAnalyticsStore(options({ store: "postgres", postgresUrl: url }), log)));
    try {
      await replicas[0]!.upsertKeys(KEYS);
      const one: RequestRow = { ...seedRows()[0]!, at: NOW - HOUR };
      // Every batch hits the same rollup row, from four pools at once.
      await Promise.all(replicas.flatMap((s) => Array.from({ length: 10 }, () => s.writeRequests(Array.from({ length: 20 }, () => one)))));
      const daily = await replicas[1]!.queries.timeline({ since: NOW - DAY, until: NOW + DAY }, "day");
      expect(daily.reduce((n, p) => n + p.requests, 0)).toBe(4 * 10 * 20);
    } finally {
      await Promise.all(replicas.map((s) => s.close()));
    }
  });

  it("a wrong password stops start-up with a clear error that never shows the password", async () => {
    const wrong = "Wrong-pw-0000-xyz";
    lines.length = 0;
    const err = await startError(options({ store: "postgres", postgresUrl: pgc.url({ password: wrong }) }));
    expect(err.code).toBe("AnalyticsStoreFailed");
    expect(err.message).toContain(`postgres://keyward@127.0.0.1:${pgc.port}/keyward`);
    expect(err.message).toMatch(/password authentication failed/);
    // Everything an error carries, down its cause chain, as a log or a crash report would show it.
    const shown = inspect(err, { depth: 10 }) + JSON.stringify(errorFields(err)) + lines.join("\n");
    expect(shown).not.toContain(wrong);
    expect(shown).not.toContain(KEYWARD_PASSWORD);
  });

  it("an unreachable host or a refused port stops start-up within the connect timeout", async () => {
    const port = await freePort();
    const refused = await startError(options({ store: "postgres", postgresUrl: pgc.url({ port }), connectTimeoutMs: 2000 }));
    expect(refused.code).toBe("AnalyticsStoreFailed");
    expect(refused.message).toContain(`127.0.0.1:${port}`);
    expect(inspect(refused, { depth: 10 })).not.toContain(KEYWARD_PASSWORD);
    const started = Date.now();
    // TEST-NET-1: routed nowhere, so only the connect timeout ends the attempt.
    const unreachable = await startError(options({ store: "postgres", postgresUrl: pgc.url({ host: "192.0.2.1", port: 5432 }), connectTimeoutMs: 1000 }));
    expect(unreachable.code).toBe("AnalyticsStoreFailed");
    expect(unreachable.message).toContain("192.0.2.1:5432");
    expect(Date.now() - started).toBeLessThan(10_000);
    const notUrl = await startError(options({ store: "postgres", postgresUrl: `postgres//keyward:${KEYWARD_PASSWORD}@host` }));
    expect(notUrl.code).toBe("ConfigInvalid");
    expect(inspect(notUrl, { depth: 10 })).not.toContain(KEYWARD_PASSWORD);
  });

  it("an unwritable SQLite path stops start-up", async () => {
    const file = join(dir, "a-file");
    writeFileSync(file, "not a directory");
    const err = await startError(options({ sqlitePath: join(file, "analytics.sqlite") }));
    expect(err.code).toBe("AnalyticsStoreFailed");
    expect(err.message).toContain(join(file, "analytics.sqlite"));
    const notDb = join(dir, "not-a-db.sqlite");
    writeFileSync(notDb, "x".repeat(4096));
    expect((await startError(options({ sqlitePath: notDb }))).code).toBe("AnalyticsStoreFailed");
  });

  it("postgres killed and restarted under write load: writes fail while it is down and succeed after", async () => {
    const url = await freshDatabase("restart");
    const store = await openAnalyticsStore(options({ store: "postgres", postgresUrl: url, connectTimeoutMs: 1000 }), log);
    await store.upsertKeys(KEYS);
    const template = seedRows()[0]!;
    const acked: string[] = [];
    let failed = 0;
    let batch = 0;
    const state = { stop: false };
    const load = (async () => {
      while (!state.stop) {
        const b = batch++;
        const rows = Array.from({ length: 10 }, (_, i): RequestRow => ({ ...template, at: NOW - HOUR, requestId: `b${b}-${i}` }));
        await store.writeRequests(rows).then(
          () => acked.push(...rows.map((r) => r.requestId!)),
          () => failed++,
        );
        await new Promise((r) => setImmediate(r));
      }
    })();
    await eventually(() => (acked.length >= 200 ? true : undefined), 20_000, "writes before the kill");
    await pgc.kill();
    await eventually(() => (failed >= 3 ? true : undefined), 20_000, "writes failing while PostgreSQL is down");
    const ackedWhileDown = acked.length;
    await pgc.start();
    await eventually(() => (acked.length >= ackedWhileDown + 200 ? true : undefined), 30_000, "writes succeeding after the restart");
    state.stop = true;
    await load;
    const { default: pg } = await import("pg");
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const stored = new Set((await c.query<{ id: string }>("select request_id as id from requests")).rows.map((r) => r.id));
    // Every acknowledged batch is there; a batch whose commit the kill interrupted may be there too, whole.
    expect(acked.filter((id) => !stored.has(id))).toEqual([]);
    const rollup = (await c.query<{ n: string }>("select sum(n) as n from rollups")).rows[0]!;
    expect(Number(rollup.n)).toBe(stored.size);
    await c.end();
    await store.close();
    expect(lines.join("\n")).not.toContain(KEYWARD_PASSWORD);
  });
});
