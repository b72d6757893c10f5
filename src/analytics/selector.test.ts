import { describe, expect, it } from "vitest";
import { parseSelector } from "./selector.ts";

describe("parseSelector", () => {
  it("reads k=v, k==v, k!=v, k and !k, comma-separated", () => {
    expect(parseSelector("tier=gold, env==prod,team!=x,app.kubernetes.io/part-of,!legacy")).toEqual([
      { key: "tier", op: "=", value: "gold" },
      { key: "env", op: "=", value: "prod" },
      { key: "team", op: "!=", value: "x" },
      { key: "app.kubernetes.io/part-of", op: "exists" },
      { key: "legacy", op: "!exists" },
    ]);
    expect(parseSelector("")).toEqual([]);
  });

  it("refuses what is not a label key or value (no SQL, no set-based terms)", () => {
    for (const bad of ["tier in (gold)", "a=b'; drop table keys;--", "=x", "k=v v", "-k=v"]) {
      expect(() => parseSelector(bad), bad).toThrow(/label selector/);
    }
  });
});
