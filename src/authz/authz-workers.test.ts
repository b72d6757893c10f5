import { afterEach, describe, expect, it, vi } from "vitest";
import { deny } from "../check/decision.ts";
import { UsageBatcher } from "./authz-workers.ts";

describe("a worker's usage batches", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("sends answered checks to the primary every 100 ms, at once when 512 wait, and on flush", () => {
    vi.useFakeTimers();
    const sent: { usage: { reason: string; path?: string }[] }[] = [];
    const b = new UsageBatcher((m) => sent.push(m), 0);
    const input = { method: "GET", host: "a.example.com", path: "/items/1?api_key=secret", header: () => undefined, peerAddress: "192.0.2.1", forwardedFor: undefined };
    for (let i = 0; i < 3; i++) b.onDecision("grpc", deny("missing_key"), 0.001, input, false);
    expect(sent).toHaveLength(0);
    vi.advanceTimersByTime(100);
    expect(sent.map((m) => m.usage.length)).toEqual([3]);
    // The query string (which can carry a key) never leaves the worker.
    expect(sent[0]?.usage[0]).toMatchObject({ reason: "missing_key", path: "/items/1" });
    for (let i = 0; i < 512; i++) b.onDecision("grpc", deny("missing_key"), 0.001, input, false);
    expect(sent.map((m) => m.usage.length)).toEqual([3, 512]);
    b.onDecision("http", deny("missing_key"), 0.001, input, true);
    b.flush();
    expect(sent.map((m) => m.usage.length)).toEqual([3, 512, 1]);
    expect(sent[2]?.usage[0]).toMatchObject({ reason: "cancelled" });
    b.flush();
    vi.advanceTimersByTime(1000);
    expect(sent).toHaveLength(3);
  });
});
