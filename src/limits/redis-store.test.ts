// The redis store's failure handling against a scripted fake; the script itself
// runs on a real Redis in test/integration/limits-redis.test.ts.
import { describe, expect, it } from "vitest";
import { compileLimits } from "./spec.ts";
import { RedisLimiter, verdictOf, type FailureMode, type RedisLimiterOptions, type RunScript } from "./redis-store.ts";
import { KeyNamer } from "./redis-script.ts";

const LIMITS = compileLimits({ rate: { requests: 10, per: "1s", burst: 2 }, quota: { requests: 5, per: "day" } });
const NOW = Date.UTC(2026, 11, 1, 12);

function limiter(run: RunScript, over: Partial<RedisLimiterOptions> = {}): { l: RedisLimiter; events: string[] } {
  const events: string[] = [];
  const l = new RedisLimiter({
    run,
    keyPrefix: "kw:",
    timeoutMs: 20,
    failureMode: "local",
    breakerFailures: 3,
    breakerCooldownMs: 1000,
    maxInFlight: 10,
    denyCache: false,
    now: () => NOW,
    onTransition: (to) => events.push(`breaker ${to}`),
    onFallback: (cause, mode) => events.push(`fallback ${cause} ${mode}`),
    ...over,
  });
  return { l, events };
}

const never: RunScript = () => new Promise(() => undefined);
const failing: RunScript = () => Promise.reject(new Error("ECONNREFUSED"));

describe("RedisLimiter", () => {
  it("answers a key without limits at once, without calling Redis", () => {
    let calls = 0;
    const { l } = limiter(() => {
      calls++;
      return Promise.resolve([1, 0]);
    });
    const v = l.take("uid|", compileLimits(undefined), NOW);
    expect(v).not.toBeInstanceOf(Promise);
    expect(v).toMatchObject({ ok: true, limit: undefined });
    expect(calls).toBe(0);
  });

  it("falls back within the deadline when Redis does not answer, and opens the breaker after repeated failures", async () => {
    const { l, events } = limiter(never);
    const t0 = performance.now();
    const v = await l.take("uid|", LIMITS, NOW);
    expect(performance.now() - t0).toBeLessThan(200);
    expect(v.ok).toBe(true); // the local counters admit it
    await l.take("uid|", LIMITS, NOW);
    await l.take("uid|", LIMITS, NOW);
    expect(l.state).toBe("open");
    // Open: answered at once, no call.
    const open = l.take("uid|", LIMITS, NOW);
    expect(open).not.toBeInstanceOf(Promise);
    expect(events).toEqual(["fallback timeout local", "fallback timeout local", "breaker open", "fallback timeout local", "fallback open local"]);
  });

  it.each<[FailureMode, boolean]>([
    ["allow", true],
    ["deny", false],
  ])("with failure mode %s, a failed call is %s", async (mode, ok) => {
    const { l } = limiter(failing, { failureMode: mode });
    const v = await l.take("uid|", LIMITS, NOW);
    expect(v.ok).toBe(ok);
    if (!ok) expect(v).toMatchObject({ reason: "rate_limited", retryAfterSeconds: 1 });
  });

  it("local fallback counts the process's own limits: the burst, then 429", async () => {
    const { l } = limiter(failing, { breakerFailures: 100 });
    const oks = [];
    for (let i = 0; i < 4; i++) oks.push((await l.take("uid|", LIMITS, NOW)).ok);
    expect(oks).toEqual([true, true, false, false]);
  });

  it("bounds the calls in flight: past the bound, checks fall back at once", async () => {
    const { l, events } = limiter(never, { maxInFlight: 2, timeoutMs: 5, breakerFailures: 100 });
    const a = l.take("a|", LIMITS, NOW);
    const b = l.take("b|", LIMITS, NOW);
    const c = l.take("c|", LIMITS, NOW);
    expect(c).not.toBeInstanceOf(Promise);
    expect(l.pending).toBe(2);
    await Promise.all([a, b]);
    // The calls never settled: they stay in flight after their deadline.
    expect(l.pending).toBe(2);
    expect(events[0]).toBe("fallback busy local");
  });

  it("closes the breaker on the first successful probe after the cooldown", async () => {
    let up = false;
    const clock = { t: NOW };
    const { l, events } = limiter(() => (up ? Promise.resolve([1, 0, "1", "1"]) : Promise.reject(new Error("down"))), { now: () => clock.t });
    for (let i = 0; i < 3; i++) await l.take("uid|", LIMITS, clock.t);
    expect(l.state).toBe("open");
    up = true;
    clock.t += 1000;
    const v = await l.take("uid|", LIMITS, clock.t);
    expect(v.ok).toBe(true);
    expect(l.state).toBe("closed");
    expect(events.filter((e) => e.startsWith("breaker"))).toEqual(["breaker open", "breaker half_open", "breaker closed"]);
  });

  it("remembers a refusal until the limit's reset, without calling Redis again", async () => {
    let calls = 0;
    const run: RunScript = () => {
      calls++;
      return Promise.resolve([0, 2, "5"]); // the quota (second limit) refuses: 5 of 5 spent
    };
    const clock = { t: NOW };
    const { l } = limiter(run, { denyCache: true, now: () => clock.t });
    const first = await l.take("uid|", LIMITS, clock.t);
    expect(first).toMatchObject({ ok: false, reason: "quota_exceeded", limit: 5 });
    clock.t += 60_000;
    const again = l.take("uid|", LIMITS, clock.t);
    expect(again).not.toBeInstanceOf(Promise);
    expect(again).toMatchObject({ ok: false, reason: "quota_exceeded", retryAfterSeconds: 12 * 3600 - 60 });
    expect(calls).toBe(1);
    // At the next UTC day the quota counts anew: Redis is asked again.
    clock.t = Date.UTC(2026, 11, 2);
    await l.take("uid|", LIMITS, clock.t);
    expect(calls).toBe(2);
  });

  it("treats a malformed reply as a failed call", async () => {
    const { l, events } = limiter(() => Promise.resolve("nonsense"));
    expect((await l.take("uid|", LIMITS, NOW)).ok).toBe(true);
    expect(events).toEqual(["fallback error local"]);
  });
});

describe("verdictOf", () => {
  const list = new KeyNamer("kw:").limits("uid|", LIMITS, NOW, undefined);
  it("shows the limit with the fewest requests left, as the memory store does", () => {
    expect(verdictOf([1, 0, "1.5", "3"], list, NOW).verdict).toMatchObject({ ok: true, limit: 10, remaining: 1 });
    expect(verdictOf([1, 0, "1.5", "5"], list, NOW).verdict).toMatchObject({ ok: true, limit: 5, remaining: 0 });
  });
  it("a rate refusal: Retry-After until the next token", () => {
    expect(verdictOf([0, 1, "0.5"], list, NOW)).toMatchObject({ verdict: { ok: false, reason: "rate_limited", retryAfterSeconds: 1 }, untilMs: NOW + 50 });
  });
});

describe("KeyNamer", () => {
  it("gives every key of one ApiKey one hash tag, and bounded names for any subject", () => {
    const n = new KeyNamer("keyward:");
    const huge = `${"x".repeat(100_000)}|policy\u0000\n{}`;
    const keys = n.limits(huge, LIMITS, NOW, { subject: `${huge}max`, limits: LIMITS }).map((l) => l.key);
    expect(keys).toHaveLength(4);
    const tags = keys.map((k) => /\{([^}]*)\}/.exec(k)?.[1]);
    expect(new Set(tags).size).toBe(1);
    for (const k of keys) {
      expect(k.length).toBeLessThan(100);
      expect(k).toMatch(/^keyward:\{[A-Za-z0-9_-]{22}\}:[A-Za-z0-9_-]{22}:[rq][0-9./a-z:]+$/);
    }
  });
});
