// The data plane is ready only once its watches have listed and its heap has settled after the
// list (ADR 0067): until then it says NOT_SERVING and decides no check, so the collection's pause
// never falls on a check a proxy sent it because it said it was ready.
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startAuthz, type AuthzHandle } from "../../src/authz/service.ts";
import { defaultConfig } from "../../src/config/config.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { silentLogger } from "../../src/log.ts";
import { authzClient, authzKubeConfig, checkRequest, createKey, createPolicy, summarize, type TestKey } from "../conformance/harness.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";

const HOST = "settle.example.com";
const SERVING = 1;
const NOT_SERVING = 2;

describe("authz settles its heap after the first list, before it is ready", () => {
  const adminKc = loadKubeConfig(inject("kubeconfig"));
  const admin = new KubeRest(adminKc, { qps: 0 });
  let ns: string;
  let key: TestKey;

  beforeAll(async () => {
    ns = await createTestNamespace(adminKc, "settle");
    await createPolicy(admin, ns, "p", { hosts: [HOST], rules: [{ name: "all", paths: ["/**"] }] });
    key = await createKey(admin, ns, "k", { allowedSources: ["0.0.0.0/0"] });
  });

  afterAll(async () => {
    await deleteNamespace(adminKc, ns);
    admin.close();
  });

  it("is not ready and allows nothing while settleHeap runs; once it resolves, ready, serving, and the key allowed", async () => {
    const authzKc = await authzKubeConfig(adminKc, admin);
    const rest = new KubeRest(authzKc);
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let authz: AuthzHandle | undefined;
    const config = defaultConfig({ grpcAddress: "127.0.0.1:0", httpAuthAddress: "", metricsAddress: "", namespaces: [ns] });
    authz = await startAuthz({
      config,
      kc: authzKc,
      rest,
      log: silentLogger,
      registry: new Registry(),
      settleHeap: () => {
        calls++;
        return gate;
      },
    });
    const client = authzClient(authz.grpcPort);
    try {
      // settleHeap is called once the watches have listed (the key is in the index by then).
      await eventually(() => Promise.resolve(calls > 0 ? true : undefined), 20_000, "settleHeap to be called after the first list");
      const req = checkRequest({ host: HOST, path: "/", headers: { "x-api-key": key.key } });
      expect(authz.ready()).toBe(false);
      expect(await client.health()).toBe(NOT_SERVING);
      expect(summarize(await client.check(req)).code).not.toBe(0);
      release();
      await eventually(() => Promise.resolve(authz?.ready() ? true : undefined), 10_000, "ready once the heap has settled");
      expect(await client.health()).toBe(SERVING);
      expect(summarize(await client.check(req)).code).toBe(0);
      expect(calls).toBe(1);
    } finally {
      client.close();
      await authz.stop();
      authz = undefined;
      rest.close();
    }
  });
});
