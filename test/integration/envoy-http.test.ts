// End to end through a real Envoy 1.40 on deploy/envoy/ext-authz-http.yaml: Envoy's HTTP
// ext_authz asks keyward's HTTP auth port (--http-auth-proxy=envoy, path_prefix /ext-authz)
// about every request to an application that echoes what it received. One keyward and one
// Envoy for the file; the last test stops keyward.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createPolicy, httpRequest, startAuthzEnv, type AuthzEnv, type HttpAnswer, type TestKey } from "../conformance/harness.ts";
import { startEnvoy, type Envoy } from "../e2e/envoy.ts";
import { createShopKeys, expectNoKey, expectOwnAddressChecked, expectRateLimited, expectUnauthenticated, reaching as reachingApp, startEchoUpstream, untilShopKeysIndexed, type EchoUpstream, type Received, type ShopKeys } from "../e2e/upstream.ts";
import { createTestNamespace, deleteNamespace } from "../support/k8s.ts";
import { denialBody } from "../../src/authz/response.ts";

const HOST = "envoy-http.example.com";

describe("Envoy's HTTP ext_authz calling keyward's HTTP port (deploy/envoy/ext-authz-http.yaml)", () => {
  let env: AuthzEnv;
  let ns: string;
  let app: EchoUpstream;
  let envoy: Envoy;
  let keys: ShopKeys;
  let reader: TestKey;
  let noScope: TestKey;
  let limited: TestKey;
  let keywardStopped = false;
  const cleanups: (() => Promise<unknown>)[] = [];

  const get = (path: string, headers: Record<string, string> = {}): Promise<HttpAnswer> => httpRequest(envoy.port, "GET", path, { host: HOST, ...headers });
  const reaching = (fn: () => Promise<unknown>): Promise<Received[]> => reachingApp(app, fn);

  beforeAll(async () => {
    app = await startEchoUpstream();
    cleanups.push(() => app.close());
    env = await startAuthzEnv(inject("kubeconfig"), { httpAuthProxy: "envoy", httpAuthPathPrefix: "/ext-authz" });
    cleanups.push(() => (keywardStopped ? Promise.resolve() : env.stop()));
    ns = await createTestNamespace(env.adminKc, "envoy-http");
    cleanups.push(() => deleteNamespace(env.adminKc, ns));
    await createPolicy(env.admin, ns, "orders", { hosts: [HOST], rules: [{ name: "read", paths: ["/orders/**"], methods: ["GET"], scopes: ["orders:read"] }] });
    keys = await createShopKeys(env.admin, ns);
    ({ reader, noScope, limited } = keys);
    envoy = await startEnvoy("ext-authz-http.yaml", { APP_ADDRESS: "127.0.0.1", APP_PORT: app.port, KEYWARD_ADDRESS: "127.0.0.1", KEYWARD_HTTP_PORT: env.authz.httpPort ?? 0 });
    cleanups.push(() => envoy.stop());
    await untilShopKeysIndexed(get, keys);
  });

  afterAll(async () => {
    for (const undo of cleanups.reverse()) await undo();
  });

  it("allowed: the application gets the request with keyward's x-keyward-* headers, never the client's own", async () => {
    const seen = await reaching(async () => {
      const r = await get("/orders/7?page=2", { "x-api-key": reader.key, "x-keyward-key-id": "kwt_forged", "x-keyward-owner": "someone-else", "x-keyward-scopes": "admin" });
      expect(r.status).toBe(200);
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.url).toBe("/orders/7?page=2");
    expect(seen[0]?.headers["x-keyward-key-id"]).toBe(reader.id);
    expect(seen[0]?.headers["x-keyward-owner"]).toBe("shop-team");
    // Only keyward's own x-keyward-* headers: the client's are dropped before keyward and the application.
    expect(Object.keys(seen[0]?.headers ?? {}).filter((h) => h.startsWith("x-keyward-")).sort()).toEqual(["x-keyward-key-id", "x-keyward-owner"]);
  });

  it("the key never reaches the application, in X-Api-Key or Authorization", async () => {
    const seen = await reaching(async () => {
      expect((await get("/orders/1", { "x-api-key": reader.key })).status).toBe(200);
      expect((await get("/orders/2", { authorization: `Bearer ${reader.key}` })).status).toBe(200);
    });
    expect(seen).toHaveLength(2);
    expectNoKey(seen, reader.key);
  });

  it("401 and 403 as the client sees them, with keyward's status, headers and body; nothing reaches the application", async () => {
    const seen = await reaching(async () => {
      await expectUnauthenticated(get, { "x-api-key": "kwt_unknownkey" });
      const forbidden = await get("/orders/1", { "x-api-key": noScope.key });
      expect(forbidden.status).toBe(403);
      expect(forbidden.body).toBe(denialBody(403));
      expect(forbidden.headers["content-type"]).toBe("application/json");
    });
    expect(seen).toEqual([]);
  });

  it("429 as the client sees it: RateLimit-* on allowed answers, then Retry-After and RateLimit-* on the refusal", async () => {
    const seen = await expectRateLimited(app, get, limited.key, 2);
    expect(seen.map((s) => s.url)).toEqual(["/orders/1", "/orders/2"]);
  });

  it("allowedSources is checked against the client's own address; an X-Forwarded-For the client made up changes nothing", async () => {
    await expectOwnAddressChecked(get, keys);
  });

  it("keyward stopped: Envoy denies with 403 and nothing reaches the application", async () => {
    keywardStopped = true;
    await env.stop();
    const seen = await reaching(async () => {
      const r = await get("/orders/1", { "x-api-key": reader.key });
      expect(r.status).toBe(403);
    });
    expect(seen).toEqual([]);
  });
});
