import { describe, expect, it } from "vitest";
import { readText } from "./cpu-throttle.ts";
import { runDelay, runDelayNanos, SCHEDSTAT } from "./run-delay.ts";

describe("runDelayNanos", () => {
  it("reads schedstat's second field, the run queue wait", () => {
    expect(runDelayNanos("194002231 17920324 596\n")).toBe(17920324);
    expect(runDelayNanos("1 2")).toBeUndefined();
    expect(runDelayNanos("1 x 3")).toBeUndefined();
    expect(runDelayNanos(undefined)).toBeUndefined();
  });

  it.runIf(process.platform === "linux")("reads this thread's statistics on Linux", () => {
    expect(runDelayNanos(readText(SCHEDSTAT))).toBeTypeOf("number");
  });
});

/** A thread whose wait for a CPU, and its cgroup's throttled time, a test sets. */
function thread() {
  const t = { now: 0, waitedMs: 0, throttledMs: 0 as number | undefined };
  const read = (path: string): string | undefined => (path === SCHEDSTAT ? `5000000 ${t.waitedMs * 1e6} 10\n` : undefined);
  return { t, options: { read, nowMs: () => t.now, intervalMs: 100, throttledNs: () => (t.throttledMs === undefined ? undefined : t.throttledMs * 1e6) } };
}

describe("runDelay", () => {
  it("is short from the second interval in a row in which the thread waited for a CPU the threshold's share of the time, until two in a row in which it did not", () => {
    const { t, options } = thread();
    const p = runDelay(0.25, options);
    const step = (waitedMs: number): string | undefined => {
      t.now += 100;
      t.waitedMs += waitedMs;
      return p.short(t.now);
    };
    expect(p.short(t.now)).toBeUndefined(); // the first reading: nothing to compare with
    expect(step(30)).toBeUndefined(); // one interval alone is a burst
    expect(step(25)).toMatch(/waits for a CPU \(runnable, not running, 25% of the time or more\)/);
    expect(step(10)).toBeDefined(); // one interval without: a gap
    expect(step(10)).toBeUndefined();
    expect(step(90)).toBeUndefined();
    expect(step(50)).toBeDefined();
  });

  it("takes out the time its CPU limit stopped it: that is the throttling signal's", () => {
    const { t, options } = thread();
    const p = runDelay(0.25, options);
    p.short(t.now);
    for (let i = 0; i < 3; i++) {
      t.now += 100;
      t.waitedMs += 80;
      t.throttledMs! += 70;
      expect(p.short(t.now)).toBeUndefined();
    }
    // Waiting beyond the throttled time counts.
    const step = (): string | undefined => {
      t.now += 100;
      t.waitedMs += 80;
      t.throttledMs! += 40;
      return p.short(t.now);
    };
    expect(step()).toBeUndefined();
    expect(step()).toBeDefined();
    // Where the throttled time cannot be read, all the wait counts.
    t.throttledMs = undefined;
    t.now += 100;
    t.waitedMs += 80;
    expect(p.short(t.now)).toBeDefined();
  });

  it("is never short where schedstat cannot be read", () => {
    let now = 0;
    const p = runDelay(0.1, { read: () => undefined, nowMs: () => now, intervalMs: 100, throttledNs: () => undefined });
    for (let i = 0; i < 5; i++) expect(p.short((now += 100))).toBeUndefined();
  });

  it("refuses a threshold outside (0, 1]", () => {
    expect(() => runDelay(0)).toThrow(RangeError);
    expect(() => runDelay(2)).toThrow(RangeError);
  });
});
