// The data plane's defences against a real apiserver: a source network that
// presents too many unknown keys is throttled over gRPC and HTTP while valid keys
// keep working, and with --max-index-staleness checks fail closed while the
// apiserver is gone and recover when it is back.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installCrds } from "../../src/k8s/apply.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { authzClient, checkRequest, createKey, createPolicy, nginxStyleCheck, startAuthzEnv, summarize, type AuthzEnv, type TestKey } from "../conformance/harness.ts";
import { ControlPlane } from "../controlplane/controlplane.ts";
import { eventually } from "../support/k8s.ts";

const HOST = "guard.example.com";
const ns = "default";
let cp: ControlPlane;
let env: AuthzEnv;
let client: ReturnType<typeof authzClient>;
let key: TestKey;

const check = async (headers: Record<string, string>, source: string) => summarize(await client.check(checkRequest({ host: HOST, path: "/", headers, source })));

beforeAll(async () => {
  // Its own control plane: the staleness test stops the apiserver.
  cp = await ControlPlane.start({ controllerManager: false });
  const rest = new KubeRest(loadKubeConfig(cp.kubeconfig), { qps: 0 });
  await installCrds(rest);
  rest.close();
  env = await startAuthzEnv(cp.kubeconfig, {
    namespaces: [ns],
    unknownKeyThreshold: 5,
    // A watch that hears nothing for 2 s is restarted with a list; checks fail closed after 4 s.
    watchStaleAfter: 2000,
    maxIndexStaleness: 4000,
  });
  client = authzClient(env.authz.grpcPort);
  await createPolicy(env.admin, ns, "guard", { hosts: [HOST], credentials: { headers: ["x-api-key"] }, rules: [{ name: "all", paths: ["/**"] }] });
  // With a scope: summarize() reads the metadata scopes list, which an empty list leaves out.
  key = await createKey(env.admin, ns, "guarded", { scopes: ["read"] });
  await eventually(async () => ((await check({ "x-api-key": key.key }, "192.0.2.1")).code === 0 ? true : undefined), 10_000, "key indexed");
}, 120_000);

afterAll(async () => {
  client.close();
  await env.stop();
  await cp.stop({ removeDir: true });
});

describe("unknown keys from one network", () => {
  it("are throttled with 429 and Retry-After past the threshold, over gRPC and HTTP; valid keys are not", async () => {
    const unknown = `kwt_${"x".repeat(43)}`;
    const first = [];
    for (let i = 0; i < 5; i++) first.push(await check({ "x-api-key": `${unknown}${i}` }, "203.0.113.9"));
    expect(first.map((r) => [r.code, r.httpStatus, r.metadata.reason])).toEqual(Array.from({ length: 5 }, () => [16, 401, "unknown_key"]));
    const sixth = await check({ "x-api-key": unknown }, "203.0.113.9");
    expect(sixth).toMatchObject({ code: 8, httpStatus: 429, metadata: { reason: "unknown_key_throttled" } });
    expect(sixth.headers["retry-after"]).toBe("300");
    // The whole /24 is throttled for unknown keys, over HTTP too (the proxy appends the peer to X-Forwarded-For).
    const http = await nginxStyleCheck(env.authz.httpPort!, { method: "GET", host: HOST, uri: "/" }, { "x-api-key": unknown, "x-forwarded-for": "203.0.113.200" });
    expect(http.status).toBe(429);
    expect(http.headers["retry-after"]).toBe("300");
    // A valid key from the throttled network, and an unknown key from another one, get their usual answers.
    expect((await check({ "x-api-key": key.key }, "203.0.113.9")).code).toBe(0);
    expect((await check({ "x-api-key": unknown }, "198.51.100.1")).metadata.reason).toBe("unknown_key");
    const metrics = await env.registry.metrics();
    expect(metrics).toContain("keyward_authz_unknown_key_blocks_total 1");
    expect(metrics).toContain('keyward_authz_decisions_total{outcome="limited",reason="unknown_key_throttled",front="grpc"} 1');
    expect(metrics).not.toContain(unknown);
  });
});

describe("--max-index-staleness", () => {
  /** The gauge's largest value: apikeys or apikeypolicies, whichever heard from the apiserver longest ago. */
  const staleness = async (): Promise<number> => {
    const text = await env.registry.metrics();
    const values = [...text.matchAll(/keyward_authz_index_staleness_seconds\{resource="(?:apikeys|apikeypolicies)"\} ([0-9.e+-]+)/g)].map((m) => Number(m[1]));
    expect(values).toHaveLength(2);
    return Math.max(...values);
  };

  it("keeps answering while the apiserver is up, fails closed with 503 once it has been gone that long, and recovers", async () => {
    // A quiet but healthy cluster: the watch restarts keep the index fresh (6 s, over the 4 s limit).
    const quietUntil = Date.now() + 6000;
    while (Date.now() < quietUntil) {
      expect((await check({ "x-api-key": key.key }, "192.0.2.1")).code).toBe(0);
      expect(await staleness()).toBeLessThan(4);
      await new Promise((r) => setTimeout(r, 200));
    }

    await cp.stopApiserver();
    try {
      const stale = await eventually(
        async () => {
          const r = await check({ "x-api-key": key.key }, "192.0.2.1");
          return r.code === 0 ? undefined : r;
        },
        30_000,
        "checks to fail closed",
      );
      expect(stale).toMatchObject({ code: 14, httpStatus: 503, metadata: { reason: "index_stale" } });
      // Not a fixed time after the stop: the last contact may have come up to a watch restart
      // (2 s) before it. What holds is that the index was older than the limit when it failed.
      expect(await staleness()).toBeGreaterThan(4);
      const http = await nginxStyleCheck(env.authz.httpPort!, { method: "GET", host: HOST, uri: "/" }, { "x-api-key": key.key, "x-forwarded-for": "192.0.2.1" });
      expect(http.status).toBe(503);
    } finally {
      await cp.startApiserver();
    }
    await eventually(async () => ((await check({ "x-api-key": key.key }, "192.0.2.1")).code === 0 ? true : undefined), 60_000, "checks to recover");
    expect(await staleness()).toBeLessThan(4);
  }, 120_000);
});
