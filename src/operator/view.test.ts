import { describe, expect, it } from "vitest";
import { apiKey, newKey } from "../api/fixtures.test-support.ts";
import { changedBeyondUsage } from "../api/changes.ts";
import { ROTATE_ANNOTATION, type ApiKey } from "../api/types.ts";
import { operatorView } from "./view.ts";

const VERSION = newKey("kw_AAAAAAAA").version;

function delivered(): ApiKey {
  const ak = apiKey("shop", "acme", { scopes: ["orders:read"], rotation: { every: "720h", trigger: "t1" }, secretName: "acme-key" }, [{ ...VERSION }], { tier: "pro" });
  ak.metadata.resourceVersion = "42";
  ak.metadata.generation = 3;
  ak.metadata.creationTimestamp = new Date("2026-01-01T00:00:00Z");
  ak.metadata.finalizers = ["x"];
  ak.metadata.annotations = { [ROTATE_ANNOTATION]: "2026-01-05", "kubectl.kubernetes.io/last-applied-configuration": "{}".repeat(500) };
  ak.metadata.managedFields = [{ manager: "kubectl", operation: "Update", time: new Date(), fieldsType: "FieldsV1", fieldsV1: { "f:spec": {} } }];
  ak.status = {
    ...ak.status,
    observedGeneration: 3,
    currentKeyId: "kw_AAAAAAAA",
    secretName: "acme-key",
    observedTrigger: "t1",
    conditions: [{ type: "Ready", status: "True", reason: "Issued", message: "key issued", lastTransitionTime: "2026-01-01T00:00:00Z" }],
    usage: { requests24h: 7 },
  };
  return ak;
}

describe("the operator's view of an ApiKey", () => {
  it("drops managedFields, status.usage and other tools' annotations, and keeps everything else", () => {
    const ak = delivered();
    const v = operatorView(ak);
    const { managedFields: _m, annotations: _a, ...metadata } = ak.metadata;
    const { usage: _u, ...status } = ak.status ?? {};
    expect(v).toEqual({ ...ak, metadata: { ...metadata, annotations: { [ROTATE_ANNOTATION]: "2026-01-05" } }, status });
  });

  it("keeps no annotations when the rotate annotation is absent", () => {
    const ak = delivered();
    ak.metadata.annotations = { other: "x" };
    expect(operatorView(ak).metadata.annotations).toBeUndefined();
  });

  it("a usage write is no change to the operator once viewed, a status or rotate change is", () => {
    const prev = delivered();
    const usage = delivered();
    usage.metadata.resourceVersion = "43";
    usage.status = { ...usage.status, usage: { requests24h: 8 } };
    expect(changedBeyondUsage(operatorView(prev), operatorView(usage))).toBe(false);
    const rotate = delivered();
    rotate.metadata.annotations = { ...rotate.metadata.annotations, [ROTATE_ANNOTATION]: "2026-01-06" };
    expect(changedBeyondUsage(operatorView(prev), operatorView(rotate))).toBe(true);
    const state = delivered();
    state.status = { ...state.status, state: "Disabled" };
    expect(changedBeyondUsage(operatorView(prev), operatorView(state))).toBe(true);
  });
});
