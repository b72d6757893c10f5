import { describe, expect, it } from "vitest";
import { Checker, type CheckInput } from "../authz/check.ts";
import { apiKey, newKey, policy } from "../authz/fixtures.test-support.ts";
import { PolicyIndex } from "../authz/policy.ts";
import { KeyIndex } from "../index/keys.ts";
import { Limiter } from "../limits/limiter.ts";
import { fromDecision, type CheckEvent } from "./event.ts";
import { DecisionLog } from "./decisionlog.ts";

const event = (more: Partial<CheckEvent> = {}): CheckEvent => ({
  at: Date.UTC(2026, 10, 23, 12),
  key: { namespace: "shop", name: "acme", uid: "u", keyId: "kw_AbCdEfGh", owner: "acme" },
  outcome: "allowed",
  reason: "ok",
  status: 200,
  front: "grpc",
  policy: "shop/orders",
  rule: "read",
  route: "GET /v1/orders/*",
  method: "GET",
  host: "orders.example.com",
  path: "/v1/orders/42",
  source: "203.0.113.9",
  latencySeconds: 0.000412,
  ...more,
});

describe("decision log", () => {
  it("writes one JSON line per check with every field the pipeline needs", () => {
    const lines: string[] = [];
    new DecisionLog({ sink: (l) => lines.push(l), sampleAllowed: 1, sampleDenied: 1 }).write(event());
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] ?? "")).toEqual({
      ts: "2026-11-23T12:00:00.000Z",
      msg: "decision",
      key_id: "kw_AbCdEfGh",
      owner: "acme",
      apikey: "shop/acme",
      policy: "shop/orders",
      rule: "read",
      route: "GET /v1/orders/*",
      method: "GET",
      host: "orders.example.com",
      path: "/v1/orders/42",
      decision: "allowed",
      reason: "ok",
      status: 200,
      latency_ms: 0.412,
      source: "203.0.113.9",
      front: "grpc",
    });
  });

  it("clips request fields the caller chose to 256 characters", () => {
    const lines: string[] = [];
    new DecisionLog({ sink: (l) => lines.push(l), sampleAllowed: 1, sampleDenied: 1 }).write(event({ path: `/${"a".repeat(10_000)}`, host: "h".repeat(300) }));
    const rec = JSON.parse(lines[0] ?? "") as { path: string; host: string };
    expect(rec.path).toHaveLength(259);
    expect(rec.host.endsWith("...")).toBe(true);
  });

  it("samples allowed and denied decisions separately and says so on the line", () => {
    const lines: string[] = [];
    let r = 0;
    const seq = [0.05, 0.5, 0.95];
    const log = new DecisionLog({ sink: (l) => lines.push(l), sampleAllowed: 0.1, sampleDenied: 1, random: () => seq[r++ % 3] ?? 0 });
    for (let i = 0; i < 3; i++) log.write(event());
    log.write(event({ outcome: "forbidden", reason: "scope_missing", status: 403 }));
    expect(lines.map((l) => (JSON.parse(l) as { decision: string; sample_rate?: number }))).toEqual([
      expect.objectContaining({ decision: "allowed", sample_rate: 0.1 }),
      expect.objectContaining({ decision: "forbidden" }),
    ]);
    const off = new DecisionLog({ sink: (l) => lines.push(l), sampleAllowed: 0, sampleDenied: 0 });
    expect(off.write(event())).toBe(false);
  });

  it("never carries a key: a real check with the key in the query string and in a header", () => {
    const keys = new KeyIndex();
    const policies = new PolicyIndex();
    const k = newKey("kw_AbCdEfGh");
    keys.apply("add", apiKey("shop", "acme", { scopes: ["orders:read"] }, [k.version]));
    policies.apply("add", policy("shop", "orders", { hosts: ["orders.example.com"], credentials: { headers: ["x-api-key"], queryParams: ["api_key"] }, rules: [{ name: "read", paths: ["/v1/orders/*"], scopes: ["orders:read"] }] }));
    const checker = new Checker({ keys, policies, limiter: new Limiter(), now: () => Date.UTC(2026, 10, 23), xffTrustedHops: 1 });
    const lines: string[] = [];
    const log = new DecisionLog({ sink: (l) => lines.push(l), sampleAllowed: 1, sampleDenied: 1 });
    const inputs: CheckInput[] = [
      { method: "get", host: "orders.example.com", path: `/v1/orders/1?api_key=${k.key}&x=1`, header: () => undefined, peerAddress: "10.0.0.1", forwardedFor: "198.51.100.7" },
      { method: "GET", host: "orders.example.com", path: "/v1/orders/1", header: (n) => (n === "x-api-key" ? k.key : undefined), peerAddress: "10.0.0.1", forwardedFor: "198.51.100.7" },
      { method: "GET", host: "orders.example.com", path: "/v1/orders/1", header: (n) => (n === "x-api-key" ? `${k.key}x` : undefined), peerAddress: "10.0.0.1", forwardedFor: undefined },
    ];
    for (const input of inputs) log.write(fromDecision(checker.check(input), input, 0.0002, false, { xffTrustedHops: 1, front: "http", at: 0 }));
    expect(lines).toHaveLength(3);
    for (const l of lines) expect(l).not.toContain(k.key.slice(3, 30));
    const [first, , third] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(first).toMatchObject({ key_id: "kw_AbCdEfGh", path: "/v1/orders/1", route: "GET /v1/orders/*", source: "198.51.100.7", decision: "allowed", rule: "read" });
    expect(third).toMatchObject({ decision: "unauthenticated", reason: "unknown_key" });
    expect(third?.key_id).toBeUndefined();
  });
});
