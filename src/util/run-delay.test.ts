import { describe, expect, it } from "vitest";
import { runDelay, runDelayNanos, SCHEDSTAT } from "./run-delay.ts";

describe("runDelayNanos", () => {
  it("reads schedstat's second field, the run queue wait", () => {
    expect(runDelayNanos("194002231 17920324 596\n")).toBe(17920324);
    expect(runDelayNanos("1 2")).toBeUndefined();
    expect(runDelayNanos("1 x 3")).toBeUndefined();
    expect(runDelayNanos(undefined)).toBeUndefined();
  });
});

describe("runDelay", () => {
  it("is short from the second interval in a row in which the thread waited for a CPU the threshold's share of the time", () => {
    let delayMs = 0;
    let now = 0;
    const read = (path: string) => (path === SCHEDSTAT ? `5000000 ${delayMs * 1e6} 10\n` : undefined);
    const p = runDelay(0.25, read, () => now, 100);
    const step = (waitedMs: number): string | undefined => {
      now += 100;
      delayMs += waitedMs;
      return p.short(now);
    };
    expect(p.short(now)).toBeUndefined(); // the first reading: nothing to compare with
    expect(step(30)).toBeUndefined(); // one interval alone is a burst
    expect(step(25)).toMatch(/waits for a CPU \(runnable, not running, 25% of the time or more\)/);
    expect(step(10)).toBeUndefined();
    expect(step(90)).toBeUndefined();
    expect(step(50)).toBeDefined();
  });

  it("is never short where schedstat cannot be read", () => {
    let now = 0;
    const p = runDelay(0.1, () => undefined, () => now, 100);
    for (let i = 0; i < 5; i++) expect(p.short((now += 100))).toBeUndefined();
  });

  it("reads this thread's own statistics by default", () => {
    const p = runDelay(1, undefined, undefined, 1);
    expect(p.short(0)).toBeUndefined();
    expect(p.short(1)).toBeUndefined();
  });

  it("refuses a threshold outside (0, 1]", () => {
    expect(() => runDelay(0)).toThrow(RangeError);
    expect(() => runDelay(2)).toThrow(RangeError);
  });
});
