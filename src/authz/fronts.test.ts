import type { IncomingMessage, ServerResponse } from "node:http";
import { describe, expect, it } from "vitest";
import { deny, type Decision } from "../check/decision.ts";
import { decide, type Decided, type FrontOptions } from "./front.ts";
import { toCheckInput, toCheckResponse } from "./check-messages.ts";
import { ENVOY_HEADERS_TO_REMOVE, httpCheckInput, withoutQueryParams, writeDecision, type HttpProxy } from "./http.ts";

/** decide() with a memory limits store: answered at once. */
const decideNow = (...args: Parameters<typeof decide<unknown>>): Decided => decide(...args) as Decided;

const OPTS = { keyIdHeader: "x-keyward-key-id", ownerHeader: "x-keyward-owner", realm: "keyward" };

describe("gRPC request reading", () => {
  it("reads the headers map Envoy sends by default", () => {
    const input = toCheckInput({
      attributes: {
        source: { address: { socket_address: { address: "10.1.2.3" } } },
        request: { http: { method: "GET", host: "a.example", path: "/x", headers: { "x-api-key": "k", "x-forwarded-for": "1.1.1.1" } } },
      },
    });
    expect(input).toMatchObject({ method: "GET", host: "a.example", path: "/x", peerAddress: "10.1.2.3", forwardedFor: "1.1.1.1" });
    expect(input.header("x-api-key")).toBe("k");
    expect(input.header("constructor")).toBeUndefined();
    expect(input.header("__proto__")).toBeUndefined();
  });

  it("reads Envoy's raw header_map, joining repeated headers", () => {
    const input = toCheckInput({
      attributes: {
        request: {
          http: {
            method: "GET",
            host: "a.example",
            path: "/",
            header_map: {
              headers: [
                { key: "X-Api-Key", raw_value: Buffer.from("k1") },
                { key: "x-api-key", raw_value: Buffer.from("k2") },
                { key: "accept", value: "*/*" },
              ],
            },
          },
        },
      },
    });
    expect(input.header("x-api-key")).toBe("k1,k2");
    expect(input.header("accept")).toBe("*/*");
  });

  it("tolerates a request with no attributes at all", () => {
    const input = toCheckInput({});
    expect(input.method).toBeUndefined();
    expect(input.header("x-api-key")).toBeUndefined();
  });

  it("renders denials with an HTTP status and no ok_response, and OK with overwriting headers", () => {
    const d = toCheckResponse(deny("missing_key"), OPTS);
    expect(d.status.code).toBe(16);
    expect(d.denied_response?.status.code).toBe(401);
    expect(d.ok_response).toBeUndefined();
    expect(d.dynamic_metadata?.fields.reason).toEqual({ stringValue: "missing_key" });
  });
});

describe("HTTP request reading", () => {
  /** A request as node:http parses it, from raw [name, value] pairs in the order sent. */
  const req = (raw: [string, string][], method = "GET", url = "/auth"): IncomingMessage => {
    const headers: Record<string, string> = {};
    for (const [n, v] of raw) {
      const k = n.toLowerCase();
      headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
    }
    return { headers, rawHeaders: raw.flat(), method, url } as unknown as IncomingMessage;
  };
  // Every forwarding header a client could send through a proxy that passes its headers on.
  const spoofed: [string, string][] = [
    ["X-Forwarded-Method", "GET"],
    ["X-Forwarded-Uri", "/public"],
    ["X-Forwarded-Host", "public.example"],
    ["X-Original-Method", "GET"],
    ["X-Original-URI", "/public"],
    ["X-Original-Host", "public.example"],
    ["X-Rewrite-URL", "/public"],
  ];

  it("nginx: X-Original-Method, X-Original-URI and Host, nothing else", () => {
    const read = httpCheckInput("nginx");
    expect(read(req([["Host", "a.example"], ["X-Original-URI", "/v1?x=1"], ["X-Original-Method", "POST"]]))).toMatchObject({ method: "POST", host: "a.example", path: "/v1?x=1" });
    // The client's own X-Forwarded-* reach keyward through nginx; they are ignored.
    const spoof = read(req([["Host", "a.example"], ["X-Original-URI", "/v1/orders"], ["X-Original-Method", "POST"], ...spoofed.filter(([n]) => !n.startsWith("X-Original-M") && n !== "X-Original-URI")]));
    expect(spoof).toMatchObject({ method: "POST", host: "a.example", path: "/v1/orders" });
    // Without the recipe's headers there is no original request: never the check request's own line.
    expect(read(req([["Host", "a.example"], ["X-Forwarded-Method", "GET"], ["X-Forwarded-Uri", "/public"]], "GET", "/public"))).toMatchObject({ method: undefined, path: undefined });
  });

  it("traefik: X-Forwarded-Method, -Host and -Uri, nothing else", () => {
    const read = httpCheckInput("traefik");
    const input = read(req([["Host", "keyward:9002"], ["X-Forwarded-Host", "a.example"], ["X-Forwarded-Uri", "/t"], ["X-Forwarded-Method", "PUT"], ...spoofed.filter(([n]) => n.startsWith("X-Original") || n === "X-Rewrite-URL")], "GET", "/public"));
    expect(input).toMatchObject({ method: "PUT", host: "a.example", path: "/t" });
    expect(read(req([["Host", "a.example"], ["X-Original-Method", "GET"], ["X-Original-URI", "/public"]], "GET", "/public"))).toMatchObject({ method: undefined, host: undefined, path: undefined });
  });

  it("envoy: the check request's own method, path and Host, with path_prefix removed", () => {
    expect(httpCheckInput("envoy")(req([["Host", "a.example"], ...spoofed], "DELETE", "/v1/x?y=1"))).toMatchObject({ method: "DELETE", host: "a.example", path: "/v1/x?y=1" });
    const prefixed = httpCheckInput("envoy", "/ext-authz");
    expect(prefixed(req([["Host", "a.example"]], "POST", "/ext-authz/v1/x"))).toMatchObject({ method: "POST", path: "/v1/x" });
    // A check request without the prefix is not one Envoy sent: no path, so 400.
    expect(prefixed(req([["Host", "a.example"]], "POST", "/v1/x")).path).toBeUndefined();
  });

  it("refuses a request-line header sent twice rather than picking one", () => {
    const twice = (name: string): [string, string][] => [
      [name, "/a"],
      [name.toUpperCase(), "/b"],
    ];
    const nginx = httpCheckInput("nginx");
    expect(nginx(req([["Host", "a.example"], ["X-Original-Method", "GET"], ...twice("X-Original-URI")])).path).toBeUndefined();
    expect(nginx(req([["Host", "a.example"], ["X-Original-URI", "/"], ["X-Original-Method", "GET"], ["X-Original-Method", "POST"]])).method).toBeUndefined();
    expect(nginx(req([["Host", "a.example"], ["Host", "b.example"], ["X-Original-URI", "/"], ["X-Original-Method", "GET"]])).host).toBeUndefined();
    expect(httpCheckInput("traefik")(req([["X-Forwarded-Host", "a.example"], ["X-Forwarded-Method", "GET"], ...twice("X-Forwarded-Uri")])).path).toBeUndefined();
  });

  it("treats the last X-Forwarded-For entry as the calling proxy's peer", () => {
    const read = httpCheckInput("nginx");
    expect(read(req([["X-Forwarded-For", "1.1.1.1, 2.2.2.2, 3.3.3.3"]]))).toMatchObject({ peerAddress: "3.3.3.3", forwardedFor: "1.1.1.1, 2.2.2.2" });
    expect(read(req([["X-Forwarded-For", "3.3.3.3"]]))).toMatchObject({ peerAddress: "3.3.3.3", forwardedFor: undefined });
    expect(read(req([]))).toMatchObject({ peerAddress: undefined });
  });
});

describe("the upstream URI of an allowed HTTP check", () => {
  it("drops every query parameter the key was found in, as findKey names them, and nothing else", () => {
    expect(withoutQueryParams("/a/b?x=1&api_key=K&y=2", ["api_key"])).toBe("/a/b?x=1&y=2");
    expect(withoutQueryParams("/a?api_key=K", ["api_key"])).toBe("/a");
    expect(withoutQueryParams("/a?api%5Fkey=K&api_key=K&key=1", ["api_key"])).toBe("/a?key=1");
    expect(withoutQueryParams("/a?api_key=K&token=K", ["api_key", "token"])).toBe("/a");
    expect(withoutQueryParams("/a?x=%zz&api_key", ["api_key"])).toBe("/a?x=%zz");
    expect(withoutQueryParams("/a?%zz=1&api_key=K#f", ["api_key"])).toBe("/a?%zz=1#f");
    expect(withoutQueryParams("/a?api_key=K", [])).toBe("/a?api_key=K");
    expect(withoutQueryParams("/a/api_key=K", ["api_key"])).toBe("/a/api_key=K");
  });
});

describe("the answer to an allowed HTTP check", () => {
  /** The headers writeDecision sets for `proxy`. */
  const written = (d: Decision, proxy: HttpProxy): Record<string, string> => {
    const headers: Record<string, string> = {};
    const res = {
      setHeader: (k: string, v: string) => (headers[k] = v),
      writeHead: (_s: number, h: Record<string, string>) => Object.assign(headers, h),
      end: () => undefined,
    } as unknown as ServerResponse;
    writeDecision(res, d, OPTS, { ...toCheckInput({}), path: "/a?api_key=K" }, proxy);
    return headers;
  };
  const ok: Decision = { ...deny("ok"), removeHeaders: ["x-api-key", "authorization"], removeQueryParams: ["api_key"] };

  it("tells Envoy which request headers to remove: the ones the key was in", () => {
    expect(written(ok, "envoy")[ENVOY_HEADERS_TO_REMOVE]).toBe("x-api-key,authorization");
    expect(written({ ...ok, removeHeaders: [] }, "envoy")[ENVOY_HEADERS_TO_REMOVE]).toBeUndefined();
  });

  it("does not for nginx and Traefik, which strip through their own configuration", () => {
    for (const proxy of ["nginx", "traefik"] as const) expect(written(ok, proxy)[ENVOY_HEADERS_TO_REMOVE]).toBeUndefined();
  });

  it("never on a denial", () => {
    expect(written({ ...deny("scope_missing"), removeHeaders: ["x-api-key"] }, "envoy")[ENVOY_HEADERS_TO_REMOVE]).toBeUndefined();
  });
});

describe("decide", () => {
  const base = (over: Partial<FrontOptions>): FrontOptions => ({
    address: "",
    checker: { check: (): Decision => deny("no_policy") } as unknown as FrontOptions["checker"],
    response: OPTS,
    ready: () => true,
    onDecision: () => undefined,
    onError: () => undefined,
    ...over,
  });

  it("denies with 503 before the watches synced and 500 when anything throws", () => {
    expect(decideNow(base({ ready: () => false }), {}, () => toCheckInput({})).decision.reason).toBe("not_ready");
    const errors: unknown[] = [];
    const thrown = decideNow(
      base({ onError: (e) => errors.push(e) }),
      {},
      () => {
        throw new Error("boom");
      },
    );
    expect(thrown.decision).toMatchObject({ reason: "internal_error", status: 500 });
    expect(errors).toHaveLength(1);
  });
});
