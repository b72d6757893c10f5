import { describe, expect, it } from "vitest";
import { median } from "../../bench/lib/stats.ts";

describe("bench median", () => {
  it("is the middle run of an odd count and the lower middle one of an even count", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2);
  });

  it("leaves out runs that measured nothing (NaN), and is NaN without runs", () => {
    expect(median([NaN, 5, 1, NaN, 9])).toBe(5);
    expect(median([])).toBeNaN();
    expect(median([NaN])).toBeNaN();
  });

  it("leaves the caller's array as it was", () => {
    const xs = [3, 1, 2];
    median(xs);
    expect(xs).toEqual([3, 1, 2]);
  });
});
