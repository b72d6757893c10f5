import { describe, expect, it } from "vitest";
import type { ApiKey } from "../api/types.ts";
import { AlertEngine, BUCKET_MS, sourceNetwork, type Alert, type AlertOptions } from "./alerts.ts";
import type { CheckEvent, KeyRef } from "../check/event.ts";

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 10, 23, 0, 0);
const KEY: KeyRef = { namespace: "shop", name: "acme", uid: "u1", keyId: "kw_AbCdEfGh", owner: "acme" };

function setup(over: Partial<AlertOptions> = {}) {
  let t = T0;
  const alerts: Alert[] = [];
  const engine = new AlertEngine({
    now: () => t,
    emit: (a) => alerts.push(a),
    learningMs: HOUR,
    cooldownMs: 6 * HOUR,
    silenceMs: HOUR,
    expiryWindowMs: 7 * DAY,
    spikeFactor: 10,
    minRequests: 100,
    ...over,
  });
  const check = (more: Partial<CheckEvent> = {}): void => {
    engine.observeCheck({ at: t, key: KEY, outcome: "allowed", reason: "ok", status: 200, front: "grpc", latencySeconds: 0.001, source: "203.0.113.10", ...more });
  };
  /** `perBucket` requests spread over each 5-minute bucket for `ms`, ticking every minute. */
  const steady = (perBucket: number, ms: number, more: Partial<CheckEvent> = {}): void => {
    const end = t + ms;
    const step = BUCKET_MS / perBucket;
    while (t < end) {
      check(more);
      const next = t + step;
      if (Math.floor(next / MIN) !== Math.floor(t / MIN)) {
        t = next;
        engine.tick();
      } else t = next;
    }
  };
  const advance = (ms: number): void => {
    const end = t + ms;
    while (t + MIN <= end) {
      t += MIN;
      engine.tick();
    }
    t = end;
    engine.tick();
  };
  return { engine, alerts, check, steady, advance, kinds: () => alerts.map((a) => a.kind), at: () => t };
}

describe("usage alerts", () => {
  it("names the network of a source: /24 for IPv4, /64 for IPv6", () => {
    expect(sourceNetwork("203.0.113.77")).toBe("203.0.113.0/24");
    expect(sourceNetwork("::ffff:198.51.100.2")).toBe("198.51.100.0/24");
    expect(sourceNetwork("2001:db8:1:2:3:4:5:6")).toBe("2001:db8:1:2::/64");
    expect(sourceNetwork("not an address")).toBeUndefined();
  });

  it("reports the first request from a new network after the learning period, once", () => {
    const s = setup();
    s.check({ source: "203.0.113.10" });
    s.check({ source: "198.51.100.1" }); // still learning: both networks are the baseline
    s.advance(HOUR);
    s.check({ source: "203.0.113.99" }); // same /24
    s.check({ source: "198.51.100.200" });
    expect(s.alerts).toEqual([]);
    s.check({ source: "192.0.2.5" });
    s.check({ source: "192.0.2.6" });
    expect(s.alerts).toEqual([
      expect.objectContaining({ kind: "NewSourceAddress", namespace: "shop", name: "acme", uid: "u1", keyId: "kw_AbCdEfGh" }),
    ]);
    expect(s.alerts[0]?.message).toContain("192.0.2.0/24");
  });

  it("reports a spike against the key's own baseline, not its steady traffic", () => {
    const s = setup();
    s.steady(20, 3 * HOUR);
    expect(s.kinds()).toEqual([]);
    s.steady(400, BUCKET_MS);
    s.advance(BUCKET_MS);
    expect(s.kinds()).toEqual(["UsageSpike"]);
    expect(s.alerts[0]?.message).toMatch(/^400 requests with key kw_AbCdEfGh in 5 minutes/);
  });

  it("does not call a busy but steady key a spike", () => {
    const s = setup();
    s.steady(500, 4 * HOUR);
    expect(s.kinds()).toEqual([]);
  });

  it("reports a burst of 403s on a previously clean key (scope drift), and not on a key that always had some", () => {
    const clean = setup();
    clean.steady(20, 2 * HOUR);
    for (let i = 0; i < 9; i++) clean.check({ outcome: "forbidden", reason: "scope_missing", status: 403 });
    expect(clean.kinds()).toEqual([]);
    clean.check({ outcome: "forbidden", reason: "scope_missing", status: 403 });
    expect(clean.kinds()).toEqual(["ForbiddenSpike"]);

    const noisy = setup();
    for (let i = 0; i < 24; i++) {
      noisy.steady(20, BUCKET_MS);
      noisy.check({ outcome: "forbidden", reason: "scope_missing", status: 403 });
    }
    for (let i = 0; i < 20; i++) noisy.check({ outcome: "forbidden", reason: "scope_missing", status: 403 });
    expect(noisy.kinds()).toEqual([]);
  });

  it("reports 429s above 5% over 30 minutes", () => {
    const under = setup();
    under.steady(40, 30 * MIN);
    for (let i = 0; i < 10; i++) under.check({ outcome: "limited", reason: "rate_limited", status: 429 });
    expect(under.kinds()).toEqual([]); // 10 of 210: 4.8%

    const over = setup();
    over.steady(40, 30 * MIN);
    for (let i = 0; i < 14; i++) over.check({ outcome: "limited", reason: "rate_limited", status: 429 });
    expect(over.kinds()).toEqual(["RateLimitedHigh"]); // 11 of 211 > 5%, reported once
    expect(over.alerts[0]?.message).toMatch(/^5\.2% of 211 requests/);
  });

  it("does not judge 429s on a handful of requests", () => {
    const s = setup();
    for (let i = 0; i < 50; i++) s.check({ outcome: "limited", reason: "quota_exceeded", status: 429 });
    expect(s.kinds()).toEqual([]);
  });

  it("reports upstream 5xx above 1% over 30 minutes", () => {
    const s = setup();
    const up = (code: number): void => {
      s.engine.observeUpstream({ at: s.at(), key: KEY, responseCode: code });
    };
    for (let i = 0; i < 200; i++) up(200);
    up(503);
    up(500);
    expect(s.kinds()).toEqual([]); // 2 of 202
    up(502);
    expect(s.kinds()).toEqual(["UpstreamErrorsHigh"]);
  });

  it("reports silence on a key that was active, once per silence", () => {
    const s = setup();
    s.steady(5, 3 * HOUR); // the last request a minute before the end
    s.advance(58 * MIN);
    expect(s.kinds()).toEqual([]);
    s.advance(MIN);
    expect(s.kinds()).toEqual(["KeySilent"]);
    s.advance(5 * HOUR);
    expect(s.kinds()).toEqual(["KeySilent"]);
    // Traffic returns, then stops again: a new silence, reported after the cooldown.
    s.steady(5, 3 * HOUR);
    s.advance(2 * HOUR);
    expect(s.kinds()).toEqual(["KeySilent", "KeySilent"]);
  });

  it("does not call a rarely used key silent", () => {
    const s = setup();
    for (let i = 0; i < 6; i++) {
      s.check();
      s.advance(HOUR / 2);
    }
    s.advance(10 * HOUR);
    expect(s.kinds()).toEqual([]);
  });

  it("reports expiry within the window once per expiry time", () => {
    const ak = (name: string, expiresAt: string | undefined): ApiKey => ({
      apiVersion: "keyward.dev/v1alpha1",
      kind: "ApiKey",
      metadata: { namespace: "shop", name, uid: `uid-${name}` },
      spec: { owner: "acme", ...(expiresAt ? { expiresAt } : {}) },
      status: { currentKeyId: "kw_x" },
    });
    const keys = [ak("soon", "2026-11-29T00:00:00Z"), ak("later", "2026-12-31T00:00:00Z"), ak("never", undefined), ak("past", "2026-11-01T00:00:00Z")];
    const s = setup({ apiKeys: () => keys });
    s.advance(MIN);
    s.advance(HOUR);
    expect(s.alerts.map((a) => [a.kind, a.name])).toEqual([["KeyExpiringSoon", "soon"]]);
    expect(s.alerts[0]?.message).toContain("2026-11-29T00:00:00Z");
    keys[0] = ak("soon", "2026-11-30T00:00:00Z"); // extended, still within 7 days
    s.advance(MIN);
    expect(s.alerts).toHaveLength(2);
  });

  it("reports a quota 80% used once per period", () => {
    let used = 0;
    const s = setup({ quotaUsed: () => used });
    const quota = { requests: 1000, per: "day" as const };
    used = 799;
    s.check({ key: { ...KEY, quota } });
    expect(s.kinds()).toEqual([]);
    used = 800;
    s.check({ key: { ...KEY, quota } });
    s.check({ key: { ...KEY, quota } });
    expect(s.kinds()).toEqual(["QuotaNearlyUsed"]);
    s.advance(DAY);
    s.check({ key: { ...KEY, quota } });
    expect(s.kinds()).toEqual(["QuotaNearlyUsed", "QuotaNearlyUsed"]);
  });

  it("never puts more than ids and addresses in a message", () => {
    const s = setup();
    s.steady(40, 2 * HOUR);
    s.check({ source: "192.0.2.1" });
    for (let i = 0; i < 20; i++) s.check({ outcome: "forbidden", reason: "scope_missing", status: 403 });
    expect(s.kinds().sort()).toEqual(["ForbiddenSpike", "NewSourceAddress"]);
    for (const a of s.alerts) expect(a.message).not.toMatch(/kw_[A-Za-z0-9_-]{20,}/);
  });
});
