import { describe, expect, it } from "vitest";
import { KEY_PATTERN, checkKeyStrength, generateKey, hashKey, keyIdFromHash, verifyKey } from "./keymaterial.ts";

describe("key material", () => {
  it("issues keys with the prefix, 49 base62 characters and a valid checksum", () => {
    const key = generateKey("shop");
    expect(key).toMatch(/^shop_[0-9A-Za-z]{49}$/);
    expect(verifyKey(key)).toBe(true);
  });

  it("never issues the same key twice", () => {
    const keys = new Set(Array.from({ length: 2000 }, () => generateKey()));
    expect(keys.size).toBe(2000);
  });

  it("spreads the random part over the whole alphabet (256 bits, not a short range)", () => {
    const chars = new Set(Array.from({ length: 200 }, () => generateKey().slice(3, 46)).join(""));
    expect(chars.size).toBeGreaterThan(58);
  });

  it("rejects a key whose checksum does not match", () => {
    const key = generateKey("shop");
    const i = 10;
    const flipped = key.slice(0, i) + (key[i] === "a" ? "b" : "a") + key.slice(i + 1);
    expect(verifyKey(flipped)).toBe(false);
    expect(verifyKey("shop_" + "a".repeat(49))).toBe(false);
    expect(verifyKey("not a key")).toBe(false);
  });

  it("finds keys in text with the scanner pattern", () => {
    const key = generateKey("acme");
    const text = `config:\n  token: ${key}\n`;
    expect([...text.matchAll(KEY_PATTERN)].map((m) => m[0])).toEqual([key]);
  });

  it("derives a short key id from the hash, not from the key", () => {
    const key = generateKey("shop");
    const hash = hashKey(key);
    expect(hash).toMatch(/^sha256:[0-9a-f]{64}$/);
    const id = keyIdFromHash(hash, "shop");
    expect(id).toMatch(/^shop_[0-9A-Za-z]{8}$/);
    expect(key.includes(id.slice(5))).toBe(false);
    expect(keyIdFromHash(hash, "shop")).toBe(id);
  });

  it("rejects short, low-entropy and white-space keys brought by the user", () => {
    expect(checkKeyStrength("short").weak).toBe(true);
    expect(checkKeyStrength("a".repeat(64)).weak).toBe(true);
    expect(checkKeyStrength("abababababababababababababababababababab").weak).toBe(true);
    expect(checkKeyStrength("has space " + generateKey()).weak).toBe(true);
    expect(checkKeyStrength(generateKey()).weak).toBe(false);
    expect(checkKeyStrength("Zq8vN3xL0pR7tY2wK5mB9cF1hJ4dG6sA").weak).toBe(false);
  });
});
