import { describe, expect, it } from "vitest";
import type { ApiKeyPolicy, ApiKeyPolicySpec } from "../api/types.ts";
import { KeyIndex } from "../index/keys.ts";
import { Limiter } from "../limits/limiter.ts";
import type { CheckInput } from "../check/decision.ts";
import { Checker } from "./check.ts";
import { HostOwnership, parseHostAssignments, type HostClaim } from "../policy/hosts.ts";
import { PolicyIndex } from "../policy/policy.ts";
import { apiKey, newKey, policy } from "../api/fixtures.test-support.ts";

const T0 = Date.UTC(2026, 0, 1);
const at = (minutes: number): string => new Date(T0 + minutes * 60_000).toISOString();

/** A policy created `minutes` after T0. */
function claimed(ns: string, name: string, minutes: number, spec: Partial<ApiKeyPolicySpec>): ApiKeyPolicy {
  const p = policy(ns, name, spec);
  p.metadata.creationTimestamp = at(minutes) as unknown as Date;
  return p;
}

const claim = (namespace: string, name: string, minutes: number, hosts: string[]): HostClaim => ({ namespace, name, hosts, createdMs: T0 + minutes * 60_000 });

describe("host ownership", () => {
  it("gives a host to its oldest claim, then namespace/name", () => {
    const alpha = claim("alpha", "p", 2, ["shop.test", "mine.test"]);
    const o = new HostOwnership([claim("zeta", "p", 1, ["shop.test"]), alpha, claim("beta", "p", 2, ["other.test"]), claim("aaa", "p", 2, ["other.test"])]);
    expect([...o.owners("shop.test")]).toEqual(["zeta"]);
    expect([...o.owners("other.test")]).toEqual(["aaa"]);
    expect(o.conflicts(alpha)).toEqual([{ host: "shop.test", owners: ["zeta"] }]);
  });

  it("lets an older wildcard own the names under it, and an older exact name keep it", () => {
    const o = new HostOwnership([claim("wild", "p", 1, ["*.example.com"]), claim("late", "p", 2, ["api.example.com"]), claim("early", "p", 0, ["www.example.com"])]);
    expect([...o.owners("api.example.com")]).toEqual(["wild"]);
    expect([...o.owners("www.example.com")]).toEqual(["early"]);
    expect([...o.owners("*.example.com")]).toEqual(["wild"]);
    expect(o.conflicts(claim("late", "p", 2, ["api.example.com"]))).toEqual([{ host: "api.example.com", owners: ["wild"] }]);
  });

  it("gives `*` only to namespaces an administrator names, and assigned hosts only to the listed namespaces", () => {
    const none = new HostOwnership([claim("a", "p", 0, ["*"])]);
    expect(none.conflicts(claim("a", "p", 0, ["*"]))).toEqual([{ host: "*", owners: [] }]);
    const assigned = parseHostAssignments(["*=platform", "shop.test=shop", "shop.test=partner", "*.corp.test=it"]);
    const o = new HostOwnership([claim("early", "p", 0, ["shop.test", "x.corp.test"])], assigned);
    expect([...o.owners("*")]).toEqual(["platform"]);
    expect([...o.owners("shop.test")].sort()).toEqual(["partner", "shop"]);
    expect([...o.owners("x.corp.test")]).toEqual(["it"]);
    expect(o.conflicts(claim("early", "p", 0, ["shop.test", "x.corp.test"])).map((c) => c.host)).toEqual(["shop.test", "x.corp.test"]);
  });

  it("never lets a claim without a creation time be the oldest", () => {
    const unknown: HostClaim = { namespace: "aaa", name: "p", hosts: ["shop.test"], createdMs: Infinity };
    expect([...new HostOwnership([unknown, claim("zzz", "p", 9_999, ["shop.test"])]).owners("shop.test")]).toEqual(["zzz"]);
  });

  it("refuses malformed host-owners entries", () => {
    for (const bad of ["shop.test", "shop.test=", "=ns", "Shop_.test=ns", "a.*.test=ns", "shop.test=NS"]) {
      expect(() => parseHostAssignments([bad]), bad).toThrow(/host-owners/);
    }
    expect([...(parseHostAssignments(["SHOP.test=a"]).get("shop.test") ?? [])]).toEqual(["a"]);
  });
});

describe("route takeover across namespaces", () => {
  const shopSpec: Partial<ApiKeyPolicySpec> = { hosts: ["shop.test"], rules: [{ name: "create", paths: ["/v1/orders"], methods: ["POST"], scopes: ["orders:write"] }] };
  const attackerSpec: Partial<ApiKeyPolicySpec> = { hosts: ["shop.test"], rules: [{ name: "create", paths: ["/v1/orders"], methods: ["POST"] }] };

  function world(assign: string[] = []) {
    const keys = new KeyIndex();
    const policies = new PolicyIndex(parseHostAssignments(assign));
    const checker = new Checker({ keys, policies, limiter: new Limiter(), now: () => T0 + 86_400_000, xffTrustedHops: 0 });
    const attackerKey = newKey("aaa_key00000");
    keys.apply("add", apiKey("aaa-attacker", "k", {}, [attackerKey.version]));
    const shopKey = newKey("shop_key0000");
    keys.apply("add", apiKey("shop", "k", { scopes: ["orders:write"] }, [shopKey.version]));
    const req = (key: string, over: Partial<CheckInput> = {}): CheckInput => ({
      method: "POST",
      host: "shop.test",
      path: "/v1/orders",
      header: (n) => (n === "x-api-key" ? key : undefined),
      peerAddress: undefined,
      forwardedFor: undefined,
      ...over,
    });
    const decide = (key: string, over: Partial<CheckInput> = {}) => {
      const d = checker.check(req(key, over));
      return { reason: d.reason, policy: d.rule?.policy.ref };
    };
    return { policies, decide, attacker: attackerKey.key, shop: shopKey.key };
  }

  it("refuses another namespace's key through a same-rule policy whose namespace sorts first", () => {
    const w = world();
    w.policies.apply("add", claimed("shop", "orders", 0, shopSpec));
    w.policies.apply("add", claimed("aaa-attacker", "open", 5, attackerSpec));
    expect(w.decide(w.attacker)).toEqual({ reason: "wrong_tenant", policy: "shop/orders" });
    expect(w.decide(w.shop)).toEqual({ reason: "ok", policy: "shop/orders" });
    // Spellings of the same host are the same host.
    for (const host of ["SHOP.test", "shop.test.", "shop.test:8443", "Shop.Test.:443"]) {
      expect(w.decide(w.attacker, { host }), host).toEqual({ reason: "wrong_tenant", policy: "shop/orders" });
    }
  });

  it("refuses it through a more specific rule, a wildcard and `*`", () => {
    const w = world(["*=aaa-attacker"]);
    w.policies.apply("add", claimed("shop", "orders", 0, { hosts: ["shop.test"], rules: [{ name: "api", paths: ["/v1/**"], scopes: ["orders:write"] }] }));
    w.policies.apply("add", claimed("aaa-attacker", "exact", 5, attackerSpec));
    w.policies.apply("add", claimed("aaa-attacker", "wild", 5, { hosts: ["*.test"], rules: [{ paths: ["/**"] }] }));
    w.policies.apply("add", claimed("aaa-attacker", "any", 5, { hosts: ["*"], rules: [{ paths: ["/**"] }] }));
    expect(w.decide(w.attacker)).toEqual({ reason: "wrong_tenant", policy: "shop/orders" });
    // A path the owner has no rule for does not fall through to the other namespace's wildcard or `*`.
    expect(w.decide(w.attacker, { path: "/admin" })).toEqual({ reason: "no_policy", policy: undefined });
    // Hosts nobody else claimed are the attacker's to protect.
    expect(w.decide(w.attacker, { host: "free.test", path: "/admin" })).toEqual({ reason: "ok", policy: "aaa-attacker/wild" });
    expect(w.decide(w.attacker, { host: "elsewhere.example", path: "/admin" })).toEqual({ reason: "ok", policy: "aaa-attacker/any" });
  });

  it("refuses a later exact claim under another namespace's wildcard", () => {
    const w = world();
    w.policies.apply("add", claimed("shop", "wild", 0, { hosts: ["*.shop.test"], rules: [{ name: "all", paths: ["/**"], scopes: ["orders:write"] }] }));
    w.policies.apply("add", claimed("aaa-attacker", "carve", 5, { hosts: ["api.shop.test"], rules: [{ paths: ["/**"] }] }));
    expect(w.decide(w.attacker, { host: "api.shop.test" })).toEqual({ reason: "wrong_tenant", policy: "shop/wild" });
  });

  it("keeps an exact host from a later wildcard of another namespace", () => {
    const w = world();
    w.policies.apply("add", claimed("shop", "api", 0, { hosts: ["api.shop.test"], rules: [{ name: "orders", paths: ["/v1/orders"], scopes: ["orders:write"] }] }));
    w.policies.apply("add", claimed("aaa-attacker", "wild", 5, { hosts: ["*.shop.test"], rules: [{ paths: ["/**"] }] }));
    expect(w.decide(w.attacker, { host: "api.shop.test" })).toEqual({ reason: "wrong_tenant", policy: "shop/api" });
    expect(w.decide(w.attacker, { host: "api.shop.test", path: "/other" })).toEqual({ reason: "no_policy", policy: undefined });
    expect(w.decide(w.attacker, { host: "new.shop.test", path: "/other" })).toEqual({ reason: "ok", policy: "aaa-attacker/wild" });
  });

  it("never lets a newer claim change a decision, and passes the host on when its owner is deleted", () => {
    const w = world();
    const shop = claimed("shop", "orders", 0, shopSpec);
    w.policies.apply("add", shop);
    const before = [w.decide(w.attacker), w.decide(w.shop), w.decide(w.attacker, { path: "/x" })];
    // Older in name order, newer in time: still loses.
    w.policies.apply("add", claimed("aaa-attacker", "open", 1, attackerSpec));
    expect([w.decide(w.attacker), w.decide(w.shop), w.decide(w.attacker, { path: "/x" })]).toEqual(before);
    w.policies.apply("delete", shop);
    expect(w.decide(w.attacker)).toEqual({ reason: "ok", policy: "aaa-attacker/open" });
  });

  it("lets namespaces an administrator named share a host, and no one else", () => {
    const w = world(["shop.test=shop", "shop.test=aaa-attacker"]);
    w.policies.apply("add", claimed("shop", "orders", 0, shopSpec));
    w.policies.apply("add", claimed("aaa-attacker", "open", 5, { hosts: ["shop.test"], rules: [{ name: "health", paths: ["/healthz"] }] }));
    w.policies.apply("add", claimed("third", "x", 0, { hosts: ["shop.test"], rules: [{ paths: ["/**"] }] }));
    expect(w.decide(w.shop)).toEqual({ reason: "ok", policy: "shop/orders" });
    expect(w.decide(w.attacker, { method: "GET", path: "/healthz" })).toEqual({ reason: "ok", policy: "aaa-attacker/open" });
    expect(w.decide(w.attacker, { path: "/other" })).toEqual({ reason: "no_policy", policy: undefined });
  });
});
