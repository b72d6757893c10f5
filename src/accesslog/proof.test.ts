import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadProofKeys, proofOf, verifyProof } from "./proof.ts";

const K1 = Buffer.from("a".repeat(32));
const K2 = Buffer.from("b".repeat(40));
const R = { requestId: "7d3f0e4c-1b2a-4c5d-9e8f-0a1b2c3d4e5f", keyId: "kw_AAAAAAAA", uid: "3f1c2d4e-0000-4000-8000-000000000001" };
const T = 1_800_000_000_000;
const HOUR = 3_600_000;

describe("check proofs", () => {
  it("verifies a proof made for the same request, with any loaded key", () => {
    const p = proofOf(K1, R, T);
    expect(p).toMatch(/^1800000000\.[A-Za-z0-9_-]{22}$/);
    expect(verifyProof([K1], p, R, T + 5000, HOUR)).toBe(true);
    // Rotation: a proof of the old key verifies while both are loaded.
    expect(verifyProof([K2, K1], p, R, T, HOUR)).toBe(true);
  });

  it("refuses a proof for another request, key id or ApiKey, under another key, too old, ahead, or malformed", () => {
    const p = proofOf(K1, R, T);
    expect(verifyProof([K1], p, { ...R, requestId: "other" }, T, HOUR)).toBe(false);
    expect(verifyProof([K1], p, { ...R, keyId: "kw_BBBBBBBB" }, T, HOUR)).toBe(false);
    expect(verifyProof([K1], p, { ...R, uid: "other-uid" }, T, HOUR)).toBe(false);
    expect(verifyProof([K2], p, R, T, HOUR)).toBe(false);
    expect(verifyProof([K1], p, R, T + HOUR + 1000, HOUR)).toBe(false);
    expect(verifyProof([K1], proofOf(K1, R, T + 120_000), R, T, HOUR)).toBe(false);
    // The time is part of what is signed: moving it breaks the MAC.
    expect(verifyProof([K1], p.replace(/^\d+/, String(T / 1000 + 1)), R, T, HOUR)).toBe(false);
    for (const bad of [undefined, "", "1800000000", "x.y", `${T / 1000}.${"A".repeat(21)}`]) expect(verifyProof([K1], bad, R, T, HOUR)).toBe(false);
  });

  describe("loadProofKeys", () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), "keyward-proof-"));
    });
    afterAll(() => rm(dir, { recursive: true, force: true }));

    it("reads one key per line, and refuses a missing file, an empty one or a short key without showing it", async () => {
      const f = join(dir, "keys");
      await writeFile(f, `${"a".repeat(32)}\n\n${"b".repeat(40)}\n`);
      expect(await loadProofKeys(f)).toEqual([K1, K2]);
      await writeFile(f, "\n");
      await expect(loadProofKeys(f)).rejects.toThrow(/holds no key/);
      await writeFile(f, "short-secret-value\n");
      const err = (await loadProofKeys(f).then(
        () => new Error("loaded"),
        (e: unknown) => e as Error,
      ));
      expect(err.message).toMatch(/key 1 .* shorter than 32 bytes/);
      expect(err.message).not.toContain("short-secret-value");
      await expect(loadProofKeys(join(dir, "missing"))).rejects.toThrow(/--access-log-proof-key-file: cannot read .*missing: ENOENT/);
    });
  });
});
