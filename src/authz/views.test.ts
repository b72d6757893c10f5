import { describe, expect, it } from "vitest";
import { apiKey, newKey, policy } from "../api/fixtures.test-support.ts";
import type { ApiKey } from "../api/types.ts";
import { KeyIndex, keyDigest } from "../index/keys.ts";
import { policyView } from "./views.ts";
import { apiKeyRef, indexView } from "../apikeys/views.ts";

/** An ApiKey as the watch delivers it: with what other writers and tools add. */
function delivered(): { ak: ApiKey; key: string; graceKey: string } {
  const active = newKey("kw_AAAAAAAA");
  const grace = newKey("kw_BBBBBBBB", "grace", "2999-01-01T00:00:00Z");
  const ak = apiKey(
    "shop",
    "acme",
    { scopes: ["orders:read"], expiresAt: "2999-01-01T00:00:00Z", allowedSources: ["10.0.0.0/8"], limits: { rate: { requests: 5, per: "1s" } }, description: "checkout" },
    [active.version, grace.version],
    { tier: "pro" },
  );
  ak.metadata.resourceVersion = "42";
  ak.metadata.generation = 3;
  ak.metadata.creationTimestamp = new Date("2026-01-01T00:00:00Z");
  ak.metadata.annotations = { "kubectl.kubernetes.io/last-applied-configuration": "{}".repeat(500) };
  ak.metadata.managedFields = [{ manager: "kubectl", operation: "Update", time: new Date(), fieldsType: "FieldsV1", fieldsV1: { "f:spec": {} } }];
  ak.status = {
    ...ak.status,
    currentKeyId: "kw_AAAAAAAA",
    secretName: "acme-apikey",
    conditions: [{ type: "Ready", status: "True", reason: "Issued", message: "key issued", lastTransitionTime: "2026-01-01T00:00:00Z" }],
    usage: { requests24h: 7, hourly: Array.from({ length: 24 }, (_, i) => ({ hour: `2026-01-01T${String(i).padStart(2, "0")}:00:00Z`, requests: i })) },
  };
  return { ak, key: active.key, graceKey: grace.key };
}

describe("the data plane's views", () => {
  it("indexView keeps exactly what the key index reads", () => {
    const { ak } = delivered();
    const v = indexView(ak);
    expect(v).toEqual({
      apiVersion: ak.apiVersion,
      kind: ak.kind,
      metadata: { name: "acme", namespace: "shop", uid: ak.metadata.uid, resourceVersion: "42", labels: { tier: "pro" }, creationTimestamp: ak.metadata.creationTimestamp },
      spec: ak.spec,
      status: { state: "Active", keys: ak.status?.keys },
    });
    expect(JSON.stringify(v)).not.toMatch(/usage|managedFields|last-applied|conditions|secretName/);
  });

  it("an index fed views answers every lookup as one fed whole objects", () => {
    const { ak, key, graceKey } = delivered();
    const whole = new KeyIndex();
    const viewed = new KeyIndex();
    whole.apply("add", ak);
    viewed.apply("add", indexView(ak));
    for (const k of [key, graceKey, "kw_unknown"]) {
      const a = whole.lookup(keyDigest(k));
      const b = viewed.lookup(keyDigest(k));
      expect(b?.id).toBe(a?.id);
      expect(b?.validUntilMs).toBe(a?.validUntilMs);
      if (a && b) {
        const fields = (r: typeof a.record) => ({ ns: r.namespace, name: r.name, uid: r.uid, owner: r.owner, scopes: [...r.scopes], labels: r.labels, disabled: r.disabled, expiresAtMs: r.expiresAtMs, limits: r.limits, sources: r.sources });
        expect(fields(b.record)).toEqual(fields(a.record));
      }
    }
    expect(viewed.lookup(keyDigest(key))).toBeDefined();
  });

  it("apiKeyRef keeps the reference alone, and a delete of it empties the index", () => {
    const { ak, key } = delivered();
    const ref = apiKeyRef(indexView(ak));
    expect(ref.metadata).toEqual({ name: "acme", namespace: "shop", uid: ak.metadata.uid, resourceVersion: "42" });
    expect(ref.spec).toEqual({ owner: "" });
    expect(ref.status).toBeUndefined();
    expect(apiKeyRef(ak).spec).toBe(ref.spec); // one shared spec, none per ApiKey
    const index = new KeyIndex();
    index.apply("add", indexView(ak));
    index.apply("delete", ref);
    expect(index.lookup(keyDigest(key))).toBeUndefined();
    expect(index.apiKeyCount).toBe(0);
  });

  it("policyView keeps the spec and what decides a host's owner, not the status", () => {
    const p = policy("shop", "p", { hosts: ["api.example.com"] });
    p.metadata.resourceVersion = "9";
    p.metadata.generation = 2;
    p.metadata.creationTimestamp = new Date("2026-01-01T00:00:00Z");
    p.metadata.managedFields = [{ manager: "kubectl" }];
    p.metadata.annotations = { a: "b" };
    p.status = { ruleCount: 1, conditions: [] };
    expect(policyView(p)).toEqual({
      apiVersion: p.apiVersion,
      kind: p.kind,
      metadata: { name: "p", namespace: "shop", uid: undefined, resourceVersion: "9", generation: 2, creationTimestamp: p.metadata.creationTimestamp },
      spec: p.spec,
    });
  });
});
