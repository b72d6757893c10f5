// The analytics store's costs, on SQLite (a file in a temporary directory) and on a
// throwaway PostgreSQL 15 cluster (test/support/postgres.ts, fsync off as in the test
// clusters), with synthetic rows spread evenly over 30 days (--keys ApiKeys, 20 routes,
// 10 countries, 80% allowed with the upstream's answer):
//   - write rate: --write-rows rows through AnalyticsStore.writeRequests in batches of
//     1000, one batch at a time (what the ingest queue does), into a fresh store; events
//     per CPU-second of this process plus, for PostgreSQL, of its server processes (/proc);
//   - bytes per event on disk, of those rows: the SQLite file (after its WAL is
//     checkpointed at close), or PostgreSQL's request partitions with their indexes plus
//     the rollups (after VACUUM ANALYZE);
//   - query latency over --rows rows (median of --repeat runs): top keys over the 30 days
//     (whole days, from the rollups; and one ms short, from the per-request rows), one
//     key's hourly timeline over the last 7 days and daily timeline over 30. The rows are
//     seeded in the database itself (generate_series on PostgreSQL, a recursive CTE in one
//     transaction on SQLite), then the rollups computed from them as the writer adds them
//     up; one row per day goes through the writer first, which creates PostgreSQL's day
//     partitions;
//   - the time to drop the oldest day (retention with the clock a day later).
//
//   node bench/analytics.ts [--rows 100000] [--write-rows 100000] [--keys 1000]
//                           [--backend both|sqlite|postgres] [--repeat 3]
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";
import pg from "pg";
import type { RequestRow } from "../src/analytics/row.ts";
import { SEGMENT_ROWS } from "../src/analytics/schema.ts";
import { openAnalyticsStore, type AnalyticsStore } from "../src/analytics/store.ts";
import { createLogger } from "../src/log.ts";
import { startPostgres, type PostgresCluster } from "../test/support/postgres.ts";
import { procStatFields } from "../test/support/proc.ts";

const DAY = 86_400_000;
const END = Date.UTC(2026, 5, 30);
const START = END - 30 * DAY;
const COUNTRIES = ["DE", "US", "FR", "GB", "NL", "SE", "JP", "BR", "IN", "private"];
const log = createLogger({ level: "warn" });

export type StoreKind = "sqlite" | "postgres";

export interface StoreBenchOptions {
  /** Rows seeded for the queries and the day drop. */
  rows: number;
  /** Rows written through the writer for the write rate and bytes per event. */
  writeRows: number;
  keys: number;
  repeat: number;
}

export interface StoreBenchResult {
  backend: StoreKind;
  keys: number;
  writeRows: number;
  writeSeconds: number;
  eventsPerSecond: number;
  eventsPerCpuSecond: number;
  /** PostgreSQL: events per CPU-second of the database server's processes alone. */
  serverEventsPerCpuSecond?: number;
  bytesPerEvent: number;
  rows: number;
  seedSeconds: number;
  topKeysMs: number;
  topKeysRowsMs: number;
  hourlyTimelineMs: number;
  dailyTimelineMs: number;
  dropDayMs: number;
  droppedDay: number;
}

/** What a synthetic request asked and what keyward answered: `GET /v1/items<route>/<i % 5000>`, allowed or refused for a scope. */
export function shopRequest(route: number, i: number, allowed: boolean): Pick<RequestRow, "policy" | "rule" | "route" | "method" | "host" | "path" | "outcome" | "reason" | "status"> {
  return {
    policy: "shop/api",
    rule: "main",
    route: `GET /v1/items${route}/{id}`,
    method: "GET",
    host: "api.example.com",
    path: `/v1/items${route}/${i % 5000}`,
    outcome: allowed ? "allowed" : "forbidden",
    reason: allowed ? "allowed" : "scope_missing",
    status: allowed ? 200 : 403,
  };
}

/** Row i of n, as the seeding SQL below makes it. */
function row(i: number, n: number, keys: number): RequestRow {
  const k = (i * 7919) % keys;
  const route = i % 20;
  const allowed = i % 10 < 8;
  return {
    at: START + Math.floor((i * 30 * DAY) / n),
    requestId: `r${i}`,
    uid: `uid-${k}`,
    keyId: `kw_${k}`,
    front: "grpc",
    ...shopRequest(route, i, allowed),
    source: `203.0.${i % 256}.${Math.floor(i / 256) % 256}`,
    network: `203.0.${i % 256}.0/24`,
    country: COUNTRIES[i % 10]!,
    checkMicros: 40 + (i % 60),
    ...(allowed ? { upstreamStatus: i % 50 === 0 ? 503 : 200, upstreamMicros: 800 + (i % 900), requestBytes: 200 + (i % 100), responseBytes: 1500 + (i % 3000) } : {}),
  };
}

/** The same rows in SQL, over `i` (a bigint) from the source the dialect gives; both dialects read it alike. */
function seedSelect(n: number, keys: number): string {
  const ok = "i % 10 < 8";
  return `select ${START} + (i * ${30 * DAY}) / ${n}, 'r' || i, 'uid-' || (i * 7919 % ${keys}), 'kw_' || (i * 7919 % ${keys}), 'grpc', 'shop/api', 'main',
    'GET /v1/items' || (i % 20) || '/{id}', 'GET', 'api.example.com', '/v1/items' || (i % 20) || '/' || (i % 5000),
    case when ${ok} then 'allowed' else 'forbidden' end, case when ${ok} then 'allowed' else 'scope_missing' end, case when ${ok} then 200 else 403 end,
    '203.0.' || (i % 256) || '.' || ((i / 256) % 256), '203.0.' || (i % 256) || '.0/24',
    case i % 10 ${COUNTRIES.map((c, j) => `when ${j} then '${c}'`).join(" ")} end, 40 + i % 60,
    case when ${ok} then (case when i % 50 = 0 then 503 else 200 end) end, case when ${ok} then 800 + i % 900 end,
    case when ${ok} then 200 + i % 100 end, case when ${ok} then 1500 + i % 3000 end`;
}

const REQUEST_COLUMNS_SQL =
  "at, request_id, uid, key_id, front, policy, rule, route, method, host, path, outcome, reason, status, source, network, country, check_micros, upstream_status, upstream_micros, request_bytes, response_bytes";

/** The rollups of every stored row, as the writer adds them up (src/analytics/writer.ts rollupIncrements). */
const ROLLUPS_FROM_ROWS = `insert into rollups (day, uid, key_id, route, status, country, outcome, n, check_micros_sum, check_micros_max, upstream_n, upstream_micros_sum, upstream_micros_max, request_bytes, response_bytes)
  select at / ${DAY}, uid, key_id, coalesce(route, ''), coalesce(upstream_status, status), coalesce(country, ''), outcome, count(*), sum(check_micros), max(check_micros),
    count(upstream_micros), coalesce(sum(upstream_micros), 0), coalesce(max(upstream_micros), 0), coalesce(sum(request_bytes), 0), coalesce(sum(response_bytes), 0)
  from requests group by 1, 2, 3, 4, 5, 6, 7`;

/** PostgreSQL's index on the per-request rows (src/analytics/schema.ts). */
const INDEXES = [{ name: "requests_uid_at", create: "create index requests_uid_at on requests (uid, at)" }];

/** user+system CPU seconds of a process and its children processes, from /proc (PostgreSQL's server). */
function serverCpuSeconds(postmasterPid: number): number {
  const tick = 100;
  let total = 0;
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const f = procStatFields(d);
      const pid = Number(d);
      const ppid = Number(f[1]);
      if (pid === postmasterPid || ppid === postmasterPid) total += (Number(f[11]) + Number(f[12])) / tick;
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const round1 = (x: number): number => Math.round(x * 10) / 10;

/** The median of `repeat` runs; a query slower than 10 s runs once. */
async function timed(repeat: number, fn: () => Promise<unknown>): Promise<number> {
  const runs: number[] = [];
  for (let i = 0; i < repeat && !(runs[0]! > 10_000); i++) {
    const t = performance.now();
    await fn();
    runs.push(performance.now() - t);
  }
  return median(runs);
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

function keyRecords(keys: number): Parameters<AnalyticsStore["upsertKeys"]>[0] {
  return Array.from({ length: keys }, (_, k) => ({ uid: `uid-${k}`, namespace: `team-${k % 10}`, name: `key-${k}`, owner: `owner-${k % 50}`, labels: { tier: k % 3 ? "std" : "gold" }, scopes: [], createdAt: START }));
}

async function benchOne(kind: StoreKind, o: StoreBenchOptions): Promise<StoreBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), "keyward-bench-analytics-"));
  let cluster: PostgresCluster | undefined;
  let now = END;
  try {
    if (kind === "postgres") {
      cluster = await startPostgres();
      await cluster.query("create database written owner keyward");
    }
    const open = (file: string, database: string): Promise<AnalyticsStore> =>
      openAnalyticsStore({ store: kind, sqlitePath: join(dir, file), postgresUrl: cluster?.url({ database }) ?? "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => now }, log);

    // The write rate, and bytes per event of rows as the writer stores them.
    const w = await open("written.sqlite", "written");
    await w.upsertKeys(keyRecords(o.keys));
    const postmaster = cluster ? Number(readFileSync(join(cluster.dir, "data", "postmaster.pid"), "utf8").split("\n")[0]) : 0;
    const cpu0 = process.cpuUsage();
    const srv0 = cluster ? serverCpuSeconds(postmaster) : 0;
    const t0 = performance.now();
    for (let i = 0; i < o.writeRows; i += 1000) {
      await w.writeRequests(Array.from({ length: Math.min(1000, o.writeRows - i) }, (_, j) => row(i + j, o.writeRows, o.keys)));
    }
    const writeSeconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const serverCpu = cluster ? serverCpuSeconds(postmaster) - srv0 : 0;
    const cpuSeconds = (cpu.user + cpu.system) / 1e6 + serverCpu;
    await w.close();
    let bytes: number;
    if (cluster) {
      bytes = await withClient(cluster.url({ database: "written" }), async (c) => {
        await c.query("vacuum analyze");
        const r = await c.query<{ b: string }>("select (select coalesce(sum(pg_total_relation_size(inhrelid)), 0) from pg_inherits where inhparent = 'requests'::regclass) + pg_total_relation_size('rollups') as b");
        return Number(r.rows[0]!.b);
      });
    } else {
      const f = join(dir, "written.sqlite");
      bytes = statSync(f).size + (statSync(`${f}-wal`, { throwIfNoEntry: false })?.size ?? 0);
    }

    // The queries and the day drop over `rows` seeded rows.
    const s = await open("seeded.sqlite", "keyward");
    await s.upsertKeys(keyRecords(o.keys));
    const t1 = performance.now();
    // One row per day through the writer: PostgreSQL's partitions for the 30 days.
    await s.writeRequests(Array.from({ length: 30 }, (_, d) => row(Math.ceil((d * o.rows) / 30), o.rows, o.keys)));
    const skip = new Set(Array.from({ length: 30 }, (_, d) => Math.ceil((d * o.rows) / 30)));
    const except = [...skip].join(", ");
    // The rows go in without their indexes, which are built after, sorted, in one pass each.
    if (cluster) {
      await withClient(cluster.url(), async (c) => {
        await c.query(INDEXES.map((x) => `drop index ${x.name}`).join("; "));
        await c.query(`insert into requests (${REQUEST_COLUMNS_SQL}) ${seedSelect(o.rows, o.keys)} from generate_series(0::bigint, ${o.rows - 1}) as g(i) where i not in (${except})`);
        await c.query(INDEXES.map((x) => x.create).join("; "));
        await c.query("delete from rollups");
        await c.query(ROLLUPS_FROM_ROWS);
        await c.query("vacuum analyze");
      });
    } else {
      await s.close();
      const db = new DatabaseSync(join(dir, "seeded.sqlite"));
      // SQLite's own indexes on the rows (requests_at, requests_seg_uid_at), as the schema made them.
      const indexes = db.prepare("select name, sql from sqlite_master where type = 'index' and tbl_name = 'requests' and sql is not null").all() as { name: string; sql: string }[];
      db.exec("begin immediate");
      db.exec(indexes.map((x) => `drop index ${x.name};`).join(" "));
      // The rows in segments of SEGMENT_ROWS in time order, as the writer fills them (ADR 62).
      db.exec(
        `insert into requests (${REQUEST_COLUMNS_SQL}, seg) with recursive g(i) as (select 0 union all select i + 1 from g where i < ${o.rows - 1}) ${seedSelect(o.rows, o.keys)}, 1000000 + i / ${SEGMENT_ROWS} from g where i not in (${except})`,
      );
      db.exec("insert or replace into request_segments (seg, first_at, last_at, n) select seg, min(at), max(at), count(*) from requests group by seg");
      db.exec(indexes.map((x) => `${x.sql};`).join(" "));
      db.exec("delete from rollups");
      db.exec(ROLLUPS_FROM_ROWS);
      db.exec("commit");
      db.exec("analyze");
      db.close();
    }
    const seedSeconds = (performance.now() - t1) / 1000;
    const q = kind === "sqlite" ? await open("seeded.sqlite", "keyward") : s;
    const all = { since: START, until: END };
    // Whole days: from the rollups. One ms off: from the per-request rows.
    const topKeysMs = await timed(o.repeat, () => q.queries.topKeys(all, 20));
    const topKeysRowsMs = await timed(o.repeat, () => q.queries.topKeys({ since: START + 1, until: END }, 20));
    const hourlyTimelineMs = await timed(o.repeat, () => q.queries.timeline({ since: END - 7 * DAY, until: END, key: "team-7/key-7" }, "hour"));
    const dailyTimelineMs = await timed(o.repeat, () => q.queries.timeline({ ...all, key: "team-7/key-7" }, "day"));
    now = END + DAY;
    const t2 = performance.now();
    const dropped = await q.runRetention();
    const dropDayMs = performance.now() - t2;
    await q.close();
    return {
      backend: kind,
      keys: o.keys,
      writeRows: o.writeRows,
      writeSeconds: round1(writeSeconds),
      eventsPerSecond: Math.round(o.writeRows / writeSeconds),
      eventsPerCpuSecond: Math.round(o.writeRows / cpuSeconds),
      ...(cluster ? { serverEventsPerCpuSecond: Math.round(o.writeRows / serverCpu) } : {}),
      bytesPerEvent: Math.round(bytes / o.writeRows),
      rows: o.rows,
      seedSeconds: round1(seedSeconds),
      topKeysMs: round1(topKeysMs),
      topKeysRowsMs: round1(topKeysRowsMs),
      hourlyTimelineMs: round1(hourlyTimelineMs),
      dailyTimelineMs: round1(dailyTimelineMs),
      dropDayMs: round1(dropDayMs),
      droppedDay: dropped.requests,
    };
  } finally {
    await cluster?.remove();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runAnalyticsStoreBench(kinds: StoreKind[], o: StoreBenchOptions, progress: (s: string) => void): Promise<StoreBenchResult[]> {
  const out: StoreBenchResult[] = [];
  for (const k of kinds) {
    progress(`analytics store ${k}: ${o.writeRows} rows through the writer, ${o.rows} seeded`);
    const r = await benchOne(k, o);
    progress(`analytics store ${k}: ${JSON.stringify(r)}`);
    out.push(r);
  }
  return out;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      rows: { type: "string", default: "100000" },
      "write-rows": { type: "string", default: "100000" },
      keys: { type: "string", default: "1000" },
      backend: { type: "string", default: "both" },
      repeat: { type: "string", default: "3" },
    },
  });
  const kinds: StoreKind[] = values.backend === "both" ? ["sqlite", "postgres"] : [values.backend as StoreKind];
  const res = await runAnalyticsStoreBench(kinds, { rows: Number(values.rows), writeRows: Number(values["write-rows"]), keys: Number(values.keys), repeat: Number(values.repeat) }, (s) => {
    console.error(`[analytics] ${s}`);
  });
  for (const r of res) process.stdout.write(`${JSON.stringify(r)}\n`);
}
