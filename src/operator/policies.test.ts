import { describe, expect, it } from "vitest";
import type { ApiKeyPolicy } from "../api/types.ts";
import { HostOwnership } from "../policy/hosts.ts";
import { policyClaim } from "../policy/policy.ts";
import { policy } from "../api/fixtures.test-support.ts";
import { policyStatus } from "./policies.ts";

const NOW = Date.UTC(2026, 5, 1);

function made(ns: string, name: string, created: string, hosts: string[]): ApiKeyPolicy {
  const p = policy(ns, name, { hosts, rules: [{ paths: ["/a"] }, { paths: ["/b"] }] });
  p.metadata.creationTimestamp = created as unknown as Date;
  p.metadata.generation = 3;
  return p;
}

describe("ApiKeyPolicy status", () => {
  const owner = made("shop", "orders", "2026-01-01T00:00:00Z", ["shop.test"]);
  const loser = made("aaa", "open", "2026-01-02T00:00:00Z", ["shop.test", "aaa.test"]);
  const ownership = new HostOwnership([owner, loser].map((p) => policyClaim(p)));

  it("accepts a policy that owns its hosts, with observedGeneration and rule count", () => {
    const s = policyStatus(owner, ownership, NOW);
    expect(s).toMatchObject({ observedGeneration: 3, ruleCount: 2 });
    expect(s.conflicts).toBeUndefined();
    expect(s.conditions).toEqual([expect.objectContaining({ type: "Accepted", status: "True", reason: "Accepted", observedGeneration: 3 })]);
  });

  it("refuses a policy that lost a host, naming the owner's namespace", () => {
    const s = policyStatus(loser, ownership, NOW);
    expect(s.conflicts).toEqual([{ host: "shop.test", owners: ["shop"] }]);
    const c = s.conditions?.[0];
    expect(c).toMatchObject({ type: "Accepted", status: "False", reason: "HostConflict" });
    expect(c?.message).toContain("shop.test (owned by namespace shop)");
    // Once the owner is gone, the next claim is accepted and the conflict list is dropped.
    const after = policyStatus({ ...loser, status: s }, new HostOwnership([policyClaim(loser)]), NOW + 1000);
    expect(after.conflicts).toBeUndefined();
    expect(after.conditions?.[0]).toMatchObject({ status: "True", lastTransitionTime: "2026-06-01T00:00:01Z" });
  });
});
