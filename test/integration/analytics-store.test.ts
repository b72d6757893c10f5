// The analytics store on its two real backends: SQLite (node:sqlite) and a
// throwaway PostgreSQL 15 cluster. The same seeded usage goes into both, and
// every view must give the same answer on both, equal to a count made here
// from the seed itself. Then retention on seeded days, migrations applied
// twice and by several replicas at once, start-up errors for a bad DSN, and a
// PostgreSQL killed and restarted under write load.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openAnalyticsStore, type AnalyticsStore, type AnalyticsStoreOptions } from "../../src/analytics/store.ts";
import type { TimelinePoint, UsageFilter } from "../../src/analytics/queries.ts";
import type { RequestRow } from "../../src/analytics/row.ts";
import { createLogger } from "../../src/log.ts";
import { clientStatus, DAY, HOUR, KEYS, NOW, seedRows } from "../support/analytics-seed.ts";
import { havePostgres, startPostgres, type PostgresCluster } from "../support/postgres.ts";

const RETENTION = 30 * DAY;
const lines: string[] = [];
const log = createLogger({ level: "debug", sink: (l) => lines.push(l) });

function options(o: Partial<AnalyticsStoreOptions>): AnalyticsStoreOptions {
  return { store: "sqlite", sqlitePath: ":memory:", postgresUrl: "", retentionMs: RETENTION, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => NOW, ...o };
}

/** The seed rows a filter selects, counted here, for views within retention. */
function selected(rows: readonly RequestRow[], f: UsageFilter): RequestRow[] {
  const keys = new Map(KEYS.map((k) => [k.uid, k]));
  return rows.filter((r) => {
    const k = keys.get(r.uid)!;
    if (r.at < f.since || r.at >= f.until) return false;
    if (f.namespaces && !f.namespaces.includes(k.namespace)) return false;
    if (f.owner !== undefined && k.owner !== f.owner) return false;
    if (f.key !== undefined && (f.key.includes("/") ? `${k.namespace}/${k.name}` !== f.key : r.keyId !== f.key)) return false;
    if (f.selector) {
      for (const t of f.selector.split(",")) {
        const [name, value] = t.split("=") as [string, string];
        if (k.labels[name] !== value) return false;
      }
    }
    return true;
  });
}

function tally<T>(xs: readonly T[], by: (x: T) => string | number): Map<string | number, number> {
  const m = new Map<string | number, number>();
  for (const x of xs) m.set(by(x), (m.get(by(x)) ?? 0) + 1);
  return m;
}

const FILTERS: Record<string, UsageFilter> = {
  "last 7 days": { since: NOW - 7 * DAY, until: NOW + 1 },
  "one namespace": { since: NOW - 10 * DAY, until: NOW + 1, namespaces: ["team-a"] },
  "an owner": { since: NOW - 10 * DAY, until: NOW - 2 * DAY, owner: "alice" },
  "a selector": { since: NOW - 20 * DAY, until: NOW + 1, selector: "env=prod" },
  "two labels": { since: NOW - 20 * DAY, until: NOW + 1, selector: "env=prod,tier=gold" },
  "a key by name": { since: NOW - 3 * DAY, until: NOW + 1, key: "team-b/billing" },
  "a key by id": { since: NOW - 3 * DAY, until: NOW + 1, key: "kw_srch0001" },
};

describe.skipIf(!havePostgres())("analytics store on SQLite and PostgreSQL", () => {
  let pgc: PostgresCluster;
  let dir: string;
  const stores: Record<"sqlite" | "postgres", AnalyticsStore> = {} as Record<"sqlite" | "postgres", AnalyticsStore>;
  const rows = seedRows();
  const kept = rows.filter((r) => r.at >= Math.floor((NOW - RETENTION) / DAY) * DAY);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "keyward-analytics-"));
    pgc = await startPostgres();
    stores.sqlite = await openAnalyticsStore(options({ sqlitePath: join(dir, "a.sqlite") }), log);
    stores.postgres = await openAnalyticsStore(options({ store: "postgres", postgresUrl: pgc.url() }), log);
    for (const s of Object.values(stores)) {
      await s.upsertKeys(KEYS);
      // In several batches, as the queue writes them: rollups add up across batches.
      for (let i = 0; i < rows.length; i += 97) await s.writeRequests(rows.slice(i, i + 97));
    }
  }, 120_000);

  afterAll(async () => {
    for (const s of Object.values(stores)) await s.close();
    await pgc.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs a query on both backends, expects equal answers, and returns one. */
  async function both<T>(q: (s: AnalyticsStore) => Promise<T>): Promise<T> {
    const [a, b] = await Promise.all([q(stores.sqlite), q(stores.postgres)]);
    expect(b).toEqual(a);
    return a;
  }

  it("keeps per-request rows within retention only, and every request in the rollups", async () => {
    const total = await both((s) => s.queries.timeline({ since: NOW - 60 * DAY, until: NOW + DAY }, "day"));
    expect(total.reduce((n, p) => n + p.requests, 0)).toBe(rows.length);
    const hourly = await both((s) => s.queries.timeline({ since: NOW - 60 * DAY, until: NOW + DAY }, "hour"));
    expect(hourly.reduce((n, p) => n + p.requests, 0)).toBe(kept.length);
    expect(kept.length).toBeLessThan(rows.length);
    // Rows already past retention when written only add to the rollups.
    const file = new DatabaseSync(join(dir, "a.sqlite"), { readOnly: true });
    expect(file.prepare("select count(*) as n from requests").get()).toEqual({ n: kept.length });
    file.close();
    const c = new pg.Client({ connectionString: pgc.url() });
    await c.connect();
    expect((await c.query<{ n: number }>("select count(*)::int as n from requests")).rows[0]).toEqual({ n: kept.length });
    await c.end();
  });

  for (const [name, f] of Object.entries(FILTERS)) {
    it(`top keys, statuses, routes, paths, countries and networks agree with the seed: ${name}`, async () => {
      const want = selected(rows, f);
      expect(want.length).toBeGreaterThan(0);
      const top = await both((s) => s.queries.topKeys(f));
      expect(new Map(top.map((k) => [k.uid, k.requests]))).toEqual(tally(want, (r) => r.uid));
      for (const k of top) {
        const mine = want.filter((r) => r.uid === k.uid);
        expect(k.denied).toBe(mine.filter((r) => r.outcome !== "allowed").length);
        expect(k.status5xx).toBe(mine.filter((r) => clientStatus(r) >= 500).length);
        expect(k.status4xx).toBe(mine.filter((r) => clientStatus(r) >= 400 && clientStatus(r) < 500).length);
      }
      const statuses = await both((s) => s.queries.statusCodes(f));
      expect(new Map(statuses.map((x) => [x.status, x.requests]))).toEqual(tally(want, clientStatus));
      const routes = await both((s) => s.queries.endpoints(f, "route", 100));
      expect(new Map(routes.map((x) => [x.endpoint, x.requests]))).toEqual(tally(want, (r) => r.route ?? ""));
      const paths = await both((s) => s.queries.endpoints(f, "path", 100));
      expect(new Map(paths.map((x) => [x.endpoint, x.requests]))).toEqual(tally(want, (r) => r.path ?? ""));
      const countries = await both((s) => s.queries.countries(f, 100));
      expect(new Map(countries.map((x) => [x.country, x.requests]))).toEqual(tally(want, (r) => r.country ?? ""));
      const nets = await both((s) => s.queries.networks(f, 100));
      expect(new Map(nets.map((x) => [x.network, x.requests]))).toEqual(tally(want, (r) => r.network ?? ""));
      for (const n of nets) {
        const ats = want.filter((r) => r.network === n.network).map((r) => r.at);
        expect([n.firstAt, n.lastAt]).toEqual([Math.min(...ats), Math.max(...ats)]);
      }
    });
  }

  it("one key's timeline: hourly from per-request rows, daily from rollups", async () => {
    const f = { since: NOW - 2 * DAY, until: NOW + 1, key: "team-a/checkout" };
    const hourly = await both((s) => s.queries.timeline(f, "hour"));
    const want = selected(rows, f);
    expect(new Map(hourly.map((p) => [p.at, p.requests]))).toEqual(tally(want, (r) => Math.floor(r.at / HOUR) * HOUR));
    const up = want.filter((r) => r.upstreamMicros !== undefined);
    expect(hourly.reduce((n, p) => n + p.responseBytes, 0)).toBe(up.reduce((n, r) => n + (r.responseBytes ?? 0), 0));
    // Daily over 40 days reaches past the per-request retention: the rollups still have every day.
    const daily = await both((s) => s.queries.timeline({ since: NOW - 39 * DAY - 12 * HOUR, until: NOW + 1, key: "team-a/checkout" }, "day"));
    const all = rows.filter((r) => r.uid === "u-checkout");
    expect(new Map(daily.map((p) => [p.at, p.requests]))).toEqual(tally(all, (r) => Math.floor(r.at / DAY) * DAY));
  });

  it("one key's timeline counts keyward's refusals by status and allowed requests by status class", async () => {
    type Series = Pick<TimelinePoint, "status401" | "status403" | "status429" | "upstream2xx" | "upstream3xx" | "upstream4xx" | "upstream5xx">;
    const series = (rs: readonly RequestRow[]): Series => {
      const refused = (code: number): number => rs.filter((r) => r.outcome !== "allowed" && clientStatus(r) === code).length;
      const allowed = (c: number): number => rs.filter((r) => r.outcome === "allowed" && Math.floor(clientStatus(r) / 100) === c).length;
      return { status401: refused(401), status403: refused(403), status429: refused(429), upstream2xx: allowed(2), upstream3xx: allowed(3), upstream4xx: allowed(4), upstream5xx: allowed(5) };
    };
    const sum = (pts: readonly TimelinePoint[]): Series => {
      const out = series([]);
      for (const k of Object.keys(out) as (keyof Series)[]) out[k] = pts.reduce((n, p) => n + p[k], 0);
      return out;
    };
    const f = { since: NOW - 2 * DAY, until: NOW + 1, key: "team-a/checkout" };
    const want = series(selected(rows, f));
    expect(want.status401 + want.status403 + want.status429).toBeGreaterThan(0);
    expect(want.upstream2xx).toBeGreaterThan(0);
    expect(sum(await both((s) => s.queries.timeline(f, "hour")))).toEqual(want);
    const days = { since: NOW - 39 * DAY - 12 * HOUR, until: NOW + 1, key: "team-a/checkout" };
    expect(sum(await both((s) => s.queries.timeline(days, "day")))).toEqual(series(rows.filter((r) => r.uid === "u-checkout" && r.at >= Math.floor(days.since / DAY) * DAY)));
  });

  it("answers from the rollups, by whole days, for a range older than the retention", async () => {
    const f = { since: NOW - 38 * DAY, until: NOW + 1 };
    const top = await both((s) => s.queries.topKeys(f));
    const fromDay = Math.floor(f.since / DAY) * DAY;
    expect(new Map(top.map((k) => [k.uid, k.requests]))).toEqual(tally(rows.filter((r) => r.at >= fromDay), (r) => r.uid));
    const routes = await both((s) => s.queries.endpoints(f, "route"));
    expect(routes.reduce((n, r) => n + r.requests, 0)).toBe(rows.filter((r) => r.at >= fromDay).length);
  });

  it("answers a range of whole UTC days from the rollups, exactly as from the rows", async () => {
    const today = Math.floor(NOW / DAY) * DAY;
    const whole = { since: today - 5 * DAY, until: today };
    const top = await both((s) => s.queries.topKeys(whole));
    expect(new Map(top.map((k) => [k.uid, k.requests]))).toEqual(tally(selected(rows, whole), (r) => r.uid));
    // One ms less at the end is not whole days: the same figures, from the per-request rows.
    expect(await both((s) => s.queries.statusCodes({ ...whole, until: whole.until - 1 }))).toEqual(await both((s) => s.queries.statusCodes(whole)));
  });

  it("filters to nothing for an empty namespace allow-list or an unmatched selector", async () => {
    expect(await both((s) => s.queries.topKeys({ since: NOW - DAY, until: NOW, namespaces: [] }))).toEqual([]);
    expect(await both((s) => s.queries.topKeys({ since: NOW - DAY, until: NOW, selector: "tier=platinum" }))).toEqual([]);
    // k!=v keeps keys without the label, as kubectl does.
    const notGold = await both((s) => s.queries.topKeys({ since: NOW - DAY, until: NOW + 1, selector: "tier!=gold" }));
    expect(notGold.map((k) => k.uid).sort()).toEqual(["u-billing", "u-search"]);
  });

  it("keeps a deleted ApiKey's history, marked deleted", async () => {
    const top = await both((s) => s.queries.topKeys({ since: NOW - 7 * DAY, until: NOW + 1, key: "team-b/billing" }));
    expect(top).toHaveLength(1);
    expect(top[0]?.deletedAt).toBe(NOW - 2 * HOUR);
    // A late update without deletedAt does not bring the key back.
    for (const s of Object.values(stores)) await s.upsertKeys([{ ...KEYS[2]!, deletedAt: undefined, owner: "carol" }]);
    const again = await both((s) => s.queries.topKeys({ since: NOW - 7 * DAY, until: NOW + 1, key: "team-b/billing" }));
    expect(again[0]).toMatchObject({ owner: "carol", deletedAt: NOW - 2 * HOUR });
  });
});
