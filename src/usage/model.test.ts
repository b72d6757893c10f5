import { describe, expect, it } from "vitest";
import type { CheckEvent, KeyRef } from "../check/event.ts";
import { checkEvent, KEY as BASE } from "./fixtures.test-support.ts";
import { addCheck, addUpstream, mergeUsage, newDelta, periodRequests } from "./model.ts";

const KEY: KeyRef = { ...BASE, quota: { requests: 1000, per: "month" } };
const T0 = Date.UTC(2026, 10, 23, 10, 15); // 2026-11-23T10:15Z
const H = 3_600_000;
const D = 24 * H;

const check = (at: number, more: Partial<CheckEvent> = {}): CheckEvent => checkEvent(at, { key: KEY, route: "GET /v1/orders/*", ...more });

describe("usage model", () => {
  it("counts checks by day and outcome, per hour, per version, per quota period and per route", () => {
    const d = newDelta(KEY);
    addCheck(d, check(T0));
    addCheck(d, check(T0 + 1000, { outcome: "forbidden", reason: "scope_missing", status: 403, route: "POST /v1/orders" }));
    addCheck(d, check(T0 + 2000, { key: { ...KEY, keyId: "kw_BBBBBBBB" } }));
    addCheck(d, check(T0 + 3000, { outcome: "cancelled" }));
    addUpstream(d, { at: T0 + 4000, key: KEY, responseCode: 503 });
    const u = mergeUsage(undefined, d, { now: T0 + 5000, topRoutes: 10 });
    expect(u).toEqual({
      lastUsedAt: "2026-11-23T10:15:02Z",
      keys: [
        { id: "kw_BBBBBBBB", lastUsedAt: "2026-11-23T10:15:02Z" },
        { id: "kw_AAAAAAAA", lastUsedAt: "2026-11-23T10:15:01Z" },
      ],
      requests24h: 3,
      hourly: [{ hour: "2026-11-23T10:00:00Z", requests: 3 }],
      currentPeriod: { per: "month", start: "2026-11-01T00:00:00Z", requests: 2 },
      daily: [{ date: "2026-11-23", allowed: 2, forbidden: 1, upstream5xx: 1 }],
      topRoutes: [
        { route: "GET /v1/orders/*", requests: 2 },
        { route: "POST /v1/orders", requests: 1 },
      ],
      topRoutesSince: "2026-11-01T00:00:00Z",
    });
  });

  it("adds to stored usage, so deltas from several replicas sum up", () => {
    const a = newDelta(KEY);
    const b = newDelta(KEY);
    addCheck(a, check(T0));
    addCheck(b, check(T0 + 10));
    addCheck(b, check(T0 + 20));
    const once = mergeUsage(undefined, a, { now: T0 + 100, topRoutes: 10 });
    const twice = mergeUsage(once, b, { now: T0 + 100, topRoutes: 10 });
    expect(twice?.daily).toEqual([{ date: "2026-11-23", allowed: 3 }]);
    expect(twice?.requests24h).toBe(3);
    expect(twice?.currentPeriod?.requests).toBe(3);
    expect(periodRequests(twice, a, T0 + 100, "month")).toBe(4);
  });

  it("drops hours older than 24 h, days older than 30 and last month's routes and period", () => {
    const d = newDelta(KEY);
    addCheck(d, check(T0));
    const stored = mergeUsage(undefined, d, { now: T0, topRoutes: 10 });
    const later = mergeUsage(stored, undefined, { now: T0 + 24 * H, topRoutes: 10 });
    expect(later?.requests24h).toBe(0);
    expect(later?.hourly).toBeUndefined();
    expect(later?.daily).toEqual([{ date: "2026-11-23", allowed: 1 }]);
    const nextMonth = mergeUsage(stored, undefined, { now: Date.UTC(2026, 11, 2), topRoutes: 10 });
    expect(nextMonth?.currentPeriod).toEqual({ per: "month", start: "2026-12-01T00:00:00Z", requests: 0 });
    expect(nextMonth?.topRoutes).toBeUndefined();
    const gone = mergeUsage(stored, undefined, { now: T0 + 30 * D, topRoutes: 10 });
    expect(gone?.daily).toBeUndefined();
    expect(gone?.lastUsedAt).toBe("2026-11-23T10:15:00Z");
  });

  it("is stable: merging nothing into its own output changes nothing", () => {
    const d = newDelta(KEY);
    for (let i = 0; i < 50; i++) addCheck(d, check(T0 - i * H, { route: `GET /r${i % 15}` }));
    const u = mergeUsage(undefined, d, { now: T0, topRoutes: 5 });
    expect(mergeUsage(u, undefined, { now: T0 + 1000, topRoutes: 5 })).toEqual(u);
    expect(u?.topRoutes).toHaveLength(5);
    expect(u?.daily?.length).toBeLessThanOrEqual(30);
    expect(u?.hourly?.length).toBe(24);
  });

  it("keeps per-version times only for versions still in status.keys, and uses the key's quota period", () => {
    const d = newDelta(KEY);
    addCheck(d, check(T0, { key: { ...KEY, keyId: "kw_OLD00000" } }));
    addCheck(d, check(T0 + 1, { key: { ...KEY, quota: { requests: 10, per: "day" } } }));
    const u = mergeUsage(undefined, d, { now: T0 + 2, versionIds: ["kw_AAAAAAAA"], quotaPer: "day", topRoutes: 3 });
    expect(u?.keys).toEqual([{ id: "kw_AAAAAAAA", lastUsedAt: "2026-11-23T10:15:00.001Z" }]);
    expect(u?.currentPeriod).toEqual({ per: "day", start: "2026-11-23T00:00:00Z", requests: 1 });
  });

  it("has nothing to say about a key never used", () => {
    expect(mergeUsage(undefined, undefined, { now: T0, topRoutes: 10 })).toBeUndefined();
    expect(mergeUsage(undefined, newDelta(KEY), { now: T0, topRoutes: 10 })).toBeUndefined();
  });
});
