import { describe, expect, it } from "vitest";
import { KeyIndex } from "../index/keys.ts";
import { Limiter } from "../limits/limiter.ts";
import { clientAddress, type CheckInput } from "../check/decision.ts";
import { Checker, normalizeHost } from "./check.ts";
import { PolicyIndex } from "../policy/policy.ts";
import { denialBody, denialHeaders, okHeaders, type ResponseOptions } from "./response.ts";
import { apiKey, newKey, policy } from "../api/fixtures.test-support.ts";

const NOW = Date.UTC(2026, 5, 1, 12);
const OPTS: ResponseOptions = { keyIdHeader: "x-keyward-key-id", ownerHeader: "x-keyward-owner", realm: "keyward" };

function setup(xffTrustedHops = 0) {
  const keys = new KeyIndex();
  const policies = new PolicyIndex();
  let now = NOW;
  const checker = new Checker({ keys, policies, limiter: new Limiter(), now: () => now, xffTrustedHops });
  policies.apply(
    "add",
    policy("shop", "orders", {
      hosts: ["orders.example.com"],
      credentials: { headers: ["x-api-key"], bearer: true, queryParams: ["api_key"] },
      keys: { selector: { matchLabels: { tier: "pro" } } },
      defaults: { rate: { requests: 2, per: "1m" } },
      rules: [
        { name: "read", paths: ["/v1/orders/*"], methods: ["GET"], scopes: ["orders:read"] },
        { name: "write", paths: ["/v1/orders"], methods: ["POST"], scopes: ["orders:write"] },
      ],
    }),
  );
  const req = (headers: Record<string, string>, over: Partial<CheckInput> = {}): CheckInput => ({
    method: "GET",
    host: "orders.example.com:443",
    path: "/v1/orders/1",
    header: (n) => headers[n],
    peerAddress: "203.0.113.9",
    forwardedFor: headers["x-forwarded-for"],
    ...over,
  });
  return { keys, checker, req, setNow: (t: number) => (now = t) };
}

describe("Checker decisions", () => {
  it("allows a valid key with the scope and says which headers to strip", () => {
    const { keys, checker, req } = setup();
    const k = newKey("shop_aaaaaaaa");
    keys.apply("add", apiKey("shop", "a", { scopes: ["orders:read"], limits: { rate: { requests: 100, per: "1s" } } }, [k.version], { tier: "pro" }));
    const d = checker.check(req({ "x-api-key": k.key }));
    expect(d).toMatchObject({ reason: "ok", status: 200, removeHeaders: ["x-api-key"] });
    expect(okHeaders(d, OPTS)).toEqual([
      ["x-keyward-key-id", "shop_aaaaaaaa"],
      ["x-keyward-owner", "acme"],
    ]);
    const q = checker.check(req({}, { path: `/v1/orders/1?x=1&api_key=${encodeURIComponent(k.key)}` }));
    expect(q).toMatchObject({ reason: "ok", removeQueryParams: ["api_key"] });
    expect(checker.check(req({ authorization: `Bearer ${k.key}` }))).toMatchObject({ reason: "ok", removeHeaders: ["authorization"] });
  });

  it("answers unknown, disabled, expired and ended-grace keys with the same 401", () => {
    const { keys, checker, req } = setup();
    const dis = newKey("shop_dis00000");
    const exp = newKey("shop_exp00000");
    const grace = newKey("shop_grace000", "grace", new Date(NOW - 1).toISOString());
    keys.apply("add", apiKey("shop", "d", { disabled: true, scopes: ["orders:read"] }, [dis.version], { tier: "pro" }));
    keys.apply("add", apiKey("shop", "e", { expiresAt: new Date(NOW).toISOString(), scopes: ["orders:read"] }, [exp.version], { tier: "pro" }));
    keys.apply("add", apiKey("shop", "g", { scopes: ["orders:read"] }, [grace.version], { tier: "pro" }));
    const reasons = [newKey("x").key, dis.key, exp.key, grace.key].map((key) => checker.check(req({ "x-api-key": key })));
    expect(reasons.map((d) => d.reason)).toEqual(["unknown_key", "key_disabled", "key_expired", "key_grace_ended"]);
    const shown = reasons.map((d) => JSON.stringify([d.status, denialHeaders(d, OPTS), denialBody(d.status)]));
    expect(new Set(shown).size).toBe(1);
    expect(denialHeaders(reasons[0]!, OPTS)).toContainEqual(["www-authenticate", 'Bearer realm="keyward", error="invalid_token"']);
  });

  it("accepts a grace key until its expiresAt, checked with the injected clock", () => {
    const { keys, checker, req, setNow } = setup();
    const grace = newKey("shop_grace001", "grace", new Date(NOW + 1000).toISOString());
    keys.apply("add", apiKey("shop", "g", { scopes: ["orders:read"] }, [grace.version], { tier: "pro" }));
    expect(checker.check(req({ "x-api-key": grace.key })).reason).toBe("ok");
    setNow(NOW + 1000);
    expect(checker.check(req({ "x-api-key": grace.key })).reason).toBe("key_grace_ended");
  });

  it("refuses a missing key with 401 and two different keys deterministically", () => {
    const { keys, checker, req } = setup();
    const a = newKey("shop_a0000000");
    const b = newKey("shop_b0000000");
    keys.apply("add", apiKey("shop", "a", { scopes: ["orders:read"] }, [a.version, b.version], { tier: "pro" }));
    expect(checker.check(req({})).reason).toBe("missing_key");
    for (let i = 0; i < 3; i++) expect(checker.check(req({ "x-api-key": a.key, authorization: `Bearer ${b.key}` })).reason).toBe("conflicting_keys");
    expect(checker.check(req({ "x-api-key": a.key, authorization: `Bearer ${a.key}` }))).toMatchObject({
      reason: "ok",
      removeHeaders: ["x-api-key", "authorization"],
    });
  });

  it("answers 403 for a missing scope, another tenant and a foreign source", () => {
    const { keys, checker, req } = setup();
    const noScope = newKey("shop_n0000000");
    const otherNs = newKey("other_n000000");
    const freeTier = newKey("shop_f0000000");
    const src = newKey("shop_s0000000");
    keys.apply("add", apiKey("shop", "n", { scopes: ["orders:write"] }, [noScope.version], { tier: "pro" }));
    keys.apply("add", apiKey("other", "n", { scopes: ["orders:read"] }, [otherNs.version], { tier: "pro" }));
    keys.apply("add", apiKey("shop", "f", { scopes: ["orders:read"] }, [freeTier.version], { tier: "free" }));
    keys.apply("add", apiKey("shop", "s", { scopes: ["orders:read"], allowedSources: ["198.51.100.0/24", "2001:db8::/32"] }, [src.version], { tier: "pro" }));
    expect(checker.check(req({ "x-api-key": noScope.key }))).toMatchObject({ reason: "scope_missing", status: 403 });
    expect(checker.check(req({ "x-api-key": otherNs.key }))).toMatchObject({ reason: "wrong_tenant", status: 403 });
    expect(checker.check(req({ "x-api-key": freeTier.key }))).toMatchObject({ reason: "wrong_tenant", status: 403 });
    expect(checker.check(req({ "x-api-key": src.key }))).toMatchObject({ reason: "source_not_allowed", status: 403 });
    expect(checker.check(req({ "x-api-key": src.key }, { peerAddress: "198.51.100.7" })).reason).toBe("ok");
    expect(checker.check(req({ "x-api-key": src.key }, { peerAddress: "2001:db8::7" })).reason).toBe("ok");
  });

  it("uses the configured number of trusted X-Forwarded-For hops for the source", () => {
    const { keys, checker, req } = setup(1);
    const src = newKey("shop_s0000001");
    keys.apply("add", apiKey("shop", "s", { scopes: ["orders:read"], allowedSources: ["198.51.100.0/24"] }, [src.version], { tier: "pro" }));
    expect(checker.check(req({ "x-api-key": src.key, "x-forwarded-for": "1.1.1.1, 198.51.100.7" })).reason).toBe("ok");
    expect(checker.check(req({ "x-api-key": src.key, "x-forwarded-for": "198.51.100.7, 1.1.1.1" })).reason).toBe("source_not_allowed");
    expect(checker.check(req({ "x-api-key": src.key })).reason).toBe("source_unknown");
    expect(clientAddress("p", "a, b, c", 2)).toBe("b");
    expect(clientAddress("p", "a", 2)).toBeUndefined();
    expect(clientAddress("p", "a", 0)).toBe("p");
  });

  it("denies when no policy matches and for malformed requests", () => {
    const { checker, req } = setup();
    expect(checker.check(req({}, { host: "elsewhere.example.com" }))).toMatchObject({ reason: "no_policy", status: 403 });
    expect(checker.check(req({}, { path: "/v1/orders/1/../2" })).reason).toBe("path_not_normalized");
    expect(checker.check(req({}, { path: "/v1/orders/%2E%2E/x" })).reason).toBe("path_not_normalized");
    expect(checker.check(req({}, { method: undefined })).reason).toBe("bad_request");
    expect(checker.check(req({}, { path: "v1" })).reason).toBe("bad_request");
  });

  it("falls back to the policy's default rate and answers 429 with RateLimit headers", () => {
    const { keys, checker, req } = setup();
    const k = newKey("shop_r0000000");
    keys.apply("add", apiKey("shop", "r", { scopes: ["orders:read"] }, [k.version], { tier: "pro" }));
    expect(checker.check(req({ "x-api-key": k.key })).reason).toBe("ok");
    expect(checker.check(req({ "x-api-key": k.key })).reason).toBe("ok");
    const d = checker.check(req({ "x-api-key": k.key }));
    expect(d).toMatchObject({ reason: "rate_limited", status: 429 });
    const h = Object.fromEntries(denialHeaders(d, OPTS));
    expect(h).toMatchObject({ "retry-after": "30", "ratelimit-limit": "2", "ratelimit-remaining": "0", "ratelimit-reset": "30" });
  });

  it("does not let a newer ApiKey that claims a victim's hash switch the victim's key off or take it over", () => {
    const { keys, checker, req } = setup();
    const k = newKey("shop_vic00000");
    const victim = apiKey("shop", "victim", { scopes: ["orders:read"], limits: { rate: { requests: 100, per: "1m" } } }, [{ ...k.version, createdAt: "2026-01-01T00:00:00Z" }], { tier: "pro" });
    // The attacker copies the hash from the victim's status into its own ApiKey, disabled, with no
    // scopes, a rate of 1 per day and from a namespace that sorts first.
    const attack = (createdAt: string) =>
      apiKey("aaa", "copy", { keyHash: k.version.hash, disabled: true, limits: { rate: { requests: 1, per: "24h" } } }, [{ ...k.version, id: "key_copy0000", createdAt }], { tier: "pro" });
    for (const order of [[victim, attack("2026-03-01T00:00:00Z")], [attack("2026-03-01T00:00:00Z"), victim]]) {
      for (const o of order) keys.apply("add", o);
      const d = checker.check(req({ "x-api-key": k.key }));
      expect([d.reason, d.entry?.record.ref, d.entry?.id]).toEqual(["ok", "shop/victim", "shop_vic00000"]);
      keys.apply("delete", attack(""));
      keys.apply("delete", victim);
    }
    // The attacker's claim stays refused while the victim's holds, and is the next owner only once the victim is deleted.
    keys.apply("add", attack("2026-03-01T00:00:00Z"));
    keys.apply("add", victim);
    expect(checker.check(req({ "x-api-key": k.key })).reason).toBe("ok");
    keys.apply("delete", victim);
    expect(checker.check(req({ "x-api-key": k.key }))).toMatchObject({ reason: "key_disabled", entry: { record: { ref: "aaa/copy" } } });
    keys.apply("update", { ...victim, status: { keys: [] } });
    keys.apply("delete", attack(""));
    expect(checker.check(req({ "x-api-key": k.key })).reason).toBe("unknown_key");
    expect(keys.size).toBe(0);
  });

  it("denies a key in grace whose status version has no end", () => {
    const { keys, checker, req } = setup();
    const [active, open] = [newKey("shop_act00000"), newKey("shop_opn00000", "grace")];
    keys.apply("add", apiKey("shop", "rot", { scopes: ["orders:read"] }, [active.version, open.version], { tier: "pro" }));
    expect(checker.check(req({ "x-api-key": active.key })).reason).toBe("ok");
    expect(checker.check(req({ "x-api-key": open.key })).reason).toBe("key_grace_ended");
  });

  it("counts keys from every namespace with keys.namespaces [\"*\"], and only the policy's own by default", () => {
    const keys = new KeyIndex();
    const policies = new PolicyIndex();
    const checker = new Checker({ keys, policies, limiter: new Limiter(), now: () => NOW, xffTrustedHops: 0 });
    policies.apply("add", policy("team-a", "all", { hosts: ["all.test"], keys: { namespaces: ["*"] } }));
    policies.apply("add", policy("team-a", "own", { hosts: ["own.test"] }));
    const k = newKey("b_00000000");
    keys.apply("add", apiKey("team-b", "k", {}, [k.version]));
    const input = (host: string): CheckInput => ({ method: "GET", host, path: "/", header: (n) => (n === "x-api-key" ? k.key : undefined), peerAddress: undefined, forwardedFor: undefined });
    expect(checker.check(input("all.test")).reason).toBe("ok");
    expect(checker.check(input("own.test")).reason).toBe("wrong_tenant");
  });

  it("names the key id and owner headers as configured", () => {
    const { keys, checker, req } = setup();
    const k = newKey("shop_hdr00000");
    keys.apply("add", apiKey("shop", "h", { owner: "team-x", scopes: ["orders:read"] }, [k.version], { tier: "pro" }));
    const d = checker.check(req({ "x-api-key": k.key }));
    expect(okHeaders(d, { ...OPTS, keyIdHeader: "x-client-key", ownerHeader: "x-client" })).toEqual([
      ["x-client-key", "shop_hdr00000"],
      ["x-client", "team-x"],
    ]);
  });

  it("normalizes hosts", () => {
    expect(normalizeHost("Orders.Example.com:8443")).toBe("orders.example.com");
    expect(normalizeHost("orders.example.com.")).toBe("orders.example.com");
    expect(normalizeHost("[2001:db8::1]:80")).toBe("[2001:db8::1]");
  });
});
