// The limits store through gRPC: ghz against a real `keyward authz` process
// (node src/main.ts authz, the chart's Node.js options) whose index holds 100k
// ApiKeys from the local control plane's watch, every key with a rate and a
// quota (the bench policy's defaults), with --limits-store=memory, redis on one
// redis-server and redis on a 3-master Redis Cluster (started here on free
// ports). keyward is pinned to core 1; ghz and the redis-server processes to
// core 0, so that keyward's core is its own in every store.
// Per store, each point three times (medians reported):
//   - closed loop (64 calls in flight): checks per keyward CPU-second, from
//     /proc/<pid>/stat of the keyward process; its rate is the max sustainable rate;
//   - fixed rate at 50% of memory's median max rate, the same offered load for
//     every store (ghz --rps; offeredLoadAt50): p50/p99, and keyward's
//     own histograms over each run (its check duration, each Redis call's); with
//     Redis, each run is followed by one with the redis-server processes unpinned;
//   - Redis commands and round trips per check (INFO commandstats) and Redis's
//     CPU (/proc/<pid>/stat of each redis-server), over the closed-loop runs.
//
//   node bench/limits-grpc.ts [--keys 100000] [--namespace bench-limits] [--stores memory,redis,cluster]
//                             [--kubeconfig F [--seeded]]   (F: a running control plane, e.g. make cluster)
//                             [--rate-at-50 N]              (the 50% runs' load, checks/s: memory's from an earlier run)
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { seedBenchKeys, startControlPlane } from "./apiserver.ts";
import { chartNodeOptions, LOAD } from "./check.ts";
import { checkRequestFor, keyFor, rng } from "./lib/fixture.ts";
import { ghz, writeDataFile, type LoadResult } from "./lib/ghz.ts";
import { ownAnalyticsStore, pinned, placeProcess, repoRoot, treeCpuSeconds, waitQuiet } from "./lib/proc.ts";
import { policyWithLimits, redisStats, type RedisStats } from "./limits.ts";
import { freePort } from "../test/controlplane/controlplane.ts";
import { dataPlaneArgs } from "../test/support/keyward.ts";
import { startRedis, startRedisCluster, type RedisServer } from "../test/support/redis.ts";
import { median } from "./lib/stats.ts";

/** Where the bench's ApiKeys live (--namespace: another, to keep sets of different sizes side by side). */
export const LIMITS_NAMESPACE = "bench-limits";
/** Each point is measured this many times; the median is reported. */
const REPEATS = 3;
const CLOSED_SECONDS = 8;
const HALF_SECONDS = 10;
/** How long a run waits for other work on the machine to calm down (the busy share is recorded either way). */
const QUIET_WAIT_MS = 60_000;
/** Where the redis-server processes run: ghz's core (keyward has core 1). */
export const REDIS_CPUS = "0";
/** Distinct requests in ghz's data file, each a different key drawn from the whole index. */
const REQUESTS = 20_000;

export interface GrpcLimitsRun {
  rps: number;
  checks: number;
  keywardCpuSeconds: number;
  checksPerCpuSecond: number;
  redisCommandsPerCheck?: number;
  redisRoundTripsPerCheck?: number;
  redisCpuPercent?: number;
  redisCpuUsPerCheck?: number;
}

/** A 50% run: ghz's figures, and keyward's own histograms over it (p50/p99 as a bucket's upper bound, ms). */
export interface At50Run extends LoadResult {
  checkP50Ms?: number;
  checkP99Ms?: number;
  calls?: number;
  callP50Ms?: number;
  callP99Ms?: number;
}

export interface GrpcLimitsRow {
  store: string;
  /** Medians of `closed`. */
  checksPerCpuSecond: number;
  maxRps: number;
  redisCommandsPerCheck?: number;
  redisRoundTripsPerCheck?: number;
  redisCpuPercent?: number;
  redisCpuUsPerCheck?: number;
  /** Medians of `at50` (Redis on ghz's core). */
  rateAt50: number;
  p50Ms: number;
  p99Ms: number;
  closed: GrpcLimitsRun[];
  at50: At50Run[];
  /** Redis stores: the same 50% runs with the redis-server processes unpinned, interleaved with `at50`. */
  at50Unpinned?: At50Run[];
  p99UnpinnedMs?: number;
  /** keyward's own view over `at50`, medians: its check duration and each Redis call's (p99, a histogram bucket's upper bound). */
  checkP99Ms?: number;
  callP99Ms?: number;
  /** keyward_limits_store_fallbacks_total and the decisions counted, over all runs. */
  fallbacks: number;
  decisions: Record<string, number>;
  busyBefore: number[];
}

const r3 = (x: number): number => Math.round(x * 1000) / 1000;

async function metricSum(port: number, name: string, filter = ""): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) if (line.startsWith(name) && line.includes(filter) && !line.startsWith("#")) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
}

type Hist = Map<number, number>;

/** A histogram's cumulative counts per upper bound, summed over its label sets, from /metrics. */
export async function histogramOf(port: number, name: string, filter = ""): Promise<Hist> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: Hist = new Map();
  for (const m of text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"([^}]*)\\} ([0-9.e+]+)$`, "gm"))) {
    if (!(m[2] ?? "").includes(filter)) continue;
    const le = m[1] === "+Inf" ? Infinity : Number(m[1]);
    out.set(le, (out.get(le) ?? 0) + Number(m[3]));
  }
  return out;
}

/** The upper bound (ms) of the bucket holding quantile q of what was observed between two snapshots, and the count. */
export function quantileBetween(before: Hist, after: Hist, q: number): { count: number; ms: number | undefined } {
  const rows = [...after].sort((a, b) => a[0] - b[0]).map(([le, c]) => [le, c - (before.get(le) ?? 0)] as const);
  const total = rows[rows.length - 1]?.[1] ?? 0;
  if (total === 0) return { count: 0, ms: undefined };
  const le = rows.find(([, c]) => c >= q * total)?.[0] ?? Infinity;
  return { count: total, ms: le * 1000 };
}

const CHECK_HIST = "keyward_authz_check_duration_seconds";
const CALL_HIST = "keyward_limits_store_call_duration_seconds";

async function decisionsOf(port: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^keyward_authz_decisions_total\{[^}]*reason="([^"]+)"[^}]*\} ([0-9.e+]+)$/gm)) out[m[1] as string] = (out[m[1] as string] ?? 0) + Number(m[2]);
  return out;
}

interface Keyward {
  child: ChildProcess;
  grpc: number;
  metrics: number;
  stop(): Promise<void>;
}

/**
 * `keyward authz` pinned to core 1, ready once its index holds `keys` keys. Listing 100k keys takes
 * minutes on a busy machine, long enough for another program to take a free port picked before: a
 * start that fails on a taken port is tried again on others.
 */
async function startKeywardAuthz(kubeconfig: string, namespace: string, keys: number, extra: readonly string[]): Promise<Keyward> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startKeywardOnce(kubeconfig, namespace, keys, extra);
    } catch (err) {
      if (attempt >= 3 || !(err instanceof Error && err.message.includes("EADDRINUSE"))) throw err;
    }
  }
}

async function startKeywardOnce(kubeconfig: string, namespace: string, keys: number, extra: readonly string[]): Promise<Keyward> {
  const [grpc, metrics] = [await freePort(), await freePort()];
  // The analytics store on, as by default, in a file of this start's own.
  const analytics = ownAnalyticsStore();
  const args = [join(repoRoot, "src", "main.ts"), ...dataPlaneArgs({ kubeconfig, namespace, grpcPort: grpc, metricsPort: metrics }), ...analytics.args, ...extra];
  const [cmd, argv] = pinned("1", process.execPath, ["--max-old-space-size=8192", ...chartNodeOptions(), ...args]);
  const child = spawn(cmd, argv, { cwd: repoRoot, stdio: ["ignore", "ignore", "pipe"] });
  let tail = "";
  child.stderr.on("data", (b: Buffer) => {
    tail = (tail + b.toString()).slice(-4000);
  });
  const exited = new Promise<void>((res) => {
    child.once("exit", () => {
      analytics.remove();
      res();
    });
  });
  const stop = (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    return exited;
  };
  const deadline = Date.now() + 600_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`keyward authz exited with ${child.exitCode}: ${tail}`);
    const n = await metricSum(metrics, "keyward_authz_index_keys").catch(() => 0);
    const ready = n >= keys && (await fetch(`http://127.0.0.1:${metrics}/readyz`).catch(() => undefined))?.status === 200;
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`keyward authz: ${n} of ${keys} keys after 600 s`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { child, grpc, metrics, stop };
}

function perCheck(r0: RedisStats, r1: RedisStats, checks: number, wall: number): Pick<GrpcLimitsRun, "redisCommandsPerCheck" | "redisRoundTripsPerCheck" | "redisCpuPercent" | "redisCpuUsPerCheck"> {
  return {
    redisCommandsPerCheck: r3((r1.calls - r0.calls) / checks),
    redisRoundTripsPerCheck: r3((r1.scripts - r0.scripts) / checks),
    redisCpuPercent: Math.round(((r1.cpu - r0.cpu) / wall) * 1000) / 10,
    redisCpuUsPerCheck: Math.round(((r1.cpu - r0.cpu) / checks) * 1e8) / 100,
  };
}

export interface StoreUnderTest {
  /** memory, redis or cluster (--stores). */
  id: string;
  name: string;
  nodes: readonly RedisServer[];
  args: readonly string[];
}

/**
 * The offered load (checks/s, whole) of a store's 50% runs: every store is judged at one load,
 * half of memory mode's median maximum (ADR 0055), so that its p99 is compared with memory's at
 * the same rate. `given` (--rate-at-50: memory's from an earlier run) is every store's when set;
 * without it, memory's own runs, and a store measured without memory, take half their own
 * maximum. Never below 1: ghz takes `--rps 0` for no limit at all, a closed loop.
 */
export function offeredLoadAt50(maxRps: { memory?: number | undefined; own: number }, given?: number): number {
  const rate = Math.round(given ?? (maxRps.memory ?? maxRps.own) / 2);
  if (!(rate >= 1 && Number.isFinite(rate))) {
    throw new Error(given === undefined ? `no offered load at 50%: the maximum measured was ${maxRps.memory ?? maxRps.own} checks/s` : `--rate-at-50 must be at least 1 check per second, got ${given}`);
  }
  return rate;
}

async function measureStore(s: StoreUnderTest, kubeconfig: string, namespace: string, keys: number, dataFile: string, dir: string, log: (s: string) => void, rateFor: (ownMaxRps: number) => number): Promise<GrpcLimitsRow> {
  log(`limits through gRPC: ${s.name}: starting keyward authz (${keys} keys)`);
  const kw = await startKeywardAuthz(kubeconfig, namespace, keys, s.args);
  try {
    const out = join(dir, "ghz.json");
    const base = { port: kw.grpc, dataFile, concurrency: LOAD.concurrency, connections: LOAD.connections, cpus: "0" };
    // Warm-up: the JIT, and every key's counters exist afterwards.
    await ghz({ ...base, seconds: LOAD.warmupSeconds, rps: 0 }, out);
    const f0 = await metricSum(kw.metrics, "keyward_limits_store_fallbacks_total");
    const d0 = await decisionsOf(kw.metrics);
    const busyBefore: number[] = [];
    const closed: GrpcLimitsRun[] = [];
    for (let i = 0; i < REPEATS; i++) {
      busyBefore.push(await waitQuiet(log, 0.15, QUIET_WAIT_MS));
      const r0 = await redisStats(s.nodes);
      const c0 = treeCpuSeconds(kw.child.pid as number);
      const t0 = performance.now();
      const r = await ghz({ ...base, seconds: CLOSED_SECONDS, rps: 0 }, out);
      const wall = (performance.now() - t0) / 1000;
      const cpu = treeCpuSeconds(kw.child.pid as number) - c0;
      const r1 = await redisStats(s.nodes);
      const checks = r.count - r.errors;
      const run: GrpcLimitsRun = { rps: r.rps, checks, keywardCpuSeconds: Math.round(cpu * 100) / 100, checksPerCpuSecond: Math.round(checks / cpu), ...(s.nodes.length ? perCheck(r0, r1, checks, wall) : {}) };
      log(`  closed loop: ${JSON.stringify(run)}`);
      closed.push(run);
    }
    const maxRps = median(closed.map((r) => r.rps));
    const rate = rateFor(maxRps);
    const at50: At50Run[] = [];
    const at50Unpinned: At50Run[] = [];
    // With Redis, each 50% run on ghz's core is followed by one with Redis unpinned (the scheduler's
    // choice of core, keyward's included): the same keyward, rate and minutes for both.
    for (let i = 0; i < REPEATS; i++) {
      for (const unpinned of s.nodes.length ? [false, true] : [false]) {
        for (const n of s.nodes) placeProcess(n.child.pid as number, unpinned ? "0,1" : REDIS_CPUS);
        busyBefore.push(await waitQuiet(log, 0.15, QUIET_WAIT_MS));
        const [h0, c0] = [await histogramOf(kw.metrics, CHECK_HIST), await histogramOf(kw.metrics, CALL_HIST, 'result="ok"')];
        const g = await ghz({ ...base, concurrency: LOAD.halfLoadConcurrency, seconds: HALF_SECONDS, rps: rate }, out);
        const [h1, c1] = [await histogramOf(kw.metrics, CHECK_HIST), await histogramOf(kw.metrics, CALL_HIST, 'result="ok"')];
        const call50 = quantileBetween(c0, c1, 0.5);
        const r: At50Run = {
          ...g,
          checkP50Ms: quantileBetween(h0, h1, 0.5).ms,
          checkP99Ms: quantileBetween(h0, h1, 0.99).ms,
          ...(s.nodes.length ? { calls: call50.count, callP50Ms: call50.ms, callP99Ms: quantileBetween(c0, c1, 0.99).ms } : {}),
        };
        log(`  at 50% (${rate}/s${unpinned ? ", Redis unpinned" : ""}): ${r.rps}/s, p50 ${r.p50Ms} p99 ${r.p99Ms} ms; keyward's check p99 ${r.checkP99Ms} ms, Redis call p99 ${r.callP99Ms ?? "–"} ms`);
        (unpinned ? at50Unpinned : at50).push(r);
      }
    }
    for (const n of s.nodes) placeProcess(n.child.pid as number, REDIS_CPUS);
    const f1 = await metricSum(kw.metrics, "keyward_limits_store_fallbacks_total");
    const d1 = await decisionsOf(kw.metrics);
    const decisions: Record<string, number> = {};
    for (const [k, v] of Object.entries(d1)) decisions[k] = v - (d0[k] ?? 0);
    const pick = (k: keyof GrpcLimitsRun): number | undefined => (s.nodes.length ? median(closed.map((r) => r[k] ?? NaN)) : undefined);
    const redis = s.nodes.length
      ? { redisCommandsPerCheck: pick("redisCommandsPerCheck"), redisRoundTripsPerCheck: pick("redisRoundTripsPerCheck"), redisCpuPercent: pick("redisCpuPercent"), redisCpuUsPerCheck: pick("redisCpuUsPerCheck") }
      : {};
    return {
      store: s.name,
      checksPerCpuSecond: median(closed.map((r) => r.checksPerCpuSecond)),
      maxRps,
      ...redis,
      rateAt50: rate,
      p50Ms: median(at50.map((r) => r.p50Ms)),
      p99Ms: median(at50.map((r) => r.p99Ms)),
      closed,
      at50,
      ...(at50Unpinned.length ? { at50Unpinned, p99UnpinnedMs: median(at50Unpinned.map((r) => r.p99Ms)), callP99Ms: median(at50.map((r) => r.callP99Ms ?? NaN)) } : {}),
      checkP99Ms: median(at50.map((r) => r.checkP99Ms ?? NaN)),
      fallbacks: f1 - f0,
      decisions,
      busyBefore,
    };
  } finally {
    await kw.stop();
  }
}

/** Every request a valid key on a route it may use: each check spends the key's rate and quota. */
function limitedRequests(keys: number): ReturnType<typeof checkRequestFor>[] {
  const r = rng(7);
  return Array.from({ length: REQUESTS }, () => checkRequestFor("valid", keyFor(Math.floor(r() * keys)), r));
}

export async function runLimitsGrpcBench(o: { keys: number; namespace?: string; kubeconfig?: string; seeded?: boolean; stores?: readonly string[]; rateAt50?: number; log: (s: string) => void }): Promise<GrpcLimitsRow[]> {
  // A bad --rate-at-50 fails before the minutes of seeding and closed-loop runs.
  if (o.rateAt50 !== undefined) offeredLoadAt50({ own: NaN }, o.rateAt50);
  const namespace = o.namespace ?? LIMITS_NAMESPACE;
  const cp = o.kubeconfig ? undefined : await startControlPlane(o.log);
  const kubeconfig = o.kubeconfig ?? cp?.kubeconfig;
  if (!kubeconfig) throw new Error("no control plane");
  const dir = mkdtempSync(join(tmpdir(), "keyward-bench-limits-"));
  const rows: GrpcLimitsRow[] = [];
  const servers: RedisServer[] = [];
  try {
    if (!o.seeded) {
      o.log(`seeding ${o.keys} ApiKeys and a policy that gives each a rate and a quota`);
      const s = await seedBenchKeys(kubeconfig, namespace, o.keys, o.log, policyWithLimits(undefined, namespace));
      o.log(`seeded in ${s.seconds} s`);
    }
    const dataFile = writeDataFile(dir, "requests", limitedRequests(o.keys));
    const standalone = await startRedis();
    servers.push(standalone);
    const cluster = await startRedisCluster(3);
    servers.push(...cluster);
    // Redis on the load generator's core: keyward's core is keyward's alone in every store, as a
    // Redis on hosts of its own leaves it (bench/limits-tail.ts; ADR 0055).
    for (const n of servers) placeProcess(n.child.pid as number, REDIS_CPUS);
    // A deadline far above Redis's latency: the figures are counts on Redis, not fallbacks (their count is reported).
    const redisArgs = ["--limits-store=redis", "--limits-redis-timeout=1s", "--limits-redis-breaker-failures=1000"];
    const stores: StoreUnderTest[] = [
      { id: "memory", name: "memory", nodes: [], args: ["--limits-store=memory"] },
      { id: "redis", name: "redis (one server)", nodes: [standalone], args: [...redisArgs, `--limits-redis-url=redis://127.0.0.1:${standalone.port}`] },
      { id: "cluster", name: "redis (3-master Cluster)", nodes: cluster, args: [...redisArgs, "--limits-redis-mode=cluster", `--limits-redis-url=${cluster.map((n) => `redis://127.0.0.1:${n.port}`).join(",")}`] },
    ];
    let memoryMaxRps: number | undefined;
    for (const s of stores) {
      if (o.stores && !o.stores.includes(s.id)) continue;
      const row = await measureStore(s, kubeconfig, namespace, o.keys, dataFile, dir, o.log, (own) => offeredLoadAt50({ memory: memoryMaxRps, own }, o.rateAt50));
      if (s.id === "memory") memoryMaxRps = row.maxRps;
      rows.push(row);
    }
  } finally {
    for (const n of servers) await n.stop();
    rmSync(dir, { recursive: true, force: true });
    await cp?.stop({ removeDir: true });
  }
  return rows;
}

const n0 = (v: number | undefined): string => (v === undefined ? "–" : v.toLocaleString("en-US"));

/** The markdown table of a run. */
export function limitsGrpcTable(rows: readonly GrpcLimitsRow[]): string[] {
  const memory = rows.find((r) => r.store === "memory");
  const out = [
    "| store | checks per keyward CPU-second (3 runs) | share of memory's | max checks/s | p50 / p99 at 50% (ms; 3 runs' p99) | p99 vs. memory's | keyward's check / Redis call p99 at 50% (ms, bucket bound) | p99 at 50% with Redis unpinned (ms; 3 runs') | Redis round trips / commands per check | Redis CPU (% of a core / µs per check) | fallbacks |",
    "| --- | ---: | ---: | ---: | --- | ---: | --- | --- | --- | --- | ---: |",
  ];
  for (const r of rows) {
    const share = memory ? `${Math.round((r.checksPerCpuSecond / memory.checksPerCpuSecond) * 100)}%` : "–";
    const p99x = memory ? `${(r.p99Ms / memory.p99Ms).toFixed(2)}×` : "–";
    const runs = r.closed.map((c) => n0(c.checksPerCpuSecond)).join(", ");
    const redis = r.redisRoundTripsPerCheck === undefined ? "–" : `${r.redisRoundTripsPerCheck} / ${r.redisCommandsPerCheck ?? "–"}`;
    const cpu = r.redisCpuPercent === undefined ? "–" : `${r.redisCpuPercent}% / ${r.redisCpuUsPerCheck ?? "–"}`;
    // Infinity (null once through JSON): above the histogram's top bucket (50 ms for the check, 1 s for a call).
    const ms = (x: number | null | undefined, top: number): string => (x === null || x === Infinity ? `> ${top}` : x === undefined || Number.isNaN(x) ? "–" : String(x));
    const own = `${ms(r.checkP99Ms, 50)} / ${ms(r.callP99Ms, 1000)}`;
    const unpinned = r.at50Unpinned ? `${r.p99UnpinnedMs ?? "–"} (${r.at50Unpinned.map((a) => a.p99Ms).join(", ")})` : "–";
    out.push(`| ${r.store} | ${n0(r.checksPerCpuSecond)} (${runs}) | ${share} | ${n0(r.maxRps)} | ${r.p50Ms} / ${r.p99Ms} (${r.at50.map((a) => a.p99Ms).join(", ")}) | ${p99x} | ${own} | ${unpinned} | ${redis} | ${cpu} | ${r.fallbacks} |`);
  }
  return out;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { keys: { type: "string", default: "100000" }, namespace: { type: "string", default: LIMITS_NAMESPACE }, kubeconfig: { type: "string" }, seeded: { type: "boolean", default: false }, stores: { type: "string" }, "rate-at-50": { type: "string" } } });
  const rows = await runLimitsGrpcBench({
    keys: Number(values.keys),
    namespace: values.namespace,
    ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
    seeded: values.seeded,
    ...(values.stores ? { stores: values.stores.split(",") } : {}),
    ...(values["rate-at-50"] ? { rateAt50: Number(values["rate-at-50"]) } : {}),
    log: (s) => process.stderr.write(`[limits-grpc ${new Date().toISOString().slice(11, 19)}] ${s}\n`),
  });
  console.log(JSON.stringify(rows, null, 2));
  process.stderr.write(`${limitsGrpcTable(rows).join("\n")}\n`);
}
