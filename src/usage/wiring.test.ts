import { describe, expect, it } from "vitest";
import type { ApiKey } from "../api/types.ts";
import type { CheckEvent, UpstreamEvent } from "../check/event.ts";
import { ManualClock } from "../k8s/clock.ts";
import { checkEvent, KEY } from "./fixtures.test-support.ts";
import { alertTicks, usageRecorder } from "./wiring.ts";

describe("alertTicks", () => {
  it("runs the alert checks every interval, goes on after a check that throws, and stops when told", async () => {
    const clock = new ManualClock();
    const errors: unknown[] = [];
    let ticks = 0;
    const stop = alertTicks(clock, { tick: () => { ticks++; if (ticks === 2) throw new Error("bad"); } }, 1000, { error: (_m: string, f?: unknown) => errors.push(f) });
    await clock.advance(999);
    expect(ticks).toBe(0);
    await clock.advance(1);
    await clock.advance(1000);
    await clock.advance(1000);
    expect(ticks).toBe(3);
    expect(errors).toHaveLength(1);
    stop();
    expect(clock.pendingTimers).toBe(0);
    await clock.advance(5000);
    expect(ticks).toBe(3);
  });
});

describe("usageRecorder", () => {
  const store = { get: (ns: string, name: string) => (ns === KEY.namespace && name === KEY.name ? ({ metadata: { uid: KEY.uid }, spec: { owner: KEY.owner } } as ApiKey) : undefined) };

  it("hands a check to the analytics rows, the decision log, the metrics, the flusher and the alerts", () => {
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
      alerts: { observeCheck: () => seen.push("alerts"), observeUpstream: () => undefined },
      ingest: { check: () => seen.push("ingest") },
    });
    r.record(checkEvent(0));
    expect(seen).toEqual(["ingest", "decisionLog", "metrics", "flusher", "alerts"]);
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
