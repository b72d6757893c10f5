import { describe, expect, it } from "vitest";
import { Limiter, periodEnd } from "./limiter.ts";
import { compileLimits } from "./spec.ts";

describe("Limiter", () => {
  it("admits a burst, then refills at the configured rate", () => {
    const l = new Limiter();
    const spec = compileLimits({ rate: { requests: 2, per: "1s", burst: 3 } });
    const t0 = 1_000_000;
    expect([1, 2, 3].map(() => l.take("k", spec, t0).ok)).toEqual([true, true, true]);
    const denied = l.take("k", spec, t0);
    expect(denied).toMatchObject({ ok: false, reason: "rate_limited", limit: 2, remaining: 0, retryAfterSeconds: 1 });
    expect(l.take("k", spec, t0 + 499).ok).toBe(false);
    expect(l.take("k", spec, t0 + 500).ok).toBe(true);
    expect(l.take("k", spec, t0 + 500).ok).toBe(false);
  });

  it("counts a quota per UTC calendar day and resets at midnight", () => {
    const l = new Limiter();
    const spec = compileLimits({ quota: { requests: 2, per: "day" } });
    const t = Date.UTC(2026, 0, 31, 23, 59, 0);
    expect(l.take("k", spec, t).ok).toBe(true);
    expect(l.take("k", spec, t).remaining).toBe(0);
    const over = l.take("k", spec, t);
    expect(over).toMatchObject({ ok: false, reason: "quota_exceeded", retryAfterSeconds: 60 });
    expect(l.take("k", spec, Date.UTC(2026, 1, 1)).ok).toBe(true);
  });

  it("computes calendar month ends in UTC, across a year end", () => {
    expect(periodEnd(Date.UTC(2026, 11, 15, 12), "month")).toBe(Date.UTC(2027, 0, 1));
    expect(periodEnd(Date.UTC(2026, 1, 28, 23), "day")).toBe(Date.UTC(2026, 2, 1));
  });

  it("does not spend a rate token on a request the quota refuses", () => {
    const l = new Limiter();
    const spec = compileLimits({ rate: { requests: 10, per: "1s" }, quota: { requests: 1, per: "month" } });
    expect(l.take("k", spec, 0).ok).toBe(true);
    for (let i = 0; i < 20; i++) expect(l.take("k", spec, 0).reason).toBe("quota_exceeded");
  });

  it("keeps separate state per subject and forgets it on request", () => {
    const l = new Limiter();
    const spec = compileLimits({ rate: { requests: 1, per: "1h" } });
    expect(l.take("a|x", spec, 0).ok).toBe(true);
    expect(l.take("b|x", spec, 0).ok).toBe(true);
    expect(l.take("a|x", spec, 0).ok).toBe(false);
    l.forget("a|");
    expect(l.take("a|x", spec, 0).ok).toBe(true);
  });

  it("starts fresh when the limit itself changes", () => {
    const l = new Limiter();
    expect(l.take("k", compileLimits({ rate: { requests: 1, per: "1h" } }), 0).ok).toBe(true);
    expect(l.take("k", compileLimits({ rate: { requests: 1, per: "1h" } }), 0).ok).toBe(false);
    expect(l.take("k", compileLimits({ rate: { requests: 2, per: "1h" } }), 0).ok).toBe(true);
  });
});
