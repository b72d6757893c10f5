// The servers the check-path bench drives, one process each so that it can be
// pinned to a core (taskset) apart from the load generator.
//
//   --mode null                  answers OK to every Check after decoding it: on grpc-js with
//                                proto-loader's decoder (--transport grpc-js, the default for null),
//                                or on keyward's HTTP/2 server with keyward's decoder (--transport keyward)
//   --mode authz --keys N        keyward's check path (Checker + gRPC front) over an index
//                                fed N ApiKeys in process, without an apiserver
//   --mode authz --kubeconfig F  keyward's startAuthz, fed by the real list+watch
//   --transport T                keyward or grpc-js: the gRPC server under keyward's check path
//                                (--grpc-transport); default keyward
//   --answer keyward             (--mode null --transport keyward) answer every Check with the bytes
//                                keyward's check path answers an allowed bench request with (its
//                                headers to set and remove, its dynamic metadata), without deciding
//   --analytics S                (--mode authz --keys N) off (default), events (only the check's event
//                                usage makes anyway, no rows), sqlite or postgres: every
//                                answered check also goes to the analytics rows as keyward authz
//                                hands them over (src/usage/ingest.ts: the bounded queue, batched
//                                writes from this process), into the SQLite file --analytics-path
//                                or the PostgreSQL database --analytics-url; the N ApiKeys' key
//                                records are written before READY
//   --limits-store S             (--mode authz --keys N) every key gets a rate and a quota (the
//                                limits bench's policy) counted by keyward's limits store S: memory,
//                                or redis at --limits-redis-url (--limits-redis-mode standalone or
//                                cluster), opened as keyward authz opens it (a 1 s deadline, so the
//                                figures are counts on Redis); default: no limits
//   --pauses                     stats also give garbage-collection pauses and the event loop's
//                                delay since the previous stats (a 1 ms sampling timer)
//   --analytics-writer W         thread (default, as keyward authz: the store's writes on their own
//                                thread, named keyward-writer) or inline (on the thread answering checks)
//   --workers W                  W processes sharing the port: keyward's worker pool
//                                (src/cluster/pool.ts, as `keyward authz --authz-workers`
//                                runs it); 1 is a plain single process
//
// Prints `READY <port>` on stdout when it serves; each `stats` line on stdin is
// answered with one JSON line (decisions by reason, memory). Listens on 127.0.0.1 only.
import cluster from "node:cluster";
import { monitorEventLoopDelay, performance, PerformanceObserver, type PerformanceEntry } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { Gauge, Registry } from "prom-client";
import { Checker } from "../../src/authz/check.ts";
import { decisionRecorder } from "../../src/authz/decisions.ts";
import { GRPC_TRANSPORTS, startGrpcFront, type GrpcTransport } from "../../src/authz/ext-authz-grpc.ts";
import { decodeCheckRequest } from "../../src/authz/decode.ts";
import { GrpcServer } from "../../src/grpc/over-h2.ts";
import { startH2Server } from "../../src/h2/server.ts";
import { createAuthzMetrics } from "../../src/authz/metrics.ts";
import { PolicyIndex } from "../../src/policy/policy.ts";
import { loadProtos, AUTHZ_SERVICE, type CheckRequestMessage, type CheckResponseMessage } from "../../src/authz/proto.ts";
import { startAuthz } from "../../src/authz/service.ts";
import { defaultConfig } from "../../src/config/config.ts";
import { KeyIndex } from "../../src/index/keys.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { Limiter, type LimitTaker } from "../../src/limits/limiter.ts";
import { openLimitStore } from "../../src/limits/store.ts";
import { runWorker, startWorkerPool } from "../../src/cluster/pool.ts";
import { createLogger, type Logger } from "../../src/log.ts";
import { keywardAnswer } from "../lib/answer.ts";
import { benchPolicy, fillIndex, policyWithLimits } from "../lib/fixture.ts";
import { analyticsListener } from "../lib/analytics-listener.ts";

const { values: args } = parseArgs({
  options: {
    mode: { type: "string", default: "authz" },
    keys: { type: "string", default: "10" },
    kubeconfig: { type: "string" },
    namespace: { type: "string", default: "bench" },
    "expect-keys": { type: "string", default: "0" },
    port: { type: "string", default: "0" },
    workers: { type: "string", default: "1" },
    transport: { type: "string" },
    answer: { type: "string", default: "empty" },
    analytics: { type: "string", default: "off" },
    "analytics-path": { type: "string", default: "" },
    "analytics-url": { type: "string", default: "" },
    "limits-store": { type: "string", default: "" },
    "limits-redis-url": { type: "string", default: "" },
    "limits-redis-mode": { type: "string", default: "standalone" },
    pauses: { type: "boolean", default: false },
    "analytics-writer": { type: "string", default: "thread" },
  },
});
const transport = (args.transport ?? (args.mode === "null" ? "grpc-js" : "keyward")) as GrpcTransport;
if (!(GRPC_TRANSPORTS as readonly string[]).includes(transport)) throw new Error(`--transport must be one of ${GRPC_TRANSPORTS.join(", ")}`);

interface Stats {
  decisions: Record<string, number>;
  /** With --workers: checks answered by each worker. */
  perWorker?: number[];
  rssBytes: number;
  heapUsedBytes: number;
  indexKeys: number;
  /** With --analytics: rows made, written to the store and dropped. */
  analytics?: { made: number; written: number; dropped: number };
  /**
   * Histograms of keyward's own timings (the check's duration; with a redis limits store, each
   * call's), as cumulative counts per upper bound in seconds, since the start.
   */
  histograms?: Record<string, [number, number][]>;
  /** Without --workers, the main thread's event loop since the start: ms idle (waiting for I/O) and active (running callbacks), performance.eventLoopUtilization. */
  loop?: { idleMs: number; activeMs: number };
  /** Since the previous stats: garbage collections (count, total and longest pause in ms) and the event loop's delay (ms). */
  pauses?: { gcCount: number; gcMs: number; gcMaxMs: number; gcByKind: Record<string, { count: number; ms: number; maxMs: number }>; loopP99Ms: number; loopMaxMs: number; storeWaits: number; storeWaitP50Ms: number; storeWaitP99Ms: number; storeWaitMaxMs: number };
}

const gcSeen = { count: 0, ms: 0, maxMs: 0, byKind: {} as Record<string, { count: number; ms: number; maxMs: number }> };
/** perf_hooks' NODE_PERFORMANCE_GC_* kinds. */
const GC_KINDS: Record<number, string> = { 1: "minor", 2: "major", 4: "incremental", 8: "weakcb" };
// --pauses only: the loop-delay sampler is a timer of its own every millisecond.
const loopDelay = monitorEventLoopDelay({ resolution: 1 });
if (args.pauses) {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gcSeen.count++;
      gcSeen.ms += e.duration;
      gcSeen.maxMs = Math.max(gcSeen.maxMs, e.duration);
      const kind = GC_KINDS[(e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind ?? 0] ?? "other";
      const k = (gcSeen.byKind[kind] ??= { count: 0, ms: 0, maxMs: 0 });
      k.count++;
      k.ms = Math.round((k.ms + e.duration) * 10) / 10;
      k.maxMs = Math.max(k.maxMs, Math.round(e.duration * 10) / 10);
    }
  }).observe({ entryTypes: ["gc"] });
  loopDelay.enable();
}

/** Pauses since the previous call, then starts counting anew. */
function pausesSinceLast(): NonNullable<Stats["pauses"]> | undefined {
  if (!args.pauses) return undefined;
  const waits = Float64Array.from(storeWaits).sort();
  const at = (q: number): number => Math.round((waits[Math.min(waits.length - 1, Math.floor(q * waits.length))] ?? NaN) * 1000) / 1000;
  const out = {
    gcCount: gcSeen.count,
    gcMs: Math.round(gcSeen.ms * 10) / 10,
    gcMaxMs: Math.round(gcSeen.maxMs * 10) / 10,
    gcByKind: gcSeen.byKind,
    loopP99Ms: loopDelay.percentile(99) / 1e6,
    loopMaxMs: loopDelay.max / 1e6,
    storeWaits: waits.length,
    storeWaitP50Ms: at(0.5),
    storeWaitP99Ms: at(0.99),
    storeWaitMaxMs: at(1),
  };
  Object.assign(gcSeen, { count: 0, ms: 0, maxMs: 0, byKind: {} });
  loopDelay.reset();
  storeWaits = [];
  return out;
}

/** Cumulative bucket counts of a histogram in the registry, summed over its label sets. */
async function histogramOf(registry: Registry, name: string): Promise<[number, number][] | undefined> {
  const values = await metricValues(registry, name);
  const byBound = new Map<number, number>();
  for (const v of values) {
    if (v.labels.le === undefined) continue;
    const le = v.labels.le === "+Inf" ? Infinity : Number(v.labels.le);
    byBound.set(le, (byBound.get(le) ?? 0) + v.value);
  }
  return byBound.size ? [...byBound].sort((a, b) => a[0] - b[0]) : undefined;
}

async function metricValues(registry: Registry, name: string): Promise<{ labels: Record<string, string | number>; value: number }[]> {
  const m = registry.getSingleMetric(name);
  if (!m) return [];
  return (await m.get()).values as { labels: Record<string, string | number>; value: number }[];
}

async function collectStats(registry: Registry | undefined, nullCount: number): Promise<Stats> {
  const decisions: Record<string, number> = {};
  if (registry) {
    for (const v of await metricValues(registry, "keyward_authz_decisions_total")) {
      const reason = String(v.labels.reason);
      decisions[reason] = (decisions[reason] ?? 0) + v.value;
    }
  } else decisions.null = nullCount;
  const keys = registry ? ((await metricValues(registry, "keyward_authz_index_keys"))[0]?.value ?? 0) : 0;
  const mem = process.memoryUsage();
  const sum = async (name: string): Promise<number> => (await metricValues(registry ?? new Registry(), name)).reduce((n, v) => n + v.value, 0);
  const analytics = registry?.getSingleMetric("keyward_analytics_rows_total")
    ? { made: await sum("keyward_analytics_rows_total"), written: await sum("keyward_analytics_rows_written_total"), dropped: await sum("keyward_analytics_rows_dropped_total") }
    : undefined;
  const histograms: Record<string, [number, number][]> = {};
  for (const name of ["keyward_authz_check_duration_seconds", "keyward_limits_store_call_duration_seconds"]) {
    const h = registry ? await histogramOf(registry, name) : undefined;
    if (h) histograms[name] = h;
  }
  const elu = performance.eventLoopUtilization();
  return { decisions, rssBytes: mem.rss, heapUsedBytes: mem.heapUsed, indexKeys: keys, loop: { idleMs: elu.idle, activeMs: elu.active }, ...(analytics ? { analytics } : {}), histograms, ...(args.pauses ? { pauses: pausesSinceLast() } : {}) };
}

/** The null server on keyward's HTTP/2 server: decodes CheckRequest with keyward's decoder and answers OK. */
async function startNullKeyward(address: string): Promise<{ port: number; count: () => number }> {
  let n = 0;
  // CheckResponse{status: {}}: code 0, or keyward's own answer (--answer keyward).
  const ok = args.answer === "keyward" ? keywardAnswer() : Buffer.from([0x12, 0x00]);
  const grpcServer = new GrpcServer({
    methods: new Map([
      [
        `/${AUTHZ_SERVICE}/Check`,
        {
          kind: "unary",
          handle: (body: Buffer) => {
            decodeCheckRequest(body);
            n++;
            return ok;
          },
        },
      ],
    ]),
  });
  const server = await startH2Server({ address, handler: grpcServer, limits: { maxBody: grpcServer.maxBody } });
  return { port: server.port, count: () => n };
}

/** The null server: decodes CheckRequest with the same loader and answers OK. */
async function startNull(address: string): Promise<{ port: number; count: () => number }> {
  if (transport === "keyward") return startNullKeyward(address);
  const pkg = grpc.loadPackageDefinition(loadProtos());
  let node: unknown = pkg;
  for (const part of AUTHZ_SERVICE.split(".")) node = (node as Record<string, unknown>)[part];
  const svc = (node as { service: grpc.ServiceDefinition }).service;
  const server = new grpc.Server({ "grpc.max_receive_message_length": 4 * 1024 * 1024 });
  let n = 0;
  const ok: CheckResponseMessage = { status: { code: 0 } };
  server.addService(svc, {
    Check: (_call: grpc.ServerUnaryCall<CheckRequestMessage, CheckResponseMessage>, cb: grpc.sendUnaryData<CheckResponseMessage>) => {
      n++;
      cb(null, ok);
    },
  });
  const port = await new Promise<number>((res, rej) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, p) => {
      if (err) rej(err);
      else res(p);
    });
  });
  return { port, count: () => n };
}

/** keyward's check path over an in-process index: what startAuthz wires, minus the watches. */
async function startInMemory(address: string, nKeys: number, log: Logger): Promise<{ port: number; registry: Registry }> {
  const keys = new KeyIndex();
  fillIndex(keys, nKeys);
  const policies = new PolicyIndex();
  policies.apply("add", args["limits-store"] ? policyWithLimits() : benchPolicy());
  const registry = new Registry();
  const limiter = args["limits-store"] ? await limitsStore(registry, log) : new Limiter();
  const metrics = createAuthzMetrics(registry, { keys: () => keys.size, apiKeys: () => keys.apiKeyCount, policies: () => policies.table.policyCount });
  const config = defaultConfig();
  const checker = new Checker({ keys, policies, limiter, now: Date.now, xffTrustedHops: config.xffTrustedHops });
  const listener = args.analytics === "off" ? undefined : await analyticsListener(args.analytics, { keys: nKeys, registry, log, sqlitePath: args["analytics-path"], postgresUrl: args["analytics-url"], writerThread: args["analytics-writer"] !== "inline" });
  // The same per-decision work as startAuthz (src/authz/decisions.ts): the decision counter and
  // duration histogram, then a JSON log line for every denial at the default info level.
  const front = await startGrpcFront({
    address,
    transport,
    checker,
    response: { keyIdHeader: config.keyIdHeader.toLowerCase(), ownerHeader: config.ownerHeader.toLowerCase(), realm: config.authRealm },
    ready: () => true,
    onDecision: decisionRecorder({ front: "grpc", metrics, log, listener }),
    onError: (err) => {
      log.error("check failed; denied", { err });
    },
  });
  return { port: front.port, registry };
}

/** keyward's limits store as `keyward authz` opens it (src/limits/store.ts), with the limits bench's deadline and breaker. */
async function limitsStore(registry: Registry, log: Logger): Promise<LimitTaker> {
  const config = defaultConfig({
    limitsStore: args["limits-store"],
    limitsRedisUrl: args["limits-redis-url"] ? args["limits-redis-url"].split(",") : [],
    limitsRedisMode: args["limits-redis-mode"],
    limitsRedisTimeout: 1000,
    limitsRedisBreakerFailures: 1000,
  });
  const store = (await openLimitStore(config, log, registry, Date.now)).limiter;
  if (!args.pauses) return store;
  // --pauses: each check's wait for a store that answers later (a Redis call), from take to verdict.
  return {
    take: (subject, limits, nowMs, ceiling) => {
      const v = store.take(subject, limits, nowMs, ceiling);
      if (!(v instanceof Promise)) return v;
      const t0 = performance.now();
      return v.then((verdict) => {
        storeWaits.push(performance.now() - t0);
        return verdict;
      });
    },
    forget: (prefix) => {
      store.forget(prefix);
    },
  };
}

/** --pauses: the store waits (ms) since the previous stats. */
let storeWaits: number[] = [];

async function startViaApiserver(address: string, kubeconfig: string, namespace: string, expectKeys: number, log: Logger): Promise<{ port: number; registry: Registry }> {
  const kc = loadKubeConfig(kubeconfig);
  const rest = new KubeRest(kc);
  const registry = new Registry();
  // The load sends its 10% unknown keys from one address; with the unknown-key defence on they
  // would turn into 429s after the threshold, and the run would measure that instead of the mix.
  const config = defaultConfig({ grpcAddress: address, grpcTransport: transport, httpAuthAddress: "", metricsAddress: "", namespaces: [namespace], unknownKeyThreshold: 0 });
  const h = await startAuthz({ config, kc, rest, log, registry });
  const deadline = Date.now() + 600_000;
  for (;;) {
    const keys = (await metricValues(registry, "keyward_authz_index_keys"))[0]?.value ?? 0;
    if (h.ready() && keys >= expectKeys) break;
    if (Date.now() > deadline) throw new Error(`index has ${keys} of ${expectKeys} keys after 600 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { port: h.grpcPort, registry };
}

async function serveOne(address: string): Promise<{ port: number; stats: () => Promise<Stats> }> {
  // Production logging: info level, one JSON line per denial on stderr (the parent discards it).
  const log = createLogger({ level: "info" });
  if (args.mode === "null") {
    const s = await startNull(address);
    return { port: s.port, stats: () => collectStats(undefined, s.count()) };
  }
  const s = args.kubeconfig
    ? await startViaApiserver(address, args.kubeconfig, args.namespace, Number(args["expect-keys"]), log)
    : await startInMemory(address, Number(args.keys), log);
  return { port: s.port, stats: () => collectStats(s.registry, 0) };
}

function mergeStats(all: Stats[]): Stats {
  const out: Stats = { decisions: {}, rssBytes: 0, heapUsedBytes: 0, indexKeys: 0, perWorker: [] };
  for (const s of all) {
    out.perWorker?.push(Object.values(s.decisions).reduce((a, b) => a + b, 0));
    for (const [k, v] of Object.entries(s.decisions)) out.decisions[k] = (out.decisions[k] ?? 0) + v;
    out.rssBytes += s.rssBytes;
    out.heapUsedBytes += s.heapUsedBytes;
    out.indexKeys = Math.max(out.indexKeys, s.indexKeys);
  }
  return out;
}

/** A worker's Stats as one gauge (`stat` label), collected by the pool with its metrics. */
function statsRegistry(stats: () => Promise<Stats>): Registry {
  const registry = new Registry();
  new Gauge({
    name: "bench_stats",
    help: "this worker's Stats",
    labelNames: ["stat"] as const,
    registers: [registry],
    async collect() {
      const s = await stats();
      for (const [k, v] of Object.entries(s.decisions)) this.set({ stat: `decisions.${k}` }, v);
      this.set({ stat: "rssBytes" }, s.rssBytes);
      this.set({ stat: "heapUsedBytes" }, s.heapUsedBytes);
      this.set({ stat: "indexKeys" }, s.indexKeys);
    },
  });
  return registry;
}

function statsFromMetrics(metrics: { name: string; values: { labels: Record<string, string | number>; value: number }[] }[]): Stats {
  const out: Stats = { decisions: {}, rssBytes: 0, heapUsedBytes: 0, indexKeys: 0 };
  for (const { labels, value } of metrics.find((m) => m.name === "bench_stats")?.values ?? []) {
    const stat = String(labels.stat);
    if (stat.startsWith("decisions.")) out.decisions[stat.slice("decisions.".length)] = value;
    else if (stat === "rssBytes" || stat === "heapUsedBytes" || stat === "indexKeys") out[stat] = value;
  }
  return out;
}

function onStdinLines(fn: (line: string) => void): void {
  createInterface({ input: process.stdin }).on("line", fn);
}

const workers = Number(args.workers);
if (workers <= 1) {
  const s = await serveOne(`127.0.0.1:${args.port}`);
  onStdinLines((line) => {
    if (line.trim() === "stats") void s.stats().then((st) => process.stdout.write(`STATS ${JSON.stringify(st)}\n`));
    // The monotonic clock in microseconds, the time base of --cpu-prof's samples: lets the
    // profile summary keep only the samples taken under load.
    if (line.trim() === "mark") process.stdout.write(`MARK ${String(process.hrtime.bigint() / 1000n)}\n`);
  });
  process.on("SIGTERM", () => process.exit(0));
  process.stdout.write(`READY ${s.port}\n`);
} else if (cluster.isPrimary) {
  // keyward's worker pool: W forked processes serve on one shared listening socket (the
  // primary accepts and hands connections out round-robin).
  const log = createLogger({ level: "info" });
  const pool = startWorkerPool({
    count: workers,
    log,
    onFatal: (err) => {
      log.error("workers failed", { err });
      process.exit(1);
    },
  });
  await pool.started;
  const port = (pool.workers()[0]?.info as { port: number }).port;
  onStdinLines((line) => {
    if (line.trim() !== "stats") return;
    void pool.collect().then((all) => process.stdout.write(`STATS ${JSON.stringify(mergeStats(all.map((w) => statsFromMetrics(w.metrics))))}\n`));
  });
  process.on("SIGTERM", () => {
    void pool.stop().then(() => process.exit(0));
  });
  process.stdout.write(`READY ${port}\n`);
} else {
  await runWorker(async () => {
    const s = await serveOne(`127.0.0.1:${args.port}`);
    return { registry: statsRegistry(s.stats), ready: () => true, info: { port: s.port }, stop: () => Promise.resolve() };
  }, createLogger({ level: "info" }));
}
