import { describe, expect, it } from "vitest";
import { apiKey, newKey } from "../api/fixtures.test-support.ts";
import type { ApiKey } from "../api/types.ts";
import { lastWriteMs, revocationLagSeconds } from "./revocation.ts";
import { usageView } from "../apikeys/views.ts";
import { recordOf } from "../apikeys/record.ts";
import { keyRecordOf } from "../analytics/rows.ts";

function delivered(): ApiKey {
  const ak = apiKey(
    "shop",
    "acme",
    { scopes: ["orders:read"], expiresAt: "2999-01-01T00:00:00Z", disabled: false, allowedSources: ["10.0.0.0/8"], limits: { quota: { requests: 10, per: "day" } }, rotation: { every: "720h" }, description: "checkout" },
    [newKey("kw_AAAAAAAA").version],
    { tier: "pro" },
  );
  ak.metadata.resourceVersion = "42";
  ak.metadata.annotations = { "kubectl.kubernetes.io/last-applied-configuration": "{}" };
  ak.metadata.managedFields = [
    { manager: "kubectl", operation: "Update", time: "2026-01-01T00:00:00Z" as unknown as Date, fieldsType: "FieldsV1", fieldsV1: { "f:spec": {} } },
    { manager: "keyward-operator", operation: "Update", subresource: "status", time: "2026-01-02T00:00:00Z" as unknown as Date, fieldsType: "FieldsV1", fieldsV1: { "f:status": {} } },
    { manager: "keyward-authz", operation: "Update", subresource: "status", time: "2026-01-01T12:00:00Z" as unknown as Date, fieldsType: "FieldsV1", fieldsV1: { "f:status": {} } },
  ];
  ak.status = {
    ...ak.status,
    currentKeyId: "kw_AAAAAAAA",
    secretName: "acme-apikey",
    observedGeneration: 1,
    conditions: [{ type: "Ready", status: "True", reason: "Issued", message: "key issued", lastTransitionTime: "2026-01-01T00:00:00Z" }],
    usage: { requests24h: 7, lastUsedAt: "2026-01-02T00:00:00Z" },
    lastRotationAt: "2026-01-01T06:00:00Z",
  };
  return ak;
}

describe("usage's view of an ApiKey", () => {
  it("gives the analytics store the same key record as the whole object", () => {
    const ak = delivered();
    ak.metadata.creationTimestamp = "2026-01-01T00:00:00Z" as unknown as Date;
    expect(keyRecordOf(usageView(ak))).toEqual(keyRecordOf(ak));
  });

  it("keeps exactly what the flusher, the alerts, the recorder, the key records and revocation lag read", () => {
    const ak = delivered();
    expect(usageView(ak)).toEqual({
      apiVersion: ak.apiVersion,
      kind: ak.kind,
      metadata: { name: "acme", namespace: "shop", uid: ak.metadata.uid, resourceVersion: "42", managedFields: [{ time: "2026-01-02T00:00:00Z" }], labels: { tier: "pro" }, creationTimestamp: ak.metadata.creationTimestamp },
      spec: { owner: "acme", scopes: ["orders:read"], expiresAt: "2999-01-01T00:00:00Z", disabled: false, limits: { quota: { requests: 10, per: "day" } }, rotation: { every: "720h" } },
      status: { state: "Active", currentKeyId: "kw_AAAAAAAA", keys: ak.status?.keys, usage: ak.status?.usage, lastRotationAt: "2026-01-01T06:00:00Z" },
    });
  });

  it("revocation lag reads the same from the view as from the whole object", () => {
    const before = delivered();
    const after = delivered();
    after.spec.disabled = true;
    const now = Date.parse("2026-01-02T00:00:03Z");
    expect(lastWriteMs(usageView(after))).toBe(lastWriteMs(after));
    expect(revocationLagSeconds("update", usageView(after), recordOf(usageView(before)), now)).toBe(3);
    expect(revocationLagSeconds("update", usageView(after), recordOf(usageView(before)), now)).toBe(revocationLagSeconds("update", after, recordOf(before), now));
    const deleted = delivered();
    deleted.metadata.deletionTimestamp = new Date("2026-01-02T00:00:01Z");
    expect(revocationLagSeconds("delete", usageView(deleted), undefined, now)).toBe(2);
  });

  it("keeps no managedFields when none has a time", () => {
    const ak = delivered();
    ak.metadata.managedFields = [{ manager: "x" }];
    expect(usageView(ak).metadata.managedFields).toBeUndefined();
  });
});
