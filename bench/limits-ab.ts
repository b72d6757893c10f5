// The limits store's cost per check, two source trees compared on one machine with
// their runs interleaved (A B, then B A, round after round), so that a shared VM's
// drift falls on both alike. Each run is a child process that loads keyward's
// Checker and limits store from its tree, fills an index of `--keys` keys with
// limits (bench/limits.ts's policy) and runs a closed loop of 64 checks in flight
// over all of them against the store; it reports checks per CPU-second of itself,
// script calls per check, and the Redis processes' CPU per check (/proc/<pid>/stat).
// A warm-up passes over every key once first, so the loop runs in a steady state.
// `--child --profile F.cpuprofile --root T --store S --urls U --pids P` profiles one run's loop.
// The Redis servers (one server, a 3-master Cluster) are started once and shared.
//
//   git worktree add /tmp/keyward-base <rev> && ln -s "$PWD/node_modules" /tmp/keyward-base/
//   node bench/limits-ab.ts --a /tmp/keyward-base --b . [--stores redis,cluster,memory]
//                           [--rounds 4] [--seconds 4] [--keys 100000]
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { resolve, join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs, promisify } from "node:util";
import { cpuSeconds, pinned, repoRoot } from "./lib/proc.ts";
import { median } from "./lib/stats.ts";

const run = promisify(execFile);
const CONCURRENCY = 64;

export interface AbRun {
  tree: string;
  store: string;
  checks: number;
  checksPerCpuSecond: number;
  callsPerCheck: number;
  redisCpuUsPerCheck: number;
}

interface ChildArgs {
  root: string;
  store: string;
  urls: string[];
  pids: number[];
  keys: number;
  seconds: number;
  /** Where to write a CPU profile of the measured loop (.cpuprofile). */
  profile?: string;
}

type Mod = Record<string, unknown>;
const load = (root: string, path: string): Promise<Mod> => import(pathToFileURL(join(root, path)).href) as Promise<Mod>;

/** One run in this process, against the modules of `root`. */
async function child(a: ChildArgs): Promise<AbRun> {
  const [{ Checker }, { PolicyIndex }, { KeyIndex }, { Limiter }, redisClient, { RedisLimiter }, fixture, { policyWithLimits }] = await Promise.all([
    load(a.root, "src/authz/check.ts"),
    load(a.root, "src/policy/policy.ts"),
    load(a.root, "src/index/keys.ts"),
    load(a.root, "src/limits/limiter.ts"),
    load(a.root, "src/limits/redis-client.ts"),
    load(a.root, "src/limits/redis-store.ts"),
    load(a.root, "bench/lib/fixture.ts"),
    load(a.root, "bench/limits.ts"),
  ]);
  type Ctor = new (o?: unknown) => Record<string, (...x: unknown[]) => unknown>;
  const keys = new (KeyIndex as Ctor)();
  (fixture.fillIndex as (i: unknown, n: number) => void)(keys, a.keys);
  const policies = new (PolicyIndex as Ctor)();
  (policies.apply as (...x: unknown[]) => void)("add", (policyWithLimits as () => unknown)());
  let calls = 0;
  let redis: { run: (args: unknown[]) => Promise<unknown>; batchBy?: string; close: () => Promise<void> } | undefined;
  let limiter: unknown;
  if (a.store === "memory") limiter = new (Limiter as Ctor)();
  else {
    const connect = redisClient.connectLimitsRedis as (o: unknown) => Promise<NonNullable<typeof redis>>;
    redis = await connect({ mode: a.store === "cluster" ? "cluster" : "standalone", urls: a.urls, sentinelMaster: "", passwordFile: "", caFile: "", connectTimeoutMs: 5000 });
    const r = redis;
    const counted = (args: unknown[]): Promise<unknown> => {
      calls++;
      return r.run(args);
    };
    limiter = new (RedisLimiter as Ctor)({ run: counted, keyPrefix: "keyward-ab:", timeoutMs: 1000, failureMode: "local", breakerFailures: 1000, breakerCooldownMs: 1000, maxInFlight: 1000, denyCache: true, now: Date.now, ...(r.batchBy ? { batchBy: r.batchBy } : {}) });
  }
  const checker = new (Checker as Ctor)({ keys, policies, limiter, now: Date.now, xffTrustedHops: 0 });
  const keyFor = fixture.keyFor as (i: number) => string;
  const host = fixture.BENCH_HOST as string;
  const inputs = Array.from({ length: a.keys }, (_, i) => {
    const headers: Record<string, string> = { "x-api-key": keyFor(i) };
    return { method: "GET", host, path: `/v1/orders/${i}`, header: (n: string) => headers[n], peerAddress: "198.51.100.23", forwardedFor: undefined };
  });
  let i = 0;
  const loop = async (seconds: number, atLeast = 0): Promise<number> => {
    let n = 0;
    const end = performance.now() + seconds * 1000;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (performance.now() < end || n < atLeast) {
          const d = (checker.check as (x: unknown) => unknown)(inputs[i++ % inputs.length]);
          if (d instanceof Promise) await d;
          else if (n % 256 === 0) await new Promise((r) => setImmediate(r));
          n++;
        }
      }),
    );
    return n;
  };
  try {
    await loop(1, a.keys); // warm-up: the JIT, and every key's counters and names exist afterwards
    const profiler = a.profile ? new Session() : undefined;
    if (profiler) {
      profiler.connect();
      await profiler.post("Profiler.enable");
      await profiler.post("Profiler.start");
    }
    const redisCpu = (): number => a.pids.reduce((s, p) => s + cpuSeconds(p), 0);
    const c0 = process.cpuUsage();
    const [r0, calls0] = [redisCpu(), calls];
    const n = await loop(a.seconds);
    const c = process.cpuUsage(c0);
    if (profiler && a.profile) writeFileSync(a.profile, JSON.stringify((await profiler.post("Profiler.stop")).profile));
    const cpu = (c.user + c.system) / 1e6;
    return {
      tree: a.root,
      store: a.store,
      checks: n,
      checksPerCpuSecond: Math.round(n / cpu),
      callsPerCheck: Number(((calls - calls0) / n).toFixed(3)),
      redisCpuUsPerCheck: Number((((redisCpu() - r0) / n) * 1e6).toFixed(2)),
    };
  } finally {
    await redis?.close();
  }
}

/** Interleaved runs of trees `a` and `b`; the medians per tree and store. */
export async function limitsAb(o: { a: string; b: string; stores: readonly string[]; rounds: number; seconds: number; keys: number; log: (s: string) => void }): Promise<AbRun[]> {
  const { startRedis, startRedisCluster } = await import("../test/support/redis.ts");
  const standalone = await startRedis();
  const cluster = await startRedisCluster(3);
  const where: Record<string, { urls: string[]; pids: number[] }> = {
    memory: { urls: [], pids: [] },
    redis: { urls: [`redis://127.0.0.1:${standalone.port}`], pids: [standalone.child.pid as number] },
    cluster: { urls: cluster.map((n) => `redis://127.0.0.1:${n.port}`), pids: cluster.map((n) => n.child.pid as number) },
  };
  const runs: AbRun[] = [];
  try {
    for (let round = 0; round < o.rounds; round++) {
      for (const store of o.stores) {
        const w = where[store];
        if (!w) throw new Error(`unknown store ${store}`);
        for (const tree of round % 2 === 0 ? [o.a, o.b] : [o.b, o.a]) {
          const args = [join(repoRoot, "bench", "limits-ab.ts"), "--child", "--root", tree, "--store", store, "--urls", w.urls.join(","), "--pids", w.pids.join(","), "--keys", String(o.keys), "--seconds", String(o.seconds)];
          const [cmd, argv] = pinned("1", process.execPath, args);
          const { stdout } = await run(cmd, argv, { encoding: "utf8", maxBuffer: 1 << 20, timeout: 300_000 });
          const r = JSON.parse(stdout) as AbRun;
          o.log(`round ${round + 1} ${store} ${tree === o.a ? "A" : "B"}: ${JSON.stringify(r)}`);
          runs.push(r);
        }
      }
    }
  } finally {
    await standalone.stop();
    for (const n of cluster) await n.stop();
  }
  return runs;
}

/** The medians of a run, A beside B. */
export function abTable(runs: readonly AbRun[], a: string, b: string): string[] {
  const out = ["| store | A checks per CPU-second (runs) | B checks per CPU-second (runs) | B / A | calls per check A / B | Redis µs per check A / B |", "| --- | --- | --- | ---: | --- | --- |"];
  for (const store of [...new Set(runs.map((r) => r.store))]) {
    const of = (t: string): AbRun[] => runs.filter((r) => r.store === store && r.tree === t);
    const [ra, rb] = [of(a), of(b)];
    const m = (rs: AbRun[], k: keyof AbRun): number => median(rs.map((r) => r[k] as number));
    const list = (rs: AbRun[]): string => rs.map((r) => r.checksPerCpuSecond.toLocaleString("en-US")).join(", ");
    out.push(`| ${store} | ${m(ra, "checksPerCpuSecond").toLocaleString("en-US")} (${list(ra)}) | ${m(rb, "checksPerCpuSecond").toLocaleString("en-US")} (${list(rb)}) | ${(m(rb, "checksPerCpuSecond") / m(ra, "checksPerCpuSecond")).toFixed(2)}× | ${m(ra, "callsPerCheck")} / ${m(rb, "callsPerCheck")} | ${m(ra, "redisCpuUsPerCheck")} / ${m(rb, "redisCpuUsPerCheck")} |`);
  }
  return out;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      child: { type: "boolean", default: false },
      root: { type: "string", default: "." },
      store: { type: "string", default: "redis" },
      urls: { type: "string", default: "" },
      pids: { type: "string", default: "" },
      a: { type: "string" },
      b: { type: "string", default: "." },
      stores: { type: "string", default: "redis,cluster,memory" },
      rounds: { type: "string", default: "4" },
      seconds: { type: "string", default: "4" },
      keys: { type: "string", default: "100000" },
      profile: { type: "string" },
    },
  });
  const split = (s: string): string[] => s.split(",").filter(Boolean);
  if (values.child) {
    const r = await child({ root: resolve(values.root), store: values.store, urls: split(values.urls), pids: split(values.pids).map(Number), keys: Number(values.keys), seconds: Number(values.seconds), ...(values.profile ? { profile: values.profile } : {}) });
    process.stdout.write(JSON.stringify(r));
  } else {
    if (!values.a) throw new Error("--a: the tree to compare with");
    const [a, b] = [resolve(values.a), resolve(values.b)];
    const runs = await limitsAb({ a, b, stores: split(values.stores), rounds: Number(values.rounds), seconds: Number(values.seconds), keys: Number(values.keys), log: (s) => process.stderr.write(`[limits-ab ${new Date().toISOString().slice(11, 19)}] ${s}\n`) });
    console.log(abTable(runs, a, b).join("\n"));
  }
}
