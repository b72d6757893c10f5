// End to end through a real nginx: auth_request asks keyward's HTTP endpoint,
// and a small upstream records what it receives. Allowed, 401, 403 and 429 are
// seen by the client through nginx, and the key never reaches the upstream.
import { createServer, request, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createKey, createPolicy, startAuthzEnv, type AuthzEnv, type TestKey } from "../conformance/harness.ts";
import { startNginx, type Nginx } from "../e2e/nginx.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";

const HOST = "shop.example.com";

interface Seen {
  url: string;
  headers: IncomingHttpHeaders;
}

describe("nginx auth_request in front of an upstream", () => {
  let env: AuthzEnv;
  let ns: string;
  let nginx: Nginx;
  let upstream: Server;
  const seen: Seen[] = [];
  let reader: TestKey;
  let limited: TestKey;

  const get = (path: string, headers: Record<string, string> = {}, method = "GET") =>
    new Promise<{ status: number; headers: IncomingHttpHeaders; body: string }>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port: nginx.port, path, method, headers: { host: HOST, ...headers } }, (res) => {
        let body = "";
        res.on("data", (d: Buffer) => (body += d.toString()));
        res.on("end", () => {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
        });
      });
      req.on("error", reject);
      req.end();
    });

  beforeAll(async () => {
    upstream = createServer((req, res) => {
      seen.push({ url: req.url ?? "", headers: req.headers });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ hello: "from upstream" }));
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", () => { r(); }));
    env = await startAuthzEnv(inject("kubeconfig"));
    nginx = await startNginx(env.authz.httpPort!, (upstream.address() as AddressInfo).port);
    ns = await createTestNamespace(env.adminKc, "nginx");
    await createPolicy(env.admin, ns, "shop", {
      hosts: [HOST],
      rules: [
        { name: "read", paths: ["/products/**"], methods: ["GET"], scopes: ["products:read"] },
        { name: "write", paths: ["/products/**"], methods: ["POST"], scopes: ["products:write"] },
      ],
    });
    reader = await createKey(env.admin, ns, "reader", { owner: "web-shop", scopes: ["products:read"] });
    limited = await createKey(env.admin, ns, "limited", { owner: "web-shop", scopes: ["products:read"], limits: { rate: { requests: 2, per: "24h" } } });
    for (const k of [reader, limited]) {
      // A POST (no scope: 403) proves the key is indexed without spending its rate.
      await eventually(async () => ((await get("/products/1", { "x-api-key": k.key }, "POST")).status === 403 ? true : undefined), 10_000, "keys indexed");
    }
  });

  afterAll(async () => {
    await nginx.stop();
    await env.stop();
    await new Promise<void>((r) => upstream.close(() => { r(); }));
    await deleteNamespace(env.adminKc, ns);
  });

  it("lets an allowed request through with key id and owner, and without the key", async () => {
    seen.length = 0;
    const res = await get("/products/42?color=red", { "x-api-key": reader.key, "x-keyward-owner": "spoofed" });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ hello: "from upstream" });
    const bearer = await get("/products/43", { authorization: `Bearer ${reader.key}` });
    expect(bearer.status).toBe(200);
    expect(seen).toHaveLength(2);
    expect(seen[0]!.url).toBe("/products/42?color=red");
    expect(seen[0]!.headers["x-keyward-key-id"]).toBe(reader.id);
    expect(seen[0]!.headers["x-keyward-owner"]).toBe("web-shop");
    for (const s of seen) {
      expect(s.headers["x-api-key"]).toBeUndefined();
      expect(s.headers.authorization).toBeUndefined();
      expect(JSON.stringify(s)).not.toContain(reader.key);
    }
  });

  it("answers 401 with WWW-Authenticate for a missing or unknown key", async () => {
    seen.length = 0;
    const missing = await get("/products/1");
    expect(missing.status).toBe(401);
    expect(missing.headers["www-authenticate"]).toBe('Bearer realm="keyward"');
    const unknown = await get("/products/1", { "x-api-key": "kwt_unknown-key" });
    expect(unknown.status).toBe(401);
    expect(unknown.headers["www-authenticate"]).toContain('error="invalid_token"');
    expect(seen).toHaveLength(0);
  });

  it("answers 403 for a missing scope", async () => {
    seen.length = 0;
    expect((await get("/products/1", { "x-api-key": reader.key }, "POST")).status).toBe(403);
    expect(seen).toHaveLength(0);
  });

  it("answers 429 with Retry-After and RateLimit headers once the rate is spent", async () => {
    seen.length = 0;
    expect((await get("/products/1", { "x-api-key": limited.key })).status).toBe(200);
    expect((await get("/products/1", { "x-api-key": limited.key })).status).toBe(200);
    const over = await get("/products/1", { "x-api-key": limited.key });
    expect(over.status).toBe(429);
    expect(Number(over.headers["retry-after"])).toBeGreaterThan(0);
    expect(over.headers["ratelimit-limit"]).toBe("2");
    expect(over.headers["ratelimit-remaining"]).toBe("0");
    expect(Number(over.headers["ratelimit-reset"])).toBeGreaterThan(0);
    expect(seen).toHaveLength(2);
    expect(await nginx.errorLog()).not.toContain(limited.key);
  });
});
