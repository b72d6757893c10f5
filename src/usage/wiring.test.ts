import { describe, expect, it } from "vitest";
import type { ApiKey } from "../api/types.ts";
import type { CheckEvent, UpstreamEvent } from "../check/event.ts";
import { checkEvent, KEY } from "./fixtures.test-support.ts";
import { quotaKeys, usageRecorder } from "./wiring.ts";

describe("quotaKeys", () => {
  it("lists the live ApiKeys with a quota, with their uid and owner, for the alert evaluator", () => {
    const ak = (name: string, quota?: { requests: number; per: "day" | "month" }, uid = `u-${name}`): ApiKey =>
      ({ metadata: { namespace: "ns", name, uid }, spec: { owner: "alice", ...(quota ? { limits: { quota } } : {}) } }) as ApiKey;
    const keys = quotaKeys({ list: () => [ak("a", { requests: 100, per: "day" }), ak("b"), ak("c", { requests: 5, per: "month" }, "")] });
    expect(keys).toEqual([{ uid: "u-a", namespace: "ns", name: "a", owner: "alice", requests: 100, per: "day" }]);
  });
});

describe("usageRecorder", () => {
  const store = { get: (ns: string, name: string) => (ns === KEY.namespace && name === KEY.name ? ({ metadata: { uid: KEY.uid }, spec: { owner: KEY.owner } } as ApiKey) : undefined) };

  it("hands a check to the analytics rows, the decision log, the metrics, and the flusher", () => {
    const seen: string[] = [];
    const r = usageRecorder({
      store,
      metrics: { check: () => seen.push("metrics"), upstream: () => undefined },
      decisionLog: {
        write: () => {
          seen.push("decisionLog");
          return true;
        },
      },
      flusher: { recordCheck: () => seen.push("flusher"), recordUpstream: () => undefined },
      ingest: { check: () => seen.push("ingest") },
    });
    r.record(checkEvent(0));
    expect(seen).toEqual(["ingest", "decisionLog", "metrics", "flusher"]);
    // Without the optional consumers, only the metrics.
    const bare: CheckEvent[] = [];
    usageRecorder({ store, metrics: { check: (e) => bare.push(e), upstream: () => undefined } }).record(checkEvent(1));
    expect(bare).toHaveLength(1);
  });

  it("names an upstream answer's key from the cached ApiKey, and by namespace/name when it is not cached", () => {
    const got: UpstreamEvent[] = [];
    const codes: number[] = [];
    const r = usageRecorder({
      store,
      metrics: { check: () => undefined, upstream: (_k, code) => codes.push(code) },
      flusher: { recordCheck: () => undefined, recordUpstream: (e) => got.push(e) },
    });
    r.recordUpstream(`${KEY.namespace}/${KEY.name}`, KEY.keyId, { at: 1, responseCode: 503 });
    r.recordUpstream("gone/key", "kw_B", { at: 2, responseCode: 200 });
    expect(got.map((e) => e.key)).toEqual([KEY, { namespace: "gone", name: "key", uid: "gone/key", keyId: "kw_B", owner: "" }]);
    expect(codes).toEqual([503, 200]);
  });
});
