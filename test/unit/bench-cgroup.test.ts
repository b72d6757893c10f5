// The bench's CPU limit (bench/lib/cgroup.ts): the quota written for a share of a CPU, and the
// throttling read back from cpu.stat in either cgroup version.
import { describe, expect, it } from "vitest";
import { CFS_PERIOD_MICROS, parseCpuStat, quotaText } from "../../bench/lib/cgroup.ts";

describe("quotaText", () => {
  it("writes the quota per 100 ms period: v2's cpu.max with its period, v1's quota alone", () => {
    expect(CFS_PERIOD_MICROS).toBe(100_000);
    expect(quotaText(0.5, true)).toBe("50000 100000");
    expect(quotaText(0.5, false)).toBe("50000");
    expect(quotaText(1, false)).toBe("100000");
  });

  it("never goes under the kernel's 1 ms floor", () => {
    expect(quotaText(0.001, false)).toBe("1000");
  });

  it("refuses a limit that is no positive number", () => {
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) expect(() => quotaText(bad, true)).toThrow(RangeError);
  });
});

describe("parseCpuStat", () => {
  it("reads v1's throttled_time in nanoseconds", () => {
    expect(parseCpuStat("nr_periods 120\nnr_throttled 60\nthrottled_time 3000000000\nnr_bursts 0\n")).toEqual({ periods: 120, throttledPeriods: 60, throttledMicros: 3_000_000 });
  });

  it("reads v2's throttled_usec in microseconds", () => {
    expect(parseCpuStat("usage_usec 900\nuser_usec 800\nsystem_usec 100\nnr_periods 10\nnr_throttled 4\nthrottled_usec 120000\n")).toEqual({ periods: 10, throttledPeriods: 4, throttledMicros: 120_000 });
  });

  it("gives zeros for a group that never had a quota", () => {
    expect(parseCpuStat("")).toEqual({ periods: 0, throttledPeriods: 0, throttledMicros: 0 });
  });
});
