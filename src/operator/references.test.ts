import { describe, expect, it } from "vitest";
import type { ApiKey } from "../api/types.ts";
import { SecretReferences } from "./references.ts";

const ak = (name: string, spec: Partial<ApiKey["spec"]> = {}): ApiKey => ({ apiVersion: "keyward.dev/v1alpha1", kind: "ApiKey", metadata: { namespace: "ns", name }, spec: { ...spec } }) as ApiKey;

function setup() {
  const existing: [string, string | undefined][] = [];
  const refs = new SecretReferences({ track: (k, s) => existing.push([k, s]) });
  return { refs, existing };
}

describe("SecretReferences", () => {
  it("finds an ApiKey from the Secret it issues into: <name>-apikey by default, or spec.secretName", () => {
    const { refs } = setup();
    refs.track(ak("a"), false);
    refs.track(ak("b", { secretName: "shared" }), false);
    refs.track(ak("c", { secretName: "shared" }), false);
    expect(refs.apiKeysOf("ns/a-apikey")).toEqual(["ns/a"]);
    expect(refs.apiKeysOf("ns/shared")).toEqual(["ns/b", "ns/c"]);
    expect(refs.apiKeysOf("other/a-apikey")).toEqual([]);
  });

  it("forgets the Secret an ApiKey named before when it names another, or is deleted", () => {
    const { refs } = setup();
    refs.track(ak("a"), false);
    refs.track(ak("a", { secretName: "moved" }), false);
    expect(refs.apiKeysOf("ns/a-apikey")).toEqual([]);
    expect(refs.apiKeysOf("ns/moved")).toEqual(["ns/a"]);
    refs.track(ak("a", { secretName: "moved" }), true);
    expect(refs.apiKeysOf("ns/moved")).toEqual([]);
    expect(refs.size).toBe(0);
  });

  it("hands spec.existingSecret to the re-reads, and keyHash names no Secret", () => {
    const { refs, existing } = setup();
    refs.track(ak("own", { existingSecret: { name: "mine" } }), false);
    refs.track(ak("hashed", { keyHash: "sha256:00" }), false);
    refs.track(ak("own", { existingSecret: { name: "mine" } }), true);
    expect(existing).toEqual([["ns/own", "ns/mine"], ["ns/hashed", undefined], ["ns/own", undefined]]);
    expect(refs.apiKeysOf("ns/own-apikey")).toEqual([]);
    expect(refs.apiKeysOf("ns/hashed-apikey")).toEqual([]);
  });
});
