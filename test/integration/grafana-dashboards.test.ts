// Every panel and variable query of keyward's Grafana dashboards on the
// PostgreSQL data source, run as Grafana would run it: expanded by the
// expander of test/support/grafana.ts, against a throwaway PostgreSQL 15 whose
// schema and data keyward's own store wrote (seeded usage of three ApiKeys over
// 40 days, 30 days of per-request rows), through a read-only role set up as
// docs/usage.md tells. Each panel's answer is compared with a count made here
// from the seed: every panel must have one.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requestsFrom } from "../../src/analytics/retention.ts";
import type { RequestRow } from "../../src/analytics/row.ts";
import { openAnalyticsStore, type AnalyticsStore } from "../../src/analytics/store.ts";
import { createLogger } from "../../src/log.ts";
import { clientStatus, DAY, HOUR, KEYS, NOW, seedRows } from "../support/analytics-seed.ts";
import { allPanels, expandQuery, postgresDashboards, variableSql, type Dashboard, type Expansion } from "../support/grafana.ts";
import { havePostgres, startPostgres, type PostgresCluster } from "../support/postgres.ts";

const RETENTION = 30 * DAY;
const READER = "grafana_reader";
const READER_PASSWORD = "Reader-pw-53";
const log = createLogger({ level: "warn", sink: () => {} });

type Row = Record<string, unknown>;
type Vars = Expansion["vars"];

const rows = seedRows();
const keptFrom = requestsFrom(NOW, RETENTION);
const kept = rows.filter((r) => r.at >= keptFrom);
const keyByUid = new Map(KEYS.map((k) => [k.uid, k]));
const key = (r: RequestRow) => keyByUid.get(r.uid)!;

/** What a panel should answer for a scenario, from the seed. */
type Expected = (s: Scenario) => Row[];

interface Scenario {
  name: string;
  vars: Vars;
  from: number;
  to: number;
  intervalMs: number;
}

// ---- counting the seed as the panels count it

/** Per-request rows in the range, as `at >= from_s*1000 AND at < to_s*1000` selects them. */
function inRange(s: Scenario, keep: (r: RequestRow) => boolean): RequestRow[] {
  const lo = Math.floor(s.from / 1000) * 1000;
  const hi = Math.floor(s.to / 1000) * 1000;
  return kept.filter((r) => r.at >= lo && r.at < hi && keep(r));
}

/** All requests (the rollups hold them all) of the UTC days the range touches. */
function daysInRange(s: Scenario, keep: (r: RequestRow) => boolean): RequestRow[] {
  const lo = Math.floor(Math.floor(s.from / 1000) / 86_400);
  const hi = Math.floor(Math.floor(s.to / 1000) / 86_400);
  return rows.filter((r) => Math.floor(r.at / DAY) >= lo && Math.floor(r.at / DAY) <= hi && keep(r));
}

function groups<T>(xs: readonly T[], by: (x: T) => readonly (string | number)[]): { key: (string | number)[]; items: T[] }[] {
  const m = new Map<string, { key: (string | number)[]; items: T[] }>();
  for (const x of xs) {
    const k = by(x);
    const id = JSON.stringify(k);
    const g = m.get(id) ?? { key: [...k], items: [] };
    g.items.push(x);
    m.set(id, g);
  }
  return [...m.values()];
}

/** ORDER BY over mixed columns: numbers numerically, strings bytewise (the cluster's C collation); desc columns negated by the caller. */
function cmp(a: readonly (string | number)[], b: readonly (string | number)[]): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x < y) return -1;
    if (x > y) return 1;
  }
  return 0;
}

const sortBy = <T,>(xs: T[], by: (x: T) => (string | number)[]): T[] => xs.sort((a, b) => cmp(by(a), by(b)));

const bucket = (at: number, s: Scenario): number => {
  const sec = s.intervalMs / 1000;
  return Math.floor(Math.floor(at / 1000) / sec) * sec;
};
const denied = (r: RequestRow): boolean => r.outcome !== "allowed";

/** percentile_disc: the first value whose position in the ordering reaches the fraction; null without values. */
function p99(values: readonly (number | undefined)[]): number | null {
  const v = values.filter((x): x is number => x !== undefined).sort((a, b) => a - b);
  return v.length === 0 ? null : v[Math.ceil(0.99 * v.length - 1e-9) - 1]!;
}
const ms = (micros: number | null): number | null => (micros === null ? null : micros / 1000);
const maxOf = (values: readonly (number | undefined)[]): number | null => {
  const v = values.filter((x): x is number => x !== undefined);
  return v.length ? Math.max(...v) : null;
};

function series(xs: RequestRow[], s: Scenario, metric: (r: RequestRow) => string): Row[] {
  return sortBy(
    groups(xs, (r) => [bucket(r.at, s), metric(r)]).map((g) => ({ time: (g.key[0] as number) * 1000, metric: g.key[1], value: g.items.length })),
    (x) => [x.time, x.metric as string],
  );
}

function daily(xs: RequestRow[], metric: (r: RequestRow) => string, value: (items: RequestRow[]) => number = (i) => i.length): Row[] {
  return sortBy(
    groups(xs, (r) => [Math.floor(r.at / DAY) * DAY, metric(r)]).map((g) => ({ time: g.key[0], metric: g.key[1], value: value(g.items) })),
    (x) => [x.time as number, x.metric as string],
  );
}

/** p99 (and max) of the check's and the upstream's latency per interval, in ms, in the panels' column order. */
function latency(xs: RequestRow[], s: Scenario, withMax: boolean): Row[] {
  return sortBy(
    groups(xs, (r) => [bucket(r.at, s)]).map((g) => {
      const check = g.items.map((r) => r.checkMicros);
      const upstream = g.items.map((r) => r.upstreamMicros);
      return {
        time: (g.key[0] as number) * 1000,
        "check p99": ms(p99(check)),
        ...(withMax ? { "check max": ms(maxOf(check)) } : {}),
        "upstream p99": ms(p99(upstream)),
        ...(withMax ? { "upstream max": ms(maxOf(upstream)) } : {}),
      };
    }),
    (x) => [x.time],
  );
}

type Measure = (items: RequestRow[]) => number;
const deniedN: Measure = (i) => i.filter(denied).length;
const fiveXX: Measure = (i) => i.filter((r) => clientStatus(r) >= 500).length;
const keysN: Measure = (i) => new Set(i.map((r) => r.uid)).size;

/** A table grouped by some columns: `requests`, then the other measures; most requests first, then by the columns. */
function ranked(xs: RequestRow[], columns: Record<string, (r: RequestRow) => string>, measures: Record<string, Measure>): Row[] {
  const names = Object.keys(columns);
  const out = groups(xs, (r) => names.map((n) => columns[n]!(r))).map((g): Row & { requests: number } => ({
    ...Object.fromEntries(names.map((n, i) => [n, g.key[i]])),
    requests: g.items.length,
    ...Object.fromEntries(Object.entries(measures).map(([n, m]) => [n, m(g.items)])),
  }));
  return sortBy(out, (x) => [-x.requests, ...names.map((n) => x[n] as string)]);
}

const statusClass = (n: number): string => `${Math.floor(n / 100)}xx`;
const str = (v: string | readonly string[] | undefined): string => (typeof v === "string" ? v : "");
const list = (v: string | readonly string[] | undefined): readonly string[] => (typeof v === "string" ? [v] : (v ?? []));

// ---- the filters of each dashboard

const oneKey = (s: Scenario) => (r: RequestRow) => key(r).namespace === str(s.vars.namespace) && key(r).name === str(s.vars.apikey);

/** The selector as the owner dashboard reads it: comma-separated `name=value` or `name` terms, all must hold. */
function selects(selector: string, labels: Readonly<Record<string, string>>): boolean {
  return selector
    .split(",")
    .filter((t) => t.trim() !== "")
    .every((t) => {
      const [name, value] = [t.split("=")[0]!.trim(), t.includes("=") ? (t.split("=")[1] ?? "").trim() : undefined];
      return name in labels && (value === undefined || labels[name] === value);
    });
}
const ownerAndTags = (s: Scenario) => (r: RequestRow) => list(s.vars.owner).includes(key(r).owner) && selects(str(s.vars.selector), key(r).labels);
const namespaces = (s: Scenario) => (r: RequestRow) => list(s.vars.namespace).includes(key(r).namespace);

const EXPECTED: Record<string, Expected> = {
  "keyward-analytics-key/Requests by outcome": (s) => series(inRange(s, oneKey(s)), s, (r) => r.outcome),
  "keyward-analytics-key/Requests by upstream status class": (s) => series(inRange(s, oneKey(s)), s, (r) => (r.upstreamStatus === undefined ? "none" : statusClass(r.upstreamStatus))),
  "keyward-analytics-key/Latency": (s) => latency(inRange(s, oneKey(s)), s, true),
  "keyward-analytics-key/Top endpoints": (s) =>
    ranked(inRange(s, oneKey(s)), { route: (r) => r.route ?? "", path: (r) => r.path ?? "" }, { denied: deniedN, "upstream 5xx": (i) => i.filter((r) => (r.upstreamStatus ?? 0) >= 500).length }).slice(0, 20),
  "keyward-analytics-key/Countries": (s) => ranked(inRange(s, oneKey(s)), { country: (r) => r.country ?? "unknown" }, {}),
  "keyward-analytics-key/Recent denials": (s) =>
    inRange(s, (r) => oneKey(s)(r) && denied(r))
      .sort((a, b) => b.at - a.at || ((b.requestId ?? "") < (a.requestId ?? "") ? -1 : (b.requestId ?? "") > (a.requestId ?? "") ? 1 : 0))
      .slice(0, 50)
      .map((r) => ({ time: r.at, key_id: r.keyId, method: r.method, path: r.path, reason: r.reason, status: r.status, source: r.source, country: r.country ?? "unknown" })),
  "keyward-analytics-key/Daily requests by status class (rollups)": (s) => daily(daysInRange(s, oneKey(s)), (r) => statusClass(clientStatus(r))),

  "keyward-analytics-owner/Daily requests by owner": (s) => daily(daysInRange(s, ownerAndTags(s)), (r) => key(r).owner),
  "keyward-analytics-owner/ApiKeys": (s) =>
    sortBy(
      groups(daysInRange(s, ownerAndTags(s)), (r) => [r.uid]).map((g) => {
        const k = keyByUid.get(g.key[0] as string)!;
        return {
          namespace: k.namespace,
          name: k.name,
          owner: k.owner,
          requests: g.items.length,
          denied: deniedN(g.items),
          "4xx": g.items.filter((r) => clientStatus(r) >= 400 && clientStatus(r) <= 499).length,
          "5xx": fiveXX(g.items),
          "last day": Math.max(...g.items.map((r) => Math.floor(r.at / DAY))) * DAY,
          state: k.deletedAt === undefined ? "" : "deleted",
        };
      }),
      (x) => [-(x.requests), x.namespace, x.name],
    ),
  "keyward-analytics-owner/Daily error ratio by owner": (s) => daily(daysInRange(s, ownerAndTags(s)), (r) => key(r).owner, (items) => items.filter((r) => clientStatus(r) >= 500).length / items.length),

  "keyward-analytics-overview/Daily status codes (rollups)": (s) => daily(daysInRange(s, namespaces(s)), (r) => String(clientStatus(r))),
  "keyward-analytics-overview/Top routes (rollups)": (s) => ranked(daysInRange(s, namespaces(s)), { route: (r) => r.route ?? "(no route)" }, { denied: deniedN, "5xx": fiveXX }).slice(0, 20),
  "keyward-analytics-overview/Top raw paths": (s) => ranked(inRange(s, namespaces(s)), { method: (r) => r.method ?? "", path: (r) => r.path ?? "" }, { keys: keysN }).slice(0, 20),
  "keyward-analytics-overview/Check and upstream latency p99": (s) => latency(inRange(s, namespaces(s)), s, false),
  "keyward-analytics-overview/Countries (rollups)": (s) => ranked(daysInRange(s, namespaces(s)), { country: (r) => r.country ?? "unknown" }, { denied: deniedN, keys: keysN }),
};

/** What each variable query should list. */
const VARIABLES: Record<string, (vars: Vars) => string[]> = {
  "keyward-analytics-key/namespace": () => [...new Set(KEYS.map((k) => k.namespace))].sort(),
  "keyward-analytics-key/apikey": (v) => KEYS.filter((k) => k.namespace === str(v.namespace)).map((k) => k.name).sort(),
  "keyward-analytics-owner/owner": () => [...new Set(KEYS.map((k) => k.owner))].sort(),
  "keyward-analytics-overview/namespace": () => [...new Set(KEYS.map((k) => k.namespace))].sort(),
};

const WEEK = { from: NOW - 7 * DAY, to: NOW, intervalMs: HOUR };
const FORTY_DAYS = { from: NOW - 40 * DAY, to: NOW, intervalMs: 6 * HOUR };
const ALL_NAMESPACES = ["team-a", "team-b"];
const SCENARIOS: Record<string, Scenario[]> = {
  "keyward-analytics-key": [
    { name: "checkout, last 7 days", vars: { namespace: "team-a", apikey: "checkout" }, ...WEEK },
    { name: "billing (deleted), last 40 days: rollups beyond retention", vars: { namespace: "team-b", apikey: "billing" }, ...FORTY_DAYS },
    { name: "search, an odd range", vars: { namespace: "team-a", apikey: "search" }, from: NOW - 3 * DAY - 17 * 60_000 - 500, to: NOW - DAY + 123_456, intervalMs: 30 * 60_000 },
  ],
  "keyward-analytics-owner": [
    { name: "every owner, no selector", vars: { owner: ["alice", "bob"], selector: "" }, ...FORTY_DAYS },
    { name: "alice", vars: { owner: ["alice"], selector: "" }, ...FORTY_DAYS },
    { name: "every owner, env=prod", vars: { owner: ["alice", "bob"], selector: "env=prod" }, ...FORTY_DAYS },
    { name: "every owner, env=prod and tier=gold, spaces", vars: { owner: ["alice", "bob"], selector: " env = prod , tier=gold" }, ...WEEK },
    { name: "every owner, tier=silver: the value counts", vars: { owner: ["alice", "bob"], selector: "tier=silver" }, ...FORTY_DAYS },
    { name: "every owner, env=staging: nothing", vars: { owner: ["alice", "bob"], selector: "env=staging" }, ...WEEK },
    { name: "every owner, tier set", vars: { owner: ["alice", "bob"], selector: "tier" }, ...WEEK },
    { name: "bob, env=prod: nothing", vars: { owner: ["bob"], selector: "env=prod" }, ...FORTY_DAYS },
  ],
  "keyward-analytics-overview": [
    { name: "every namespace, last 7 days", vars: { namespace: ALL_NAMESPACES }, ...WEEK },
    { name: "team-b, last 40 days", vars: { namespace: ["team-b"] }, ...FORTY_DAYS },
  ],
};

describe.skipIf(!havePostgres())("Grafana dashboards against PostgreSQL", () => {
  let pgc: PostgresCluster;
  let store: AnalyticsStore;
  let reader: pg.Client;
  const dashboards = postgresDashboards();

  beforeAll(async () => {
    pgc = await startPostgres();
    store = await openAnalyticsStore(
      { store: "postgres", sqlitePath: "", postgresUrl: pgc.url(), retentionMs: RETENTION, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => NOW },
      log,
    );
    await store.upsertKeys(KEYS);
    for (let i = 0; i < rows.length; i += 97) await store.writeRequests(rows.slice(i, i + 97));
    // The read-only role docs/usage.md suggests for Grafana's data source, granted by the store's owner.
    await pgc.query(`create role ${READER} login password '${READER_PASSWORD}'`);
    const owner = new pg.Client({ connectionString: pgc.url() });
    await owner.connect();
    try {
      for (const g of [
        `GRANT CONNECT ON DATABASE keyward TO ${READER}`,
        `GRANT USAGE ON SCHEMA public TO ${READER}`,
        `GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${READER}`,
        `ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO ${READER}`,
      ])
        await owner.query(g);
    } finally {
      await owner.end();
    }
    reader = new pg.Client({ connectionString: pgc.url({ user: READER, password: READER_PASSWORD }) });
    // bigint and numeric as numbers, as Grafana reads them into number fields.
    reader.setTypeParser(pg.types.builtins.INT8, Number);
    reader.setTypeParser(pg.types.builtins.NUMERIC, Number);
    await reader.connect();
  }, 120_000);

  afterAll(async () => {
    await reader.end();
    await store.close();
    await pgc.remove();
  });

  async function run(sql: string, s: Scenario): Promise<Row[]> {
    const res = await reader.query(expandQuery(sql, s));
    // Times in ms: timestamps as they are, a series' epoch seconds scaled.
    return res.rows.map((r: Row) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v instanceof Date ? v.getTime() : v === null ? null : typeof v === "number" && k === "time" ? v * 1000 : v])));
  }

  it("has seeded data on both sides of the retention window", () => {
    expect(kept.length).toBeGreaterThan(100);
    expect(rows.length - kept.length).toBeGreaterThan(20);
  });

  it("has an expected answer for every panel and every variable", () => {
    const panels = dashboards.flatMap(({ dashboard: d }) => allPanels(d).filter((p) => p.type !== "row").map((p) => `${d.uid}/${p.title}`));
    expect(panels.sort()).toEqual(Object.keys(EXPECTED).sort());
    const vars = dashboards.flatMap(({ dashboard: d }) => d.templating.list.filter((v) => v.type === "query").map((v) => `${d.uid}/${v.name}`));
    expect(vars.sort()).toEqual(Object.keys(VARIABLES).sort());
  });

  for (const { dashboard } of postgresDashboards()) {
    describe(dashboard.uid, () => {
      const d: Dashboard = dashboard;
      for (const s of SCENARIOS[d.uid] ?? []) {
        it(`answers the variable queries: ${s.name}`, async () => {
          for (const v of d.templating.list.filter((x) => x.type === "query")) {
            const got = (await run(variableSql(v) ?? "", s)).map((r) => Object.values(r)[0]);
            expect(got, v.name).toEqual(VARIABLES[`${d.uid}/${v.name}`]!(s.vars));
          }
        });

        it(`answers every panel with the seed's figures: ${s.name}`, async () => {
          let nonEmpty = 0;
          for (const p of allPanels(d).filter((x) => x.type !== "row")) {
            for (const t of p.targets ?? []) {
              const got = await run(t.rawSql ?? "", s);
              const want = EXPECTED[`${d.uid}/${p.title}`]!(s);
              expect(got, p.title).toEqual(want);
              if (got.length > 0) nonEmpty++;
            }
          }
          // The seed reaches every panel of a scenario that selects anything.
          if (!s.name.endsWith("nothing")) expect(nonEmpty).toBe(allPanels(d).filter((x) => x.type !== "row").length);
        });
      }
    });
  }

  it("checks a seeded figure by hand: checkout's requests over the last 7 days", async () => {
    const d = dashboards.find((x) => x.dashboard.uid === "keyward-analytics-key")!.dashboard;
    const panel = allPanels(d).find((p) => p.title === "Requests by outcome")!;
    const got = await run(panel.targets![0]!.rawSql!, { name: "", vars: { namespace: "team-a", apikey: "checkout" }, ...WEEK });
    const total = got.reduce((n, r) => n + (r.value as number), 0);
    expect(total).toBe(rows.filter((r) => r.uid === "u-checkout" && r.at >= NOW - 7 * DAY && r.at < NOW).length);
    expect(total).toBeGreaterThan(20);
  });

  it("treats a quote in a variable as data: no rows, no error, nothing changed", async () => {
    const evil: Scenario = { name: "evil", vars: { namespace: "team-a' OR '1'='1", apikey: "x'; DROP TABLE keys; --", owner: ["alice') OR ('1'='1"], selector: "env=prod') OR ('1'='1" }, ...FORTY_DAYS };
    for (const { dashboard: d } of dashboards) {
      for (const p of allPanels(d).filter((x) => x.type !== "row")) {
        for (const t of p.targets ?? []) expect(await run(t.rawSql ?? "", evil), `${d.uid}/${p.title}`).toEqual([]);
      }
    }
    expect((await reader.query("select count(*) as n from keys")).rows[0]).toEqual({ n: KEYS.length });
  });

  it("reads through a role that can only read", async () => {
    await expect(reader.query("DELETE FROM requests")).rejects.toThrow(/permission denied/);
    await expect(reader.query("INSERT INTO keys (uid, namespace, name, owner, scopes, created_at, updated_at) VALUES ('x', 'x', 'x', 'x', '[]', 0, 0)")).rejects.toThrow(/permission denied/);
    await expect(reader.query("CREATE TABLE mine (x int)")).rejects.toThrow(/permission denied/);
  });
});
