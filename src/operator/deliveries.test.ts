import { describe, expect, it } from "vitest";
import { KubeApiError } from "../k8s/rest.ts";
import { InFlightDeliveries, outcomeUnknown } from "./deliveries.ts";

const d = { key: "kw_x", keyId: "kw_id", events: [] };

describe("in-flight deliveries", () => {
  it("holds a key until it is settled", () => {
    const held = new InFlightDeliveries({ now: () => 0 });
    held.hold("u", "h", d);
    expect(held.pending("u", "h")?.keyId).toBe("kw_id");
    expect(held.pending("u", "other")).toBeUndefined();
    expect(held.pending("other", "h")).toBeUndefined();
    held.settle("u", "h");
    expect(held.pending("u", "h")).toBeUndefined();
    expect(held.size).toBe(0);
  });

  it("lets a key go after the time any write of it could still land, and drops it on the next hold", () => {
    let now = 0;
    const held = new InFlightDeliveries({ now: () => now, ttlMs: 1000 });
    held.hold("u", "h", d);
    now = 999;
    expect(held.pending("u", "h")).toBeDefined();
    now = 1000;
    expect(held.pending("u", "h")).toBeUndefined();
    held.hold("v", "h", d);
    expect(held.size).toBe(1);
  });

  it("counts a failure as unknown only when the write may have been stored", () => {
    expect(outcomeUnknown(new KubeApiError(0, "", "timed out"))).toBe(true);
    expect(outcomeUnknown(new KubeApiError(504, "Timeout", "gateway timeout"))).toBe(true);
    expect(outcomeUnknown(new Error("socket hang up"))).toBe(true);
    expect(outcomeUnknown(new KubeApiError(409, "Conflict", "modified"))).toBe(false);
    expect(outcomeUnknown(new KubeApiError(422, "Invalid", "invalid"))).toBe(false);
    expect(outcomeUnknown(new KubeApiError(429, "TooManyRequests", "slow down"))).toBe(false);
  });
});
