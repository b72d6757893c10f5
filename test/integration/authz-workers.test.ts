// `keyward authz --authz-workers 2` as a real process tree (node src/main.ts):
// both workers answer Check on the one port, /metrics is the sum over them,
// a revocation reaches each, a killed worker is replaced while the other keeps
// answering, usage is written once with the exact totals, SIGTERM stops
// everything with exit 0, and workers that cannot start stop the primary with 1.
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { authzClient, checkRequest, createKey, createPolicy, patchKeySpec, summarize, type TestKey } from "../conformance/harness.ts";
import { freePort } from "../controlplane/controlplane.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { getApiKey } from "../support/operator.ts";
import { dataPlaneKubeconfig, startKeyward, type DataPlaneKubeconfig, type KeywardProcess } from "../support/keyward.ts";

const HOST = "workers.example.com";

/** The primary's children: its workers. */
function workerPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("keyward authz --authz-workers 2", () => {
  let adminKc: KubeConfig;
  let admin: KubeRest;
  let ns: string;
  let dp: DataPlaneKubeconfig;
  let kw: KeywardProcess;
  let grpcPort: number;
  let metricsPort: number;
  let counted: TestKey;
  let revoked: TestKey;
  /** Allowed checks on `counted`, all of which must reach its status exactly once. */
  let allowed = 0;

  const metrics = async (): Promise<string> => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const value = (text: string, series: string): number => {
    const line = text.split("\n").find((l) => l.startsWith(`${series} `));
    return line === undefined ? NaN : Number(line.slice(series.length + 1));
  };
  const perWorker = async (): Promise<number[]> => {
    const text = await metrics();
    return [0, 1].map((w) => value(text, `keyward_authz_worker_checks_total{worker="${w}"}`));
  };
  /** One Check on a connection of its own (the primary hands connections to workers in turn). */
  const checkOnce = async (key: TestKey): Promise<number> => {
    const c = authzClient(grpcPort, { ownConnection: true });
    try {
      return summarize(await c.check(checkRequest({ host: HOST, path: "/items/1", headers: { "x-api-key": key.key } }))).httpStatus;
    } finally {
      c.close();
    }
  };

  beforeAll(async () => {
    adminKc = loadKubeConfig(inject("kubeconfig"));
    admin = new KubeRest(adminKc, { qps: 0 });
    // The data plane's own RBAC: a ServiceAccount token that cannot read Secrets.
    dp = await dataPlaneKubeconfig(adminKc, admin, "workers");
    ns = await createTestNamespace(adminKc, "workers");
    await createPolicy(admin, ns, "api", { hosts: [HOST], rules: [{ name: "read", paths: ["/items/*"], methods: ["GET"] }] });
    counted = await createKey(admin, ns, "counted", { scopes: ["items:read"] });
    revoked = await createKey(admin, ns, "revoked", { scopes: ["items:read"] });
    [grpcPort, metricsPort] = [await freePort(), await freePort()];
    kw = startKeyward([
      "authz",
      "--authz-workers=2",
      `--kubeconfig=${dp.kubeconfig}`,
      `--namespaces=${ns}`,
      `--grpc-address=127.0.0.1:${grpcPort}`,
      "--http-auth-address=",
      `--metrics-address=127.0.0.1:${metricsPort}`,
      "--usage-flush-interval=1s",
      "--usage-alerts=false",
    ]);
    await eventually(async () => ((await fetch(`http://127.0.0.1:${metricsPort}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined), 30_000, "/readyz");
  });

  afterAll(async () => {
    if (kw.child.exitCode === null) {
      kw.child.kill("SIGKILL");
      await kw.exited;
    }
    await deleteNamespace(adminKc, ns);
    admin.close();
    dp.remove();
    // The plaintext keys never reach keyward's output.
    expect(kw.output()).not.toContain(counted.key);
    expect(kw.output()).not.toContain(revoked.key);
  });

  it("answers on both workers and serves their metrics summed with the primary's", async () => {
    expect(workerPids(kw.child.pid ?? 0)).toHaveLength(2);
    for (let i = 0; i < 6; i++) {
      expect(await checkOnce(counted)).toBe(200);
      allowed++;
    }
    const counts = await perWorker();
    expect(counts.every((n) => n > 0), `checks per worker: ${counts.join(", ")}`).toBe(true);
    expect((counts[0] ?? 0) + (counts[1] ?? 0)).toBe(6);
    const text = await metrics();
    expect(value(text, 'keyward_authz_decisions_total{outcome="allowed",reason="ok",front="grpc"}')).toBe(6);
    // Every worker's index, not their sum; the primary's usage metrics beside the workers'.
    expect(value(text, "keyward_authz_index_apikeys")).toBe(2);
    expect(text).toContain("# TYPE keyward_usage_status_writes_total counter");
    expect(text.match(/^# TYPE keyward_authz_decisions_total /gm)).toHaveLength(1);
  });

  it("revokes a key on every worker", async () => {
    // Connections of their own, handed to the workers in turn: each worker holds some.
    const clients = Array.from({ length: 4 }, () => authzClient(grpcPort, { ownConnection: true }));
    try {
      const ask = async (c: (typeof clients)[number]): Promise<number> =>
        summarize(await c.check(checkRequest({ host: HOST, path: "/items/1", headers: { "x-api-key": revoked.key } }))).httpStatus;
      const before = await perWorker();
      for (const c of clients) expect(await ask(c)).toBe(200);
      const after = await perWorker();
      expect(after[0], "checks on worker 0").toBeGreaterThan(before[0] ?? 0);
      expect(after[1], "checks on worker 1").toBeGreaterThan(before[1] ?? 0);
      await patchKeySpec(admin, ns, "revoked", { disabled: true });
      for (const c of clients) await eventually(async () => ((await ask(c)) === 401 ? true : undefined), 5000, "the revocation on this connection's worker");
    } finally {
      for (const c of clients) c.close();
    }
  });

  it("replaces a killed worker while the other keeps answering, without losing counts", async () => {
    const pid = kw.child.pid ?? 0;
    const before = workerPids(pid);
    const decisionsBefore = value(await metrics(), 'keyward_authz_decisions_total{outcome="allowed",reason="ok",front="grpc"}');
    const victim = before[0] ?? 0;
    process.kill(victim, "SIGKILL");
    // The service answers throughout: a connection made now goes to a worker that serves.
    await eventually(async () => ((await checkOnce(counted).catch(() => 0)) === 200 ? true : undefined), 5000, "a check answered by the other worker");
    allowed++;
    const after = await eventually(() => {
      const now = workerPids(pid);
      return now.length === 2 && !now.includes(victim) ? now : undefined;
    }, 10_000, "a new worker");
    expect(after).toContain(before[1]);
    await eventually(async () => ((await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status === 200 ? true : undefined), 30_000, "/readyz with the new worker");
    for (let i = 0; i < 4; i++) {
      expect(await checkOnce(counted)).toBe(200);
      allowed++;
    }
    // Both slots answer again: the replacement starts counting from 0.
    expect((await perWorker()).every((n) => n > 0)).toBe(true);
    const text = await metrics();
    expect(value(text, "keyward_authz_worker_restarts_total")).toBe(1);
    // The killed worker's counts stay in the sum: the counter never goes down.
    expect(value(text, 'keyward_authz_decisions_total{outcome="allowed",reason="ok",front="grpc"}')).toBeGreaterThanOrEqual(decisionsBefore + 5);
    expect(kw.output()).toContain('"msg":"authz worker exited; starting a new one"');
  });

  it("writes usage once, with every worker's checks", async () => {
    const u = await eventually(async () => {
      const got = (await getApiKey(admin, ns, "counted"))?.status?.usage;
      return got?.daily?.[0]?.allowed === allowed ? got : undefined;
    }, 15_000, `${allowed} allowed checks in status.usage`);
    expect(u.topRoutes?.[0]).toEqual({ route: "GET /items/*", requests: allowed });
    expect(u.keys?.map((k) => k.id)).toEqual([counted.id]);
  });

  it("stops every worker on SIGTERM and exits 0", async () => {
    const pids = workerPids(kw.child.pid ?? 0);
    expect(pids).toHaveLength(2);
    kw.child.kill("SIGTERM");
    expect(await kw.exited).toBe(0);
    for (const p of pids) expect(alive(p), `worker ${p}`).toBe(false);
  });

  it("exits 1 when the workers cannot listen", async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
    const port = (taken.address() as { port: number }).port;
    try {
      const failing = startKeyward(["authz", "--authz-workers=2", `--kubeconfig=${dp.kubeconfig}`, `--namespaces=${ns}`, `--grpc-address=127.0.0.1:${port}`, "--http-auth-address=", "--metrics-address="]);
      expect(await failing.exited).toBe(1);
      expect(failing.output()).toContain("ext_authz workers did not start");
    } finally {
      taken.close();
    }
  });

  it("is refused by keyward run", async () => {
    const run = startKeyward(["run", "--authz-workers=2"]);
    expect(await run.exited).toBe(1);
    expect(run.output()).toContain("keyward run serves checks in one process");
  });
});
