// Start-up and idle memory of each role (`authz`, `operator`, `run`) against a real
// apiserver holding 10, 10k or 100k issued ApiKeys.
//
//   node bench/startup.ts [--keys 10,10000,100000] [--roles authz,operator,run] [--runs 3]
//                         [--authz-only-above N] [--compile-cache] [--sources]
//                         [--kubeconfig FILE [--etcd URL]] [--node-flags "--cpu-prof --cpu-prof-dir=DIR"]
//
// Every ApiKey is seeded as the operator leaves it: status.keys with the key's hash, written
// through the status subresource, and its Secret, owned and labelled; into etcd directly when
// the bench runs its own control plane or is given --etcd (bench/lib/seed-etcd.ts), through
// the apiserver otherwise. So `authz` needs no
// operator, and `operator` measures a restart against keys it has already issued. Each role
// is started `runs` times as the image starts it: keyward built once per bench run into a
// temporary application directory laid out as the image's (scripts/build.ts, ADR 58), then
// `node dist/main.js <role>` (the Dockerfile's ENTRYPOINT); with --sources as development runs
// it, `node src/main.ts <role>` (TypeScript stripped at load). From the spawn the bench times /readyz
// answering 200 and (authz, run) the first allowed Check over gRPC, waits until the process is
// idle (its start's background work, the analytics key records, done), then runs two full
// collections through the inspector and reads VmRSS once it has settled. Each runs as the
// chart's pods run it: the image's environment (the Dockerfile's ENV: jemalloc preloaded, ADR
// 0073, and MALLOC_ARENA_MAX for glibc's malloc, ADR 0054), `authz` with the chart's NODE_OPTIONS (authz.nodeOptions), and Node's compile
// cache off unless --compile-cache (the chart's pods cannot write one). Medians are reported;
// JSON on stdout when run alone.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { mkdtempSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { API_VERSION, type ApiKey } from "../src/api/types.ts";
import { loadKubeConfig } from "../src/k8s/client.ts";
import { KubeApiError, KubeRest } from "../src/k8s/rest.ts";
import { watchList } from "../src/k8s/informer.ts";
import { buildKeySecret } from "../src/operator/secrets.ts";
import { issuedStatus, seedKeysIntoEtcd } from "./lib/seed-etcd.ts";
import { authzClient, checkRequest } from "../test/conformance/harness.ts";
import { createNamespace, pool, startControlPlane } from "./apiserver.ts";
import { apiKeyObject, benchPolicy, BENCH_HOST, keyFor } from "./lib/fixture.ts";
import { cpuSeconds, ownAnalyticsStore, repoRoot, threadsNamed } from "./lib/proc.ts";
import { WRITER_THREAD_NAME } from "../src/analytics/writer-thread.ts";
import type { ViewCost } from "./views.ts";
import { chartNodeOptions } from "./check.ts";
import { imageApp, imageEnv } from "./lib/image-env.ts";

export type Role = "authz" | "operator" | "run";

export interface StartupRun {
  readyMs: number;
  /** CPU seconds (user + system) the process had used when /readyz first answered 200: less noisy than wall time on a shared machine. */
  cpuToReadyS?: number;
  firstAllowedMs?: number;
  /** VmRSS settled after the two full collections the bench forces through the inspector. */
  rssMiB: number;
  /**
   * VmRSS once the process is idle after Ready and the RSS has stayed within 1 MiB for 12 s,
   * before the bench forces any collection: what the pod's memory shows, and what the targets
   * are read against.
   */
  rssAtRestMiB?: number;
  /**
   * VmRSS once idle after Ready, settled for 12 s, while the analytics writer thread still runs
   * (before its idle end, `--analytics-writer-idle`, ADR 71): what the pod holds between writes.
   * Undefined without a writer thread.
   */
  rssWriterRunningMiB?: number;
  /** How long after the process went idle its writer thread ended (ms). */
  writerEndedMs?: number;
  /** How long after the writer thread's end (or the process going idle) its heap was compacted once idle (ms; ADR 72). */
  idleCompactedMs?: number;
  /** How long that compaction paused the main thread (ms). */
  idleCompactionMs?: number;
  /**
   * How long after Ready (and the first allowed check) the process went on working before it
   * was idle (untilIdle): its start's work in the background, the analytics key records (ADR 61,
   * 63). The collections and the RSS are taken after it.
   */
  busyAfterReadyMs?: number;
  /** VmHWM when the RSS was read: the most the process had resident, its list included. */
  peakRssMiB?: number;
  /** Resident pages of glibc's main heap (the `[heap]` mapping of /proc/PID/smaps) when the RSS was read. */
  mallocHeapMiB?: number;
  heapUsedMiB?: number;
  /** Where the idle RSS is (MiB), after the two collections. */
  breakdown?: RssBreakdown;
}

/** The idle RSS by kind (MiB): /proc/PID/smaps by mapping, and the V8 heap as the inspector reports it. */
export interface RssBreakdown {
  /** Resident pages of the node binary's own file (code and read-only data; shared, clean). */
  binary: number;
  /** Resident pages of other files (shared libraries, ICU data). */
  otherFiles: number;
  /** glibc's main heap, `[heap]`: the main thread's mallocs, and those of the threads glibc gives the main arena (0 with jemalloc, whose pages are in otherAnon). */
  mallocHeap: number;
  /** glibc's other malloc arenas (with the image's MALLOC_ARENA_MAX=2, one): the other threads' mallocs (smapsArenas). */
  mallocArenas?: number;
  /** Every other anonymous page: V8's heap and code spaces, thread stacks, mmap'd malloc chunks. */
  otherAnon: number;
  /** process.memoryUsage() of the main isolate: its V8 heap, total and used, and external (ArrayBuffers included). */
  heapTotal: number;
  heapUsed: number;
  external: number;
}

export interface StartupRow {
  role: Role;
  keys: number;
  runs: StartupRun[];
  /** Medians of the runs. */
  readyMs: number;
  cpuToReadyS?: number;
  firstAllowedMs?: number;
  rssMiB: number;
  rssAtRestMiB?: number;
  /** With the analytics store on: the RSS idle while its writer thread still ran. */
  rssWriterRunningMiB?: number;
  heapUsedMiB?: number;
}

export interface StartupSection {
  command: string;
  seeds: SeedResult[];
  rows: StartupRow[];
  /** What was started: the image's built JavaScript, or the sources (--sources). */
  program?: "built" | "sources";
  /** bench/views.ts: heap bytes per key of each watch's view. */
  views?: ViewCost[];
}

export interface SeedResult {
  keys: number;
  seconds: number;
  /** Requests to the apiserver, or etcd transactions. */
  requests: number;
  through?: "etcd" | "apiserver";
}

/** Resolves once the apiserver lists `n` ApiKeys in `ns` (its watch cache has caught up with etcd); polls for up to five minutes. */
async function untilListed(rest: KubeRest, ns: string, n: number): Promise<void> {
  const deadline = Date.now() + 300_000;
  for (;;) {
    const page = await rest.request<{ items: unknown[]; metadata: { remainingItemCount?: number } }>("GET", `${BASE}/namespaces/${ns}/apikeys`, { query: { limit: "1" } });
    if (page.items.length + (page.metadata.remainingItemCount ?? 0) >= n) return;
    if (Date.now() > deadline) throw new Error(`the apiserver lists fewer than ${n} ApiKeys in ${ns} after five minutes`);
    await pause(200);
  }
}

/**
 * Resolves once the apiserver's watch cache of ApiKeys has caught up with etcd: keys written
 * into etcd directly reach it through its etcd watch, some tens of seconds after 100,000 of
 * them, and until then a watch-list (what keyward lists with) waits and fails with "Too large
 * resource version". A real cluster's apiserver has long caught up when keyward starts, so the
 * bench waits for that with the same request, on a field selector that matches nothing.
 */
async function untilWatchCacheCaughtUp(rest: KubeRest, ns: string): Promise<void> {
  const deadline = Date.now() + 300_000;
  for (;;) {
    try {
      await watchList(rest, `${BASE}/namespaces/${ns}/apikeys`, { fieldSelector: "metadata.name=keyward-bench-none" }, { item: () => {}, gone: () => {} });
      return;
    } catch (err) {
      // 504: the apiserver waited for its cache a few seconds and gave up; anything else is a failure.
      if (!(err instanceof KubeApiError && err.status === 504)) throw err;
      if (Date.now() > deadline) throw new Error(`the apiserver's watch cache of ${ns}'s ApiKeys has not caught up with etcd after five minutes`, { cause: err });
    }
  }
}

const BASE = `/apis/${API_VERSION}`;

export const startupNamespace = (keys: number): string => `startup-${keys}`;

/**
 * Seeds `n` issued ApiKeys into their own namespace, each with its Secret unless `secrets` is
 * false. With `etcdUrl` (the bench's own control plane) they are written into etcd as the
 * apiserver stores them (bench/lib/seed-etcd.ts), and this returns once the apiserver lists
 * them all. Without, through the apiserver: the ApiKey (plain POST), its Secret and its status
 * (merge patch on the status subresource), 64 keys in flight, unthrottled.
 */
export async function seedIssuedKeys(kubeconfig: string, n: number, log: (s: string) => void, secrets = true, etcdUrl?: string): Promise<SeedResult> {
  const rest = new KubeRest(loadKubeConfig(kubeconfig), { qps: 0 });
  const ns = startupNamespace(n);
  try {
    await createNamespace(rest, ns);
    const have = await rest.request<{ items: unknown[]; metadata: { continue?: string } }>("GET", `${BASE}/namespaces/${ns}/apikeys`, { query: { limit: "1" } });
    if (have.items.length > 0) {
      log(`${ns} already seeded`);
      return { keys: n, seconds: 0, requests: 0 };
    }
    await rest.request("POST", `${BASE}/namespaces/${ns}/apikeypolicies`, { body: benchPolicy(ns) });
    const t0 = performance.now();
    if (etcdUrl) {
      const txns = await seedKeysIntoEtcd(etcdUrl, ns, n, secrets, log);
      await untilListed(rest, ns, n);
      await untilWatchCacheCaughtUp(rest, ns);
      return { keys: n, seconds: Math.round((performance.now() - t0) / 100) / 10, requests: txns, through: "etcd" };
    }
    let done = 0;
    await pool(
      Array.from({ length: n }, (_, i) => i),
      64,
      async (i) => {
        const obj = apiKeyObject(i, ns);
        const { status, metadata, ...rest0 } = obj;
        const created = await rest.request<ApiKey>("POST", `${BASE}/namespaces/${ns}/apikeys`, { body: { ...rest0, metadata: { name: metadata.name, namespace: ns, labels: metadata.labels } } });
        const secret = buildKeySecret(created, keyFor(i), status?.keys?.[0]?.id ?? "");
        if (secrets) await rest.request("POST", `/api/v1/namespaces/${ns}/secrets`, { body: secret });
        await rest.request("PATCH", `${BASE}/namespaces/${ns}/apikeys/${metadata.name}/status`, {
          body: { status: issuedStatus(obj, secret.metadata?.name ?? "") },
          contentType: "application/merge-patch+json",
        });
        if (++done % 10_000 === 0) log(`seeded ${done}/${n} issued ApiKeys`);
      },
    );
    return { keys: n, seconds: Math.round((performance.now() - t0) / 100) / 10, requests: (secrets ? 3 : 2) * n + 1, through: "apiserver" };
  } finally {
    rest.close();
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]!;
};

/** A field of /proc/PID/status in kB (VmRSS, VmHWM), as MiB. */
const statusMiB = (pid: number, field: "VmRSS" | "VmHWM"): number => {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
};
const rssMiB = (pid: number): number => statusMiB(pid, "VmRSS");

/** Resident kB of /proc/PID/smaps summed by `group` of each mapping's name (a file's path, `[heap]`, or "" for anonymous memory). */
export function smapsResident<G extends string>(smaps: string, group: (name: string) => G): Partial<Record<G, number>> {
  const out: Partial<Record<G, number>> = {};
  let g: G | undefined;
  for (const line of smaps.split("\n")) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      g = group(head[1] ?? "");
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss && g !== undefined) out[g] = (out[g] ?? 0) + Number(rss[1]);
  }
  return out;
}

/** glibc's heaps of its other malloc arenas (the threads' that do not use `[heap]`) are reserved 64 MiB at a time, at a 64 MiB boundary. */
const ARENA_HEAP = 64 * 2 ** 20;

/**
 * Resident kB of glibc's other malloc arenas in /proc/PID/smaps: each heap of an arena is an
 * anonymous mapping at a 64 MiB boundary, its writable part followed by the rest of its 64 MiB
 * reserved (`---p`). V8's pages and thread stacks are neither aligned nor reserved so.
 */
export function smapsArenas(smaps: string): number {
  const maps: { start: number; end: number; perms: string; name: string; rss: number }[] = [];
  for (const line of smaps.split("\n")) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) maps.push({ start: parseInt(head[1]!, 16), end: parseInt(head[2]!, 16), perms: head[3]!, name: head[4] ?? "", rss: 0 });
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    const last = maps.at(-1);
    if (rss && last) last.rss += Number(rss[1]);
  }
  let kb = 0;
  for (const [i, m] of maps.entries()) {
    const next = maps[i + 1];
    const reserved = next !== undefined && next.start === m.end && next.perms === "---p" && next.name === "" && next.end - m.start === ARENA_HEAP;
    if (m.name === "" && m.perms === "rw-p" && m.start % ARENA_HEAP === 0 && (reserved || m.end - m.start === ARENA_HEAP)) kb += m.rss;
  }
  return kb;
}

/**
 * Resident kB of /proc/PID/smaps by kind: the node binary's file, other files, `[heap]`, glibc's
 * other malloc arenas, other anonymous pages (V8's heaps, thread stacks).
 */
export function smapsByKind(smaps: string, binary: string): { binary: number; otherFiles: number; mallocHeap: number; mallocArenas: number; otherAnon: number } {
  const by = smapsResident(smaps, (path) => (path === binary ? "binary" : path === "[heap]" ? "mallocHeap" : path.startsWith("/") ? "otherFiles" : "otherAnon"));
  const mallocArenas = smapsArenas(smaps);
  return { binary: by.binary ?? 0, otherFiles: by.otherFiles ?? 0, mallocHeap: by.mallocHeap ?? 0, mallocArenas, otherAnon: (by.otherAnon ?? 0) - mallocArenas };
}

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function get(url: string): Promise<{ status: number; body: string }> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return { status: r.status, body: await r.text() };
  } catch {
    return { status: 0, body: "" };
  }
}

/**
 * Waits until the process has used less than `share` of a core over one `windowMs` (at most
 * `maxMs`): the idle RSS is the RSS once the start's background work is done, not during it.
 * Returns how long it waited.
 */
export async function untilIdle(pid: number, maxMs: number, windowMs = 1000, share = 0.03): Promise<number> {
  const t0 = performance.now();
  let before = cpuSeconds(pid);
  for (;;) {
    await pause(windowMs);
    const now = cpuSeconds(pid);
    if (now - before < (share * windowMs) / 1000 || performance.now() - t0 > maxMs) return Math.round(performance.now() - t0 - windowMs);
    before = now;
  }
}

/**
 * Waits until the counter `name` on the metrics page `url` is at least 1 (at most `maxMs`; then
 * throws); returns how long it waited (ms) and the page then, or undefined at once when the page
 * has no such metric.
 */
async function untilCounted(url: string, name: string, maxMs: number): Promise<{ waitedMs: number; body: string } | undefined> {
  const t0 = performance.now();
  for (;;) {
    const { body } = await get(url);
    const m = new RegExp(`^${name} (\\S+)$`, "m").exec(body);
    if (!m) return undefined;
    if (Number(m[1]) >= 1) return { waitedMs: Math.round(performance.now() - t0), body };
    if (performance.now() - t0 > maxMs) throw new Error(`${name} still 0 after ${maxMs} ms idle`);
    await pause(1000);
  }
}

/** Waits until the process has no thread named `name` (at most `maxMs`; then throws); returns how long it waited (ms). */
async function untilNoThread(pid: number, name: string, maxMs: number): Promise<number> {
  const t0 = performance.now();
  while (threadsNamed(pid, name).length > 0) {
    if (performance.now() - t0 > maxMs) throw new Error(`the ${name} thread of ${pid} still runs after ${maxMs} ms idle`);
    await pause(250);
  }
  return Math.round(performance.now() - t0);
}

/**
 * VmRSS once it has settled: sampled every 250 ms until `samples` samples in a row lie within
 * 1 MiB of each other (the collector has run and the heap stopped growing), at most `maxMs`.
 */
/** Samples (every 250 ms) the RSS at rest must stay within 1 MiB for: 12 s. */
const REST_SAMPLES = 48;

async function settledRss(pid: number, maxMs: number, samples = 4): Promise<number> {
  const deadline = Date.now() + maxMs;
  const window: number[] = [];
  for (;;) {
    window.push(rssMiB(pid));
    if (window.length > samples) window.shift();
    if (window.length === samples && Math.max(...window) - Math.min(...window) < 1) return median(window);
    if (Date.now() > deadline) return window[window.length - 1]!;
    await pause(250);
  }
}

/**
 * A free port below Linux's ephemeral range (32768 and up), where the outgoing connections of
 * everything else on a shared machine cannot take it between this check and keyward's bind.
 */
export async function listenablePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once("error", () => {
        resolve(false);
      });
      srv.listen(port, "127.0.0.1", () => {
        srv.close(() => {
          resolve(true);
        });
      });
    });
    if (free) return port;
  }
}

/** A session with the process's inspector (its first target): `call` sends a method and resolves with its result. */
export async function inspectorSession(inspectPort: number): Promise<{ call: (method: string, params?: Record<string, unknown>) => Promise<Record<string, unknown>>; close: () => void }> {
  const targets = (await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
  const url = targets[0]?.webSocketDebuggerUrl;
  if (!url) throw new Error("the inspector lists no target");
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => {
      resolve();
    };
    ws.onerror = () => {
      reject(new Error("inspector connection failed"));
    };
  });
  let id = 0;
  const call = (method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> =>
    new Promise((resolve) => {
      const mine = ++id;
      ws.addEventListener("message", function on(ev: { data: unknown }) {
        const m = JSON.parse(String(ev.data)) as { id?: number; result?: Record<string, unknown> };
        if (m.id !== mine) return;
        ws.removeEventListener("message", on);
        resolve(m.result ?? {});
      });
      ws.send(JSON.stringify({ id: mine, method, params }));
    });
  return {
    call,
    close: () => {
      ws.close();
    },
  };
}

/**
 * Runs two full collections of the main isolate through its inspector (the DevTools protocol's
 * HeapProfiler.collectGarbage), as an idle process's memory reducer would in time; returns the
 * heap's used bytes after them, and process.memoryUsage() then.
 */
export async function collectGarbage(inspectPort: number): Promise<{ used: number; memory: { heapTotal: number; heapUsed: number; external: number } }> {
  const { call, close } = await inspectorSession(inspectPort);
  try {
    await call("HeapProfiler.collectGarbage");
    await pause(500);
    await call("HeapProfiler.collectGarbage");
    const used = Number((await call("Runtime.getHeapUsage")).usedSize);
    const evaluated = (await call("Runtime.evaluate", { expression: "JSON.stringify(process.memoryUsage())", returnByValue: true })) as { result?: { value?: string } };
    return { used, memory: JSON.parse(evaluated.result?.value ?? "{}") as { heapTotal: number; heapUsed: number; external: number } };
  } finally {
    close();
  }
}

/** What the bench starts: a main module and the directory it runs in. */
export interface Program {
  main: string;
  cwd: string;
}

/** keyward's sources, as development runs them. */
export const SOURCES: Program = { main: join(repoRoot, "src/main.ts"), cwd: repoRoot };

/** One start of `role`: times to /readyz 200 and the first allowed Check, then the settled RSS. */
export async function startOnce(kubeconfig: string, role: Role, keys: number, nodeFlags: string[] = [], compileCache = false, program: Program = SOURCES): Promise<StartupRun> {
  const [metricsPort, grpcPort, inspectPort] = [await listenablePort(), await listenablePort(), await listenablePort()];
  const args = [
    // The inspector, on loopback, only to run a full collection before RSS is read.
    `--inspect=127.0.0.1:${inspectPort}`,
    ...nodeFlags,
    program.main,
    role,
    "--kubeconfig", kubeconfig,
    "--namespaces", startupNamespace(keys),
    "--metrics-address", `127.0.0.1:${metricsPort}`,
    "--grpc-address", `127.0.0.1:${grpcPort}`,
    "--http-auth-address", "",
    "--leader-elect=false",
    "--log-level", "warn",
  ];
  const t0 = performance.now();
  // As the chart's pods run it: with the image's environment (the Dockerfile's ENV), without
  // Node's compile cache by default (read-only root filesystem), and `authz` with the chart's
  // NODE_OPTIONS (authz.nodeOptions in values.yaml).
  // Each start gets a fresh analytics file, as a pod on a new volume: never one that other
  // benches' processes (started in the same working directory) have filled. Its path goes in the
  // environment, so KEYWARD_ANALYTICS_STORE=off still turns the store off.
  const analytics = ownAnalyticsStore();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...imageEnv(),
    KEYWARD_ANALYTICS_SQLITE_PATH: analytics.path,
    ...(compileCache ? {} : { NODE_DISABLE_COMPILE_CACHE: "1" }),
    ...(role === "authz" ? { NODE_OPTIONS: chartNodeOptions().join(" ") } : {}),
  };
  const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "inherit"], cwd: program.cwd, env });
  const exited = new Promise<number | null>((r) => {
    child.once("exit", (code) => {
      r(code);
    });
  });
  const gone = (): boolean => child.exitCode !== null || child.signalCode !== null;
  // A fresh client after each failed attempt: grpc-js backs off a second or more after a
  // refused connection, which would be counted as keyward's start-up.
  const wantsCheck = role !== "operator";
  let client: ReturnType<typeof authzClient> | undefined;
  try {
    const deadline = Date.now() + 300_000;
    let readyMs: number | undefined;
    let cpuToReadyS: number | undefined;
    let firstAllowedMs: number | undefined;
    const req = checkRequest({ host: BENCH_HOST, path: "/v1/orders/1", headers: { "x-api-key": keyFor(0) } });
    while (readyMs === undefined || (wantsCheck && firstAllowedMs === undefined)) {
      if (gone()) throw new Error(`keyward ${role} exited during start-up`);
      if (Date.now() > deadline) throw new Error(`keyward ${role} at ${keys} keys not ready within 300 s`);
      if (readyMs === undefined && (await get(`http://127.0.0.1:${metricsPort}/readyz`)).status === 200) {
        readyMs = performance.now() - t0;
        cpuToReadyS = Math.round(cpuSeconds(child.pid!) * 100) / 100;
      }
      if (wantsCheck && firstAllowedMs === undefined) {
        client ??= authzClient(grpcPort, { ownConnection: true });
        const ok = await client.check(req, { deadlineMs: 1000 }).then(
          (r) => r.status.code === 0,
          () => false,
        );
        if (ok) firstAllowedMs = performance.now() - t0;
        else {
          client.close();
          client = undefined;
        }
      }
      await pause(20);
    }
    const busyAfterReadyMs = await untilIdle(child.pid!, 120_000);
    // With the analytics store on, the writer thread ends after --analytics-writer-idle without a
    // write (ADR 71): the RSS while it still runs, then its end, before the RSS at rest.
    let rssWriterRunning: number | undefined;
    let writerEndedMs: number | undefined;
    if (threadsNamed(child.pid!, WRITER_THREAD_NAME).length > 0) {
      // Settled as the RSS at rest is, within the writer's idle time (one minute by default).
      rssWriterRunning = await settledRss(child.pid!, 40_000, REST_SAMPLES);
      writerEndedMs = await untilNoThread(child.pid!, WRITER_THREAD_NAME, 180_000);
    }
    // And its heap compacted once idle (--compact-heap-after-idle, ADR 72): between one and two
    // idle periods after the last check. A keyward without it (no such metric) is not waited for.
    const compacted = await untilCounted(`http://127.0.0.1:${metricsPort}/metrics`, "keyward_heap_idle_compaction_seconds_count", 200_000);
    const idleCompactedMs = compacted?.waitedMs;
    const idleCompactionSeconds = compacted && Number(/^keyward_heap_idle_compaction_seconds_sum (\S+)$/m.exec(compacted.body)?.[1]);
    // At rest: unchanged for REST_SAMPLES samples (12 s). V8 keeps the pages of a thread that has
    // ended (the analytics writer thread renewed after the start's key records, ADR 63) in its page
    // pool and hands them back to the system about 8 s later, on a task of another thread: a
    // shorter window read the RSS before that, some 20 MiB high at 100,000 keys with the store on.
    const rssAtRest = await settledRss(child.pid!, 60_000, REST_SAMPLES);
    const { used: heapUsed, memory } = await collectGarbage(inspectPort);
    const rss = await settledRss(child.pid!, 30_000);
    const mib = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;
    const kinds = smapsByKind(readFileSync(`/proc/${child.pid!}/smaps`, "utf8"), realpathSync(process.execPath));
    const breakdown: RssBreakdown = {
      binary: mib(kinds.binary * 1024),
      otherFiles: mib(kinds.otherFiles * 1024),
      mallocHeap: mib(kinds.mallocHeap * 1024),
      mallocArenas: mib(kinds.mallocArenas * 1024),
      otherAnon: mib(kinds.otherAnon * 1024),
      heapTotal: mib(memory.heapTotal),
      heapUsed: mib(memory.heapUsed),
      external: mib(memory.external),
    };
    const peakRssMiB = Math.round(statusMiB(child.pid!, "VmHWM") * 10) / 10;
    return { readyMs: Math.round(readyMs), cpuToReadyS, busyAfterReadyMs, firstAllowedMs: firstAllowedMs === undefined ? undefined : Math.round(firstAllowedMs), rssMiB: Math.round(rss * 10) / 10, rssAtRestMiB: Math.round(rssAtRest * 10) / 10, ...(rssWriterRunning !== undefined ? { rssWriterRunningMiB: Math.round(rssWriterRunning * 10) / 10 } : {}), ...(writerEndedMs !== undefined ? { writerEndedMs } : {}), ...(idleCompactedMs !== undefined ? { idleCompactedMs } : {}), ...(idleCompactionSeconds !== undefined ? { idleCompactionMs: Math.round(idleCompactionSeconds * 1000) } : {}), peakRssMiB, mallocHeapMiB: breakdown.mallocHeap, heapUsedMiB: mib(heapUsed), breakdown };
  } finally {
    client?.close();
    if (!gone()) {
      const kill = setTimeout(() => child.kill("SIGKILL"), 15_000);
      child.kill("SIGTERM");
      await exited;
      clearTimeout(kill);
    }
    analytics.remove();
  }
}

/**
 * Each key count seeded (once per control plane) and each role started `runs` times. Above
 * `authzOnlyAbove` keys only `authz` runs, and no Secrets are seeded (a third fewer writes).
 * keyward is built once first and the built JavaScript started, as the image runs it, unless
 * `sources`.
 */
export async function startupRows(o: {
  kubeconfig: string;
  keys: number[];
  roles: Role[];
  runs: number;
  authzOnlyAbove?: number;
  nodeFlags?: string[];
  /** Let the processes use Node's compile cache (warm after the first run). */
  compileCache?: boolean;
  /** The control plane's etcd: seed through it (seconds for 100k keys) instead of the apiserver. */
  etcdUrl?: string;
  /** Start `node src/main.ts` (types stripped at load) instead of the image's built JavaScript. */
  sources?: boolean;
  log: (s: string) => void;
}): Promise<{ seeds: SeedResult[]; rows: StartupRow[]; program: "built" | "sources" }> {
  if (o.sources) return { ...(await startupRowsOf(o, SOURCES)), program: "sources" };
  const dir = mkdtempSync(join(tmpdir(), "keyward-startup-app-"));
  try {
    const app = imageApp(dir);
    o.log(`start-up: built ${app.build.modules} modules into ${dir} in ${app.build.ms} ms; starting ${app.main}`);
    return { ...(await startupRowsOf(o, { main: app.main, cwd: app.dir })), program: "built" };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function startupRowsOf(o: Parameters<typeof startupRows>[0], program: Program): Promise<{ seeds: SeedResult[]; rows: StartupRow[] }> {
  const seeds: SeedResult[] = [];
  const rows: StartupRow[] = [];
  for (const n of o.keys) {
    const authzOnly = n > (o.authzOnlyAbove ?? Infinity);
    o.log(`start-up: seeding ${n} issued ApiKeys (ApiKey, status${authzOnly ? "" : ", Secret"})`);
    const seed = await seedIssuedKeys(o.kubeconfig, n, o.log, !authzOnly, o.etcdUrl);
    o.log(`start-up: seeded ${n} in ${seed.seconds} s`);
    seeds.push(seed);
    for (const role of authzOnly ? o.roles.filter((r) => r === "authz") : o.roles) {
      const runs: StartupRun[] = [];
      for (let i = 0; i < o.runs; i++) {
        // Up to twice more when the process exits early: on a shared machine a port found free can be taken before keyward binds it.
        const attempt = (left: number): Promise<StartupRun> =>
          startOnce(o.kubeconfig, role, n, o.nodeFlags, o.compileCache, program).catch((err: unknown) => {
            if (left === 0) throw err;
            o.log(`start-up: ${role} at ${n} keys, run ${i + 1} failed (${String(err)}); once more`);
            return attempt(left - 1);
          });
        const r = await attempt(2);
        o.log(`start-up: ${role} at ${n} keys, run ${i + 1}: ready ${r.readyMs} ms (CPU ${r.cpuToReadyS ?? "–"} s), first allowed ${r.firstAllowedMs ?? "–"} ms, busy ${r.busyAfterReadyMs ?? "–"} ms more, RSS with the writer thread ${r.rssWriterRunningMiB ?? "–"} MiB (it ended ${r.writerEndedMs ?? "–"} ms later; heap compacted when idle ${r.idleCompactedMs ?? "–"} ms after that, in ${r.idleCompactionMs ?? "–"} ms), RSS at rest ${r.rssAtRestMiB ?? "–"} MiB, after forced collections ${r.rssMiB} MiB (peak ${r.peakRssMiB ?? "–"}, glibc main heap ${r.mallocHeapMiB ?? "–"}), heap ${r.heapUsedMiB ?? "–"} MiB; by kind ${JSON.stringify(r.breakdown ?? {})}`);
        runs.push(r);
      }
      const opt = (xs: (number | undefined)[]): number | undefined => (xs.every((x) => x !== undefined) ? median(xs) : undefined);
      rows.push({
        role,
        keys: n,
        runs,
        readyMs: median(runs.map((r) => r.readyMs)),
        cpuToReadyS: opt(runs.map((r) => r.cpuToReadyS)),
        firstAllowedMs: opt(runs.map((r) => r.firstAllowedMs)),
        rssMiB: median(runs.map((r) => r.rssMiB)),
        rssAtRestMiB: opt(runs.map((r) => r.rssAtRestMiB)),
        rssWriterRunningMiB: opt(runs.map((r) => r.rssWriterRunningMiB)),
        heapUsedMiB: opt(runs.map((r) => r.heapUsedMiB)),
      });
    }
  }
  return { seeds, rows };
}

const cell = (x: number | undefined, digits = 0): string => (x === undefined || Number.isNaN(x) ? "–" : x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }));

/** The markdown of a start-up run: seeding, then one row per role and key count (medians). */
export function startupTables(r: StartupSection): string[] {
  const out = ["| keys seeded | through | seconds | requests (apiserver) or transactions (etcd) | per second |", "| ---: | --- | ---: | ---: | ---: |"];
  for (const s of r.seeds) out.push(`| ${cell(s.keys)} | ${s.through ?? "apiserver"} | ${s.seconds ? cell(s.seconds, 1) : "(seeded before)"} | ${cell(s.requests)} | ${s.seconds ? cell(s.requests / s.seconds) : "–"} |`);
  out.push(
    "",
    "| role | keys | runs | Ready (ms) | CPU to Ready (s) | first allowed Check (ms) | RSS idle, writer thread running (MiB) | RSS at rest after Ready (MiB) | RSS after forced collections (MiB) | heap used (MiB) | Ready of each run (ms) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  );
  for (const w of r.rows) {
    out.push(`| ${w.role} | ${cell(w.keys)} | ${w.runs.length} | ${cell(w.readyMs)} | ${cell(w.cpuToReadyS, 2)} | ${cell(w.firstAllowedMs)} | ${cell(w.rssWriterRunningMiB, 1)} | ${cell(w.rssAtRestMiB, 1)} | ${cell(w.rssMiB, 1)} | ${cell(w.heapUsedMiB, 1)} | ${w.runs.map((x) => cell(x.readyMs)).join(", ")} |`);
  }
  if (r.views) {
    out.push("", "| what a watch keeps of an issued ApiKey (`node --expose-gc bench/views.ts`) | heap bytes per key |", "| --- | ---: |");
    for (const v of r.views) out.push(`| ${v.view} | ${cell(v.bytesPerKey)} |`);
  }
  return out;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      keys: { type: "string", default: "10,10000,100000" },
      roles: { type: "string", default: "authz,operator,run" },
      runs: { type: "string", default: "3" },
      "authz-only-above": { type: "string", default: "Infinity" },
      kubeconfig: { type: "string" },
      "node-flags": { type: "string", default: "" },
      "compile-cache": { type: "boolean", default: false },
      etcd: { type: "string" },
      sources: { type: "boolean", default: false },
    },
  });
  const log = (s: string): void => {
    process.stderr.write(`[startup ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
  };
  const cp = values.kubeconfig ? undefined : await startControlPlane(log);
  try {
    const out = await startupRows({
      kubeconfig: values.kubeconfig ?? cp!.kubeconfig,
      keys: values.keys.split(",").map(Number),
      roles: values.roles.split(",") as Role[],
      runs: Number(values.runs),
      authzOnlyAbove: Number(values["authz-only-above"]),
      nodeFlags: values["node-flags"].split(" ").filter(Boolean),
      compileCache: values["compile-cache"],
      etcdUrl: values.etcd ?? cp?.etcdUrl,
      sources: values.sources,
      log,
    });
    process.stdout.write(JSON.stringify(out, null, 2) + "\n");
  } finally {
    await cp?.stop({ removeDir: true });
  }
}
