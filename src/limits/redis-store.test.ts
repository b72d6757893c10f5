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
      return Promise.resolve([[1, 0]]);
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
    const { l, events } = limiter(() => (up ? Promise.resolve([[1, 0, "1", "1"]]) : Promise.reject(new Error("down"))), { now: () => clock.t });
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
      return Promise.resolve([[0, 2, "5"]]); // the quota (second limit) refuses: 5 of 5 spent
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

  it("sends the checks of one event-loop turn as one call on one server, and answers each from its own reply", async () => {
    const sent: (string | number)[][] = [];
    const run: RunScript = (args) => {
      sent.push(args);
      return Promise.resolve([
        [1, 0, "1", "1"],
        [0, 2, "5"],
        [1, 0, "0", "2"],
      ]);
    };
    const { l } = limiter(run);
    const verdicts = await Promise.all([l.take("a|", LIMITS, NOW), l.take("b|", LIMITS, NOW + 1), l.take("a|", LIMITS, NOW + 2)]);
    expect(sent).toHaveLength(1);
    // KEYS (six: a rate and a quota per check), then per check: its limit count and its own time.
    expect(sent[0]?.[0]).toBe(6);
    expect(sent[0]?.slice(7).filter((x) => typeof x === "number" && x >= NOW)).toEqual([NOW, Date.UTC(2026, 11, 2), NOW + 1, Date.UTC(2026, 11, 2), NOW + 2, Date.UTC(2026, 11, 2)]);
    expect(verdicts.map((v) => [v.ok, v.remaining])).toEqual([
      [true, 1],
      [false, 0],
      [true, 0],
    ]);
    expect(verdicts[1].reason).toBe("quota_exceeded");
    expect(l.pending).toBe(0);
    // A later turn makes a call of its own.
    await l.take("c|", LIMITS, NOW);
    expect(sent).toHaveLength(2);
  });

  it("on a Cluster, sends each check in a call of its own, at once", () => {
    const sizes: number[] = [];
    const run: RunScript = (args) => {
      const checks = (args[0] as number) / 2;
      sizes.push(checks);
      return Promise.resolve(Array.from({ length: checks }, () => [1, 0, "1", "1"]));
    };
    const { l } = limiter(run, { batchBy: "check" });
    void l.take("a|x", LIMITS, NOW);
    void l.take("a|y", LIMITS, NOW);
    expect(sizes).toEqual([1, 1]);
  });

  it("counts a failed batch as one failed call for the breaker, and answers each of its checks by the failure setting", async () => {
    const { l, events } = limiter(never, { breakerFailures: 2 });
    const verdicts = await Promise.all(Array.from({ length: 5 }, (_, i) => Promise.resolve(l.take(`k${i}|`, LIMITS, NOW))));
    expect(verdicts.every((v) => v.ok)).toBe(true);
    expect(l.state).toBe("closed");
    expect(events).toEqual(Array.from({ length: 5 }, () => "fallback timeout local"));
  });

  it("counts a batch's deadline from its first check: a long turn does not add to the wait", async () => {
    const { l, events } = limiter(never, { timeoutMs: 200, breakerFailures: 100 });
    const v = l.take("a|", LIMITS, NOW);
    // The rest of this turn keeps the thread busy past the deadline.
    const busyUntil = performance.now() + 250;
    while (performance.now() < busyUntil);
    const t0 = performance.now();
    expect((await v).ok).toBe(true);
    expect(performance.now() - t0).toBeLessThan(100);
    expect(events).toEqual(["fallback timeout local"]);
  });

  it("treats a reply with the wrong number of answers as a failed call", async () => {
    const { l, events } = limiter(() => Promise.resolve([[1, 0, "1", "1"]]));
    const verdicts = await Promise.all([l.take("a|", LIMITS, NOW), l.take("b|", LIMITS, NOW)]);
    expect(verdicts.map((v) => v.ok)).toEqual([true, true]);
    expect(events).toEqual(["fallback error local", "fallback error local"]);
  });

  it("reports each call's time from its send to its reply, or to its deadline", async () => {
    const calls: [string, number][] = [];
    const onCall = (result: string, seconds: number): void => {
      calls.push([result, seconds]);
    };
    // A reply 30 ms after the send: the time the call is reported with.
    const slow: RunScript = () => new Promise((res) => setTimeout(res, 30, [[1, 0, "1", "1"]]));
    const { l } = limiter(slow, { timeoutMs: 1000, onCall });
    expect((await l.take("a|", LIMITS, NOW)).ok).toBe(true);
    expect(calls.map(([r]) => r)).toEqual(["ok"]);
    expect(calls[0]?.[1]).toBeGreaterThanOrEqual(0.025);
    expect(calls[0]?.[1]).toBeLessThan(0.5);
    // A call past its deadline (20 ms) is reported at the deadline.
    const late = limiter(never, { timeoutMs: 20, onCall });
    await late.l.take("b|", LIMITS, NOW);
    expect(calls[1]?.[0]).toBe("timeout");
    expect(calls[1]?.[1]).toBeGreaterThanOrEqual(0.015);
    expect(calls[1]?.[1]).toBeLessThan(0.5);
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
  it("reuses a subject's plan within its quota periods, and makes a new one for new limits, a new period or an earlier time", () => {
    const n = new KeyNamer("keyward:");
    const first = n.plan("uid|p", LIMITS, NOW, undefined);
    expect(n.plan("uid|p", LIMITS, NOW + 3600_000, undefined)).toBe(first);
    const quotaKey = (p: ReturnType<KeyNamer["plan"]>): string | undefined => p.list.find((l) => l.kind === "q")?.key;
    // The next UTC day: another quota counter.
    const tomorrow = n.plan("uid|p", LIMITS, Date.UTC(2026, 11, 2), undefined);
    expect(quotaKey(tomorrow)).not.toBe(quotaKey(first));
    expect(quotaKey(tomorrow)?.endsWith(`:q5/day:${Date.UTC(2026, 11, 3)}`)).toBe(true);
    // A clock set back into the day before: that day's counter again.
    expect(quotaKey(n.plan("uid|p", LIMITS, NOW, undefined))).toBe(quotaKey(first));
    // Changed limits (new objects from the check path): their own counters.
    const changed = compileLimits({ rate: { requests: 20, per: "1s", burst: 2 }, quota: { requests: 5, per: "day" } });
    expect(n.plan("uid|p", changed, NOW, undefined).list[0]?.key).toMatch(/:r20\/1000\/2$/);
    // A ceiling added: its limits join the plan.
    const ceiling = { subject: "uid|p|max", limits: LIMITS };
    expect(n.plan("uid|p", changed, NOW, ceiling).list).toHaveLength(4);
    expect(n.plan("uid|p", changed, NOW, undefined).list).toHaveLength(2);
  });

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
