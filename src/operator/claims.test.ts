import { describe, expect, it } from "vitest";
import type { ApiKey, KeyVersion } from "../api/types.ts";
import { HashClaims } from "./claims.ts";

const H1 = `sha256:${"1".repeat(64)}`;
const H2 = `sha256:${"2".repeat(64)}`;

function ak(ns: string, name: string, keys: Partial<KeyVersion>[]): ApiKey {
  return {
    apiVersion: "keyward.dev/v1alpha1",
    kind: "ApiKey",
    metadata: { namespace: ns, name },
    spec: { owner: "o" },
    status: { keys: keys.map((k, i) => ({ id: `k${String(i)}`, hash: H1, state: "active", ...k })) },
  };
}

describe("HashClaims", () => {
  it("answers the other ApiKey whose published claim is older, never the asker itself", () => {
    const c = new HashClaims();
    c.update("shop/victim", ak("shop", "victim", [{ hash: H1, createdAt: "2026-01-01T00:00:00Z" }]));
    expect(c.olderThan(H1, { ref: "shop/victim", uid: "shop/victim", age: Infinity })).toBeUndefined();
    expect(c.olderThan(H1, { ref: "evil/copy", uid: "evil/copy", age: Infinity })?.ref).toBe("shop/victim");
    expect(c.olderThan(H1.toUpperCase().replace("SHA256", "sha256"), { ref: "evil/copy", uid: "evil/copy", age: Infinity })?.ref).toBe("shop/victim");
    expect(c.olderThan(H2, { ref: "evil/copy", uid: "evil/copy", age: Infinity })).toBeUndefined();
    // Both published it: only the newer claim is told of an older one.
    c.update("evil/copy", ak("evil", "copy", [{ hash: H1, createdAt: "2026-02-01T00:00:00Z" }]));
    const age = (t: string): number => (Date.parse(t) - Date.UTC(2020, 0, 1)) / 1000;
    expect(c.olderThan(H1, { ref: "evil/copy", uid: "evil/copy", age: age("2026-02-01T00:00:00Z") })?.ref).toBe("shop/victim");
    expect(c.olderThan(H1, { ref: "shop/victim", uid: "shop/victim", age: age("2026-01-01T00:00:00Z") })).toBeUndefined();
  });

  it("wakes the ApiKeys refused a hash once its holder lets go of it or is deleted", () => {
    const c = new HashClaims();
    c.update("shop/victim", ak("shop", "victim", [{ hash: H1 }, { hash: H2, state: "grace" }]));
    c.refused("evil/a", [H1]);
    c.refused("evil/b", [H1, H2]);
    c.refused("evil/c", [H2]);
    c.refused("evil/c", []); // reconciled since, no longer refused
    expect(c.waiting).toBe(2);
    // The grace key goes: who waits for H2 is woken.
    expect(c.update("shop/victim", ak("shop", "victim", [{ hash: H1 }]))).toEqual(["evil/b"]);
    // An update that keeps the hash wakes nobody.
    expect(c.update("shop/victim", ak("shop", "victim", [{ hash: H1, createdAt: "2026-01-01T00:00:00Z" }]))).toEqual([]);
    expect(c.update("shop/victim", undefined).sort()).toEqual(["evil/a", "evil/b"]);
    expect(c.olderThan(H1, { ref: "evil/a", uid: "evil/a", age: Infinity })).toBeUndefined();
    c.update("evil/a", undefined);
    c.update("evil/b", undefined);
    expect(c.waiting).toBe(0);
  });

  it("wakes the other claimants when an ApiKey publishes a hash they publish too, so the newer gives it up", () => {
    const c = new HashClaims();
    c.update("shop/victim", ak("shop", "victim", [{ hash: H1 }]));
    expect(c.update("evil/copy", ak("evil", "copy", [{ hash: H1 }]))).toEqual(["shop/victim"]);
    // The same claim again (a relist, a status write) is not news.
    expect(c.update("evil/copy", ak("evil", "copy", [{ hash: H1 }]))).toEqual([]);
    expect(c.update("evil/copy", ak("evil", "copy", []))).toEqual([]);
    expect(c.olderThan(H1, { ref: "other/x", uid: "other/x", age: Infinity })?.ref).toBe("shop/victim");
  });
});
