// Clients keyward did not write get the right answers: grpcurl with keyward's
// protos, and a Go client on go-control-plane's generated Envoy types (the
// types Envoy's own Go tooling uses). On both gRPC transports: keyward's own
// HTTP/2 server (the default) and grpc-js.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { GRPC_TRANSPORTS } from "../../src/authz/ext-authz-grpc.ts";
import { AUTHZ_PROTO, HEALTH_PROTO } from "../../src/authz/proto.ts";
import { authzClient, checkRequest, createKey, createPolicy, startAuthzEnv, type AuthzEnv, type TestKey } from "../conformance/harness.ts";
import { buildTools, grpcurlProtoArgs, run } from "../conformance/tools.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";


describe.each(GRPC_TRANSPORTS)("ext_authz conformance with independent clients, %s transport", (transport) => {
  // A host per transport: the other run's namespace, and its ApiKeyPolicy for the host, may
  // still be terminating when this one starts, and the data plane watches every namespace.
  const HOST = `conformance-${transport}.example.com`;
  let env: AuthzEnv;
  let ns: string;
  let bin: string;
  let reader: TestKey;
  let limited: TestKey;
  let target: string;

  beforeAll(async () => {
    bin = await buildTools();
    env = await startAuthzEnv(inject("kubeconfig"), { grpcTransport: transport });
    target = `127.0.0.1:${env.authz.grpcPort}`;
    ns = await createTestNamespace(env.adminKc, "conformance");
    await createPolicy(env.admin, ns, "api", {
      hosts: [HOST],
      credentials: { headers: ["x-api-key"], bearer: true, queryParams: ["api_key"] },
      rules: [
        { name: "read", paths: ["/items/**"], methods: ["GET"], scopes: ["items:read"] },
        { name: "write", paths: ["/items/**"], methods: ["POST"], scopes: ["items:write"] },
      ],
    });
    reader = await createKey(env.admin, ns, "reader", { owner: "conformance-team", scopes: ["items:read"] });
    limited = await createKey(env.admin, ns, "limited", { owner: "conformance-team", scopes: ["items:read"], limits: { rate: { requests: 1, per: "24h" } } });
    const c = authzClient(env.authz.grpcPort);
    try {
      for (const k of [reader, limited]) {
        // POST needs a scope neither key has: 403 proves the key is indexed without spending its rate.
        await eventually(
          async () => ((await c.check(checkRequest({ host: HOST, path: "/items/1", method: "POST", headers: { "x-api-key": k.key } }))).denied_response?.status.code === 403 ? true : undefined),
          10_000,
          "keys indexed",
        );
      }
    } finally {
      c.close();
    }
  });

  afterAll(async () => {
    await env.stop();
    await deleteNamespace(env.adminKc, ns);
  });

  interface GrpcurlResponse {
    status?: { code?: number };
    okResponse?: { headers?: { header: { key: string; value: string } }[]; headersToRemove?: string[]; queryParametersToRemove?: string[] };
    deniedResponse?: { status?: { code?: string }; headers?: { header: { key: string; value: string } }[]; body?: string };
    dynamicMetadata?: Record<string, unknown>;
  }

  const grpcurl = async (req: object): Promise<GrpcurlResponse> => {
    const out = await run(join(bin, "grpcurl"), [...grpcurlProtoArgs(AUTHZ_PROTO), "-d", "@", target, "envoy.service.auth.v3.Authorization/Check"], JSON.stringify(req));
    return JSON.parse(out) as GrpcurlResponse;
  };
  const envoyJson = (method: string, path: string, headers: Record<string, string>) => ({
    attributes: {
      source: { address: { socketAddress: { address: "192.0.2.10", portValue: 40000 } } },
      request: { http: { id: "1", method, host: HOST, path, protocol: "HTTP/1.1", headers } },
    },
  });
  const headerMap = (hs: { header: { key: string; value: string } }[] | undefined) => Object.fromEntries((hs ?? []).map((h) => [h.header.key, h.header.value]));

  it("grpcurl: health reports SERVING", async () => {
    const out = await run(join(bin, "grpcurl"), [...grpcurlProtoArgs(HEALTH_PROTO), "-d", "{}", target, "grpc.health.v1.Health/Check"], "");
    expect(JSON.parse(out)).toEqual({ status: "SERVING" });
  });

  it("grpcurl: allows, strips the key and adds key id and owner", async () => {
    const ok = await grpcurl(envoyJson("GET", `/items/7?api_key=${encodeURIComponent(reader.key)}`, { authorization: `Bearer ${reader.key}` }));
    expect(ok.status?.code ?? 0).toBe(0);
    expect(headerMap(ok.okResponse?.headers)).toEqual({ "x-keyward-key-id": reader.id, "x-keyward-owner": "conformance-team" });
    expect(ok.okResponse?.headersToRemove).toEqual(["authorization"]);
    expect(ok.okResponse?.queryParametersToRemove).toEqual(["api_key"]);
    expect(ok.dynamicMetadata).toMatchObject({ reason: "ok", key_id: reader.id, owner: "conformance-team", rule: "read", scopes: ["items:read"] });
  });

  it("grpcurl: denies unknown keys with 401 and missing scopes with 403", async () => {
    const unknown = await grpcurl(envoyJson("GET", "/items/7", { "x-api-key": "kwt_unknown" }));
    expect(unknown.status?.code).toBe(16);
    expect(unknown.deniedResponse?.status?.code).toBe("Unauthorized");
    expect(headerMap(unknown.deniedResponse?.headers)["www-authenticate"]).toContain("Bearer");
    const scope = await grpcurl(envoyJson("POST", "/items/7", { "x-api-key": reader.key }));
    expect(scope.status?.code).toBe(7);
    expect(scope.deniedResponse?.status?.code).toBe("Forbidden");
    expect(scope.dynamicMetadata).toMatchObject({ reason: "scope_missing" });
  });

  interface GoOut {
    name: string;
    grpcError?: string;
    code: number;
    httpStatus?: number;
    body?: string;
    headers: Record<string, string>;
    headersToRemove: string[];
    queryParamsToRemove: string[];
    dynamicMetadata?: Record<string, unknown>;
  }

  it("Go client on go-control-plane types: allowed, 401, 403 and 429 with their headers", async () => {
    const cases = [
      { name: "ok", method: "GET", host: HOST, path: "/items/1?api_key=" + encodeURIComponent(reader.key) + "&x=1", headers: {}, source: "192.0.2.10" },
      { name: "missing", method: "GET", host: HOST, path: "/items/1", headers: {}, source: "192.0.2.10" },
      { name: "unknown", method: "GET", host: HOST, path: "/items/1", headers: { "x-api-key": "kwt_unknown" }, source: "192.0.2.10" },
      { name: "scope", method: "POST", host: HOST, path: "/items/1", headers: { "x-api-key": reader.key }, source: "2001:db8::1" },
      { name: "nopolicy", method: "GET", host: "other.example.com", path: "/", headers: { "x-api-key": reader.key }, source: "192.0.2.10" },
      { name: "first", method: "GET", host: HOST, path: "/items/1", headers: { "x-api-key": limited.key }, source: "192.0.2.10" },
      { name: "limited", method: "GET", host: HOST, path: "/items/1", headers: { "x-api-key": limited.key }, source: "192.0.2.10" },
    ];
    const out = await run(join(bin, "keyward-conformance-go"), ["-addr", target], cases.map((c) => JSON.stringify(c)).join("\n") + "\n");
    const byName = Object.fromEntries(
      out
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as GoOut)
        .map((o) => [o.name, o]),
    );
    expect(byName.ok).toMatchObject({ code: 0, headers: { "x-keyward-key-id": reader.id, "x-keyward-owner": "conformance-team" }, queryParamsToRemove: ["api_key"] });
    expect(byName.ok?.dynamicMetadata).toMatchObject({ decision: "allowed", key_id: reader.id, policy: `${ns}/api`, rule: "read" });
    expect(byName.missing).toMatchObject({ code: 16, httpStatus: 401, headers: { "www-authenticate": 'Bearer realm="keyward"' } });
    expect(byName.unknown).toMatchObject({ code: 16, httpStatus: 401 });
    expect(byName.scope).toMatchObject({ code: 7, httpStatus: 403 });
    expect(byName.nopolicy).toMatchObject({ code: 7, httpStatus: 403, dynamicMetadata: { reason: "no_policy" } });
    expect(byName.first).toMatchObject({ code: 0 });
    expect(byName.limited).toMatchObject({ code: 8, httpStatus: 429, headers: { "ratelimit-limit": "1", "ratelimit-remaining": "0" } });
    expect(Number(byName.limited?.headers["retry-after"])).toBeGreaterThan(0);
    for (const o of Object.values(byName)) expect(o.grpcError).toBeUndefined();
  });
});
