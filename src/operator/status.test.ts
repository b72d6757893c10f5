import { describe, expect, it } from "vitest";
import type { ApiKey, KeyVersion } from "../api/types.ts";
import { iso, promoteKey, pruneGrace, rotationDue, setCondition, summarizeState, withoutTaken } from "./status.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");
const H = 3_600_000;
const k = (id: string, state: KeyVersion["state"], extra: Partial<KeyVersion> = {}): KeyVersion => ({
  id,
  hash: `sha256:${id.padEnd(64, "0")}`,
  state,
  ...extra,
});
const apiKey = (spec: Partial<ApiKey["spec"]> = {}): ApiKey => ({
  apiVersion: "keyward.dev/v1alpha1",
  kind: "ApiKey",
  metadata: { name: "a", namespace: "n" },
  spec: { owner: "o", ...spec },
});

describe("setCondition", () => {
  it("moves lastTransitionTime only when the status flips", () => {
    const c1 = setCondition(undefined, { type: "Ready", status: "True", reason: "Issued", message: "m" }, T0);
    const c2 = setCondition(c1, { type: "Ready", status: "True", reason: "Rotated", message: "m2" }, T0 + H);
    expect(c2[0]?.lastTransitionTime).toBe(iso(T0));
    expect(c2[0]?.reason).toBe("Rotated");
    const c3 = setCondition(c2, { type: "Ready", status: "False", reason: "Disabled", message: "m3" }, T0 + 2 * H);
    expect(c3[0]?.lastTransitionTime).toBe(iso(T0 + 2 * H));
    expect(c3).toHaveLength(1);
  });
});

describe("promoteKey and pruneGrace", () => {
  it("moves the active key to grace until now + grace period", () => {
    const keys = promoteKey([k("a", "active")], k("b", "active"), T0, 2 * H);
    expect(keys.map((x) => [x.id, x.state, x.expiresAt])).toEqual([
      ["b", "active", undefined],
      ["a", "grace", iso(T0 + 2 * H)],
    ]);
  });

  it("drops the previous key at once with a zero grace period", () => {
    expect(promoteKey([k("a", "active")], k("b", "active"), T0, 0).map((x) => x.id)).toEqual(["b"]);
  });

  it("keeps at most eight versions", () => {
    let keys: KeyVersion[] = [k("k0", "active")];
    for (let i = 1; i < 20; i++) keys = promoteKey(keys, k(`k${i}`, "active"), T0, H);
    expect(keys).toHaveLength(8);
    expect(keys[0]?.id).toBe("k19");
  });

  it("removes grace keys whose grace ended and reports the next end", () => {
    const keys = [k("a", "active"), k("b", "grace", { expiresAt: iso(T0 - 1) }), k("c", "grace", { expiresAt: iso(T0 + H) })];
    const { keys: kept, nextEnd } = pruneGrace(keys, T0);
    expect(kept.map((x) => x.id)).toEqual(["a", "c"]);
    expect(nextEnd).toBe(T0 + H);
  });
});

describe("rotationDue", () => {
  const status = { keys: [k("a", "active", { createdAt: iso(T0) })] };

  it("rotates on schedule from the last rotation", () => {
    const ak = apiKey({ rotation: { every: "24h" } });
    expect(rotationDue(ak, status, undefined, T0 + 23 * H)).toEqual({ due: undefined, nextRotationAt: T0 + 24 * H });
    expect(rotationDue(ak, status, undefined, T0 + 24 * H).due).toBe("schedule");
    expect(rotationDue(ak, { ...status, lastRotationAt: iso(T0 + 10 * H) }, undefined, T0 + 24 * H).due).toBeUndefined();
  });

  it("rotates when the trigger or the annotation changes", () => {
    expect(rotationDue(apiKey({ rotation: { trigger: "2" } }), { ...status, observedTrigger: "1" }, undefined, T0).due).toBe("trigger");
    expect(rotationDue(apiKey(), { ...status, observedRotateAnnotation: "x" }, "y", T0).due).toBe("annotation");
    expect(rotationDue(apiKey(), status, undefined, T0).due).toBeUndefined();
  });

  it("never rotates a key that was not issued yet", () => {
    expect(rotationDue(apiKey({ rotation: { trigger: "2" } }), {}, undefined, T0).due).toBeUndefined();
  });
});

describe("summarizeState", () => {
  it("orders disabled over expired over failed over key states", () => {
    const keys = [k("a", "active")];
    expect(summarizeState({ disabled: true, expired: true, failed: true, keys })).toBe("Disabled");
    expect(summarizeState({ disabled: false, expired: true, failed: true, keys })).toBe("Expired");
    expect(summarizeState({ disabled: false, expired: false, failed: true, keys })).toBe("Failed");
    expect(summarizeState({ disabled: false, expired: false, failed: false, keys: [] })).toBe("Pending");
    expect(summarizeState({ disabled: false, expired: false, failed: false, keys: [...keys, k("b", "grace")] })).toBe("Rotating");
    expect(summarizeState({ disabled: false, expired: false, failed: false, keys })).toBe("Active");
  });
});

describe("withoutTaken", () => {
  it("keeps the versions no other ApiKey holds and says whether the active one was taken", () => {
    const keys = [k("a", "active"), k("g", "grace", { expiresAt: iso(T0 + H) })];
    expect(withoutTaken(keys, () => false)).toEqual({ keys, taken: [], activeTaken: false });
    expect(withoutTaken(keys, (v) => v.id === "g")).toEqual({ keys: [keys[0]], taken: [keys[1]], activeTaken: false });
    expect(withoutTaken(keys, (v) => v.id === "a")).toEqual({ keys: [keys[1]], taken: [keys[0]], activeTaken: true });
    expect(withoutTaken(undefined, () => true)).toEqual({ keys: [], taken: [], activeTaken: false });
  });
});
