// main's wiring of the analytics store, in a real `keyward authz` process: it
// opens the SQLite store named by --analytics-store/--analytics-sqlite-path
// (beating the suites' KEYWARD_ANALYTICS_STORE=off), hands usage its writer,
// and on SIGTERM stops usage before the store, so rows still queued at the
// signal are in the file when the process has exited. The flush interval is
// an hour: nothing reaches the file before the signal. At rest, the writer
// thread ends and the heap is compacted once (ADR 71, 72). On a core shared with busy processes,
// it sheds its rows while its check thread waits for the CPU (ADR 76).
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { openAnalyticsStore } from "../../src/analytics/store.ts";
import type { ApiKeyPolicySpec } from "../../src/api/types.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { createLogger } from "../../src/log.ts";
import { authzClient, checkRequest, createKey, createPolicy, summarize, type TestKey } from "../conformance/harness.ts";
import { freePort } from "../controlplane/controlplane.ts";
import { createTestNamespace, deleteNamespace } from "../support/k8s.ts";
import { niceByThread } from "../support/proc.ts";
import { dataPlaneKubeconfig, logRecords, metricValue, startKeyward, type DataPlaneKubeconfig, type KeywardProcess } from "../support/keyward.ts";

const HOST = "wiring.example.com";

const DAY = 86_400_000;

/** One rule: GET /items/* with the scope items:read. */
const READ_POLICY: ApiKeyPolicySpec = { hosts: [HOST], rules: [{ name: "read", paths: ["/items/*"], methods: ["GET"], scopes: ["items:read"] }] };

/** `keyward authz` on the data plane's kubeconfig, one namespace, its ports, and the SQLite store at `file`. */
function sqliteAuthz(dp: DataPlaneKubeconfig, ns: string, grpcPort: number, metricsPort: number, file: string): string[] {
  return [
    "authz",
    `--kubeconfig=${dp.kubeconfig}`,
    `--namespaces=${ns}`,
    `--grpc-address=127.0.0.1:${grpcPort}`,
    "--http-auth-address=",
    `--metrics-address=127.0.0.1:${metricsPort}`,
    "--usage-alerts=false",
    "--analytics-store=sqlite",
    `--analytics-sqlite-path=${file}`,
  ];
}

describe("keyward authz --analytics-store=sqlite", () => {
  let adminKc: KubeConfig;
  let admin: KubeRest;
  let ns: string;
  let dp: DataPlaneKubeconfig;
  let file: string;
  let kw: KeywardProcess;
  let grpcPort: number;
  let metricsPort: number;
  let reader: TestKey;
  let noScope: TestKey;
  const started = Date.now();

  beforeAll(async () => {
    adminKc = loadKubeConfig(inject("kubeconfig"));
    admin = new KubeRest(adminKc, { qps: 0 });
    dp = await dataPlaneKubeconfig(adminKc, admin, "analytics-wiring");
    file = join(dp.dir, "store", "analytics.sqlite");
    ns = await createTestNamespace(adminKc, "wiring");
    await createPolicy(admin, ns, "api", READ_POLICY);
    reader = await createKey(admin, ns, "reader", { owner: "acme", scopes: ["items:read"] }, { tier: "gold" });
    noScope = await createKey(admin, ns, "no-scope", { owner: "initech", scopes: [] });
    [grpcPort, metricsPort] = [await freePort(), await freePort()];
    kw = startKeyward([
      ...sqliteAuthz(dp, ns, grpcPort, metricsPort, file),
      // Rows wait in the queue until the stop sequence writes them.
      "--analytics-flush-interval=1h",
      "--analytics-batch-size=100000",
    ]);
    await kw.ready(metricsPort);
  });

  afterAll(async () => {
    await kw.kill();
    await deleteNamespace(adminKc, ns);
    admin.close();
    dp.remove();
    expect(kw.output()).not.toContain(reader.key);
    expect(kw.output()).not.toContain(noScope.key);
  });

  it("writes the rows queued at SIGTERM before it exits, usage stopped before the store", async () => {
    const c = authzClient(grpcPort);
    try {
      for (let i = 0; i < 5; i++) expect(summarize(await c.check(checkRequest({ host: HOST, path: `/items/${i}`, headers: { "x-api-key": reader.key } }))).httpStatus).toBe(200);
      for (let i = 0; i < 3; i++) expect(summarize(await c.check(checkRequest({ host: HOST, path: "/items/9", headers: { "x-api-key": noScope.key } }))).httpStatus).toBe(403);
    } finally {
      c.close();
    }
    // The store is open (its schema is there) and holds no request yet: they are queued.
    const peek = new DatabaseSync(file, { readOnly: true });
    const stored = (): number => (peek.prepare("select count(*) as n from requests").get() as { n: number }).n;
    expect(stored()).toBe(0);
    peek.close();
    // The store's writer thread runs below the thread answering checks (ADR 64): nice 19, the default.
    const nice = niceByThread(kw.child.pid!);
    expect(nice.get("keyward-writer")).toEqual([19]);
    expect(nice.get("main")).toEqual([0]);

    kw.child.kill("SIGTERM");
    expect(await kw.exited).toBe(0);
    const records = logRecords(kw.output());
    const stopping = records.filter((r) => r.msg === "stopping").map((r) => String(r.part));
    expect(stopping.indexOf("usage")).toBeGreaterThanOrEqual(0);
    expect(stopping.indexOf("usage")).toBeLessThan(stopping.indexOf("analytics store"));
    expect(records.some((r) => r.msg === "analytics store open" && r.store === "sqlite")).toBe(true);

    const store = await openAnalyticsStore({ store: "sqlite", sqlitePath: file, postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0 }, createLogger({ sink: () => {} }));
    try {
      const range = { since: started - 60_000, until: Date.now() + 60_000 };
      const top = await store.queries.topKeys(range);
      expect(top.map(({ namespace, name, owner, requests, allowed, status4xx }) => ({ namespace, name, owner, requests, allowed, status4xx }))).toEqual([
        { namespace: ns, name: "reader", owner: "acme", requests: 5, allowed: 5, status4xx: 0 },
        { namespace: ns, name: "no-scope", owner: "initech", requests: 3, allowed: 0, status4xx: 3 },
      ]);
      expect(await store.queries.topKeys({ ...range, selector: "tier=gold" })).toMatchObject([{ name: "reader", requests: 5 }]);
      expect(await store.queries.endpoints(range, "route")).toMatchObject([{ endpoint: "GET /items/*", requests: 8 }]);
      expect(await store.queries.rulesUsed(range)).toMatchObject([{ policy: `${ns}/api`, rule: "read", requests: 5 }]);
    } finally {
      await store.close();
    }
  });
});

describe("keyward authz whose analytics writer thread cannot open the store", () => {
  it("exits 1 with the error before it is Ready, though the rest has started meanwhile", async () => {
    const adminKc = loadKubeConfig(inject("kubeconfig"));
    const admin = new KubeRest(adminKc, { qps: 0 });
    const dp = await dataPlaneKubeconfig(adminKc, admin, "analytics-wiring-fail");
    const ns = await createTestNamespace(adminKc, "wiring-fail");
    const metricsPort = await freePort();
    // The SQLite file is fine (probed on the main thread); the country database, checked by the writer thread, is not.
    const kw = startKeyward([
      "authz",
      `--kubeconfig=${dp.kubeconfig}`,
      `--namespaces=${ns}`,
      `--grpc-address=127.0.0.1:${await freePort()}`,
      "--http-auth-address=",
      `--metrics-address=127.0.0.1:${metricsPort}`,
      "--usage-alerts=false",
      "--analytics-store=sqlite",
      `--analytics-sqlite-path=${join(dp.dir, "store", "analytics.sqlite")}`,
      `--analytics-country-database=${join(dp.dir, "missing.mmdb")}`,
    ]);
    try {
      expect(await kw.exited).toBe(1);
      expect(kw.output()).toContain(`keyward: ConfigInvalid: the country database ${join(dp.dir, "missing.mmdb")} could not be read`);
    } finally {
      await kw.kill();
      await deleteNamespace(adminKc, ns);
      admin.close();
      dp.remove();
    }
  });
});

/** `keyward authz` over a namespace of its own (`suite`) with one key allowed GET /items/*, the SQLite store flushed every 100 ms, and `extra` flags. */
async function readerAuthz(suite: string, extra: string[]) {
  const adminKc = loadKubeConfig(inject("kubeconfig"));
  const admin = new KubeRest(adminKc, { qps: 0 });
  const dp = await dataPlaneKubeconfig(adminKc, admin, `analytics-${suite}`);
  const ns = await createTestNamespace(adminKc, suite);
  await createPolicy(admin, ns, "api", READ_POLICY);
  const key = await createKey(admin, ns, "reader", { owner: "acme", scopes: ["items:read"] });
  const [grpcPort, metricsPort] = [await freePort(), await freePort()];
  const kw = startKeyward([...sqliteAuthz(dp, ns, grpcPort, metricsPort, join(dp.dir, "store", "analytics.sqlite")), "--analytics-flush-interval=100ms", ...extra]);
  const remove = async (): Promise<void> => {
    await kw.kill();
    await deleteNamespace(adminKc, ns);
    admin.close();
    dp.remove();
  };
  return { key, grpcPort, metricsPort, kw, remove };
}

describe("keyward authz at rest", () => {
  it("ends its writer thread once idle and starts one for the next write (ADR 71), and compacts its heap once idle (ADR 72)", async () => {
    const { key, grpcPort, metricsPort, kw, remove } = await readerAuthz("idle", ["--analytics-writer-idle=1s", "--compact-heap-after-idle=1s"]);
    const writers = (): number => threadNames(kw.child.pid!).filter((n) => n === "keyward-writer").length;
    const metric = async (series: string): Promise<number | undefined> => {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    const c = authzClient(grpcPort);
    try {
      await kw.ready(metricsPort);
      const check = async (): Promise<void> => {
        expect(summarize(await c.check(checkRequest({ host: HOST, path: "/items/1", headers: { "x-api-key": key.key } }))).httpStatus).toBe(200);
      };
      await check();
      // Start-up is a busy spell of its own: its compaction may come before this check.
      const compactions = async (): Promise<number> => (await metric("keyward_heap_idle_compaction_seconds_count")) ?? NaN;
      const before = await compactions();
      expect(before).toBeGreaterThanOrEqual(0);
      await expect.poll(() => metric("keyward_analytics_rows_written_total"), { timeout: 10_000 }).toBe(1);
      // Idle: the writer thread ends, and the heap is compacted once.
      await expect.poll(writers, { timeout: 10_000 }).toBe(0);
      await expect.poll(compactions, { timeout: 10_000 }).toBe(before + 1);
      // The next check's row starts a writer thread again, and is written.
      await check();
      await expect.poll(() => metric("keyward_analytics_rows_written_total"), { timeout: 10_000 }).toBe(2);
      // A new busy spell, then idle again: one more compaction.
      await expect.poll(compactions, { timeout: 10_000 }).toBe(before + 2);
      await expect.poll(writers, { timeout: 10_000 }).toBe(0);
    } finally {
      c.close();
      await remove();
    }
    expect(kw.output()).not.toContain(key.key);
  }, 60_000);
});

describe("keyward authz on a CPU its check thread waits for (ADR 76)", () => {
  it("sheds its rows, counted and logged, while busy processes share its core; checks answered throughout; makes them again after", async () => {
    // The integration environment turns it off; this suite asks for the default.
    // The throttling signal off: on a machine whose own CPU is limited, the busy processes would
    // throttle it too, and the episode would name the limit.
    const { key, grpcPort, metricsPort, kw, remove } = await readerAuthz("run-delay", ["--analytics-shed-run-delay=0.25", "--analytics-shed-when-throttled=false"]);
    // keyward and three processes that never sleep on one core: its threads get a quarter of it,
    // and wait for it the rest of the time, as on a node whose CPUs are all busy.
    const core = String(lastAllowedCpu());
    const spinners: ChildProcess[] = [];
    const c = authzClient(grpcPort);
    const metric = (series: string): Promise<number> => metricValue(metricsPort, series);
    let answered = 0;
    /** Checks, eight at a time, until `until` holds; every one answered 200. */
    const checkUntil = async (until: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> => {
      const deadline = Date.now() + timeoutMs;
      while (!(await until())) {
        if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms; output:\n${kw.output()}`);
        // Eight in flight, so that the check thread has work whenever it gets the core.
        const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => c.check(checkRequest({ host: HOST, path: `/items/${i}`, headers: { "x-api-key": key.key } }))));
        for (const a of answers) expect(summarize(a).httpStatus).toBe(200);
        answered += answers.length;
      }
    };
    const shedLogs = (msg: string): Record<string, unknown>[] => logRecords(kw.output()).filter((r) => String(r.msg).startsWith(msg));
    try {
      await kw.ready(metricsPort);
      execFileSync("taskset", ["-a", "-p", "-c", core, String(kw.child.pid)]);
      await checkUntil(async () => (await metric("keyward_analytics_rows_written_total")) > 0);
      for (let i = 0; i < 3; i++) spinners.push(spawn("taskset", ["-c", core, process.execPath, "-e", "for (;;) {}"], { stdio: "ignore" }));
      await checkUntil(async () => (await metric("keyward_analytics_rows_dropped_total")) > 0);
      // The episode the busy processes started is the last (the machine may have made one before).
      const shed = shedLogs("analytics rows shed");
      expect(shed.length).toBeGreaterThan(0);
      for (const r of shed) expect([r.level, r.msg]).toEqual(["warn", "analytics rows shed: keyward is short of CPU; checks go first and new rows are dropped until it is not"]);
      expect(String(shed.at(-1)?.why)).toMatch(/waits for a CPU/);
      const ended = shedLogs("analytics rows no longer shed").length;
      for (const p of spinners) p.kill("SIGKILL");
      // Its core to itself again: the episode ends, and rows are made and written again.
      await checkUntil(() => shedLogs("analytics rows no longer shed").length > ended);
      const written = await metric("keyward_analytics_rows_written_total");
      await checkUntil(async () => (await metric("keyward_analytics_rows_written_total")) > written);
      // Every check's row is made, then written or dropped: none is lost uncounted.
      await expect
        .poll(async () => (await metric("keyward_analytics_rows_written_total")) + (await metric("keyward_analytics_rows_dropped_total")), { timeout: 10_000 })
        .toBe(await metric('keyward_analytics_rows_total{from="check"}'));
      expect(await metric('keyward_analytics_rows_total{from="check"}')).toBe(answered);
    } finally {
      for (const p of spinners) p.kill("SIGKILL");
      c.close();
      await remove();
    }
    expect(kw.output()).not.toContain(key.key);
  }, 120_000);
});

/** The highest CPU this process may run on (its cpuset's, as taskset accepts). */
function lastAllowedCpu(): number {
  const list = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "0";
  return Math.max(...list.split(",").map((r) => Number(r.split("-").at(-1))));
}

/** The names of a process's threads (Linux). */
function threadNames(pid: number): string[] {
  return readdirSync(`/proc/${pid}/task`).map((t) => {
    try {
      return readFileSync(`/proc/${pid}/task/${t}/comm`, "utf8").trim();
    } catch {
      return "";
    }
  });
}
