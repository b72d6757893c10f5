// The limits store's cost on the check path: keyward's Checker over 100k keys
// whose policy gives every key a rate and a quota, with the memory store, the
// redis store on one redis-server, and on a 3-master Redis Cluster (all started
// here on free ports). Per store:
//   - closed loop (64 checks in flight, for --seconds): checks per keyward
//     CPU-second (this process's user+system time);
//   - open loop at 50% of that store's closed-loop rate: p50/p99 of each check
//     from its scheduled start to its decision;
//   - Redis commands per check (INFO commandstats) and Redis CPU (/proc/<pid>/stat),
//     summed over the Redis processes.
// The Checker runs in this process without a gRPC front, so the figures isolate
// the limits store; the transport's cost per check (docs/benchmarks.md, check
// path) is the same in every mode.
// Then the refusal memory (--limits-redis-deny-cache): checks on keys whose quota
// is spent, all 100k in turn and one key hammered, with it off and on.
//
//   node bench/limits.ts [--keys 100000] [--seconds 5]
import { parseArgs } from "node:util";
import { Checker } from "../src/authz/check.ts";
import type { CheckInput } from "../src/check/decision.ts";
import { PolicyIndex } from "../src/policy/policy.ts";
import { KeyIndex } from "../src/index/keys.ts";
import { Limiter, type LimitTaker } from "../src/limits/limiter.ts";
import { connectLimitsRedis, type LimitsRedis } from "../src/limits/redis-client.ts";
import { RedisLimiter } from "../src/limits/redis-store.ts";
import { startRedis, startRedisCluster, type RedisServer } from "../test/support/redis.ts";
import { BENCH_HOST, fillIndex, keyFor, policyWithLimits } from "./lib/fixture.ts";

export { policyWithLimits };
import { cpuSeconds } from "./lib/proc.ts";

export interface LimitsRow {
  store: string;
  checksPerCpuSecond: number;
  closedLoopRps: number;
  p50Ms: number;
  p99Ms: number;
  rateAt50: number;
  redisCommandsPerCheck: number | undefined;
  redisRoundTripsPerCheck: number | undefined;
  redisCpuPercent: number | undefined;
  redisCpuUsPerCheck: number | undefined;
  fallbacks: Record<string, number>;
}

export interface DenyCacheRow {
  store: string;
  /** Which keys the refused checks hit: all of them in turn, or one key over and over. */
  pattern: string;
  denyCache: boolean;
  checksPerCpuSecond: number;
  redisRoundTripsPerCheck: number;
}

const CONCURRENCY = 64;

function inputs(nKeys: number): CheckInput[] {
  const out: CheckInput[] = [];
  for (let i = 0; i < nKeys; i++) {
    const headers: Record<string, string> = { "x-api-key": keyFor(i) };
    out.push({ method: "GET", host: BENCH_HOST, path: `/v1/orders/${i}`, header: (n) => headers[n], peerAddress: "198.51.100.23", forwardedFor: undefined });
  }
  return out;
}

export interface RedisStats {
  /** Commands run, those inside the script included. */
  calls: number;
  /** Round trips: the script calls (EVALSHA, EVAL). */
  scripts: number;
  cpu: number;
}

export async function redisStats(nodes: readonly RedisServer[]): Promise<RedisStats> {
  let calls = 0;
  let scripts = 0;
  let cpu = 0;
  for (const n of nodes) {
    const info = await n.cli("info", "commandstats");
    for (const m of info.matchAll(/^cmdstat_([a-z|_]+):calls=(\d+)/gm)) {
      calls += Number(m[2]);
      if (m[1] === "evalsha" || m[1] === "eval") scripts += Number(m[2]);
    }
    // utime + stime of the redis-server process (/proc/<pid>/stat), as keyward's own CPU is taken.
    cpu += cpuSeconds(n.child.pid as number);
  }
  // Each INFO call is a command itself.
  return { calls: calls - nodes.length, scripts, cpu };
}

const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** One decision, awaited when the store answers later. */
const decide = (checker: Checker, input: CheckInput): Promise<unknown> | undefined => {
  const d = checker.check(input);
  return d instanceof Promise ? d : undefined;
};

async function closedLoop(checker: Checker, ins: readonly CheckInput[], seconds: number): Promise<{ n: number; cpu: number; wall: number }> {
  let n = 0;
  let i = 0;
  const end = performance.now() + seconds * 1000;
  const c0 = cpuNow();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) {
        const p = decide(checker, ins[i++ % ins.length] as CheckInput);
        if (p) await p;
        else if (n % 256 === 0) await new Promise((r) => setImmediate(r));
        n++;
      }
    }),
  );
  return { n, cpu: cpuNow() - c0, wall: (performance.now() - t0) / 1000 };
}

async function openLoop(checker: Checker, ins: readonly CheckInput[], rate: number, seconds: number): Promise<number[]> {
  const lat: number[] = [];
  const t0 = performance.now();
  let sent = 0;
  let i = 0;
  const pending: Promise<unknown>[] = [];
  while (performance.now() - t0 < seconds * 1000) {
    const due = Math.floor(((performance.now() - t0) / 1000) * rate);
    for (; sent < due; sent++) {
      const scheduled = t0 + (sent / rate) * 1000;
      const p = decide(checker, ins[i++ % ins.length] as CheckInput);
      if (p) pending.push(p.then(() => lat.push(performance.now() - scheduled)));
      else lat.push(performance.now() - scheduled);
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(pending);
  return lat.sort((a, b) => a - b);
}

const pct = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

function checkerOver(keys: KeyIndex, limiter: LimitTaker, quota?: number): Checker {
  const policies = new PolicyIndex();
  policies.apply("add", policyWithLimits(quota));
  return new Checker({ keys, policies, limiter, now: Date.now, xffTrustedHops: 0 });
}

function redisLimiter(redis: LimitsRedis, denyCache: boolean, onFallback: (cause: string) => void): RedisLimiter {
  // A deadline far above Redis's latency here: the bench measures counting on Redis, not the fallback
  // (on a shared two-core machine a descheduled redis-server answers late now and then).
  return new RedisLimiter({ run: redis.run, keyPrefix: "keyward:", timeoutMs: 1000, failureMode: "local", breakerFailures: 1000, breakerCooldownMs: 1000, maxInFlight: 1000, batchBy: redis.batchBy, denyCache, now: Date.now, onFallback });
}

export async function runLimitsBench(o: { keys: number; seconds: number; log: (s: string) => void }): Promise<{ rows: LimitsRow[]; denyCache: DenyCacheRow[] }> {
  const keys = new KeyIndex();
  fillIndex(keys, o.keys);
  const ins = inputs(o.keys);
  const rows: LimitsRow[] = [];
  const denyRows: DenyCacheRow[] = [];
  const standalone = await startRedis();
  const cluster = await startRedisCluster(3);
  try {
    const stores: { name: string; nodes: RedisServer[]; connect: () => Promise<LimitsRedis> | undefined }[] = [
      { name: "memory", nodes: [], connect: () => undefined },
      { name: "redis (one server)", nodes: [standalone], connect: () => connectLimitsRedis({ mode: "standalone", urls: [`redis://127.0.0.1:${standalone.port}`], sentinelMaster: "", passwordFile: "", caFile: "", connectTimeoutMs: 5000 }) },
      { name: "redis (3-master Cluster)", nodes: cluster, connect: () => connectLimitsRedis({ mode: "cluster", urls: cluster.map((n) => `redis://127.0.0.1:${n.port}`), sentinelMaster: "", passwordFile: "", caFile: "", connectTimeoutMs: 5000 }) },
    ];
    for (const s of stores) {
      o.log(`limits: ${s.name}`);
      const redis = await s.connect();
      const fallbacks: Record<string, number> = {};
      const onFallback = (cause: string): void => {
        fallbacks[cause] = (fallbacks[cause] ?? 0) + 1;
      };
      const limiter = redis ? redisLimiter(redis, true, onFallback) : new Limiter();
      const checker = checkerOver(keys, limiter);
      try {
        await closedLoop(checker, ins, 1); // warm-up: every key's counters exist afterwards
        const r0 = await redisStats(s.nodes);
        const closed = await closedLoop(checker, ins, o.seconds);
        const r1 = await redisStats(s.nodes);
        const rps = closed.n / closed.wall;
        const rate = Math.round(rps / 2);
        const lat = await openLoop(checker, ins, rate, o.seconds);
        rows.push({
          store: s.name,
          checksPerCpuSecond: Math.round(closed.n / closed.cpu),
          closedLoopRps: Math.round(rps),
          rateAt50: rate,
          p50Ms: Number(pct(lat, 50).toFixed(3)),
          p99Ms: Number(pct(lat, 99).toFixed(3)),
          redisCommandsPerCheck: redis ? Number(((r1.calls - r0.calls) / closed.n).toFixed(3)) : undefined,
          redisRoundTripsPerCheck: redis ? Number(((r1.scripts - r0.scripts) / closed.n).toFixed(3)) : undefined,
          redisCpuPercent: redis ? Number((((r1.cpu - r0.cpu) / closed.wall) * 100).toFixed(1)) : undefined,
          redisCpuUsPerCheck: redis ? Number((((r1.cpu - r0.cpu) / closed.n) * 1e6).toFixed(2)) : undefined,
          fallbacks,
        });
        o.log(`  ${JSON.stringify(rows[rows.length - 1])}`);
        if (redis) {
          // Every key's quota spent: each check is a refusal. Either every key in turn (a key
          // comes back about once per pass over 100k), or one key hammered by every check.
          const patterns: [string, readonly CheckInput[]][] = [
            [`${o.keys / 1000}k keys in turn`, ins],
            ["one key hammered", ins.slice(0, 1)],
          ];
          for (const [pattern, which] of patterns) {
            for (const denyCache of [false, true]) {
              const spent = checkerOver(keys, redisLimiter(redis, denyCache, onFallback), 1);
              await closedLoop(spent, which, 1);
              const d0 = await redisStats(s.nodes);
              const run = await closedLoop(spent, which, o.seconds);
              const d1 = await redisStats(s.nodes);
              denyRows.push({ store: s.name, pattern, denyCache, checksPerCpuSecond: Math.round(run.n / run.cpu), redisRoundTripsPerCheck: Number(((d1.scripts - d0.scripts) / run.n).toFixed(3)) });
              o.log(`  ${JSON.stringify(denyRows[denyRows.length - 1])}`);
            }
          }
        }
      } finally {
        await redis?.close();
      }
    }
  } finally {
    await standalone.stop();
    for (const n of cluster) await n.stop();
  }
  return { rows, denyCache: denyRows };
}

const n0 = (v: number | undefined): string => (v === undefined ? "–" : v.toLocaleString("en-US"));

/** The markdown tables of a run. */
export function limitsTables(rows: readonly LimitsRow[], deny: readonly DenyCacheRow[]): string[] {
  const memory = rows.find((r) => r.store === "memory");
  const out = [
    "| store | checks per keyward CPU-second | share of memory's | closed-loop checks/s | p50 / p99 at 50% (ms) | Redis round trips / commands per check | Redis CPU (% of a core / µs per check) | fallbacks |",
    "| --- | ---: | ---: | ---: | --- | --- | --- | --- |",
  ];
  for (const r of rows) {
    const share = memory ? `${Math.round((r.checksPerCpuSecond / memory.checksPerCpuSecond) * 100)}%` : "–";
    const redis = r.redisRoundTripsPerCheck === undefined ? "–" : `${r.redisRoundTripsPerCheck} / ${r.redisCommandsPerCheck ?? "–"}`;
    const cpu = r.redisCpuPercent === undefined ? "–" : `${r.redisCpuPercent}% / ${r.redisCpuUsPerCheck ?? "–"}`;
    out.push(`| ${r.store} | ${n0(r.checksPerCpuSecond)} | ${share} | ${n0(r.closedLoopRps)} | ${r.p50Ms} / ${r.p99Ms} | ${redis} | ${cpu} | ${JSON.stringify(r.fallbacks)} |`);
  }
  out.push("", "Every key's quota spent (each check a refusal), the refusal memory off and on:", "", "| store | keys | refusal memory | checks per keyward CPU-second | Redis round trips per check |", "| --- | --- | --- | ---: | ---: |");
  for (const d of deny) out.push(`| ${d.store} | ${d.pattern} | ${d.denyCache ? "on" : "off"} | ${n0(d.checksPerCpuSecond)} | ${d.redisRoundTripsPerCheck} |`);
  return out;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { keys: { type: "string", default: "100000" }, seconds: { type: "string", default: "5" } } });
  const r = await runLimitsBench({ keys: Number(values.keys), seconds: Number(values.seconds), log: (s) => process.stderr.write(`${s}\n`) });
  console.log(JSON.stringify(r, null, 2));
}
