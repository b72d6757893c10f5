import type { IncomingMessage } from "node:http";
import { describe, expect, it } from "vitest";
import { deny, type Decision } from "./check.ts";
import { decide, type FrontOptions } from "./front.ts";
import { toCheckInput, toCheckResponse } from "./grpc.ts";
import { httpCheckInput } from "./http.ts";

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
  const req = (headers: Record<string, string | string[]>, method = "GET", url = "/auth"): IncomingMessage => ({ headers, method, url }) as unknown as IncomingMessage;

  it("takes the original request from nginx's and Traefik's headers", () => {
    const nginx = httpCheckInput(req({ host: "auth:9002", "x-forwarded-host": "a.example", "x-original-uri": "/v1?x=1", "x-original-method": "POST" }));
    expect(nginx).toMatchObject({ method: "POST", host: "a.example", path: "/v1?x=1" });
    const traefik = httpCheckInput(req({ host: "a.example", "x-forwarded-uri": "/t", "x-forwarded-method": "PUT" }));
    expect(traefik).toMatchObject({ method: "PUT", host: "a.example", path: "/t" });
    const envoy = httpCheckInput(req({ host: "a.example" }, "DELETE", "/v1/x"));
    expect(envoy).toMatchObject({ method: "DELETE", host: "a.example", path: "/v1/x" });
  });

  it("treats the last X-Forwarded-For entry as the calling proxy's peer", () => {
    expect(httpCheckInput(req({ "x-forwarded-for": "1.1.1.1, 2.2.2.2, 3.3.3.3" }))).toMatchObject({ peerAddress: "3.3.3.3", forwardedFor: "1.1.1.1, 2.2.2.2" });
    expect(httpCheckInput(req({ "x-forwarded-for": "3.3.3.3" }))).toMatchObject({ peerAddress: "3.3.3.3", forwardedFor: undefined });
    expect(httpCheckInput(req({}))).toMatchObject({ peerAddress: undefined });
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
    expect(decide(base({ ready: () => false }), {}, () => toCheckInput({})).decision.reason).toBe("not_ready");
    const errors: unknown[] = [];
    const thrown = decide(
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
