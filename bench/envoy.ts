// The check path as a client sees it: HTTP through a real Envoy 1.40 in front of a tiny
// upstream (nginx answering 200), driven by vegeta at fixed rates. Four ways to guard the route:
//
//   none      Envoy alone: the baseline every added latency is taken over
//   go-null   the shipped gRPC ext_authz filter asking the grpc-go null server (the floor any
//             ext_authz server can reach)
//   null-keyward  the same, asking a null server on keyward's HTTP/2 server and decoder (answers OK)
//   null-answer   the same null server answering with the bytes keyward answers an allowed request
//             with (headers to set and remove, dynamic metadata): what Envoy does with them
//   keyward   the shipped gRPC ext_authz filter asking keyward's check path (10 or 10k keys)
//   native    Envoy's in-process envoy.filters.http.api_key_auth filter, the same keys in its config
//
// Envoy's configuration is deploy/envoy/ext-authz.yaml with its placeholders filled in and its two
// access logs removed (they are not part of the check); `none` drops the ext_authz filter and
// `native` puts api_key_auth in its place. Every request carries a valid key on a route the key
// may use, so every request reaches the upstream whichever guard runs. Envoy (--concurrency 1) and
// the authorizer share core 1; vegeta and nginx run on core 0.
//
//   node bench/envoy.ts [--scenarios none,go-null,null-keyward,null-answer,keyward-10,keyward-10k,native-10,native-10k]
//                       [--rate 1000] [--seconds 10] [--runs 5] [--cpu-prof DIR] [--trace-gc]
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { parse, stringify } from "yaml";
import { BENCH_HOST, keyFor, rng } from "./lib/fixture.ts";
import { pinned, repoRoot, run, startServer, toolPath, toolsBin, treeCpuSeconds, type ServerProc } from "./lib/proc.ts";
import { chartNodeOptions, standardTargets, startTarget, type CheckTarget } from "./check.ts";
import { summarizeProfile } from "./profile.ts";
import { fillTemplate, httpGet } from "../test/e2e/envoy.ts";
import { freePort, nginxBinary } from "../test/e2e/nginx.ts";
import { median } from "./lib/stats.ts";

export type Guard = "none" | "go-null" | "null-keyward" | "null-answer" | "keyward" | "native";

export interface EnvoyScenario {
  id: string;
  guard: Guard;
  /** Keys in the authorizer's index or the native filter's credentials (and in the requests). */
  keys: number;
}

export interface VegetaRun {
  /** The rate asked for; 0 = as fast as answers come (vegeta -rate=0 with a bounded worker pool). */
  rate: number;
  /** Requests per second that completed. */
  rps: number;
  count: number;
  /** Share of answers that were 2xx. */
  success: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** CPU time of Envoy and the authorizer together, per request, in microseconds. */
  cpuUsPerRequest: number;
  /** CPU time of Envoy alone per request, in microseconds. */
  envoyCpuUsPerRequest: number;
  statusCodes: Record<string, number>;
  /** /proc/loadavg when the run started. */
  loadAverage: string;
  /**
   * Envoy's own view of its ext_authz calls (cluster keyward-authz, upstream_rq_time) over its
   * last stats interval (5 s) of the run: the round trip from Envoy's ext_authz client to the
   * authorizer and back, without Envoy's filter chain and the upstream.
   */
  extAuthzRttMs?: { p50: number; p99: number };
  /** CPU seconds of Envoy and the authorizer per second of the run: their shared core's busy share (1 = saturated). */
  coreBusy?: number;
  /** With --trace-gc: the authorizer's garbage-collection pauses during the run, by kind. */
  gcPauses?: Record<string, GcPauses>;
}

export interface GcPauses {
  count: number;
  totalMs: number;
  maxMs: number;
}

export interface EnvoyScenarioResult extends EnvoyScenario {
  name: string;
  maxRuns: VegetaRun[];
  /** Median of maxRuns' throughput. */
  maxRps: number;
  /** Runs at the common fixed rate, one per round. */
  fixedRuns: VegetaRun[];
  /** Runs at 50% of the same round's closed-loop throughput. */
  halfRuns: VegetaRun[];
}

export interface EnvoyBenchResult {
  fixedRate: number;
  seconds: number;
  runsPerPoint: number;
  vegeta: string;
  scenarios: EnvoyScenarioResult[];
}

const K = (n: number): string => (n >= 1000 ? `${n / 1000}k` : String(n));

export function scenarioFor(id: string): EnvoyScenario {
  if (id === "none" || id === "go-null" || id === "null-keyward" || id === "null-answer") return { id, guard: id, keys: 10 };
  const m = /^(keyward|native)-(\d+)(k?)$/.exec(id);
  if (!m) throw new Error(`unknown scenario ${id}: none, go-null, keyward-N, native-N (N like 10 or 10k)`);
  return { id, guard: m[1] as Guard, keys: Number(m[2]) * (m[3] ? 1000 : 1) };
}

export function scenarioName(s: EnvoyScenario): string {
  switch (s.guard) {
    case "none":
      return "Envoy, no authorization";
    case "go-null":
      return "Envoy + gRPC ext_authz, grpc-go null server";
    case "null-keyward":
      return "Envoy + gRPC ext_authz, null server on keyward's HTTP/2";
    case "null-answer":
      return "Envoy + gRPC ext_authz, null server on keyward's HTTP/2 giving keyward's answer";
    case "keyward":
      return `Envoy + gRPC ext_authz, keyward, ${K(s.keys)} keys`;
    case "native":
      return `Envoy + api_key_auth filter, ${K(s.keys)} keys`;
  }
}

type Yaml = Record<string, unknown>;

/**
 * deploy/envoy/ext-authz.yaml for one scenario: placeholders filled, access logs and the
 * access-log cluster removed, the ext_authz filter kept (keyward, go-null), dropped (none) or
 * replaced by api_key_auth with keys 0..keys-1 (native).
 */
export function envoyConfig(s: EnvoyScenario, ports: { listen: number; admin: number; app: number; authz: number }): string {
  const text = fillTemplate(readFileSync(join(repoRoot, "deploy", "envoy", "ext-authz.yaml"), "utf8"), {
    LISTEN_ADDRESS: "127.0.0.1",
    LISTEN_PORT: ports.listen,
    APP_ADDRESS: "127.0.0.1",
    APP_PORT: ports.app,
    KEYWARD_ADDRESS: "127.0.0.1",
    KEYWARD_PORT: ports.authz,
    KEYWARD_ALS_PORT: 1,
    // The access log cluster (and its TLS) is removed below.
    ALS_SAN: "unused",
    ALS_CA_FILE: "/unused",
    ALS_CLIENT_CERT_FILE: "/unused",
    ALS_CLIENT_KEY_FILE: "/unused",
    ACCESS_LOG_PATH: "/dev/null",
    ADMIN_PORT: ports.admin,
  });
  const cfg = parse(text) as { static_resources: { listeners: { filter_chains: { filters: { typed_config: Yaml }[] }[] }[]; clusters: { name: string }[] } };
  const hcm = cfg.static_resources.listeners[0]!.filter_chains[0]!.filters[0]!.typed_config;
  delete hcm.access_log;
  cfg.static_resources.clusters = cfg.static_resources.clusters.filter((c) => c.name !== "keyward-als");
  const filters = hcm.http_filters as { name: string }[];
  const at = filters.findIndex((f) => f.name === "envoy.filters.http.ext_authz");
  if (at === -1) throw new Error("deploy/envoy/ext-authz.yaml has no ext_authz filter");
  if (s.guard === "none") filters.splice(at, 1);
  if (s.guard === "native") {
    const credentials = Array.from({ length: s.keys }, (_, i) => ({ key: keyFor(i), client: `k-${i}` }));
    filters[at] = {
      name: "envoy.filters.http.api_key_auth",
      typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth", credentials, key_sources: [{ header: "x-api-key" }] },
    } as { name: string };
  }
  if (s.guard === "none" || s.guard === "native") cfg.static_resources.clusters = cfg.static_resources.clusters.filter((c) => c.name !== "keyward-authz");
  return stringify(cfg, { lineWidth: 0 });
}

/**
 * vegeta's targets: GETs on the bench policy's read route, max(`count`, `keys`) of them, the keys
 * 0..keys-1 in a shuffled order repeated, so that every key is sent at least once per pass.
 */
export function vegetaTargets(port: number, keys: number, count = 1000, seed = 42): string {
  const r = rng(seed);
  const order = Array.from({ length: keys }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const out: string[] = [];
  for (let i = 0; i < Math.max(count, keys); i++) {
    const key = keyFor(order[i % keys]!);
    out.push(`GET http://127.0.0.1:${port}/v1/orders/${Math.floor(r() * 1e6)}`, `Host: ${BENCH_HOST}`, `X-Api-Key: ${key}`, "");
  }
  return out.join("\n") + "\n";
}

interface Proc {
  pid: number;
  stop: () => Promise<void>;
}

function stopper(child: ChildProcess, signal: NodeJS.Signals): () => Promise<void> {
  const exited = new Promise<void>((r) => child.once("exit", () => { r(); }));
  return async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    }
  };
}

/** Polls `ready` every 50 ms until it is true, the child exits, or 30 s pass. */
async function until(child: ChildProcess, what: string, ready: () => Promise<boolean>, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited: ${stderr().slice(-2000)}`);
    if (await ready().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} not ready in 30 s: ${stderr().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** nginx answering 200 "ok" to everything, one worker, no access log: the upstream. */
async function startUpstream(dir: string, cpus: string): Promise<Proc & { port: number }> {
  const bin = nginxBinary();
  if (!bin) throw new Error("nginx is not installed: run scripts/install-system-deps.sh (make setup does)");
  const port = await freePort();
  const d = join(dir, "nginx");
  mkdirSync(join(d, "tmp"), { recursive: true });
  writeFileSync(
    join(d, "nginx.conf"),
    `worker_processes 1;\nmaster_process off;\npid ${d}/nginx.pid;\nerror_log ${d}/error.log warn;\nevents { worker_connections 1024; }\nhttp {\n  access_log off;\n  client_body_temp_path ${d}/tmp/body;\n  proxy_temp_path ${d}/tmp/proxy;\n  fastcgi_temp_path ${d}/tmp/fastcgi;\n  uwsgi_temp_path ${d}/tmp/uwsgi;\n  scgi_temp_path ${d}/tmp/scgi;\n  keepalive_requests 1000000;\n  server {\n    listen 127.0.0.1:${port};\n    location / { return 200 "ok\\n"; }\n  }\n}\n`,
  );
  const [cmd, argv] = pinned(cpus, bin, ["-p", d, "-c", join(d, "nginx.conf"), "-g", "daemon off;"]);
  const child = spawn(cmd, argv, { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr.on("data", (b: Buffer) => (err += b.toString()));
  await until(child, "nginx", async () => (await httpGet(port, "/")).status === 200, () => err);
  return { port, pid: child.pid!, stop: stopper(child, "SIGQUIT") };
}

async function startEnvoyFor(dir: string, s: EnvoyScenario, appPort: number, authzPort: number, cpus: string): Promise<Proc & { port: number; adminPort: number }> {
  const ports = { listen: await freePort(), admin: await freePort(), app: appPort, authz: authzPort };
  const file = join(dir, `envoy-${s.id}.yaml`);
  writeFileSync(file, envoyConfig(s, ports));
  const [cmd, argv] = pinned(cpus, toolPath("envoy"), ["-c", file, "--concurrency", "1", "--disable-hot-restart", "--log-level", "error"]);
  const child = spawn(cmd, argv, { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr.on("data", (b: Buffer) => (err += b.toString()));
  await until(child, "envoy", async () => (await httpGet(ports.admin, "/ready")).body.trim() === "LIVE", () => err);
  return { port: ports.listen, adminPort: ports.admin, pid: child.pid!, stop: stopper(child, "SIGTERM") };
}

/** Node.js flags for a profiled or GC-traced authorizer. */
interface Observe {
  cpuProfDir?: string | undefined;
  traceGc?: boolean | undefined;
}

async function startAuthorizer(s: EnvoyScenario, cpus: string, observe: Observe): Promise<ServerProc | undefined> {
  if (s.guard === "go-null") return startServer([], { cpus, program: "keyward-bench-go-null" });
  const extra = [...(observe.traceGc ? ["--trace-gc"] : []), ...(observe.cpuProfDir && s.guard === "keyward" ? ["--cpu-prof", `--cpu-prof-dir=${observe.cpuProfDir}`] : [])];
  const withFlags = (t: CheckTarget): CheckTarget => ({ ...t, serverCpus: cpus, nodeFlags: [...(t.nodeFlags ?? []), ...extra] });
  if (s.guard === "null-keyward" || s.guard === "null-answer") {
    const t = standardTargets(chartNodeOptions())["null-keyward"]!;
    return startTarget(withFlags(t), [...t.serverArgs, ...(s.guard === "null-answer" ? ["--answer", "keyward"] : [])]);
  }
  if (s.guard !== "keyward") return undefined;
  return startTarget(withFlags(standardTargets(chartNodeOptions())["authz-10"]!), ["--mode", "authz", "--keys", String(s.keys)]);
}

interface VegetaReport {
  requests: number;
  throughput: number;
  success: number;
  latencies: Record<string, number>;
  status_codes: Record<string, number>;
}

/**
 * One vegeta run of `seconds` at `rate` requests/s (0: closed loop with `maxWorkers` in flight),
 * with the CPU time Envoy and the authorizer spent meanwhile. vegeta runs pinned, with its Go
 * garbage collector off so that its own pauses do not land in the latencies it records.
 */
async function attack(o: { dir: string; targets: string; rate: number; seconds: number; cpus: string; envoyPid: number; authzPid: number | undefined; maxWorkers?: number; once?: boolean; gc?: GcTrace | undefined }): Promise<VegetaRun> {
  const vegeta = toolPath("vegeta");
  const bin = join(o.dir, "results.bin");
  const loadAverage = readFileSync("/proc/loadavg", "utf8").trim();
  const cpu = (): [number, number] => {
    const e = treeCpuSeconds(o.envoyPid);
    return [e, e + (o.authzPid ? treeCpuSeconds(o.authzPid) : 0)];
  };
  // At a fixed rate vegeta adds a worker (and a connection) whenever all are waiting; unbounded,
  // one stall of a busy machine snowballs into thousands of connections that Envoy then has to
  // serve, and the run never recovers. 64 workers cover a stall of 64 / rate before vegeta sends
  // late (and the run's rps falls short of the rate asked for, which the results record).
  const rateArgs = o.rate > 0 ? [`-rate=${Math.round(o.rate)}/1s`, "-workers=16", "-max-workers=64"] : ["-rate=0", `-workers=${o.maxWorkers ?? 32}`, `-max-workers=${o.maxWorkers ?? 32}`];
  // once: every target exactly once (vegeta stops when a lazily read target list runs out).
  const onceArgs = o.once ? ["-lazy"] : [];
  const [cmd, argv] = pinned(o.cpus, vegeta, ["attack", `-targets=${o.targets}`, `-duration=${o.seconds}s`, "-keepalive=true", "-timeout=5s", `-output=${bin}`, ...onceArgs, ...rateArgs]);
  o.gc?.start();
  const t0 = performance.now();
  const [e0, c0] = cpu();
  await run(cmd, argv, { env: { GOGC: "off" }, timeoutMs: (o.seconds + 30) * 1000 });
  const [e1, c1] = cpu();
  const wallSeconds = (performance.now() - t0) / 1000;
  const gcPauses = o.gc?.stop();
  const rep = JSON.parse(await run(vegeta, ["report", "-type=json", bin])) as VegetaReport;
  const ms = (k: string): number => Math.round((rep.latencies[k] ?? NaN) / 1e4) / 100;
  const n = rep.requests || 1;
  return {
    rate: o.rate,
    rps: Math.round(rep.throughput),
    count: rep.requests,
    success: rep.success,
    p50Ms: ms("50th"),
    p90Ms: ms("90th"),
    p99Ms: ms("99th"),
    maxMs: ms("max"),
    cpuUsPerRequest: Math.round(((c1 - c0) / n) * 1e6),
    envoyCpuUsPerRequest: Math.round(((e1 - e0) / n) * 1e6),
    statusCodes: rep.status_codes,
    loadAverage,
    coreBusy: Math.round(((c1 - c0) / wallSeconds) * 100) / 100,
    ...(gcPauses ? { gcPauses } : {}),
  };
}

/**
 * The authorizer's GC pauses from V8's --trace-gc lines on its stdout, e.g.
 * `[123:0x...]  4512 ms: Scavenge 18.3 (20.1) -> 17.2 (21.1) MB, pooled: 0 MB, 0.61 / 0.00 ms  (average mu = ...)`:
 * the pause is the first of the two times. Counted between start() and stop().
 */
export class GcTrace {
  private pauses: { kind: string; ms: number }[] | undefined;

  /** Feeds one line of the authorizer's stdout. */
  line(l: string): void {
    const m = /: (Scavenge|Mark-Compact|Minor Mark-Sweep|Mark-Sweep)\b.*?([\d.]+) \/ [\d.]+ ms/.exec(l);
    if (m && this.pauses) this.pauses.push({ kind: m[1]!, ms: Number(m[2]) });
  }

  start(): void {
    this.pauses = [];
  }

  stop(): Record<string, GcPauses> {
    const out: Record<string, GcPauses> = {};
    for (const p of this.pauses ?? []) {
      const g = (out[p.kind] ??= { count: 0, totalMs: 0, maxMs: 0 });
      g.count++;
      g.totalMs = Math.round((g.totalMs + p.ms) * 100) / 100;
      g.maxMs = Math.max(g.maxMs, p.ms);
    }
    this.pauses = undefined;
    return out;
  }
}

/** The middle value (the lower middle of an even count). */
/** keyward's pid to the [from, to] of its profiled runs (microseconds, its monotonic clock). */
const profileWindows = new Map<number, [number, number]>();

interface EnvoyStats {
  stats?: { histograms?: { supported_quantiles: number[]; computed_quantiles: { name: string; values: { interval: number | null }[] }[] } }[];
}

/** The p50 and p99 of one of Envoy's histograms over its last stats interval, from /stats?format=json. */
export function intervalQuantiles(json: EnvoyStats, name: string): { p50: number; p99: number } | undefined {
  for (const s of json.stats ?? []) {
    const h = s.histograms;
    const q = h?.computed_quantiles.find((c) => c.name === name);
    if (!h || !q) continue;
    const at = (quantile: number): number | undefined => q.values[h.supported_quantiles.indexOf(quantile)]?.interval ?? undefined;
    const p50 = at(50);
    const p99 = at(99);
    return p50 === undefined || p99 === undefined ? undefined : { p50, p99 };
  }
  return undefined;
}

const RTT_STAT = "cluster.keyward-authz.upstream_rq_time";

async function extAuthzRtt(adminPort: number): Promise<{ p50: number; p99: number } | undefined> {
  const r = await httpGet(adminPort, `/stats?format=json&histogram_buckets=none&filter=${encodeURIComponent(`^${RTT_STAT.replaceAll(".", "\\.")}$`)}`);
  return intervalQuantiles(JSON.parse(r.body) as EnvoyStats, RTT_STAT);
}

/** The guards that ask an ext_authz server: run at a common rate at 50% load. */
const EXT_AUTHZ: ReadonlySet<Guard> = new Set(["go-null", "null-keyward", "null-answer", "keyward"]);

/**
 * One round of a scenario: its processes started; every key sent once and a closed-loop warm-up
 * (both outside the measured runs); a closed-loop run, one at the fixed rate and one at
 * `halfRate` (default: 50% of this round's closed-loop rate).
 */
async function runRound(s: EnvoyScenario, o: { fixedRate: number; seconds: number; cpuProfDir?: string | undefined; traceGc?: boolean | undefined; halfRate?: number | undefined }, log: (s: string) => void): Promise<{ max: VegetaRun; fixed: VegetaRun; half: VegetaRun }> {
  const dir = mkdtempSync(join(tmpdir(), "keyward-bench-envoy-"));
  const stops: (() => Promise<void>)[] = [];
  try {
    const app = await startUpstream(dir, "0");
    stops.push(app.stop);
    const authz = await startAuthorizer(s, "1", o);
    if (authz) stops.push(() => authz.stop());
    const gc = o.traceGc && authz && s.guard !== "go-null" ? new GcTrace() : undefined;
    if (gc && authz) createInterface({ input: authz.child.stdout! }).on("line", (l) => {
      gc.line(l);
    });
    const envoy = await startEnvoyFor(dir, s, app.port, authz?.port ?? 1, "1");
    stops.push(envoy.stop);
    const targets = join(dir, "targets.txt");
    writeFileSync(targets, vegetaTargets(envoy.port, s.keys));
    const base = { dir, targets, cpus: "0", envoyPid: envoy.pid, authzPid: authz?.pid, seconds: o.seconds, gc };
    const name = scenarioName(s);
    // Every key once, then a closed-loop warm-up: whatever the first request with a key does
    // (and the JIT's first compilations) happens before the measured runs. A guard that denies
    // everything is misconfigured; a few 403s are ext_authz's 0.25 s timeout on a busy machine,
    // and each run reports its share of 2xx.
    const pass = await attack({ ...base, seconds: 300, rate: 0, once: true, gc: undefined });
    if (pass.count < s.keys) throw new Error(`${name}: the warm-up pass sent ${pass.count} requests for ${s.keys} keys`);
    const warm = await attack({ ...base, seconds: 3, rate: 0, gc: undefined });
    for (const w of [pass, warm]) if (w.success < 0.5) throw new Error(`${name}: only ${(w.success * 100).toFixed(1)}% of warm-up requests succeeded: ${JSON.stringify(w.statusCodes)}`);
    const max = await attack({ ...base, seconds: Math.min(o.seconds, 5), rate: 0 });
    log(`${name}: closed loop ${max.rps} rps, ${max.cpuUsPerRequest} µs CPU/request`);
    // With --cpu-prof: the window of the fixed-rate and 50% runs, on keyward's own clock.
    const from = o.cpuProfDir && s.guard === "keyward" ? await authz?.mark() : undefined;
    const fixed = await attack({ ...base, rate: o.fixedRate });
    log(`${name}: at ${o.fixedRate} rps: p50 ${fixed.p50Ms} p99 ${fixed.p99Ms} ms, ${fixed.cpuUsPerRequest} µs CPU/request, core ${Math.round((fixed.coreBusy ?? 0) * 100)}% busy, ${(fixed.success * 100).toFixed(1)}% 2xx${gcText(fixed)}`);
    const halfRate = o.halfRate ?? max.rps * 0.5;
    // On a machine whose other work takes the core, a guard can fall below what the null server
    // held in the same round; its 50% run then measures an overload, and says so.
    if (halfRate > max.rps * 0.8) log(`${name}: the 50% rate (${Math.round(halfRate)} rps) is ${Math.round((halfRate / max.rps) * 100)}% of this guard's own closed-loop rate: the machine is too busy for this round's 50% run`);
    const half = await attack({ ...base, rate: halfRate });
    if (authz) {
      const rtt = await extAuthzRtt(envoy.adminPort);
      if (rtt) half.extAuthzRttMs = rtt;
    }
    if (from !== undefined && authz) profileWindows.set(authz.pid, [from, await authz.mark()]);
    log(`${name}: at 50% (${Math.round(halfRate)} rps): p50 ${half.p50Ms} p99 ${half.p99Ms} ms, ${half.cpuUsPerRequest} µs CPU/request, core ${Math.round((half.coreBusy ?? 0) * 100)}% busy${gcText(half)}`);
    return { max, fixed, half };
  } finally {
    for (const stop of stops.reverse()) await stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function gcText(r: VegetaRun): string {
  if (!r.gcPauses) return "";
  const parts = Object.entries(r.gcPauses).map(([k, g]) => `${g.count} ${k} (${g.totalMs.toFixed(1)} ms, max ${g.maxMs.toFixed(2)})`);
  return `; GC: ${parts.join(", ") || "none"}`;
}

/** Rounds per point: `make bench` and this script's default. */
export const ENVOY_ROUNDS = 5;

export const ENVOY_SCENARIOS = "none,go-null,null-keyward,null-answer,keyward-10,keyward-10k,native-10,native-10k";

/**
 * The order of a round: the grpc-go null server first (its closed-loop rate sets the 50% rate of
 * every ext_authz guard in the round), the rest as given.
 */
export function roundOrder<T extends EnvoyScenario>(scenarios: readonly T[]): T[] {
  return [...scenarios.filter((s) => s.guard === "go-null"), ...scenarios.filter((s) => s.guard !== "go-null")];
}

/**
 * The 50% rate of a scenario in a round: for the ext_authz guards half the grpc-go null server's
 * closed-loop rate of that round (all of them at the same offered load as the floor they are
 * compared with), for the others (or without the null server) half their own.
 */
export function halfRateFor(s: EnvoyScenario, floorMaxRps: number | undefined): number | undefined {
  return EXT_AUTHZ.has(s.guard) && floorMaxRps !== undefined ? floorMaxRps * 0.5 : undefined;
}

/**
 * `runs` rounds; each round runs every scenario once, in turn, so that the drift of a shared
 * machine falls on all of them alike. Each point's figure is the median over the rounds.
 */
export async function runEnvoyBench(o: { scenarios: string[]; fixedRate: number; seconds: number; runs: number; cpuProfDir?: string; traceGc?: boolean }, log: (s: string) => void): Promise<EnvoyBenchResult> {
  const version = readFileSync(join(toolsBin(), ".vegeta-version"), "utf8").trim();
  const scenarios: EnvoyScenarioResult[] = o.scenarios.map((id) => {
    const s = scenarioFor(id);
    return { ...s, name: scenarioName(s), maxRuns: [], maxRps: 0, fixedRuns: [], halfRuns: [] };
  });
  for (let round = 1; round <= o.runs; round++) {
    log(`round ${round} of ${o.runs}`);
    let floorMax: number | undefined;
    for (const s of roundOrder(scenarios)) {
      const r = await runRound(s, { ...o, halfRate: halfRateFor(s, floorMax) }, log);
      if (s.guard === "go-null") floorMax = r.max.rps;
      s.maxRuns.push(r.max);
      s.fixedRuns.push(r.fixed);
      s.halfRuns.push(r.half);
      s.maxRps = median(s.maxRuns.map((x) => x.rps));
    }
  }
  return { fixedRate: o.fixedRate, seconds: o.seconds, runsPerPoint: o.runs, vegeta: `vegeta ${version}`, scenarios };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      scenarios: { type: "string", default: ENVOY_SCENARIOS },
      rate: { type: "string", default: "1000" },
      seconds: { type: "string", default: "10" },
      runs: { type: "string", default: String(ENVOY_ROUNDS) },
      "cpu-prof": { type: "string" },
      "trace-gc": { type: "boolean", default: false },
    },
  });
  const res = await runEnvoyBench(
    { scenarios: values.scenarios.split(","), fixedRate: Number(values.rate), seconds: Number(values.seconds), runs: Number(values.runs), traceGc: values["trace-gc"], ...(values["cpu-prof"] ? { cpuProfDir: values["cpu-prof"] } : {}) },
    (s) => {
      console.error(`[envoy ${new Date().toISOString().slice(11, 19)}] ${s}`);
    },
  );
  console.log(JSON.stringify(res, null, 2));
  // With --cpu-prof: where keyward's time went under Envoy's load, as bench/profile.ts reduces it.
  const profDir = values["cpu-prof"];
  if (profDir) {
    for (const f of readdirSync(profDir).filter((x) => x.endsWith(".cpuprofile"))) {
      const pid = Number(f.split(".")[3]);
      const [from, to] = profileWindows.get(pid) ?? [-Infinity, Infinity];
      const summary = summarizeProfile(JSON.parse(readFileSync(join(profDir, f), "utf8")) as Parameters<typeof summarizeProfile>[0], from, to);
      console.error(`[envoy] ${f}: ${JSON.stringify(summary, null, 2)}`);
    }
  }
}
