import { describe, expect, it } from "vitest";
import type { CheckEvent } from "../check/event.ts";
import { DecisionLog } from "./decisionlog.ts";

const event = (more: Partial<CheckEvent> = {}): CheckEvent => ({
  at: Date.UTC(2026, 10, 23, 12),
  key: { namespace: "shop", name: "acme", uid: "u", keyId: "kw_AbCdEfGh", owner: "acme" },
  outcome: "allowed",
  reason: "ok",
  status: 200,
  front: "grpc",
  policy: "shop/orders",
  rule: "read",
  route: "GET /v1/orders/*",
  method: "GET",
  host: "orders.example.com",
  path: "/v1/orders/42",
  source: "203.0.113.9",
  latencySeconds: 0.000412,
  ...more,
});

describe("decision log", () => {
  it("writes one JSON line per check with every field the pipeline needs", () => {
    const lines: string[] = [];
    new DecisionLog({ sink: (l) => lines.push(l), sampleAllowed: 1, sampleDenied: 1 }).write(event());
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] ?? "")).toEqual({
      ts: "2026-11-23T12:00:00.000Z",
      msg: "decision",
      key_id: "kw_AbCdEfGh",
      owner: "acme",
      apikey: "shop/acme",
      policy: "shop/orders",
      rule: "read",
      route: "GET /v1/orders/*",
      method: "GET",
      host: "orders.example.com",
      path: "/v1/orders/42",
      decision: "allowed",
      reason: "ok",
      status: 200,
      latency_ms: 0.412,
      source: "203.0.113.9",
      front: "grpc",
    });
  });

  it("clips request fields the caller chose to 256 characters", () => {
    const lines: string[] = [];
    new DecisionLog({ sink: (l) => lines.push(l), sampleAllowed: 1, sampleDenied: 1 }).write(event({ path: `/${"a".repeat(10_000)}`, host: "h".repeat(300) }));
    const rec = JSON.parse(lines[0] ?? "") as { path: string; host: string };
    expect(rec.path).toHaveLength(259);
    expect(rec.host.endsWith("...")).toBe(true);
  });

  it("samples allowed and denied decisions separately and says so on the line", () => {
    const lines: string[] = [];
    let r = 0;
    const seq = [0.05, 0.5, 0.95];
    const log = new DecisionLog({ sink: (l) => lines.push(l), sampleAllowed: 0.1, sampleDenied: 1, random: () => seq[r++ % 3] ?? 0 });
    for (let i = 0; i < 3; i++) log.write(event());
    log.write(event({ outcome: "forbidden", reason: "scope_missing", status: 403 }));
    expect(lines.map((l) => (JSON.parse(l) as { decision: string; sample_rate?: number }))).toEqual([
      expect.objectContaining({ decision: "allowed", sample_rate: 0.1 }),
      expect.objectContaining({ decision: "forbidden" }),
    ]);
    const off = new DecisionLog({ sink: (l) => lines.push(l), sampleAllowed: 0, sampleDenied: 0 });
    expect(off.write(event())).toBe(false);
  });
});
