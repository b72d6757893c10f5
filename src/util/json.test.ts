import { describe, expect, it } from "vitest";
import { jsonEqual } from "./json.ts";

describe("jsonEqual", () => {
  it("ignores key order and undefined fields", () => {
    expect(jsonEqual({ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1, d: undefined })).toBe(true);
    expect(jsonEqual({ a: [1, 2] }, { a: [2, 1] })).toBe(false);
  });
});
