import { describe, expect, it } from "vitest";
import { upperMethod } from "./decision.ts";
import { stripQuery } from "./event.ts";

describe("stripQuery", () => {
  it("cuts the path at the first '?' or '#', whichever comes first", () => {
    expect(stripQuery("/v1/orders?api_key=x#frag")).toBe("/v1/orders");
    expect(stripQuery("/v1/orders#frag?api_key=x")).toBe("/v1/orders");
    expect(stripQuery("/v1/orders?")).toBe("/v1/orders");
    expect(stripQuery("#only")).toBe("");
    expect(stripQuery("/v1/orders")).toBe("/v1/orders");
    expect(stripQuery(undefined)).toBeUndefined();
  });
});

describe("upperMethod", () => {
  it("gives the method in upper case, and the same string when it already is", () => {
    const get = "GET";
    expect(upperMethod(get)).toBe(get);
    expect(upperMethod("get")).toBe("GET");
    expect(upperMethod("Patch")).toBe("PATCH");
    expect(upperMethod("M-SEARCH")).toBe("M-SEARCH");
    // Not ASCII: upper-cased as String.prototype.toUpperCase does it.
    expect(upperMethod("pösT")).toBe("PÖST");
    expect(upperMethod(undefined)).toBeUndefined();
  });
});
