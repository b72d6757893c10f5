import { describe, expect, it } from "vitest";
import { ManualClock } from "../k8s/clock.ts";
import { compactWhenIdle } from "./idle-heap.ts";

describe("the heap compacted once a process has gone idle (ADR 72)", () => {
  const setup = (idleMs = 60_000) => {
    const clock = new ManualClock();
    let checks = 0;
    const compacted: number[] = [];
    const idle = compactWhenIdle({
      idleMs,
      activity: () => checks,
      compact: () => {
        compacted.push(clock.now());
        return Promise.resolve(true);
      },
      clock,
    });
    return {
      clock,
      idle,
      compacted,
      check: (): void => {
        checks++;
      },
    };
  };

  it("compacts once after a whole idle period following start-up, and not again while idle", async () => {
    const { clock, idle, compacted } = setup();
    const t0 = clock.now();
    await clock.advance(59_999);
    expect(compacted).toEqual([]);
    await clock.advance(1);
    expect(compacted).toEqual([t0 + 60_000]);
    await clock.advance(10 * 60_000);
    expect(idle.compactions).toBe(1);
  });

  it("never compacts while checks keep coming, and compacts once within two idle periods after the last", async () => {
    const { clock, compacted, check } = setup();
    const t0 = clock.now();
    for (let i = 0; i < 30; i++) {
      check();
      await clock.advance(20_000);
    }
    expect(compacted).toEqual([]);
    const last = clock.now() - 20_000;
    await clock.advance(120_000);
    expect(compacted).toHaveLength(1);
    expect(compacted[0]! - last).toBeGreaterThanOrEqual(60_000);
    expect(compacted[0]! - last).toBeLessThanOrEqual(120_000);
    expect(compacted[0]! - t0).toBe(660_000);
    // A new busy spell, then idle: one more.
    check();
    await clock.advance(180_000);
    expect(compacted).toHaveLength(2);
  });

  it("with 0, never compacts", async () => {
    const { clock, compacted } = setup(0);
    await clock.advance(3_600_000);
    expect(compacted).toEqual([]);
    expect(clock.pendingTimers).toBe(0);
  });

  it("tries again after the next busy spell when a compaction fails, and stops when asked", async () => {
    const clock = new ManualClock();
    let checks = 0;
    const errors: unknown[] = [];
    let fail = true;
    const idle = compactWhenIdle({
      idleMs: 1_000,
      activity: () => checks,
      compact: () => (fail ? Promise.reject(new Error("no inspector")) : Promise.resolve(true)),
      clock,
      onError: (err) => errors.push(err),
    });
    await clock.advance(1_000);
    expect(errors).toHaveLength(1);
    fail = false;
    await clock.advance(1_000);
    expect(idle.compactions).toBe(1);
    idle.stop();
    checks++;
    await clock.advance(10_000);
    expect(idle.compactions).toBe(1);
    expect(clock.pendingTimers).toBe(0);
  });
});

describe("keyward_heap_idle_compaction_seconds", () => {
  it("counts the compactions, and how long they took, in the registry given", async () => {
    const { Registry } = await import("prom-client");
    const registry = new Registry();
    const clock = new ManualClock();
    compactWhenIdle({ idleMs: 1_000, activity: () => 0, compact: () => Promise.resolve(true), clock, registry });
    await clock.advance(5_000);
    const text = await registry.getSingleMetricAsString("keyward_heap_idle_compaction_seconds");
    expect(text).toMatch(/^keyward_heap_idle_compaction_seconds_count 1$/m);
    expect(text).toMatch(/^keyward_heap_idle_compaction_seconds_bucket\{le="1"\} 1$/m);
  });
});
