// The small servers the proxy suites put behind (and beside) a real proxy: an
// application that echoes what reached it, and an ext_authz server that never answers;
// and the assertions those suites share on what the client and the application see.
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { createServer as createH2Server, type Http2Server, type Http2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import { expect } from "vitest";
import { denialBody } from "../../src/authz/response.ts";
import type { KubeRest } from "../../src/k8s/rest.ts";
import { createKey, type HttpAnswer, type TestKey } from "../conformance/harness.ts";
import { eventually } from "../support/k8s.ts";
import { localClientSources } from "./envoy.ts";

/** One request as the application received it. */
export interface Received {
  method: string;
  /** The request-target as sent: path and query. */
  url: string;
  headers: IncomingHttpHeaders;
}

export interface EchoUpstream {
  port: number;
  /** Every request that reached the application, oldest first. */
  seen: Received[];
  close(): Promise<void>;
}

/**
 * An application that answers every request with 200 and a JSON body of what it received
 * (method, url, headers); a path starting with /fail/ is answered 503 instead.
 */
export async function startEchoUpstream(): Promise<EchoUpstream> {
  const seen: Received[] = [];
  const server: Server = createServer((req, res) => {
    const got: Received = { method: req.method ?? "", url: req.url ?? "", headers: req.headers };
    seen.push(got);
    const body = JSON.stringify(got);
    res.writeHead(got.url.startsWith("/fail/") ? 503 : 200, { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => { r(); }));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => { r(); });
    }),
  };
}

export interface SilentServer {
  port: number;
  /** Calls received (and never answered). */
  calls(): number;
  close(): Promise<void>;
}

/** An HTTP/2 server that accepts every gRPC call and never answers it: a hung ext_authz server. */
export async function startSilentGrpcServer(): Promise<SilentServer> {
  let calls = 0;
  const sessions = new Set<Http2Session>();
  const server: Http2Server = createH2Server();
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
    session.on("error", () => undefined);
  });
  server.on("stream", (stream) => {
    calls++;
    stream.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => { r(); }));
  return {
    port: (server.address() as AddressInfo).port,
    calls: () => calls,
    close: () => new Promise<void>((r) => {
      for (const s of sessions) s.destroy();
      server.close(() => { r(); });
    }),
  };
}

/** What reached `app` while `fn` ran. */
export async function reaching(app: EchoUpstream, fn: () => Promise<unknown>): Promise<Received[]> {
  const before = app.seen.length;
  await fn();
  return app.seen.slice(before);
}

/** Asserts that no request carried `key` or a credential header, without printing a value (a failure must not show the key). */
export function expectNoKey(seen: readonly Received[], key: string): void {
  for (const s of seen) {
    expect(Object.keys(s.headers).filter((h) => h === "x-api-key" || h === "authorization")).toEqual([]);
    expect(JSON.stringify(s).includes(key)).toBe(false);
  }
}

/** One request through the proxy, with the client's headers. */
export type ProxyGet = (path: string, headers?: Record<string, string>) => Promise<HttpAnswer>;

/**
 * Spends a key whose rate is `limit` requests per hour: each allowed answer carries RateLimit-*,
 * the next one is keyward's 429 with Retry-After and RateLimit-*. Returns what reached `app`.
 */
export async function expectRateLimited(app: EchoUpstream, get: ProxyGet, key: string, limit: number): Promise<Received[]> {
  return reaching(app, async () => {
    for (let i = 1; i <= limit; i++) {
      const ok = await get(`/orders/${String(i)}`, { "x-api-key": key });
      expect(ok.status).toBe(200);
      expect([ok.headers["ratelimit-limit"], ok.headers["ratelimit-remaining"]]).toEqual([String(limit), String(limit - i)]);
      expect(Number(ok.headers["ratelimit-reset"])).toBeGreaterThan(0);
    }
    const refused = await get("/orders/refused", { "x-api-key": key });
    expect(refused.status).toBe(429);
    expect(refused.body).toBe(denialBody(429));
    expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
    expect([refused.headers["ratelimit-limit"], refused.headers["ratelimit-remaining"]]).toEqual([String(limit), "0"]);
    expect(Number(refused.headers["ratelimit-reset"])).toBeGreaterThan(0);
  });
}

/** No key, then an unknown one: keyward's 401 with its challenge and body, as the client sees it. */
export async function expectUnauthenticated(get: ProxyGet, unknownKeyHeaders: Record<string, string>): Promise<void> {
  const none = await get("/orders/1");
  expect([none.status, none.headers["www-authenticate"], none.headers["content-type"], none.body]).toEqual([401, 'Bearer realm="keyward"', "application/json", denialBody(401)]);
  const unknown = await get("/orders/1", unknownKeyHeaders);
  expect([unknown.status, unknown.headers["www-authenticate"], unknown.body]).toEqual([401, 'Bearer realm="keyward", error="invalid_token"', denialBody(401)]);
}

/** The keys an Envoy front's suite sends through it, for a policy that gives orders:read on /orders/**. */
export interface ShopKeys {
  reader: TestKey;
  /** Without the orders:read scope. */
  noScope: TestKey;
  /** Two requests an hour. */
  limited: TestKey;
  /** Allowed only from this machine's own addresses. */
  fromHere: TestKey;
  /** Allowed only from 198.51.100.0/24. */
  fromElsewhere: TestKey;
}

/** Creates the ShopKeys in namespace `ns`. */
export async function createShopKeys(admin: KubeRest, ns: string): Promise<ShopKeys> {
  return {
    reader: await createKey(admin, ns, "reader", { owner: "shop-team", scopes: ["orders:read"] }),
    noScope: await createKey(admin, ns, "no-scope", { owner: "shop-team", scopes: [] }),
    limited: await createKey(admin, ns, "limited", { owner: "batch-team", scopes: ["orders:read"], limits: { rate: { requests: 2, per: "1h" } } }),
    fromHere: await createKey(admin, ns, "from-here", { owner: "shop-team", scopes: ["orders:read"], allowedSources: localClientSources() }),
    fromElsewhere: await createKey(admin, ns, "from-elsewhere", { owner: "shop-team", scopes: ["orders:read"], allowedSources: ["198.51.100.0/24"] }),
  };
}

/** Waits until the proxy lets the reader's key through and refuses the one without scope: the proxy serves, and keyward knows the keys. */
export async function untilShopKeysIndexed(get: ProxyGet, keys: ShopKeys): Promise<void> {
  await eventually(async () => ((await get("/orders/1", { "x-api-key": keys.reader.key })).status === 200 ? true : undefined), 20_000, "the reader key allowed through the proxy");
  await eventually(async () => ((await get("/orders/1", { "x-api-key": keys.noScope.key })).status === 403 ? true : undefined), 20_000, "the key without scope indexed");
}

/** allowedSources is checked against the client's own address: an X-Forwarded-For the client made up, inside the other key's allowedSources, changes nothing. */
export async function expectOwnAddressChecked(get: ProxyGet, keys: ShopKeys): Promise<void> {
  const spoofed = { "x-forwarded-for": "198.51.100.7" };
  expect(await statusOnceIndexed(get, { "x-api-key": keys.fromHere.key, ...spoofed })).toBe(200);
  expect(await statusOnceIndexed(get, { "x-api-key": keys.fromElsewhere.key, ...spoofed })).toBe(403);
}

/** The status of GET /orders/1 with these headers once keyward knows the key (until then it is 401). */
export async function statusOnceIndexed(get: ProxyGet, headers: Record<string, string>): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await get("/orders/1", headers);
    if (r.status !== 401 || Date.now() > deadline) return r.status;
    await new Promise((res) => setTimeout(res, 20));
  }
}
