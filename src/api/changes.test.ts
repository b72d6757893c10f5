import { describe, expect, it } from "vitest";
import type { ApiKey } from "./types.ts";
import { changedBeyondUsage } from "./changes.ts";

const ak = (): ApiKey => ({
  apiVersion: "keyward.dev/v1alpha1",
  kind: "ApiKey",
  metadata: { namespace: "shop", name: "acme", uid: "u", resourceVersion: "1", generation: 1 },
  spec: { owner: "acme" },
  status: { state: "Active", usage: { requests24h: 1 } },
});

describe("usage-only changes", () => {
  it("tells a usage write from anything the operator acts on", () => {
    const next = ak();
    next.metadata.resourceVersion = "2";
    next.status = { ...next.status, usage: { requests24h: 2 } };
    expect(changedBeyondUsage(ak(), next)).toBe(false);
    const spec = structuredClone(next);
    spec.spec.disabled = true;
    expect(changedBeyondUsage(ak(), spec)).toBe(true);
    const ann = structuredClone(next);
    ann.metadata.annotations = { "keyward.dev/rotate": "1" };
    expect(changedBeyondUsage(ak(), ann)).toBe(true);
    const st = structuredClone(next);
    st.status = { ...st.status, state: "Disabled" };
    expect(changedBeyondUsage(ak(), st)).toBe(true);
    expect(changedBeyondUsage(undefined, next)).toBe(true);
  });

  it("takes a usage write whose usage was dropped on arrival as no change", () => {
    const next = ak();
    next.metadata.resourceVersion = "2";
    next.metadata.managedFields = [{ manager: "keyward-authz", time: new Date() }];
    const { usage: _u, ...status } = next.status ?? {};
    next.status = status;
    const prev = ak();
    prev.status = { state: "Active" };
    expect(changedBeyondUsage(prev, next)).toBe(false);
  });
});
