// Usage against a real control plane: per-key usage reaches ApiKey status at a
// bounded rate through the data plane's own RBAC (plus apikeys/status patch and
// events create), several replicas add up, the operator's status writes and
// the usage writes leave each other alone, `kubectl get` shows LAST USED and
// REQUESTS 24H, and alerts arrive as Events on the ApiKey.
import { request as httpsRequest } from "node:https";
import { request as httpRequest, type RequestOptions } from "node:http";
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { CheckInput } from "../../src/check/decision.ts";
import { Checker } from "../../src/authz/check.ts";
import { PolicyIndex } from "../../src/policy/policy.ts";
import type { Config } from "../../src/config/config.ts";
import { KeyIndex } from "../../src/index/keys.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { Limiter } from "../../src/limits/limiter.ts";
import type { UsageHandle } from "../../src/usage/service.ts";
import { applyUsageRbac, startTestUsage, type TestUsage } from "../conformance/go-als/env.ts";
import { authzKubeConfig, createKey, createPolicy, type TestKey } from "../conformance/harness.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { getApiKey, patchApiKey, startTestOperator, type TestOperator } from "../support/operator.ts";

const HOST = "usage.example.com";

/** The server-side table `kubectl get apikeys` prints. */
function getTable(kc: KubeConfig, path: string): Promise<{ columnDefinitions: { name: string }[]; rows: { cells: unknown[] }[] }> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("no cluster");
  const url = new URL(path, cluster.server);
  return new Promise((resolve, reject) => {
    const opts: RequestOptions = {
      method: "GET",
      hostname: url.hostname,
      port: url.port,
      path: url.pathname,
      headers: { accept: "application/json;as=Table;v=v1;g=meta.k8s.io" },
    };
    void kc.applyToHTTPSOptions(opts).then(() => {
      const req = (url.protocol === "https:" ? httpsRequest : httpRequest)(opts, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")) as { columnDefinitions: { name: string }[]; rows: { cells: unknown[] }[] });
          } catch (err) {
            reject(err instanceof Error ? err : new Error(String(err)));
          }
        });
      });
      req.on("error", reject);
      req.end();
    }, reject);
  });
}

describe("usage in ApiKey status", () => {
  let adminKc: KubeConfig;
  let admin: KubeRest;
  let authzKc: KubeConfig;
  let ns: string;
  const cleanups: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    adminKc = loadKubeConfig(inject("kubeconfig"));
    admin = new KubeRest(adminKc, { qps: 0 });
    await applyUsageRbac(admin);
    authzKc = await authzKubeConfig(adminKc, admin);
    ns = await createTestNamespace(adminKc, "usage");
    await createPolicy(admin, ns, "orders", {
      hosts: [HOST],
      credentials: { headers: ["x-api-key"] },
      rules: [
        { name: "read", paths: ["/v1/orders/*"], methods: ["GET"], scopes: ["orders:read"] },
        { name: "write", paths: ["/v1/orders"], methods: ["POST"], scopes: ["orders:write"] },
      ],
    });
  });

  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
    await deleteNamespace(adminKc, ns);
    admin.close();
  });

  /** A usage service as the data plane runs it, stopped after the suite. */
  async function usage(overrides: Partial<Config> = {}): Promise<TestUsage> {
    const u = await startTestUsage(authzKc, { namespaces: [ns], ...overrides });
    cleanups.push(() => u.stop());
    return u;
  }

  /** A real check path over the ApiKey as stored, feeding `sink`. */
  async function checker(key: TestKey): Promise<(path: string, more?: Partial<CheckInput>) => void> {
    const keys = new KeyIndex();
    const policies = new PolicyIndex();
    const ak = await getApiKey(admin, ns, key.name);
    if (!ak) throw new Error("no ApiKey");
    keys.apply("add", ak);
    const pol = await admin.request<Parameters<PolicyIndex["apply"]>[1]>("GET", `/apis/keyward.dev/v1alpha1/namespaces/${ns}/apikeypolicies/orders`);
    policies.apply("add", pol);
    const c = new Checker({ keys, policies, limiter: new Limiter(), now: Date.now, xffTrustedHops: 0 });
    return (path, more = {}) => {
      const input: CheckInput = { method: "GET", host: HOST, path, header: (n) => (n === "x-api-key" ? key.key : undefined), peerAddress: "203.0.113.7", forwardedFor: undefined, ...more };
      const d = c.check(input);
      sinks.forEach((s) => {
        s.onDecision("grpc", d, 0.0003, input, false);
      });
    };
  }
  let sinks: UsageHandle[] = [];

  it("writes usage to status once per interval, only when changed, summing two replicas", async () => {
    const key = await createKey(admin, ns, "acme", { scopes: ["orders:read"], limits: { quota: { requests: 1000, per: "day" } } });
    const a = await usage();
    const b = await usage();
    await eventually(() => (a.handle.ready() && b.handle.ready() ? true : undefined), 10_000, "usage watches");
    sinks = [a.handle];
    const check = await checker(key);
    for (let i = 0; i < 30; i++) check(`/v1/orders/${i}`);
    check("/v1/orders", { method: "POST" }); // 403: scope missing
    sinks = [b.handle];
    for (let i = 0; i < 12; i++) check(`/v1/orders/${i}`);

    const ak = await eventually(async () => {
      const got = await getApiKey(admin, ns, "acme");
      return got?.status?.usage?.requests24h === 43 ? got : undefined;
    }, 15_000, "usage of both replicas in status");
    const u = ak.status?.usage;
    const today = new Date().toISOString().slice(0, 10);
    expect(u?.daily).toEqual([{ date: today, allowed: 42, forbidden: 1 }]);
    expect(u?.currentPeriod).toMatchObject({ per: "day", requests: 42 });
    expect(u?.keys?.map((k) => k.id)).toEqual([key.id]);
    expect(u?.topRoutes).toEqual([
      { route: "GET /v1/orders/*", requests: 42 },
      { route: "POST /v1/orders", requests: 1 },
    ]);
    expect(ak.status?.keys?.[0]?.hash).toBe(key.hash); // the rest of status untouched
    expect(JSON.stringify(ak.status)).not.toContain(key.key);

    // Idle: more flushes write nothing.
    const before = a.patches() + b.patches();
    expect(before).toBeGreaterThanOrEqual(2);
    expect(before).toBeLessThanOrEqual(4); // one each, plus at most one retried conflict each
    for (let i = 0; i < 3; i++) {
      const reports = [await a.handle.flush(), await b.handle.flush()];
      expect(reports).toEqual([{ written: 0, failed: 0 }, { written: 0, failed: 0 }]);
    }
    expect(a.patches() + b.patches()).toBe(before);

    const table = await getTable(adminKc, `/apis/keyward.dev/v1alpha1/namespaces/${ns}/apikeys`);
    const cols = table.columnDefinitions.map((c) => c.name);
    const row = table.rows[0]?.cells ?? [];
    expect(cols).toEqual(expect.arrayContaining(["Last Used", "Requests 24h"]));
    expect(row[cols.indexOf("Requests 24h")]).toBe(43);
    expect(row[cols.indexOf("Last Used")]).toMatch(/^\d+s$/); // kubectl prints a date column as an age
  });

  it("keeps usage through the operator's rotations and shows the progress per key version", async () => {
    const op: TestOperator = await startTestOperator(adminKc, { namespaces: [ns] });
    cleanups.push(() => op.stop());
    const u = await usage();
    await admin.request("POST", `/apis/keyward.dev/v1alpha1/namespaces/${ns}/apikeys`, {
      body: { apiVersion: "keyward.dev/v1alpha1", kind: "ApiKey", metadata: { name: "rotating", namespace: ns }, spec: { owner: "acme", scopes: ["orders:read"], rotation: { gracePeriod: "1h" } } },
    });
    const issued = await eventually(async () => {
      const got = await getApiKey(admin, ns, "rotating");
      return got?.status?.currentKeyId ? got : undefined;
    }, 15_000, "the operator to issue the key");
    const first = issued.status?.currentKeyId ?? "";
    const ref = (keyId: string) => ({ namespace: ns, name: "rotating", uid: issued.metadata.uid ?? "", keyId, owner: "acme" });
    const at = Date.now();
    u.handle.record({ at, key: ref(first), outcome: "allowed", reason: "ok", status: 200, front: "grpc", route: "GET /v1/orders/*", latencySeconds: 0.001 });
    await eventually(async () => ((await getApiKey(admin, ns, "rotating"))?.status?.usage?.lastUsedAt ? true : undefined), 10_000, "first usage");

    await patchApiKey(admin, ns, "rotating", { metadata: { annotations: { "keyward.dev/rotate": "now" } } });
    const rotated = await eventually(async () => {
      const got = await getApiKey(admin, ns, "rotating");
      return got?.status?.currentKeyId && got.status.currentKeyId !== first ? got : undefined;
    }, 15_000, "the rotation");
    expect(rotated.status?.usage?.keys?.map((k) => k.id)).toEqual([first]); // the operator's write kept usage
    const second = rotated.status?.currentKeyId ?? "";
    u.handle.record({ at: at + 1000, key: ref(second), outcome: "allowed", reason: "ok", status: 200, front: "grpc", route: "GET /v1/orders/*", latencySeconds: 0.001 });
    const both = await eventually(async () => {
      const got = await getApiKey(admin, ns, "rotating");
      return got?.status?.usage?.keys?.length === 2 ? got : undefined;
    }, 10_000, "usage of both versions");
    expect(both.status?.usage?.keys?.map((k) => k.id)).toEqual([second, first]);
    expect(both.status?.keys?.map((k) => k.state).sort()).toEqual(["active", "grace"]);
    expect(both.status?.usage?.requests24h).toBe(2);
  });
});
