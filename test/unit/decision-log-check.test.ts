// The decision log fed by a real check: the data plane's Decision, turned into
// the usage event by the check vocabulary, written by usage's decision log.
import { describe, expect, it } from "vitest";
import { apiKey, newKey, policy } from "../../src/api/fixtures.test-support.ts";
import { Checker } from "../../src/authz/check.ts";
import type { CheckInput } from "../../src/check/decision.ts";
import { fromDecision } from "../../src/check/event.ts";
import { KeyIndex } from "../../src/index/keys.ts";
import { Limiter } from "../../src/limits/limiter.ts";
import { PolicyIndex } from "../../src/policy/policy.ts";
import { DecisionLog } from "../../src/usage/decisionlog.ts";

describe("decision log", () => {
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
