// Each core's busy share during a bench run, from two readings of /proc/stat (bench/lib/proc.ts).
import { describe, expect, it } from "vitest";
import { busyShares, cpuTicks } from "../../bench/lib/proc.ts";

describe("busyShares", () => {
  it("gives all cores' busy share first, then each core's, from the ticks between two readings", () => {
    const before = [
      { name: "cpu", total: 1000, idle: 600 },
      { name: "cpu0", total: 500, idle: 400 },
      { name: "cpu1", total: 500, idle: 200 },
    ];
    const after = [
      { name: "cpu", total: 1200, idle: 650 },
      { name: "cpu0", total: 600, idle: 401 },
      { name: "cpu1", total: 600, idle: 249 },
    ];
    expect(busyShares(before, after)).toEqual([0.75, 0.99, 0.51]);
  });

  it("reads a core that ticked nothing as idle", () => {
    const t = [{ name: "cpu0", total: 10, idle: 5 }];
    expect(busyShares(t, t)).toEqual([0]);
  });

  it("reads this machine's lines: all cores, then one per core", () => {
    const t = cpuTicks();
    expect(t[0]?.name).toBe("cpu");
    expect(t.slice(1).map((c) => c.name)).toEqual(t.slice(1).map((_, i) => `cpu${i}`));
    expect(t.every((c) => c.total >= c.idle && c.idle >= 0)).toBe(true);
  });
});
