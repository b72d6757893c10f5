import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { checkEvent, KEY } from "./fixtures.test-support.ts";
import { createUsageMetrics, OTHER_KEY } from "./metrics.ts";

describe("usage metrics", () => {
  it("has no per-key series unless asked", async () => {
    const registry = new Registry();
    const m = createUsageMetrics(registry, { perKey: false, perKeyMax: 10, pendingKeys: () => 3 });
    m.check(checkEvent(0, { policy: "shop/orders", rule: "read" }));
    const text = await registry.metrics();
    expect(text).not.toContain("keyward_key_requests_total");
    expect(text).toContain('keyward_route_requests_total{policy="shop/orders",rule="read",outcome="allowed"} 1');
    expect(text).toContain("keyward_usage_pending_keys 3");
  });

  it("labels per-key series by key id only and caps them, the rest under _other", async () => {
    const registry = new Registry();
    const m = createUsageMetrics(registry, { perKey: true, perKeyMax: 2, pendingKeys: () => 0 });
    for (const id of ["kw_A", "kw_B", "kw_C", "kw_D", "kw_A"]) m.check(checkEvent(1_800_000_000_000, { key: { ...KEY, keyId: id } }));
    m.upstream("kw_C", 503, 0.02);
    m.alert("KeySilent", "kw_B");
    const text = await registry.metrics();
    expect(m.perKeyIds).toBe(2);
    expect(text).toContain('keyward_key_requests_total{key_id="kw_A",outcome="allowed"} 2');
    expect(text).toContain(`keyward_key_requests_total{key_id="${OTHER_KEY}",outcome="allowed"} 2`);
    expect(text).toContain(`keyward_key_upstream_responses_total{key_id="${OTHER_KEY}",class="5xx"} 1`);
    expect(text).toContain('keyward_upstream_responses_total{class="5xx"} 1');
    expect(text).toContain('keyward_key_alerts_total{key_id="kw_B",alert="KeySilent"} 1');
    const labels = new Set([...text.matchAll(/keyward_key_\w+\{([^}]*)\}/g)].flatMap((x) => (x[1] ?? "").split(",").map((kv) => kv.split("=")[0])));
    expect(text).toContain('keyward_key_last_used_timestamp_seconds{key_id="kw_A"} 1800000000');
    expect(text).toContain('keyward_key_route_requests_total{key_id="kw_A",route="GET /v1/orders"} 2');
    expect([...labels].sort()).toEqual(["alert", "class", "key_id", "outcome", "route"]);
  });
});
