import { describe, expect, it } from "vitest";
import type { ApiKey } from "./types.ts";
import { onlyUsageChanged } from "./changes.ts";

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
    expect(onlyUsageChanged(ak(), next)).toBe(true);
    const spec = structuredClone(next);
    spec.spec.disabled = true;
    expect(onlyUsageChanged(ak(), spec)).toBe(false);
    const ann = structuredClone(next);
    ann.metadata.annotations = { "keyward.dev/rotate": "1" };
    expect(onlyUsageChanged(ak(), ann)).toBe(false);
    const st = structuredClone(next);
    st.status = { ...st.status, state: "Disabled" };
    expect(onlyUsageChanged(ak(), st)).toBe(false);
    expect(onlyUsageChanged(ak(), ak())).toBe(false); // a resync: nothing changed at all
    expect(onlyUsageChanged(undefined, next)).toBe(false);
  });
});
