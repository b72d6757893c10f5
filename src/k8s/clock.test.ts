import { afterEach, describe, expect, it, vi } from "vitest";
import { ManualClock, systemClock } from "./clock.ts";

const DAY = 86_400_000;

describe("clocks", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("fires a system timer longer than Node's 24.8-day limit on time, not at once", () => {
    vi.useFakeTimers();
    const fn = vi.fn();
    systemClock.setTimer(fn, 30 * DAY);
    vi.advanceTimersByTime(29 * DAY);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(DAY);
    expect(fn).toHaveBeenCalledOnce();
  });

  it("measures intervals on the system's monotonic clock, which setting the wall clock does not move", () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const before = systemClock.monotonic!();
    vi.setSystemTime(Date.now() - DAY);
    const elapsed = systemClock.monotonic!() - before;
    expect(elapsed).toBeGreaterThanOrEqual(0);
    expect(elapsed).toBeLessThan(1000);
  });

  it("cancels a long system timer in its second leg", () => {
    vi.useFakeTimers();
    const fn = vi.fn();
    const cancel = systemClock.setTimer(fn, 30 * DAY);
    vi.advanceTimersByTime(26 * DAY);
    cancel();
    vi.advanceTimersByTime(10 * DAY);
    expect(fn).not.toHaveBeenCalled();
  });

  it("fires manual timers in time order as the clock advances, and not cancelled ones", async () => {
    const clock = new ManualClock(0);
    const fired: [string, number][] = [];
    clock.setTimer(() => fired.push(["b", clock.now()]), 200);
    clock.setTimer(() => fired.push(["a", clock.now()]), 100);
    const cancel = clock.setTimer(() => fired.push(["c", clock.now()]), 150);
    cancel();
    await clock.advance(150);
    expect(fired).toEqual([["a", 100]]);
    await clock.advance(100);
    expect(fired).toEqual([["a", 100], ["b", 200]]);
    expect(clock.now()).toBe(250);
    expect(clock.pendingTimers).toBe(0);
  });
});
