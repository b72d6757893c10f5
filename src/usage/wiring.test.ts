import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import type { ApiKey } from "../api/types.ts";
import type { CheckEvent, UpstreamEvent } from "../check/event.ts";
import { checkEvent, KEY } from "./fixtures.test-support.ts";
import { createUsageMetrics } from "./metrics.ts";
import { alertFired, quotaKeys, usageRecorder } from "./wiring.ts";
import { recordOf } from "../apikeys/record.ts";

describe("quotaKeys", () => {
  it("lists the live ApiKeys with a quota, with their uid and owner, for the alert evaluator", () => {
    const ak = (name: string, quota?: { requests: number; per: "day" | "month" }, uid = `u-${name}`): ApiKey =>
      ({ metadata: { namespace: "ns", name, uid }, spec: { owner: "alice", ...(quota ? { limits: { quota } } : {}) } }) as ApiKey;
    const keys = quotaKeys({ list: () => [ak("a", { requests: 100, per: "day" }), ak("b"), ak("c", { requests: 5, per: "month" }, "")].map((k) => recordOf(k)) });
    expect(keys).toEqual([{ uid: "u-a", namespace: "ns", name: "a", owner: "alice", requests: 100, per: "day" }]);
  });
});

describe("usageRecorder", () => {
  const store = { get: (ns: string, name: string) => (ns === KEY.namespace && name === KEY.name ? recordOf({ metadata: { uid: KEY.uid }, spec: { owner: KEY.owner } } as ApiKey) : undefined) };

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

describe("alertFired", () => {
  it("counts an alert that starts firing, per key under the ApiKey's current key id", async () => {
    const registry = new Registry();
    const metrics = createUsageMetrics(registry, { perKey: true, perKeyMax: 10, pendingKeys: () => 0 });
    const store = { get: (ns: string, name: string) => (ns === "shop" && name === "acme" ? recordOf({ metadata: { uid: "u-1" }, spec: { owner: "alice" }, status: { currentKeyId: "kw_ACME" } } as ApiKey) : undefined) };
    const fired = alertFired(store, metrics);
    fired({ alert: "KeySilent", uid: "u-1", namespace: "shop", name: "acme", owner: "alice", message: "silent" });
    // An ApiKey the watch no longer has: counted, without a per-key series.
    fired({ alert: "KeySilent", uid: "u-2", namespace: "shop", name: "gone", owner: "alice", message: "silent" });
    const text = await registry.metrics();
    expect(text).toContain('keyward_key_alerts_total{key_id="kw_ACME",alert="KeySilent"} 1');
    expect(text).toContain('keyward_usage_alerts_total{alert="KeySilent"} 2');
  });
});
