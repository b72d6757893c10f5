import { describe, expect, it } from "vitest";
import { generateKey, hashKey, keyIdFromHash } from "../keys/keymaterial.ts";
import { scanText } from "./scan.ts";

describe("keyward scan", () => {
  it("reports a leaked key by file, line and key id, never the key", () => {
    const key = generateKey("shop");
    const findings = scanText(`a: 1\nb: "${key}"\n`, "config.yaml");
    expect(findings).toEqual([{ file: "config.yaml", line: 2, prefix: "shop", keyId: keyIdFromHash(hashKey(key), "shop") }]);
    expect(JSON.stringify(findings)).not.toContain(key);
  });

  it("ignores strings of the same shape whose checksum is wrong", () => {
    expect(scanText(`token: shop_${"A".repeat(49)}`, "x")).toEqual([]);
  });
});
