import { describe, expect, it } from "vitest";
import { Breaker, type BreakerState } from "./breaker.ts";

function breaker(): { b: Breaker; clock: { t: number }; moves: string[] } {
  const clock = { t: 0 };
  const moves: string[] = [];
  const b = new Breaker({
    failures: 3,
    cooldownMs: 1000,
    now: () => clock.t,
    onTransition: (to: BreakerState, from: BreakerState) => moves.push(`${from}>${to}`),
  });
  return { b, clock, moves };
}

describe("Breaker", () => {
  it("opens after the configured failures in a row, not before", () => {
    const { b, moves } = breaker();
    b.failure();
    b.failure();
    b.success();
    b.failure();
    b.failure();
    expect(b.state).toBe("closed");
    b.failure();
    expect(b.state).toBe("open");
    expect(b.allow()).toBe(false);
    expect(moves).toEqual(["closed>open"]);
  });

  it("lets one probe through after the cooldown; its success closes, its failure reopens", () => {
    const { b, clock, moves } = breaker();
    for (let i = 0; i < 3; i++) b.failure();
    clock.t = 999;
    expect(b.allow()).toBe(false);
    clock.t = 1000;
    expect(b.allow()).toBe(true);
    expect(b.allow()).toBe(false); // one probe at a time
    b.failure();
    expect(b.state).toBe("open");
    clock.t = 2000;
    expect(b.allow()).toBe(true);
    b.success();
    expect(b.state).toBe("closed");
    expect(b.allow()).toBe(true);
    expect(moves).toEqual(["closed>open", "open>half_open", "half_open>open", "open>half_open", "half_open>closed"]);
  });
});
