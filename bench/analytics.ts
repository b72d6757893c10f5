// The analytics store's costs, on SQLite (a file in a temporary directory) and
// on a throwaway PostgreSQL cluster (test/support/postgres.ts), with the same
// synthetic rows spread evenly over 30 days (--keys keys, 20 routes, 10 countries):
//   - write rate: batches of 1000 rows through AnalyticsStore.writeRequests, one
//     batch at a time; events per CPU-second of this process plus, for
//     PostgreSQL, of its server processes (/proc);
//   - bytes per event on disk: the SQLite file and its WAL, or PostgreSQL's
//     request partitions with their indexes, plus the rollups, over the rows;
//   - query latency (median of --repeat runs): top keys over the 30 days (whole
//     days, from the rollups; and one ms short, from the per-request rows), one
//     key's hourly timeline over the last 7 days and daily timeline over 30;
//   - the time to drop the oldest day (retention with the clock a day later).
//
//   node bench/analytics.ts [--rows 1000000] [--keys 1000] [--backend both|sqlite|postgres]
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import type { RequestRow } from "../src/analytics/row.ts";
import { openAnalyticsStore, type AnalyticsStore } from "../src/analytics/store.ts";
import { createLogger } from "../src/log.ts";
import { startPostgres, type PostgresCluster } from "../test/support/postgres.ts";

const DAY = 86_400_000;
const { values } = parseArgs({
  options: {
    rows: { type: "string", default: "1000000" },
    keys: { type: "string", default: "1000" },
    backend: { type: "string", default: "both" },
    repeat: { type: "string", default: "5" },
  },
});
const ROWS = Number(values.rows);
const KEYS = Number(values.keys);
const REPEAT = Number(values.repeat);
const END = Date.UTC(2026, 5, 30);
const START = END - 30 * DAY;
const log = createLogger({ level: "warn" });

function row(i: number): RequestRow {
  const k = (i * 7919) % KEYS;
  const route = i % 20;
  const allowed = i % 10 < 8;
  return {
    at: START + Math.floor((i / ROWS) * 30 * DAY),
    requestId: `r${i.toString(36)}-${(i * 2654435761) % 1_000_000_007}`,
    uid: `uid-${k}`,
    keyId: `kw_${k.toString(36).padStart(8, "0")}`,
    front: "grpc",
    policy: "shop/api",
    rule: "main",
    route: `GET /v1/items${route}/{id}`,
    method: "GET",
    host: "api.example.com",
    path: `/v1/items${route}/${i % 5000}`,
    outcome: allowed ? "allowed" : "forbidden",
    reason: allowed ? "allowed" : "scope_missing",
    status: allowed ? 200 : 403,
    source: `203.0.${i % 256}.${(i >> 8) % 256}`,
    network: `203.0.${i % 256}.0/24`,
    country: ["DE", "US", "FR", "GB", "NL", "SE", "JP", "BR", "IN", "private"][i % 10]!,
    checkMicros: 40 + (i % 60),
    ...(allowed ? { upstreamStatus: i % 50 === 0 ? 503 : 200, upstreamMicros: 800 + (i % 900), requestBytes: 200 + (i % 100), responseBytes: 1500 + (i % 3000) } : {}),
  };
}

/** user+system CPU seconds of a process and its children processes, from /proc (PostgreSQL's server). */
function serverCpuSeconds(postmasterPid: number): number {
  const tick = 100;
  let total = 0;
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
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

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const runs: number[] = [];
  for (let i = 0; i < REPEAT; i++) {
    const t = performance.now();
    await fn();
    runs.push(performance.now() - t);
  }
  return median(runs);
}

interface Result {
  backend: string;
  rows: number;
  writeSeconds: number;
  eventsPerSecond: number;
  eventsPerCpuSecond: number;
  bytesPerEvent: number;
  topKeysMs: number;
  topKeysRowsMs: number;
  hourlyTimelineMs: number;
  dailyTimelineMs: number;
  dropDayMs: number;
  droppedDay: number;
}

async function bench(kind: "sqlite" | "postgres"): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), "keyward-bench-analytics-"));
  let cluster: PostgresCluster | undefined;
  let now = END;
  try {
    if (kind === "postgres") cluster = await startPostgres();
    const path = join(dir, "analytics.sqlite");
    const store: AnalyticsStore = await openAnalyticsStore(
      { store: kind, sqlitePath: path, postgresUrl: cluster?.url() ?? "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => now },
      log,
    );
    await store.upsertKeys(Array.from({ length: KEYS }, (_, k) => ({ uid: `uid-${k}`, namespace: `team-${k % 10}`, name: `key-${k}`, owner: `owner-${k % 50}`, labels: { tier: k % 3 ? "std" : "gold" }, scopes: [], createdAt: START })));
    const postmaster = cluster ? Number(readFileSync(join(cluster.dir, "data", "postmaster.pid"), "utf8").split("\n")[0]) : 0;
    const cpu0 = process.cpuUsage();
    const srv0 = cluster ? serverCpuSeconds(postmaster) : 0;
    const t0 = performance.now();
    for (let i = 0; i < ROWS; i += 1000) {
      await store.writeRequests(Array.from({ length: Math.min(1000, ROWS - i) }, (_, j) => row(i + j)));
    }
    const writeSeconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6 + (cluster ? serverCpuSeconds(postmaster) - srv0 : 0);
    let bytes: number;
    if (cluster) {
      const c = new pg.Client({ connectionString: cluster.url() });
      await c.connect();
      await c.query("vacuum analyze");
      const r = await c.query<{ b: string }>("select (select coalesce(sum(pg_total_relation_size(inhrelid)), 0) from pg_inherits where inhparent = 'requests'::regclass) + pg_total_relation_size('rollups') as b");
      bytes = Number(r.rows[0]!.b);
      await c.end();
    } else {
      bytes = statSync(path).size + (statSync(`${path}-wal`, { throwIfNoEntry: false })?.size ?? 0);
    }
    const all = { since: START, until: END };
    // Whole days: from the rollups. One ms off: from the per-request rows.
    const topKeysMs = await timed(() => store.queries.topKeys(all, 20));
    const topKeysRowsMs = await timed(() => store.queries.topKeys({ since: START + 1, until: END }, 20));
    const hourlyTimelineMs = await timed(() => store.queries.timeline({ since: END - 7 * DAY, until: END, key: "team-7/key-7" }, "hour"));
    const dailyTimelineMs = await timed(() => store.queries.timeline({ ...all, key: "team-7/key-7" }, "day"));
    now = END + DAY;
    const t1 = performance.now();
    const dropped = await store.runRetention();
    const dropDayMs = performance.now() - t1;
    await store.close();
    return {
      backend: kind,
      rows: ROWS,
      writeSeconds,
      eventsPerSecond: Math.round(ROWS / writeSeconds),
      eventsPerCpuSecond: Math.round(ROWS / cpuSeconds),
      bytesPerEvent: Math.round(bytes / ROWS),
      topKeysMs: Math.round(topKeysMs),
      topKeysRowsMs: Math.round(topKeysRowsMs),
      hourlyTimelineMs: Math.round(hourlyTimelineMs * 10) / 10,
      dailyTimelineMs: Math.round(dailyTimelineMs * 10) / 10,
      dropDayMs: Math.round(dropDayMs),
      droppedDay: dropped.requests,
    };
  } finally {
    await cluster?.remove();
    rmSync(dir, { recursive: true, force: true });
  }
}

const kinds = values.backend === "both" ? (["sqlite", "postgres"] as const) : [values.backend as "sqlite" | "postgres"];
for (const k of kinds) {
  const r = await bench(k);
  process.stdout.write(`${JSON.stringify(r)}\n`);
}
