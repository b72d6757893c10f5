import { describe, expect, it } from "vitest";
import { NEWEST_CLAIM, claimAge, olderClaim } from "./claims.ts";

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

  it("orders claims by age, then by namespace/name, so exactly one of two different claims is older", () => {
    const a = { ref: "shop/a", age: 10 };
    expect(olderClaim(a, { ref: "aaa/z", age: 11 })).toBe(true);
    expect(olderClaim({ ref: "aaa/z", age: 11 }, a)).toBe(false);
    expect(olderClaim({ ref: "aaa/z", age: 10 }, a)).toBe(true);
    expect(olderClaim(a, { ref: "aaa/z", age: 10 })).toBe(false);
    expect(olderClaim(a, a)).toBe(false);
  });
});
