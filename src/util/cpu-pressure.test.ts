import { describe, expect, it } from "vitest";
import { anyPressure, sampledPressure } from "./cpu-pressure.ts";

describe("sampledPressure", () => {
  it("reads at most once per interval, is short from two pressed readings in a row, and holds until two unpressed ones in a row", () => {
    const readings = [true, false, true, true, false, true, false, undefined, true, false, true];
    let reads = 0;
    const p = sampledPressure("why", () => readings[reads++], 100);
    const seen = [0, 50, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000].map((now) => p.short(now));
    // A lone pressed reading is a burst; once short, a lone unpressed one is a gap.
    expect(seen).toEqual([undefined, undefined, undefined, undefined, "why", "why", "why", "why", undefined, undefined, undefined, undefined]);
    expect(reads).toBe(11);
  });

  it("refuses an interval that is not positive", () => {
    expect(() => sampledPressure("why", () => true, 0)).toThrow(RangeError);
  });
});

describe("anyPressure", () => {
  it("is short when any signal is, for the first one's reason, and reads every due signal", () => {
    let a = false;
    let b = false;
    let bReads = 0;
    const p = anyPressure([
      { intervalMs: 100, short: () => (a ? "a" : undefined) },
      { intervalMs: 50, short: () => (bReads++, b ? "b" : undefined) },
    ])!;
    expect(p.intervalMs).toBe(50);
    expect(p.short(0)).toBeUndefined();
    b = true;
    expect(p.short(1)).toBe("b");
    a = true;
    expect(p.short(2)).toBe("a");
    expect(bReads).toBe(3);
  });

  it("is the signal itself when there is one, and none without any", () => {
    const one = { intervalMs: 100, short: () => undefined };
    expect(anyPressure([one])).toBe(one);
    expect(anyPressure([])).toBeUndefined();
  });
});
