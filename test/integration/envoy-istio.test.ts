// The Istio recipe (docs/istio.md) end to end: a real Envoy 1.40 runs the configuration istiod
// makes of deploy/istio/ (an AuthorizationPolicy with action CUSTOM naming an extension
// provider), deploy/envoy/istio-grpc.yaml for envoyExtAuthzGrpc and istio-http.yaml for
// envoyExtAuthzHttp (includeRequestHeadersInCheck, pathPrefix), in front of an application
// that echoes what it received. One keyward serves both providers.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createKey, createPolicy, httpRequest, startAuthzEnv, type AuthzEnv, type HttpAnswer, type TestKey } from "../conformance/harness.ts";
import { localClientSources, startEnvoy, type Envoy } from "../e2e/envoy.ts";
import { expectNoKey, expectRateLimited, expectUnauthenticated, reaching as reachingApp, statusOnceIndexed, startEchoUpstream, type EchoUpstream, type Received } from "../e2e/upstream.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { denialBody } from "../../src/authz/response.ts";

const HOST = "orders.shop.svc.cluster.local";
/** A host whose policy reads the key from a header the HTTP provider does not pass to keyward. */
const OTHER_HOST = "other.shop.svc.cluster.local";

describe("the Istio recipe: what CUSTOM authorization with keyward's extension providers runs in the sidecar", () => {
  let env: AuthzEnv;
  let ns: string;
  let app: EchoUpstream;
  let grpcEnvoy: Envoy;
  let httpEnvoy: Envoy;
  let reader: TestKey;
  let fromHere: TestKey;
  const limited: Partial<Record<"grpc" | "http", TestKey>> = {};
  const cleanups: (() => Promise<unknown>)[] = [];

  const reaching = (fn: () => Promise<unknown>): Promise<Received[]> => reachingApp(app, fn);

  beforeAll(async () => {
    app = await startEchoUpstream();
    cleanups.push(() => app.close());
    env = await startAuthzEnv(inject("kubeconfig"), { httpAuthProxy: "envoy", httpAuthPathPrefix: "/ext-authz" });
    cleanups.push(() => env.stop());
    ns = await createTestNamespace(env.adminKc, "envoy-istio");
    cleanups.push(() => deleteNamespace(env.adminKc, ns));
    await createPolicy(env.admin, ns, "orders", {
      hosts: [HOST],
      credentials: { headers: ["x-api-key"], bearer: true, queryParams: ["api_key"] },
      rules: [{ name: "read", paths: ["/orders/**"], methods: ["GET"], scopes: ["orders:read"] }],
    });
    await createPolicy(env.admin, ns, "other", { hosts: [OTHER_HOST], credentials: { headers: ["x-other-key"] }, rules: [{ name: "all", paths: ["/**"] }] });
    reader = await createKey(env.admin, ns, "reader", { owner: "shop-team", scopes: ["orders:read"] });
    fromHere = await createKey(env.admin, ns, "from-here", { owner: "shop-team", scopes: ["orders:read"], allowedSources: localClientSources() });
    for (const p of ["grpc", "http"] as const) limited[p] = await createKey(env.admin, ns, `limited-${p}`, { owner: "batch-team", scopes: ["orders:read"], limits: { rate: { requests: 4, per: "1h" } } });
    const common = { APP_ADDRESS: "127.0.0.1", APP_PORT: app.port, KEYWARD_ADDRESS: "127.0.0.1" };
    grpcEnvoy = await startEnvoy("istio-grpc.yaml", { ...common, KEYWARD_PORT: env.authz.grpcPort });
    cleanups.push(() => grpcEnvoy.stop());
    httpEnvoy = await startEnvoy("istio-http.yaml", { ...common, KEYWARD_PORT: env.authz.httpPort ?? 0 });
    cleanups.push(() => httpEnvoy.stop());
    for (const e of [grpcEnvoy, httpEnvoy]) {
      await eventually(async () => ((await httpRequest(e.port, "GET", "/orders/1", { host: HOST, "x-api-key": reader.key })).status === 200 ? true : undefined), 20_000, "the reader key allowed through Envoy");
    }
  });

  afterAll(async () => {
    for (const undo of cleanups.reverse()) await undo();
  });

  for (const provider of ["grpc", "http"] as const) {
    const envoy = (): Envoy => (provider === "grpc" ? grpcEnvoy : httpEnvoy);
    const get = (path: string, headers: Record<string, string | string[]> = {}, host = HOST): Promise<HttpAnswer> => httpRequest(envoy().port, "GET", path, { host, ...headers });

    describe(`provider keyward-${provider} (deploy/envoy/istio-${provider}.yaml)`, () => {
      it("the CUSTOM action's shadow RBAC rule enables the ext_authz filter, and keyward decides", async () => {
        const seen = await reaching(async () => {
          expect((await get("/orders/1")).status).toBe(401);
          expect((await get("/orders/1", { "x-api-key": reader.key })).status).toBe(200);
        });
        expect(seen).toHaveLength(1);
        // The filter ran because the RBAC filter's shadow rule matched (stats under its prefix).
        expect(await envoy().stat("http.inbound.rbac.istio_ext_authz_.shadow_denied")).toBeGreaterThan(0);
        expect(await envoy().stat("http.inbound.ext_authz.disabled")).toBe(0);
      });

      it("allowed: keyward's x-keyward-* headers reach the application, the client's own and the key do not", async () => {
        const seen = await reaching(async () => {
          // Sent twice: keyward's value replaces every one of them.
          expect((await get("/orders/7", { "x-api-key": reader.key, "x-keyward-key-id": ["kwt_forged", "kwt_forged2"], "x-keyward-owner": "someone-else" })).status).toBe(200);
          expect((await get("/orders/8", { authorization: `Bearer ${reader.key}` })).status).toBe(200);
        });
        expect(seen.map((s) => [s.url, s.headers["x-keyward-key-id"], s.headers["x-keyward-owner"]])).toEqual([
          ["/orders/7", reader.id, "shop-team"],
          ["/orders/8", reader.id, "shop-team"],
        ]);
        expectNoKey(seen, reader.key);
      });

      it("401, 403 and 429 as the client sees them, with keyward's headers and body; the application gets only what was allowed", async () => {
        const key = limited[provider];
        if (!key) throw new Error("no limited key");
        await expectUnauthenticated(get, { "x-api-key": "kwt_unknownkey" });
        const forbidden = await get("/admin", { "x-api-key": reader.key });
        expect([forbidden.status, forbidden.body]).toEqual([403, denialBody(403)]);
        const seen = await expectRateLimited(app, get, key.key, 4);
        expect(seen).toHaveLength(4);
        expectNoKey(seen, key.key);
      });
    });
  }

  it("gRPC provider: a key in the query string is removed before the application", async () => {
    const seen = await reaching(async () => {
      expect((await httpRequest(grpcEnvoy.port, "GET", `/orders/1?a=1&api_key=${reader.key}`, { host: HOST })).status).toBe(200);
    });
    expect(seen.map((s) => s.url)).toEqual(["/orders/1?a=1"]);
  });

  it("HTTP provider: keyward judges the original path (pathPrefix removed) and sees only the headers includeRequestHeadersInCheck names", async () => {
    const seen = await reaching(async () => {
      // The check request's path is /ext-authz/orders/1; keyward judged /orders/1 (its rule), not the prefixed path.
      expect((await httpRequest(httpEnvoy.port, "GET", "/orders/1", { host: HOST, "x-api-key": reader.key })).status).toBe(200);
      // x-other-key is not in includeRequestHeadersInCheck: Envoy does not send it, so keyward sees no key.
      const other = await httpRequest(httpEnvoy.port, "GET", "/x", { host: OTHER_HOST, "x-other-key": reader.key });
      expect(other.status).toBe(401);
      expect(other.headers["www-authenticate"]).toBe('Bearer realm="keyward"');
    });
    expect(seen).toHaveLength(1);
    // The same request through the gRPC provider, which sends every header: keyward sees the key.
    expect((await httpRequest(grpcEnvoy.port, "GET", "/x", { host: OTHER_HOST, "x-other-key": reader.key })).status).toBe(200);
  });

  it("allowedSources: the gRPC provider tells keyward the sidecar's peer; the HTTP provider does not, and such keys are denied whatever X-Forwarded-For says", async () => {
    const headers = { "x-api-key": fromHere.key, "x-forwarded-for": "127.0.0.1" };
    const via = (e: Envoy) => (path: string, h: Record<string, string> = {}): Promise<HttpAnswer> => httpRequest(e.port, "GET", path, { host: HOST, ...h });
    expect(await statusOnceIndexed(via(grpcEnvoy), headers)).toBe(200);
    expect(await statusOnceIndexed(via(httpEnvoy), headers)).toBe(403);
  });
});
