// End to end through a real nginx running the shipped recipe (deploy/nginx/keyward.conf):
// auth_request asks keyward's HTTP endpoint, and a small upstream records what it
// receives. Allowed, 401, 403 and 429 are seen by the client through nginx, the key
// never reaches the upstream, forwarding headers a client makes up are not believed,
// and paths the upstream could read differently are refused.
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startAuthz } from "../../src/authz/service.ts";
import { defaultConfig } from "../../src/config/config.ts";
import { createLogger } from "../../src/log.ts";
import { createKey, createPolicy, httpRequest, startAuthzEnv, type AuthzEnv, type TestKey } from "../conformance/harness.ts";
import { startNginx, type Nginx } from "../e2e/nginx.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";

const HOST = "shop.example.com";
/** A policy that also reads the key from the api_key query parameter. */
const QUERY_HOST = "query.example.com";

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

  // keyward's log lines (denials are logged at info), to read the reasons of decisions.
  const logLines: string[] = [];
  const get = (path: string, headers: Record<string, string> = {}, method = "GET") => httpRequest(nginx.port, method, path, { host: HOST, ...headers });
  /** One request written as is (node:http would refuse some of these targets), answered with its status. */
  const rawGet = (target: string, headers: Record<string, string>): Promise<number> =>
    new Promise((resolve, reject) => {
      let out = "";
      const head = Object.entries({ host: HOST, ...headers, connection: "close" })
        .map(([n, v]) => `${n}: ${v}\r\n`)
        .join("");
      const s = connect(nginx.port, "127.0.0.1", () => s.write(`GET ${target} HTTP/1.1\r\n${head}\r\n`));
      s.on("data", (d: Buffer) => (out += d.toString("latin1")));
      s.on("close", () => {
        resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(out)?.[1] ?? 0));
      });
      s.on("error", reject);
    });
  /** The fields of keyward's "check" lines for `path` (as nginx passed it on). */
  const checksOf = (path: string): Record<string, unknown>[] =>
    logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === "check" && l.path === path);

  beforeAll(async () => {
    upstream = createServer((req, res) => {
      seen.push({ url: req.url ?? "", headers: req.headers });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ hello: "from upstream" }));
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", () => { r(); }));
    env = await startAuthzEnv(inject("kubeconfig"), {}, createLogger({ level: "info", sink: (l) => logLines.push(l) }));
    nginx = await startNginx(env.authz.httpPort!, (upstream.address() as AddressInfo).port);
    ns = await createTestNamespace(env.adminKc, "nginx");
    await createPolicy(env.admin, ns, "shop", {
      hosts: [HOST],
      rules: [
        { name: "read", paths: ["/products/**"], methods: ["GET"], scopes: ["products:read"] },
        { name: "write", paths: ["/products/**"], methods: ["POST"], scopes: ["products:write"] },
        { name: "public", paths: ["/public/**"] },
      ],
    });
    await createPolicy(env.admin, ns, "query", {
      hosts: [QUERY_HOST],
      credentials: { headers: ["x-api-key"], queryParams: ["api_key"] },
      rules: [{ name: "any", paths: ["/q/**"] }],
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
      expect(JSON.stringify(s).includes(reader.key)).toBe(false);
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
    expect((await nginx.errorLog()).includes(limited.key)).toBe(false);
  });

  it("judges the request nginx forwards, whatever forwarding headers the client sends", async () => {
    seen.length = 0;
    // Every header a client could hope keyward reads instead of the request itself.
    const spoof = (method: string, uri: string, host: string): Record<string, string> => ({
      "x-forwarded-method": method,
      "x-forwarded-uri": uri,
      "x-forwarded-host": host,
      "x-original-method": method,
      "x-original-uri": uri,
      "x-original-host": host,
    });
    // The reader may GET /products and anything under /public, not POST.
    expect((await get("/public/x", { "x-api-key": reader.key })).status).toBe(200);
    seen.length = 0;
    const post = await get("/products/1", { "x-api-key": reader.key, ...spoof("GET", "/products/1", HOST) }, "POST");
    expect(post.status).toBe(403);
    const path = await get("/admin/users", { "x-api-key": reader.key, ...spoof("GET", "/public/x", HOST) });
    expect(path.status).toBe(403);
    const host = await get("/products/1", { "x-api-key": reader.key, ...spoof("GET", "/products/1", HOST), host: "admin.example.com" });
    expect(host.status).toBe(403);
    expect(seen).toEqual([]);
    expect(checksOf("/products/1").at(-2)).toMatchObject({ reason: "scope_missing", method: "POST", host: HOST });
    expect(checksOf("/admin/users").at(-1)).toMatchObject({ reason: "no_policy", method: "GET", host: HOST });
    expect(checksOf("/products/1").at(-1)).toMatchObject({ reason: "no_policy", host: "admin.example.com" });
  });

  it("refuses paths the upstream could read differently, and passes none of them on", async () => {
    seen.length = 0;
    const attacks: [string, string][] = [
      ["/public/../products/1", "dot_segment"],
      ["/public/./x", "dot_segment"],
      ["/public/%2e%2e/products/1", "encoded_dot"],
      ["/public/..;/products/1", "semicolon"],
      ["/public/x;jsessionid=1", "semicolon"],
      ["/public/x%2F..%2F..%2Fadmin", "encoded_slash"],
      ["/public/x%5C..%5Cadmin", "encoded_backslash"],
      ["/public\\..\\admin", "backslash"],
      ["/public//x", "empty_segment"],
      ["/public/%252e%252e/admin", "encoded_percent"],
      ["/public/%61dmin", "encoded_unreserved"],
      ["/public/%C0%AF", "invalid_utf8"],
      ["/public/x#/../../admin", "fragment"],
    ];
    for (const [target, problem] of attacks) {
      expect(await rawGet(target, { "x-api-key": reader.key }), target).toBe(403);
      expect(checksOf(target).at(-1), target).toMatchObject({ reason: "path_not_normalized", path_problem: problem });
    }
    expect(seen).toEqual([]);
    // The same key on a plain path goes through, as the upstream reads it.
    expect(await rawGet("/public/x%20y", { "x-api-key": reader.key })).toBe(200);
    expect(seen.map((s) => s.url)).toEqual(["/public/x%20y"]);
  });

  it("never passes the key upstream, in any header the defaults read, however often it is sent", async () => {
    seen.length = 0;
    // The same key in two places is one key: allowed, and stripped from both.
    expect(await rawGet("/public/k", { "X-API-KEY": reader.key, Authorization: `Bearer ${reader.key}` })).toBe(200);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers["x-keyward-key-id"]).toBe(reader.id);
    // A repeated header (keyward reads the values joined, not as the key) never reaches the upstream
    // either. (nginx itself answers 400 to a repeated Authorization, and logs its value at info level.)
    await rawGet("/public/k", { "x-api-key": reader.key, "X-Api-Key": reader.key, authorization: `Bearer ${reader.key}` });
    // Booleans, so that a failure does not print the key.
    expect(JSON.stringify(seen).includes(reader.key)).toBe(false);
    expect((await nginx.errorLog()).includes(reader.key)).toBe(false);
    expect(logLines.join("\n").includes(reader.key)).toBe(false);
  });

  it("strips the key from the query string before the upstream, in any spelling of the parameter", async () => {
    seen.length = 0;
    const k = encodeURIComponent(reader.key);
    const q = (target: string) => rawGet(target, { host: QUERY_HOST });
    expect(await q(`/q/1?a=1&api_key=${k}&b=2`)).toBe(200);
    expect(await q(`/q/2?api%5Fkey=${k}&api_key=${k}`)).toBe(200);
    expect(await q(`/q/3?api_key=${k}`)).toBe(200);
    // The key is masked, so that a failure does not print it.
    expect(seen.map((s) => s.url.replaceAll(k, "<key>"))).toEqual(["/q/1?a=1&b=2", "/q/2", "/q/3"]);
    expect(JSON.stringify(seen).includes(reader.key)).toBe(false);
    expect(JSON.stringify(seen).includes(k)).toBe(false);
  });

  it("does not open the HTTP endpoint until the proxy in front of it is named", async () => {
    const lines: string[] = [];
    const cut = await startAuthz({
      config: defaultConfig({ grpcAddress: "127.0.0.1:0", httpAuthAddress: "127.0.0.1:0", metricsAddress: "" }),
      kc: env.authzKc,
      rest: env.authzRest,
      log: createLogger({ level: "info", sink: (l) => lines.push(l) }),
      registry: new Registry(),
    });
    try {
      expect(cut.httpPort).toBeUndefined();
      expect(lines.join("\n")).toContain("--http-auth-proxy");
    } finally {
      await cut.stop();
    }
  });
});
