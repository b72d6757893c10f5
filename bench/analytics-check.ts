// The check path with the analytics store on, against off: keyward's check path over
// --keys keys (bench/servers/server.ts --mode authz), once without analytics, once
// handing every answered check to the analytics rows with SQLite (a file) and once with
// PostgreSQL (a throwaway cluster, test/support/postgres.ts), driven by ghz with the
// check bench's request mix (same keys, same requests, same load). The servers are
// pinned to core 1, ghz and PostgreSQL's server to core 0. The machine is shared: every
// variant is started and warmed up first, then the runs take turns, round after round,
// so the machine's drift falls on all alike:
//   - closed-loop runs (64 calls in flight, --max-seconds each): the most each sustains,
//     and its CPU per check (server CPU seconds per second over RPS);
//   - fixed-rate runs at --rate-share of the off variant's median maximum (8 workers,
//     --rate-seconds each): p50 / p99 / p99.9.
// After each run the variant's queue is waited out (rows written + dropped = rows made), so
// no store write of one variant overlaps another's run.
//
//   node bench/analytics-check.ts [--keys 100000] [--rounds 3] [--max-seconds 6]
//                                 [--rate-seconds 10] [--rate-share 0.5] [--variants off,sqlite,postgres]
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { LOAD, chartNodeOptions } from "./check.ts";
import { requestMix } from "./lib/fixture.ts";
import { ghz, writeDataFile, type LoadResult } from "./lib/ghz.ts";
import { run, startServer, treeCpuSeconds, type ServerProc } from "./lib/proc.ts";
import { startPostgres, type PostgresCluster } from "../test/support/postgres.ts";

export type AnalyticsVariant = "off" | "sqlite" | "postgres";

export interface AnalyticsCheckRow {
  variant: AnalyticsVariant;
  maxRuns: LoadResult[];
  rateRuns: LoadResult[];
  /** Median of the closed-loop runs' RPS. */
  maxRps: number;
  /** Median of the closed-loop runs' server CPU per check (µs). */
  cpuMicrosPerCheck: number;
  /** Fixed-rate run with the median p99. */
  rate: LoadResult;
  /** Rows the server made, wrote and dropped over the whole bench. */
  rows?: { made: number; written: number; dropped: number };
}

export interface AnalyticsCheckResult {
  keys: number;
  rounds: number;
  maxSeconds: number;
  rateSeconds: number;
  rps: number;
  rows: AnalyticsCheckRow[];
}

export interface AnalyticsCheckOptions {
  keys: number;
  rounds: number;
  maxSeconds: number;
  rateSeconds: number;
  rateShare: number;
  variants: AnalyticsVariant[];
  log: (s: string) => void;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

interface ServerStats {
  analytics?: { made: number; written: number; dropped: number };
}

/** Waits until the server's queue is empty: every row made is written or dropped. */
async function drained(srv: ServerProc, deadlineMs = 60_000): Promise<ServerStats> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const st = (await srv.stats()) as ServerStats;
    const a = st.analytics;
    if (!a || a.written + a.dropped >= a.made) return st;
    if (Date.now() > until) throw new Error(`analytics queue not written out within ${deadlineMs} ms: ${JSON.stringify(a)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function runAnalyticsCheckBench(o: AnalyticsCheckOptions): Promise<AnalyticsCheckResult> {
  const dir = mkdtempSync(join(tmpdir(), "keyward-bench-analytics-check-"));
  let cluster: PostgresCluster | undefined;
  const servers: ServerProc[] = [];
  try {
    if (o.variants.includes("postgres")) {
      cluster = await startPostgres();
      const postmaster = readFileSync(join(cluster.dir, "data", "postmaster.pid"), "utf8").split("\n")[0]!;
      // The database's processes beside ghz, off keyward's core; backends it forks later inherit it.
      await run("taskset", ["-a", "-p", "-c", "0", postmaster]);
    }
    const dataFile = writeDataFile(dir, "requests", requestMix(o.keys, 1000).requests);
    const nodeFlags = ["--max-old-space-size=8192", ...chartNodeOptions()];
    for (const v of o.variants) {
      o.log(`analytics ${v}: starting keyward's check path over ${o.keys} keys`);
      const extra = v === "sqlite" ? ["--analytics-path", join(dir, "analytics.sqlite")] : v === "postgres" ? ["--analytics-url", cluster!.url()] : [];
      const srv = await startServer(["--mode", "authz", "--keys", String(o.keys), "--analytics", v, ...extra], { cpus: "1", nodeFlags });
      servers.push(srv);
      await ghz({ port: srv.port, dataFile, concurrency: LOAD.concurrency, connections: LOAD.connections, cpus: "0", seconds: LOAD.warmupSeconds, rps: 0 }, join(dir, "ghz.json"));
      await drained(srv);
    }
    const out = join(dir, "ghz.json");
    const maxRuns = o.variants.map((): LoadResult[] => []);
    for (let r = 0; r < o.rounds; r++) {
      for (const [i, v] of o.variants.entries()) {
        const srv = servers[i]!;
        const c0 = treeCpuSeconds(srv.pid);
        const t0 = performance.now();
        const res = await ghz({ port: srv.port, dataFile, concurrency: LOAD.concurrency, connections: LOAD.connections, cpus: "0", seconds: o.maxSeconds, rps: 0 }, out);
        const secs = (performance.now() - t0) / 1000;
        // The store writes of the run's last rows are part of its cost.
        await drained(srv);
        const serverCpu = Math.round(((treeCpuSeconds(srv.pid) - c0) / secs) * 100) / 100;
        maxRuns[i]!.push({ ...res, serverCpu });
        o.log(`round ${r + 1}, analytics ${v}: closed loop ${res.rps} rps, server cpu ${serverCpu}`);
      }
    }
    const offAt = o.variants.indexOf("off");
    const ref = median(maxRuns[offAt >= 0 ? offAt : 0]!.map((x) => x.rps));
    const rps = Math.round(ref * o.rateShare);
    const rateRuns = o.variants.map((): LoadResult[] => []);
    for (let r = 0; r < o.rounds; r++) {
      for (const [i, v] of o.variants.entries()) {
        const srv = servers[i]!;
        const res = await ghz({ port: srv.port, dataFile, concurrency: LOAD.halfLoadConcurrency, connections: LOAD.connections, cpus: "0", seconds: o.rateSeconds, rps }, out);
        await drained(srv);
        rateRuns[i]!.push(res);
        o.log(`round ${r + 1}, analytics ${v}: at ${rps} rps: ${res.rps} rps, p50 ${res.p50Ms} p99 ${res.p99Ms} p99.9 ${res.p999Ms} ms`);
      }
    }
    const rows: AnalyticsCheckRow[] = [];
    for (const [i, v] of o.variants.entries()) {
      const st = await drained(servers[i]!);
      const runs = maxRuns[i]!;
      const sortedRate = [...rateRuns[i]!].sort((a, b) => a.p99Ms - b.p99Ms);
      rows.push({
        variant: v,
        maxRuns: runs,
        rateRuns: rateRuns[i]!,
        maxRps: median(runs.map((x) => x.rps)),
        cpuMicrosPerCheck: Math.round(median(runs.map((x) => ((x.serverCpu ?? NaN) / x.rps) * 1e6)) * 10) / 10,
        rate: sortedRate[Math.floor((sortedRate.length - 1) / 2)]!,
        ...(st.analytics ? { rows: st.analytics } : {}),
      });
    }
    return { keys: o.keys, rounds: o.rounds, maxSeconds: o.maxSeconds, rateSeconds: o.rateSeconds, rps, rows };
  } finally {
    for (const s of servers) await s.stop();
    await cluster?.remove();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      keys: { type: "string", default: "100000" },
      rounds: { type: "string", default: "3" },
      "max-seconds": { type: "string", default: "6" },
      "rate-seconds": { type: "string", default: "10" },
      "rate-share": { type: "string", default: "0.5" },
      variants: { type: "string", default: "off,sqlite,postgres" },
    },
  });
  const res = await runAnalyticsCheckBench({
    keys: Number(values.keys),
    rounds: Number(values.rounds),
    maxSeconds: Number(values["max-seconds"]),
    rateSeconds: Number(values["rate-seconds"]),
    rateShare: Number(values["rate-share"]),
    variants: values.variants.split(",") as AnalyticsVariant[],
    log: (s) => { console.error(`[analytics-check] ${s}`); },
  });
  console.log(JSON.stringify(res, null, 2));
}
