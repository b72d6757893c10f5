// Builders of ApiKeys and ApiKeyPolicies shared by the unit tests.
import { createHash, randomBytes } from "node:crypto";
import type { ApiKey, ApiKeyPolicy, ApiKeyPolicySpec, ApiKeySpec, KeyVersion } from "./types.ts";

/** A random key and its status entry; the plaintext never leaves the test. */
export function newKey(id: string, state: KeyVersion["state"] = "active", expiresAt?: string): { key: string; version: KeyVersion } {
  const key = `kw_${randomBytes(32).toString("base64url")}`;
  const hash = `sha256:${createHash("sha256").update(key).digest("hex")}`;
  return { key, version: { id, hash, state, ...(expiresAt ? { expiresAt } : {}) } };
}

export function apiKey(ns: string, name: string, spec: Partial<ApiKeySpec>, versions: KeyVersion[], labels: Record<string, string> = {}): ApiKey {
  return {
    apiVersion: "keyward.dev/v1alpha1",
    kind: "ApiKey",
    metadata: { namespace: ns, name, uid: `${ns}-${name}-uid`, labels },
    spec: { owner: "acme", ...spec },
    status: { state: "Active", keys: versions },
  };
}

export function policy(ns: string, name: string, spec: Partial<ApiKeyPolicySpec>): ApiKeyPolicy {
  return {
    apiVersion: "keyward.dev/v1alpha1",
    kind: "ApiKeyPolicy",
    metadata: { namespace: ns, name },
    spec: { hosts: ["*"], rules: [{ paths: ["/**"] }], ...spec },
  };
}
