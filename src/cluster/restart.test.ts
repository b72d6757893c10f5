import { describe, expect, it } from "vitest";
import { afterExit, type RestartPolicy } from "./restart.ts";

const policy: RestartPolicy = { backoff: { baseMs: 100, maxMs: 1000 }, stableMs: 60_000, maxFailures: 3 };

describe("afterExit", () => {
  it("restarts at once a worker that served longer than stableMs, and forgets its earlier failures", () => {
    expect(afterExit(policy, { serving: true, servingSince: 0, failures: 2 }, 60_000)).toEqual({ failures: 0, giveUp: false, delayMs: 0 });
  });

  it("backs off, doubling per exit in a row, up to maxMs, for a worker that served briefly", () => {
    const delays = [0, 1, 2, 3, 4, 5].map((failures) => afterExit({ ...policy, maxFailures: 99 }, { serving: true, servingSince: 0, failures }, 1000));
    expect(delays.map((v) => (v.giveUp ? "giveUp" : v.delayMs))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(delays.map((v) => v.failures)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("gives up after maxFailures exits in a row of a worker that never served", () => {
    expect(afterExit(policy, { serving: false, servingSince: 0, failures: 1 }, 0)).toEqual({ failures: 2, giveUp: false, delayMs: 200 });
    expect(afterExit(policy, { serving: false, servingSince: 0, failures: 2 }, 0)).toEqual({ failures: 3, giveUp: true });
  });

  it("does not give up on a worker that served, however often it failed", () => {
    expect(afterExit(policy, { serving: true, servingSince: 0, failures: 10 }, 1).giveUp).toBe(false);
  });
});
