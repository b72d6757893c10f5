import { describe, expect, it } from "vitest";
import type { ApiKey } from "../api/types.ts";
import { revocationLagSeconds } from "./revocation.ts";
import { recordOf } from "../apikeys/record.ts";

const T = Date.UTC(2026, 10, 23, 12);
const ak = (over: Partial<ApiKey["spec"]> = {}, state = "Active", writtenAt = T): ApiKey => ({
  apiVersion: "keyward.dev/v1alpha1",
  kind: "ApiKey",
  metadata: { namespace: "shop", name: "acme", managedFields: [{ manager: "kubectl", operation: "Update", time: new Date(writtenAt) }] },
  spec: { owner: "acme", ...over },
  status: { state: state as "Active", keys: [{ id: "kw_A", hash: `sha256:${"a".repeat(64)}`, state: "active" }] },
});

describe("revocation lag", () => {
  it("measures from the revoking write to now", () => {
    expect(revocationLagSeconds("update", ak({ disabled: true }), recordOf(ak()), T + 1500)).toBe(1.5);
    expect(revocationLagSeconds("update", ak({}, "Expired"), recordOf(ak()), T + 200)).toBe(0.2);
    const rotatedOut = ak();
    rotatedOut.status = { ...rotatedOut.status, keys: [{ id: "kw_B", hash: `sha256:${"b".repeat(64)}`, state: "active" }] };
    expect(revocationLagSeconds("update", rotatedOut, recordOf(ak()), T + 1000)).toBe(1);
  });

  it("ignores changes that revoke nothing", () => {
    expect(revocationLagSeconds("add", ak({ disabled: true }), undefined, T)).toBeUndefined();
    expect(revocationLagSeconds("update", ak({ scopes: ["x"] }), recordOf(ak()), T)).toBeUndefined();
    expect(revocationLagSeconds("update", ak({ disabled: true }), recordOf(ak({ disabled: true })), T)).toBeUndefined();
    expect(revocationLagSeconds("delete", ak(), undefined, T)).toBeUndefined(); // no deletionTimestamp: time unknown
  });
});
