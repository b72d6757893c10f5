// End to end through a real Envoy whose ext_authz cluster reaches keyward's gRPC
// port over mTLS: deploy/envoy/ext-authz-tls.yaml with loopback ports, keyward's
// certificate verified against a throwaway CA, Envoy presenting a client
// certificate. A request with a valid key reaches the upstream, one without is
// 401; an Envoy whose client certificate keyward does not trust is refused, and
// with failure_mode_allow false its requests never reach the upstream.
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createKey, createPolicy, startAuthzEnv, type AuthzEnv, type TestKey } from "../conformance/harness.ts";
import { httpGet, startEnvoy, type Envoy } from "../e2e/envoy.ts";
import { certDir, type CertDir, type Pair, type TestCa } from "../support/certs.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";

const HOST = "envoy-tls.example.com";

describe("Envoy ext_authz to keyward over mTLS", () => {
  let certs: CertDir;
  let ca: TestCa;
  let env: AuthzEnv;
  let ns: string;
  let upstream: Server;
  let key: TestKey;
  let envoy: Envoy;
  let strangerEnvoy: Envoy;
  const seen: IncomingHttpHeaders[] = [];
  /** What afterAll undoes, in reverse order of setting up. */
  const cleanups: (() => Promise<unknown>)[] = [];

  const envoyVars = (client: Pair) => ({
    APP_ADDRESS: "127.0.0.1",
    APP_PORT: (upstream.address() as AddressInfo).port,
    KEYWARD_ADDRESS: "127.0.0.1",
    KEYWARD_PORT: env.authz.grpcPort,
    KEYWARD_SAN: "localhost",
    CA_FILE: ca.cert,
    CLIENT_CERT_FILE: client.cert,
    CLIENT_KEY_FILE: client.key,
  });

  const get = (port: number, headers: Record<string, string> = {}) => httpGet(port, "/orders/1", { host: HOST, ...headers });

  beforeAll(async () => {
    certs = await certDir();
    cleanups.push(() => certs.remove());
    ca = await certs.ca("test-ca");
    const server = await ca.server("keyward-authz");
    upstream = createServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("from upstream");
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", () => { r(); }));
    cleanups.push(() => new Promise<void>((r) => upstream.close(() => { r(); })));
    env = await startAuthzEnv(inject("kubeconfig"), { tlsCertFile: server.cert, tlsKeyFile: server.key, tlsClientCaFile: ca.cert });
    cleanups.push(() => env.stop());
    ns = await createTestNamespace(env.adminKc, "envoy-tls");
    cleanups.push(() => deleteNamespace(env.adminKc, ns));
    await createPolicy(env.admin, ns, "orders", { hosts: [HOST], rules: [{ name: "read", paths: ["/orders/**"], methods: ["GET"] }] });
    key = await createKey(env.admin, ns, "reader", { owner: "envoy-team" });
    envoy = await startEnvoy("ext-authz-tls.yaml", envoyVars(await ca.client("envoy")));
    cleanups.push(() => envoy.stop());
    strangerEnvoy = await startEnvoy("ext-authz-tls.yaml", envoyVars(await (await certs.ca("other-ca")).client("envoy")));
    cleanups.push(() => strangerEnvoy.stop());
    // Through Envoy: the key is indexed once it is allowed.
    await eventually(async () => ((await get(envoy.port, { "x-api-key": key.key })).status === 200 ? true : undefined), 20_000, "a key allowed through Envoy");
  });

  afterAll(async () => {
    for (const undo of cleanups.reverse()) await undo();
  });

  it("a valid key reaches the upstream (200) with its key id; no key or an unknown one is 401", async () => {
    seen.length = 0;
    const ok = await get(envoy.port, { "x-api-key": key.key, "x-keyward-owner": "forged", "x-keyward-scopes": "forged" });
    expect(ok).toEqual({ status: 200, body: "from upstream" });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.["x-keyward-key-id"]).toBe(key.id);
    expect(seen[0]?.["x-keyward-owner"]).toBe("envoy-team");
    expect(seen[0]?.["x-keyward-scopes"]).toBeUndefined();
    expect((await get(envoy.port)).status).toBe(401);
    expect((await get(envoy.port, { "x-api-key": "kwt_unknown" })).status).toBe(401);
    expect(seen).toHaveLength(1);
    // The checks went over TLS: Envoy's cluster completed handshakes with keyward.
    expect(await envoy.stat("cluster.keyward-authz.ssl.handshake")).toBeGreaterThan(0);
  });

  it("an Envoy with a client certificate keyward does not trust gets no check: its requests are denied", async () => {
    seen.length = 0;
    const r = await get(strangerEnvoy.port, { "x-api-key": key.key });
    expect(r.status).toBe(403);
    expect(seen).toHaveLength(0);
    expect(await strangerEnvoy.stat("http.ingress.ext_authz.error")).toBeGreaterThan(0);
  });
});
