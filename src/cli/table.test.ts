import { describe, expect, it } from "vitest";
import { formatTable } from "./table.ts";

describe("formatTable", () => {
  it("aligns columns to the widest cell and trims trailing space", () => {
    expect(formatTable(["NAME", "OWNER"], [["acme-orders", "acme"], ["b", ""]])).toBe(
      ["NAME          OWNER", "acme-orders   acme", "b"].join("\n"),
    );
  });
});
