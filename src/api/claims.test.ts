import { describe, expect, it } from "vitest";
import { NEWEST_CLAIM, claimAge, claimOf, olderClaim } from "./claims.ts";

describe("claim age", () => {
  it("dates a claim by the version's createdAt, else by creationTimestamp as the apiserver sends it, else as the newest", () => {
    const created = "2024-01-01T00:00:00Z";
    expect(claimAge({ createdAt: "2026-01-01T00:00:00Z" }, created)).toBe((Date.UTC(2026, 0, 1) - Date.UTC(2020, 0, 1)) / 1000);
    expect(claimAge({}, created)).toBe((Date.UTC(2024, 0, 1) - Date.UTC(2020, 0, 1)) / 1000);
    expect(claimAge({ createdAt: "not a time" }, new Date(created))).toBe(claimAge({}, created));
    expect(claimAge({}, undefined)).toBe(NEWEST_CLAIM);
  });

  it("stays a small integer for any time, ordering times beyond the range as its ends", () => {
    for (const t of ["1900-01-01T00:00:00Z", "2100-01-01T00:00:00Z", "2026-01-01T00:00:00.999Z"]) {
      const age = claimAge({ createdAt: t }, undefined);
      expect(Number.isInteger(age) && age >= -(2 ** 30) && age < 2 ** 30, t).toBe(true);
    }
    expect(claimAge({ createdAt: "2026-01-01T00:00:00.999Z" }, undefined)).toBe(claimAge({ createdAt: "2026-01-01T00:00:00Z" }, undefined));
  });

  it("orders claims by age, then by uid (not by a name a tenant picks), so exactly one of two different claims is older", () => {
    const a = { ref: "shop/a", uid: "5f0c", age: 10 };
    expect(olderClaim(a, { ref: "aaa/z", uid: "0000", age: 11 })).toBe(true);
    expect(olderClaim({ ref: "aaa/z", uid: "0000", age: 11 }, a)).toBe(false);
    // The same second: the uid decides, whatever the names.
    expect(olderClaim({ ref: "aaa/z", uid: "ffff", age: 10 }, a)).toBe(false);
    expect(olderClaim(a, { ref: "aaa/z", uid: "ffff", age: 10 })).toBe(true);
    expect(olderClaim({ ref: "zzz/z", uid: "0000", age: 10 }, a)).toBe(true);
    // Without uids (the ref stands in), the ref decides.
    expect(olderClaim({ ref: "aaa/z", uid: "5f0c", age: 10 }, a)).toBe(true);
    expect(olderClaim(a, a)).toBe(false);
  });

  it("makes a claim of an ApiKey's version, falling back to the ref without a uid", () => {
    const ak = { apiVersion: "keyward.dev/v1alpha1", kind: "ApiKey", metadata: { namespace: "shop", name: "a", uid: "u-1" }, spec: { owner: "o" } } as const;
    expect(claimOf(ak, { createdAt: "2020-01-01T00:00:10Z" })).toEqual({ ref: "shop/a", uid: "u-1", age: 10 });
    expect(claimOf({ ...ak, metadata: { namespace: "shop", name: "a" } }, {})).toEqual({ ref: "shop/a", uid: "shop/a", age: NEWEST_CLAIM });
  });
});
