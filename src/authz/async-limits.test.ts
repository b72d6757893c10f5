// A limits store that answers later (the redis store): the Checker returns a
// Promise only for a key with limits, and every front answers it once it settles.
import * as grpc from "@grpc/grpc-js";
import { request as httpRequest } from "node:http";
import { afterAll, describe, expect, it } from "vitest";
import { KeyIndex } from "../index/keys.ts";
import { RedisLimiter, type RunScript } from "../limits/redis-store.ts";
import type { CheckInput, Decision } from "../check/decision.ts";
import { Checker } from "./check.ts";
import { startGrpcFront, type GrpcFront } from "./ext-authz-grpc.ts";
import { startHttpFront, type HttpFront } from "./http.ts";
import { PolicyIndex } from "../policy/policy.ts";
import { AUTHZ_SERVICE, loadProtos, type CheckRequestMessage, type CheckResponseMessage } from "./proto.ts";
import type { ResponseOptions } from "./response.ts";
import { apiKey, newKey, policy } from "../api/fixtures.test-support.ts";
import { checkInput } from "./fixtures.test-support.ts";

const OPTS: ResponseOptions = { keyIdHeader: "x-keyward-key-id", ownerHeader: "x-keyward-owner", realm: "keyward" };

/** A store whose "Redis" admits the first two calls' checks (one per call), then refuses, 20 ms later. */
function slowStore(): { limiter: RedisLimiter; calls: () => number } {
  let calls = 0;
  const run: RunScript = () => {
    calls++;
    const reply = calls <= 2 ? [1, 0, String(2 - calls)] : [0, 1, "0.2"];
    return new Promise((r) => {
      setTimeout(() => {
        r([reply]);
      }, 20);
    });
  };
  const limiter = new RedisLimiter({ run, keyPrefix: "kw:", timeoutMs: 1000, failureMode: "deny", breakerFailures: 5, breakerCooldownMs: 1000, maxInFlight: 100, denyCache: false, now: Date.now });
  return { limiter, calls: () => calls };
}

function setup(): { checker: Checker; limited: string; free: string; calls: () => number } {
  const keys = new KeyIndex();
  const policies = new PolicyIndex();
  policies.apply("add", policy("shop", "orders", { hosts: ["orders.example.com"], rules: [{ name: "read", paths: ["/v1/orders/*"], methods: ["GET"] }] }));
  const limited = newKey("shop_lim00000");
  const free = newKey("shop_free0000");
  keys.apply("add", apiKey("shop", "lim", { limits: { rate: { requests: 2, per: "1h", burst: 2 } } }, [limited.version]));
  keys.apply("add", apiKey("shop", "free", {}, [free.version]));
  const store = slowStore();
  const checker = new Checker({ keys, policies, limiter: store.limiter, now: Date.now, xffTrustedHops: 0 });
  return { checker, limited: limited.key, free: free.key, calls: store.calls };
}

const input = (key: string): CheckInput => checkInput({ "x-api-key": key });

describe("a limits store that answers later", () => {
  it("the Checker answers a key without limits at once, and one with limits through a Promise", async () => {
    const s = setup();
    const free = s.checker.check(input(s.free));
    expect(free).not.toBeInstanceOf(Promise);
    expect(s.calls()).toBe(0);
    const limited = s.checker.check(input(s.limited));
    expect(limited).toBeInstanceOf(Promise);
    expect(await limited).toMatchObject({ reason: "ok", status: 200, limit: { limit: 2, remaining: 1 } });
  });

  const fronts: (GrpcFront | HttpFront)[] = [];
  afterAll(async () => {
    for (const f of fronts) await f.stop();
  });

  it.each(["keyward", "grpc-js"] as const)("the %s gRPC transport answers after the store: 200, 200, then 429 with Retry-After", async (transport) => {
    const s = setup();
    const decisions: Decision[] = [];
    const front = await startGrpcFront({ address: "127.0.0.1:0", transport, checker: s.checker, response: OPTS, ready: () => true, onDecision: (d) => decisions.push(d), onError: () => undefined });
    fronts.push(front);
    let node: unknown = grpc.loadPackageDefinition(loadProtos());
    for (const part of AUTHZ_SERVICE.split(".")) node = (node as Record<string, unknown>)[part];
    const method = (node as { service: Record<string, grpc.MethodDefinition<CheckRequestMessage, CheckResponseMessage>> }).service.Check!;
    const client = new grpc.Client(`127.0.0.1:${front.port}`, grpc.credentials.createInsecure());
    const call = (key: string): Promise<CheckResponseMessage> =>
      new Promise((resolve, reject) => {
        const req: CheckRequestMessage = { attributes: { request: { http: { method: "GET", host: "orders.example.com", path: "/v1/orders/1", headers: { "x-api-key": key } } } } };
        client.makeUnaryRequest(`/${AUTHZ_SERVICE}/Check`, method.requestSerialize, method.responseDeserialize, req, (err, res) => {
          if (err || !res) reject(err ?? new Error("no answer"));
          else resolve(res);
        });
      });
    try {
      const answers = [await call(s.limited), await call(s.limited), await call(s.limited)];
      expect(answers.map((a) => a.denied_response?.status.code ?? 200)).toEqual([200, 200, 429]);
      const retry = answers[2]?.denied_response?.headers.find((h) => h.header.key === "retry-after");
      // 0.8 tokens short at 2 an hour: 1,440 s.
      expect(Number(retry?.header.value)).toBeCloseTo(1440, -1);
      expect(decisions.map((d) => d.reason)).toEqual(["ok", "ok", "rate_limited"]);
    } finally {
      client.close();
    }
  });

  it("the HTTP front answers after the store", async () => {
    const s = setup();
    const front = await startHttpFront({ address: "127.0.0.1:0", proxy: "nginx", pathPrefix: "", checker: s.checker, response: OPTS, ready: () => true, onDecision: () => undefined, onError: () => undefined });
    fronts.push(front);
    const get = (key: string): Promise<{ status: number; retryAfter: string | undefined }> =>
      new Promise((resolve, reject) => {
        const req = httpRequest({ port: front.port, host: "127.0.0.1", path: "/auth", headers: { host: "orders.example.com", "x-original-method": "GET", "x-original-uri": "/v1/orders/1", "x-api-key": key } }, (res) => {
          res.resume();
          resolve({ status: res.statusCode ?? 0, retryAfter: res.headers["retry-after"] });
        });
        req.on("error", reject);
        req.end();
      });
    const answers = [await get(s.limited), await get(s.limited), await get(s.limited)];
    expect(answers.map((a) => a.status)).toEqual([200, 200, 429]);
    expect(Number(answers[2]?.retryAfter)).toBeCloseTo(1440, -1);
  });
});
