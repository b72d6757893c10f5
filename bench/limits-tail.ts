// Where the limits store's latency tail comes from: ghz at one fixed rate against
// keyward's check path (bench/servers/server.ts --mode authz --keys N, pinned to
// core 1; ghz on core 0) with every key limited and counted by the memory store,
// the redis store on one redis-server, and on a 3-master Cluster, with the
// redis-server processes placed in turn: unpinned (the scheduler's choice), on
// ghz's core, on keyward's core. The runs are interleaved (every store and
// placement once per round), so drift on a shared machine falls on all alike.
// Per run, beside ghz's p50/p99: keyward's own view (the check's duration and
// each Redis call's, from its histograms), its garbage-collection pauses and
// event-loop delay, and the CPU of keyward and of Redis.
//
//   node bench/limits-tail.ts [--keys 100000] [--rate 1700] [--seconds 10] [--rounds 3]
//                             [--stores memory,redis,cluster] [--placements unpinned,ghz-core,keyward-core,unpinned-nice]
//   nice -n -20 node bench/limits-tail.ts --nice=-20 ...   keyward, ghz and Redis ahead of other work
//                             on a shared machine (their children inherit the niceness)
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { chartNodeOptions, LOAD } from "./check.ts";
import { checkRequestFor, keyFor, rng } from "./lib/fixture.ts";
import { quantileBetween } from "./limits-grpc.ts";
import { ghz, writeDataFile } from "./lib/ghz.ts";
import { cpuSeconds, placeProcess, startServer, type ServerProc } from "./lib/proc.ts";
import { startRedis, startRedisCluster, type RedisServer } from "../test/support/redis.ts";
import { procStatFields } from "../test/support/proc.ts";
import { median } from "./lib/stats.ts";

/** Where the redis-server processes run; keyward is on core 1 and ghz on core 0 throughout. */
export const PLACEMENTS: Record<string, { cpus: string; nice: number }> = {
  unpinned: { cpus: "0,1", nice: 0 },
  "ghz-core": { cpus: "0", nice: 0 },
  "keyward-core": { cpus: "1", nice: 0 },
  /** Unpinned, ahead of every other process when it wakes (nice -10). */
  "unpinned-nice": { cpus: "0,1", nice: -10 },
};

export interface TailRun {
  store: string;
  placement: string;
  round: number;
  rps: number;
  checks: number;
  p50Ms: number;
  p99Ms: number;
  /** keyward's check duration (receipt to answer), p50/p99 from its histogram (a bucket's upper bound). */
  checkP50Ms: number;
  checkP99Ms: number;
  /** Each Redis call, send to reply: count, p50/p99 (bucket upper bounds). */
  calls: number;
  callP50Ms: number;
  callP99Ms: number;
  /** Checks that waited for the store (a Redis call), and their wait from take to verdict (ms). */
  storeWaits: number;
  storeWaitP50Ms: number;
  storeWaitP99Ms: number;
  storeWaitMaxMs: number;
  gcCount: number;
  gcMs: number;
  gcMaxMs: number;
  /** The same by kind (minor: scavenge; major: mark-compact; incremental: marking steps). */
  gcByKind: Record<string, { count: number; ms: number; maxMs: number }>;
  loopP99Ms: number;
  loopMaxMs: number;
  keywardCpu: number;
  redisCpu: number;
  /**
   * Mean wait on a run queue per time slice (µs) of keyward's main thread and of the
   * redis-server main threads (/proc/<pid>/schedstat): how long a woken thread waited for a core.
   */
  keywardRunQueueUs: number;
  redisRunQueueUs: number;
  /** Share of samples (every 2 ms) in which a busy redis-server was on keyward's core (1). */
  redisOnKeywardCore: number;
  /** Redis's own latency monitor (threshold 1 ms): the longest event per kind, and commands slower than 1 ms (SLOWLOG). */
  redisLatency: Record<string, number>;
  redisSlowCommands: number;
}

/** [ns on a core, ns waiting on a run queue, time slices] of a process's main thread. */
function schedstat(pid: number): [number, number, number] {
  const f = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, "utf8").trim().split(/\s+/).map(Number);
  return [f[0] ?? 0, f[1] ?? 0, f[2] ?? 0];
}

function runQueueUs(before: [number, number, number][], after: [number, number, number][]): number {
  let wait = 0;
  let slices = 0;
  after.forEach((a, i) => {
    const b = before[i] ?? [0, 0, 0];
    wait += a[1] - b[1];
    slices += a[2] - b[2];
  });
  return slices ? Math.round(wait / slices / 100) / 10 : NaN;
}

/**
 * Samples every 2 ms where each redis-server last ran and whether it was running or runnable
 * (/proc/<pid>/stat: state R, processor): the share of such samples on keyward's core (1).
 */
function whereRedisRuns(nodes: readonly RedisServer[]): { stop(): number } {
  let busy = 0;
  let onOne = 0;
  const timer = setInterval(() => {
    for (const n of nodes) {
      const fields = procStatFields(n.child.pid as number);
      // fields[0] = state (3rd field of proc(5)), fields[36] = processor (39th).
      if (fields[0] !== "R") continue;
      busy++;
      if (fields[36] === "1") onOne++;
    }
  }, 2);
  return {
    stop: () => {
      clearInterval(timer);
      return busy ? Math.round((onOne / busy) * 100) / 100 : NaN;
    },
  };
}

/** LATENCY LATEST of each node, then reset: the longest latency seen per event kind (ms), and SLOWLOG's length, then reset. */
async function redisLatency(nodes: readonly RedisServer[]): Promise<{ latency: Record<string, number>; slow: number }> {
  const latency: Record<string, number> = {};
  let slow = 0;
  for (const n of nodes) {
    const lines = (await n.cli("latency", "latest")).trim().split("\n");
    // redis-cli prints each event as four lines: name, time, latest ms, max ms.
    for (let i = 0; i + 3 < lines.length; i += 4) latency[lines[i] as string] = Math.max(latency[lines[i] as string] ?? 0, Number(lines[i + 3]));
    slow += Number((await n.cli("slowlog", "len")).trim());
    await n.cli("latency", "reset");
    await n.cli("slowlog", "reset");
  }
  return { latency, slow };
}

type Hist = [number | null, number][];

/** quantileBetween over the server's stats (a histogram as [upper bound, cumulative count] pairs). */
function quantileMs(before: Hist | undefined, after: Hist | undefined, q: number): { count: number; ms: number } {
  // The top bound, +Inf, comes through the server's JSON as null.
  const map = (h: Hist | undefined): Map<number, number> => new Map((h ?? []).map(([le, c]) => [le ?? Infinity, c]));
  const r = quantileBetween(map(before), map(after), q);
  return { count: r.count, ms: r.ms ?? NaN };
}

const r2 = (x: number): number => Math.round(x * 100) / 100;

interface Stats {
  histograms?: Record<string, Hist>;
  pauses?: { gcCount: number; gcMs: number; gcMaxMs: number; gcByKind: Record<string, { count: number; ms: number; maxMs: number }>; loopP99Ms: number; loopMaxMs: number; storeWaits: number; storeWaitP50Ms: number; storeWaitP99Ms: number; storeWaitMaxMs: number };
}

/** Places the redis-server processes; `base` is the niceness the bench runs at (--nice). */
function place(nodes: readonly RedisServer[], where: { cpus: string; nice: number }, base: number): void {
  for (const n of nodes) placeProcess(n.child.pid as number, where.cpus, Math.max(-20, base + where.nice));
}

export async function runLimitsTail(o: {
  keys: number;
  rate: number;
  seconds: number;
  rounds: number;
  stores: readonly string[];
  placements: readonly string[];
  /** The niceness this bench was started at (`nice -n N node bench/limits-tail.ts --nice N`): its children inherit it. */
  nice?: number;
  log: (s: string) => void;
}): Promise<TailRun[]> {
  const dir = mkdtempSync(join(tmpdir(), "keyward-bench-tail-"));
  const r = rng(7);
  const dataFile = writeDataFile(
    dir,
    "requests",
    Array.from({ length: 20_000 }, () => checkRequestFor("valid", keyFor(Math.floor(r() * o.keys)), r)),
  );
  const out = join(dir, "ghz.json");
  const redisNodes: Record<string, RedisServer[]> = { memory: [] };
  const servers = new Map<string, ServerProc>();
  const runs: TailRun[] = [];
  try {
    if (o.stores.includes("redis")) redisNodes.redis = [await startRedis()];
    if (o.stores.includes("cluster")) redisNodes.cluster = await startRedisCluster(3);
    for (const n of [...(redisNodes.redis ?? []), ...(redisNodes.cluster ?? [])]) {
      await n.cli("config", "set", "latency-monitor-threshold", "1");
      await n.cli("config", "set", "slowlog-log-slower-than", "1000");
    }
    for (const store of o.stores) {
      const nodes = redisNodes[store] ?? [];
      const args =
        store === "memory"
          ? ["--limits-store", "memory"]
          : ["--limits-store", "redis", "--limits-redis-mode", store === "cluster" ? "cluster" : "standalone", "--limits-redis-url", nodes.map((n) => `redis://127.0.0.1:${n.port}`).join(",")];
      o.log(`${store}: starting keyward's check path over ${o.keys} keys`);
      const srv = await startServer(["--mode", "authz", "--keys", String(o.keys), "--pauses", ...args], { cpus: "1", nodeFlags: ["--max-old-space-size=4096", ...chartNodeOptions()] });
      servers.set(store, srv);
      // Warm-up: the JIT, and every key's counters exist afterwards.
      await ghz({ port: srv.port, dataFile, seconds: LOAD.warmupSeconds, rps: 0, concurrency: LOAD.concurrency, connections: LOAD.connections, cpus: "0" }, out);
    }
    for (let round = 1; round <= o.rounds; round++) {
      const order = round % 2 === 1 ? [...o.stores] : [...o.stores].reverse();
      for (const store of order) {
        const srv = servers.get(store) as ServerProc;
        const nodes = redisNodes[store] ?? [];
        for (const placement of nodes.length ? o.placements : ["unpinned"]) {
          const where = PLACEMENTS[placement];
          if (!where) throw new Error(`--placements: unknown ${placement}`);
          place(nodes, where, o.nice ?? 0);
          await redisLatency(nodes);
          const q0 = [schedstat(srv.pid), ...nodes.map((n) => schedstat(n.child.pid as number))];
          const s0 = (await srv.stats()) as Stats;
          const k0 = cpuSeconds(srv.pid);
          const c0 = nodes.reduce((a, n) => a + cpuSeconds(n.child.pid as number), 0);
          const sampler = whereRedisRuns(nodes);
          const res = await ghz({ port: srv.port, dataFile, seconds: o.seconds, rps: o.rate, concurrency: LOAD.halfLoadConcurrency, connections: LOAD.connections, cpus: "0" }, out);
          const s1 = (await srv.stats()) as Stats;
          const onKeywardCore = sampler.stop();
          const q1 = [schedstat(srv.pid), ...nodes.map((n) => schedstat(n.child.pid as number))];
          const lat = await redisLatency(nodes);
          const check = "keyward_authz_check_duration_seconds";
          const call = "keyward_limits_store_call_duration_seconds";
          const run: TailRun = {
            store,
            placement,
            round,
            rps: res.rps,
            checks: res.count - res.errors,
            p50Ms: res.p50Ms,
            p99Ms: res.p99Ms,
            checkP50Ms: quantileMs(s0.histograms?.[check], s1.histograms?.[check], 0.5).ms,
            checkP99Ms: quantileMs(s0.histograms?.[check], s1.histograms?.[check], 0.99).ms,
            calls: quantileMs(s0.histograms?.[call], s1.histograms?.[call], 0.5).count,
            callP50Ms: quantileMs(s0.histograms?.[call], s1.histograms?.[call], 0.5).ms,
            callP99Ms: quantileMs(s0.histograms?.[call], s1.histograms?.[call], 0.99).ms,
            storeWaits: s1.pauses?.storeWaits ?? 0,
            storeWaitP50Ms: s1.pauses?.storeWaitP50Ms ?? NaN,
            storeWaitP99Ms: s1.pauses?.storeWaitP99Ms ?? NaN,
            storeWaitMaxMs: s1.pauses?.storeWaitMaxMs ?? NaN,
            gcCount: s1.pauses?.gcCount ?? NaN,
            gcMs: s1.pauses?.gcMs ?? NaN,
            gcMaxMs: s1.pauses?.gcMaxMs ?? NaN,
            gcByKind: s1.pauses?.gcByKind ?? {},
            loopP99Ms: r2(s1.pauses?.loopP99Ms ?? NaN),
            loopMaxMs: r2(s1.pauses?.loopMaxMs ?? NaN),
            keywardCpu: r2(cpuSeconds(srv.pid) - k0),
            redisCpu: r2(nodes.reduce((a, n) => a + cpuSeconds(n.child.pid as number), 0) - c0),
            keywardRunQueueUs: runQueueUs(q0.slice(0, 1), q1.slice(0, 1)),
            redisRunQueueUs: runQueueUs(q0.slice(1), q1.slice(1)),
            redisOnKeywardCore: onKeywardCore,
            redisLatency: lat.latency,
            redisSlowCommands: lat.slow,
          };
          o.log(JSON.stringify(run));
          runs.push(run);
        }
      }
    }
  } finally {
    for (const s of servers.values()) await s.stop();
    for (const nodes of Object.values(redisNodes)) for (const n of nodes) await n.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return runs;
}

/** Medians per store and placement, each run's ghz p99 beside them. */
export function tailTable(runs: readonly TailRun[]): string[] {
  const out = [
    "| store | Redis placed | ghz p50 / p99 (ms; runs' p99) | keyward check p50 / p99 (ms) | Redis call p50 / p99 (ms), calls per check | store wait p50 / p99 / max (ms) | GC pauses (count, total / longest ms) | event-loop delay p99 / max (ms) | keyward / Redis CPU-s | run-queue wait per slice, keyward / Redis (µs) | Redis busy on keyward's core | Redis latency events > 1 ms, slow commands |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  const groups = new Map<string, TailRun[]>();
  for (const r of runs) {
    const k = `${r.store}|${r.placement}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  for (const [k, rs] of groups) {
    const [store, placement] = k.split("|");
    const m = (f: (r: TailRun) => number): number => median(rs.map(f));
    const perCheck = m((r) => r.calls / r.checks);
    const redis = rs[0]?.calls ? `${m((r) => r.callP50Ms)} / ${m((r) => r.callP99Ms)}, ${r2(perCheck)}` : "–";
    out.push(
      `| ${store} | ${store === "memory" ? "–" : placement} | ${m((r) => r.p50Ms)} / ${m((r) => r.p99Ms)} (${rs.map((r) => r.p99Ms).join(", ")}) | ${m((r) => r.checkP50Ms)} / ${m((r) => r.checkP99Ms)} | ${redis} | ${rs[0]?.storeWaits ? `${m((r) => r.storeWaitP50Ms)} / ${m((r) => r.storeWaitP99Ms)} / ${m((r) => r.storeWaitMaxMs)}` : "–"} | ${m((r) => r.gcCount)}, ${m((r) => r.gcMs)} / ${m((r) => r.gcMaxMs)} | ${m((r) => r.loopP99Ms)} / ${m((r) => r.loopMaxMs)} | ${m((r) => r.keywardCpu)} / ${m((r) => r.redisCpu)} | ${m((r) => r.keywardRunQueueUs)} / ${m((r) => r.redisRunQueueUs)} | ${rs[0]?.calls ? `${Math.round(m((r) => r.redisOnKeywardCore) * 100)}%` : "–"} | ${JSON.stringify(Object.assign({}, ...rs.map((r) => r.redisLatency)))}, ${rs.map((r) => r.redisSlowCommands).join("+")} |`,
    );
  }
  return out;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      keys: { type: "string", default: "100000" },
      rate: { type: "string", default: "1700" },
      seconds: { type: "string", default: "10" },
      rounds: { type: "string", default: "3" },
      stores: { type: "string", default: "memory,redis,cluster" },
      placements: { type: "string", default: "unpinned,ghz-core" },
      nice: { type: "string", default: "0" },
    },
  });
  const runs = await runLimitsTail({
    keys: Number(values.keys),
    rate: Number(values.rate),
    seconds: Number(values.seconds),
    rounds: Number(values.rounds),
    stores: values.stores.split(","),
    placements: values.placements.split(","),
    nice: Number(values.nice),
    log: (s) => process.stderr.write(`[limits-tail ${new Date().toISOString().slice(11, 19)}] ${s}\n`),
  });
  console.log(JSON.stringify(runs, null, 2));
  process.stderr.write(`${tailTable(runs).join("\n")}\n`);
}
