// The data plane as `keyward authz` runs it: usage and the index share one ApiKey
// watch, and startAuthz hands every answered check to the usage service through
// its decision listener. Real gRPC Checks
// (key in a header, key in the query string, a 403, an unknown key) end up in
// the decision log, the per-key metrics and ApiKey status.usage — never the key.
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startAuthz, type AuthzHandle } from "../../src/authz/service.ts";
import { sharedApiKeyWatch } from "../../src/apikeys/watch.ts";
import { joinSharedApiKeyWatch } from "../../src/authz/shared-index.ts";
import { defaultConfig } from "../../src/config/config.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { silentLogger } from "../../src/log.ts";
import { startUsage, type UsageHandle } from "../../src/usage/service.ts";
import { applyUsageRbac } from "../conformance/go-als/env.ts";
import { authzClient, authzKubeConfig, checkRequest, createKey, createPolicy, summarize, type TestKey } from "../conformance/harness.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { getApiKey } from "../support/operator.ts";
import type { KubeConfig } from "@kubernetes/client-node";

const HOST = "wired.example.com";

describe("usage wired to the check path", () => {
  let adminKc: KubeConfig;
  let admin: KubeRest;
  let authzRest: KubeRest;
  let usageRest: KubeRest;
  let authz: AuthzHandle;
  let usage: UsageHandle;
  let ns: string;
  let key: TestKey;
  const registry = new Registry();
  const decisionLines: string[] = [];

  beforeAll(async () => {
    adminKc = loadKubeConfig(inject("kubeconfig"));
    admin = new KubeRest(adminKc, { qps: 0 });
    await applyUsageRbac(admin);
    const kc = await authzKubeConfig(adminKc, admin);
    ns = await createTestNamespace(adminKc, "usage-wired");
    await createPolicy(admin, ns, "api", {
      hosts: [HOST],
      credentials: { headers: ["x-api-key"], queryParams: ["api_key"] },
      rules: [
        { name: "read", paths: ["/items/*"], methods: ["GET"], scopes: ["items:read"] },
        { name: "write", paths: ["/items"], methods: ["POST"], scopes: ["items:write"] },
      ],
    });
    key = await createKey(admin, ns, "wired", { owner: "team-a", scopes: ["items:read"] });
    const config = defaultConfig({
      grpcAddress: "127.0.0.1:0",
      httpAuthAddress: "",
      metricsAddress: "",
      namespaces: [ns],
      usageFlushInterval: 1000,
      usagePerKeyMetrics: true,
      decisionLog: "stdout",
    });
    // As main.ts wires `keyward authz`: one ApiKey watch for both (ADR 0049), the key index
    // joined to it before the usage service starts it (ADR 0060), usage's sink as the decision
    // listener.
    usageRest = new KubeRest(kc, { qps: 0 });
    authzRest = new KubeRest(kc, { qps: 0 });
    const apiKeys = sharedApiKeyWatch({ kc, rest: authzRest, config });
    const index = joinSharedApiKeyWatch(apiKeys, silentLogger);
    usage = await startUsage({ config, kc, rest: usageRest, log: silentLogger, registry, apiKeys, decisionLogSink: (l) => decisionLines.push(l) });
    expect(apiKeys.synced).toBe(true);
    authz = await startAuthz({
      config,
      kc,
      rest: authzRest,
      log: silentLogger,
      registry,
      apiKeys: index,
      onDecision: (front, d, seconds, input, cancelled) => {
        usage.onDecision(front, d, seconds, input, cancelled);
      },
    });
    await eventually(() => (authz.ready() && usage.ready() ? true : undefined), 20_000, "the watches");
  });

  afterAll(async () => {
    await authz.stop();
    await usage.stop();
    authzRest.close();
    usageRest.close();
    await deleteNamespace(adminKc, ns);
    admin.close();
  });

  it("attributes real gRPC Checks to the key in status, metrics and the decision log", async () => {
    const client = authzClient(authz.grpcPort);
    try {
      const check = async (path: string, headers: Record<string, string>, method = "GET") => summarize(await client.check(checkRequest({ host: HOST, path, headers, method, source: "192.0.2.44" })));
      await eventually(async () => ((await check("/items/1", { "x-api-key": key.key })).httpStatus === 200 ? true : undefined), 10_000, "the key to be indexed");
      for (let i = 2; i <= 5; i++) expect((await check(`/items/${i}`, { "x-api-key": key.key })).httpStatus).toBe(200);
      expect((await check(`/items/6?api_key=${encodeURIComponent(key.key)}&page=2`, {})).httpStatus).toBe(200);
      expect((await check("/items", { "x-api-key": key.key }, "POST")).httpStatus).toBe(403);
      expect((await check("/items/7", { "x-api-key": "kwt_not_a_key" })).httpStatus).toBe(401);
    } finally {
      client.close();
    }

    await usage.flush();
    const ak = await eventually(async () => {
      const got = await getApiKey(admin, ns, "wired");
      return (got?.status?.usage?.daily?.[0]?.forbidden ?? 0) >= 1 ? got : undefined;
    }, 10_000, "usage in status");
    const u = ak.status?.usage;
    const allowed = u?.daily?.[0]?.allowed ?? 0;
    expect(allowed).toBeGreaterThanOrEqual(6); // the first check may have been retried while the watch caught up
    expect(u?.daily?.[0]?.forbidden).toBe(1);
    expect(u?.keys?.map((k) => k.id)).toEqual([key.id]);
    expect(u?.topRoutes?.[0]).toEqual({ route: "GET /items/*", requests: allowed });

    const metrics = await registry.metrics();
    expect(metrics).toContain(`keyward_key_requests_total{key_id="${key.id}",outcome="forbidden"} 1`);
    expect(metrics).toContain(`keyward_route_requests_total{policy="${ns}/api",rule="write",outcome="forbidden"} 1`);

    const lines = decisionLines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const viaQuery = lines.find((l) => l.path === "/items/6");
    expect(viaQuery).toMatchObject({ key_id: key.id, owner: "team-a", apikey: `${ns}/wired`, rule: "read", decision: "allowed", front: "grpc", source: "192.0.2.44" });
    expect(lines.find((l) => l.reason === "unknown_key")).toMatchObject({ decision: "unauthenticated", status: 401 });
    expect(lines.find((l) => l.reason === "unknown_key")?.key_id).toBeUndefined();
    const everything = [decisionLines.join("\n"), metrics, JSON.stringify(ak)].join("\n");
    expect(everything).not.toContain(key.key);
    expect(everything).not.toContain(encodeURIComponent(key.key));
  });
});
