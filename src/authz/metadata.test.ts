import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { apiKey, newKey, policy } from "../api/fixtures.test-support.ts";
import { fromDecision, type CheckEvent } from "../check/event.ts";
import { KeyIndex } from "../index/keys.ts";
import { Limiter } from "../limits/limiter.ts";
import { PolicyIndex } from "../policy/policy.ts";
import { Checker } from "./check.ts";
import { checkInput } from "./fixtures.test-support.ts";
import { decisionMetadata } from "./response.ts";

const RID = "83c9600e-9cc8-48e9-b543-dd59374de47f";

/** A key of another format (ApiKey.spec.keyHash): nothing in it tells it from a request id. */
const FOREIGN = "4bf92f3577b34da6a3ce929d0e0e4736";

function setup(headers: string[], foreign = false) {
  const keys = new KeyIndex();
  const policies = new PolicyIndex();
  const checker = new Checker({ keys, policies, limiter: new Limiter(), now: () => Date.UTC(2026, 5, 1), xffTrustedHops: 0 });
  policies.apply("add", policy("shop", "orders", { hosts: ["orders.example.com"], credentials: { headers }, rules: [{ name: "read", paths: ["/v1/orders/*"], methods: ["GET"] }] }));
  const k = newKey("kw_AbCdEfGh");
  if (foreign) k.key = FOREIGN;
  if (foreign) k.version.hash = `sha256:${createHash("sha256").update(FOREIGN).digest("hex")}`;
  keys.apply("add", apiKey("shop", "acme", {}, [k.version]));
  return { checker, key: k.key };
}

describe("the metadata a check returns for Envoy's access log", () => {
  it("carries the ApiKey's uid and the rule's route pattern, which the access log's rows are made of", () => {
    const { checker, key } = setup(["x-api-key"]);
    const d = checker.check(checkInput({ "x-api-key": key, "x-request-id": RID }));
    expect(decisionMetadata(d)).toMatchObject({ decision: "allowed", key_id: "kw_AbCdEfGh", apikey: "shop/acme", uid: "shop-acme-uid", policy: "shop/orders", rule: "read", route_pattern: "/v1/orders/*" });
    expect(decisionMetadata(d)).not.toHaveProperty("request_id_unusable");
    const e = fromDecision(d, checkInput({ "x-api-key": key, "x-request-id": RID }), 0.001, false, { xffTrustedHops: 0, front: "grpc", at: 1 });
    expect(e.requestId).toBe(RID);
  });

  it("attributes the check to the ApiKey and key version, with the key's quota when it has one", () => {
    const keys = new KeyIndex();
    const policies = new PolicyIndex();
    const checker = new Checker({ keys, policies, limiter: new Limiter(), now: () => Date.UTC(2026, 5, 1), xffTrustedHops: 0 });
    policies.apply("add", policy("shop", "orders", { hosts: ["orders.example.com"], credentials: { headers: ["x-api-key"] }, rules: [{ name: "read", paths: ["/v1/orders/*"], methods: ["GET"] }] }));
    const plain = newKey("kw_AbCdEfGh");
    const quoted = newKey("kw_QuOtAaaa");
    keys.apply("add", apiKey("shop", "acme", {}, [plain.version]));
    keys.apply("add", apiKey("shop", "metered", { limits: { quota: { requests: 1000, per: "day" } } }, [quoted.version]));
    const event = (key: string): CheckEvent => {
      const input = checkInput({ "x-api-key": key }, { method: "get", path: "/v1/orders/1?api_key=x" });
      return fromDecision(checker.check(input), input, 0.001, false, { xffTrustedHops: 0, front: "grpc", at: 1 });
    };
    const e = event(plain.key);
    expect(e.key).toStrictEqual({ namespace: "shop", name: "acme", uid: "shop-acme-uid", keyId: "kw_AbCdEfGh", owner: "acme" });
    expect([e.method, e.route, e.path]).toEqual(["GET", "GET /v1/orders/*", "/v1/orders/1"]);
    expect(event(quoted.key).key).toStrictEqual({ namespace: "shop", name: "metered", uid: "shop-metered-uid", keyId: "kw_QuOtAaaa", owner: "acme", quota: { requests: 1000, per: "day" } });
  });

  it("says so when the policy takes keys from x-request-id, and the check then records no request id", () => {
    const { checker, key } = setup(["x-request-id"], true);
    const input = checkInput({ "x-request-id": key });
    const d = checker.check(input);
    expect(d.reason).toBe("ok");
    expect(decisionMetadata(d).request_id_unusable).toBe("true");
    const e = fromDecision(d, input, 0.001, false, { xffTrustedHops: 0, front: "grpc", at: 1 });
    expect(e.requestId).toBeUndefined();
    expect(JSON.stringify(e)).not.toContain(key);
  });
});
