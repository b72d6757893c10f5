import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { apiKey, newKey } from "../authz/fixtures.test-support.ts";
import { KeyIndex } from "./keys.ts";

const hex = (key: string): string => createHash("sha256").update(key).digest("hex");

describe("KeyIndex", () => {
  it("indexes the active key and keys in grace, and drops a rotated-out hash on update", () => {
    const idx = new KeyIndex();
    const a = newKey("p_aaaaaaaa");
    const b = newKey("p_bbbbbbbb", "grace", "2030-01-01T00:00:00Z");
    const obj = apiKey("ns", "k", { scopes: ["s"] }, [a.version, b.version]);
    idx.apply("add", obj);
    expect(idx.lookup(hex(a.key))?.id).toBe("p_aaaaaaaa");
    expect(idx.lookup(hex(b.key))?.validUntilMs).toBe(Date.parse("2030-01-01T00:00:00Z"));
    idx.apply("update", { ...obj, status: { keys: [a.version] } });
    expect(idx.lookup(hex(b.key))).toBeUndefined();
    expect(idx.size).toBe(1);
    idx.apply("delete", obj);
    expect(idx.lookup(hex(a.key))).toBeUndefined();
    expect(idx.apiKeyCount).toBe(0);
  });

  it("reads disabled and expired from spec and status, and accepts upper-case hex", () => {
    const idx = new KeyIndex();
    const a = newKey("p_a");
    const upper = { ...a.version, hash: a.version.hash.replace(/[0-9a-f]{64}$/, (h) => h.toUpperCase()) };
    idx.apply("add", { ...apiKey("ns", "k", {}, [upper]), status: { state: "Expired", keys: [upper] } });
    expect(idx.lookup(hex(a.key))?.record.expiresAtMs).toBe(-Infinity);
    idx.apply("update", { ...apiKey("ns", "k", { disabled: true }, [a.version]) });
    expect(idx.lookup(hex(a.key))?.record.disabled).toBe(true);
  });

  it("skips malformed hashes and unparseable sources, failing closed", () => {
    const problems: string[] = [];
    const idx = new KeyIndex({ onInvalid: (_ref, what) => problems.push(what) });
    const a = newKey("p_a");
    idx.apply("add", apiKey("ns", "k", { allowedSources: ["not-a-cidr"], expiresAt: "soon" }, [a.version, { id: "bad", hash: "md5:xyz", state: "active" }]));
    expect(idx.size).toBe(1);
    const rec = idx.lookup(hex(a.key))?.record;
    expect(rec?.sources?.ranges).toEqual([]);
    expect(rec?.expiresAtMs).toBe(-Infinity);
    expect(problems).toHaveLength(3);
  });
});
