import { describe, expect, it } from "vitest";
import { ManualClock } from "./clock.ts";
import { TerminalError, WorkQueue, objectKey, splitKey, type ReconcileResult, type WorkOutcome, type WorkQueueOptions } from "./workqueue.ts";

/** A handler whose runs the test finishes by hand, recording each call. */
class Script {
  readonly calls: { key: string; at: number }[] = [];
  private readonly pending: { key: string; resolve: (r: ReconcileResult | undefined) => void; reject: (e: Error) => void }[] = [];
  running = 0;
  maxRunning = 0;
  private readonly clock: ManualClock;
  constructor(clock: ManualClock) {
    this.clock = clock;
  }
  readonly handler = (key: string): Promise<ReconcileResult | undefined> => {
    this.calls.push({ key, at: this.clock.now() });
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    return new Promise((resolve, reject) => {
      this.pending.push({
        key,
        resolve: (r) => {
          this.running--;
          resolve(r);
        },
        reject: (e: Error) => {
          this.running--;
          reject(e);
        },
      });
    });
  };
  /** Keys whose runs are in progress, in start order. */
  inProgress(): string[] {
    return this.pending.map((p) => p.key);
  }
  async finish(key: string, result?: ReconcileResult): Promise<void> {
    this.takeRun(key).resolve(result);
    await ManualClock.settle();
  }
  async fail(key: string, err: Error = new Error("apiserver unavailable")): Promise<void> {
    this.takeRun(key).reject(err);
    await ManualClock.settle();
  }
  callsOf(key: string): number[] {
    return this.calls.filter((c) => c.key === key).map((c) => c.at);
  }
  private takeRun(key: string): { resolve: (r: ReconcileResult | undefined) => void; reject: (e: Error) => void } {
    const i = this.pending.findIndex((p) => p.key === key);
    if (i === -1) throw new Error(`${key} is not running`);
    const [run] = this.pending.splice(i, 1);
    return run!;
  }
}

function setup(overrides: Partial<WorkQueueOptions> = {}): { clock: ManualClock; script: Script; queue: WorkQueue } {
  const clock = new ManualClock();
  const script = new Script(clock);
  const queue = new WorkQueue({ name: "test", handler: script.handler, workers: 1, retryBaseMs: 100, retryMaxMs: 1000, clock, ...overrides });
  queue.start();
  return { clock, script, queue };
}

describe("work queue", () => {
  it("runs an added key once", async () => {
    const { script, queue } = setup();
    queue.add("ns/a");
    await ManualClock.settle();
    expect(queue.active).toBe(1);
    await script.finish("ns/a");
    expect(script.calls.map((c) => c.key)).toEqual(["ns/a"]);
    expect(queue.active).toBe(0);
    expect(queue.scheduled).toBe(0);
  });

  it("does not queue a key twice while it waits", async () => {
    const { script, queue } = setup();
    queue.add("ns/busy");
    queue.add("ns/a");
    queue.add("ns/a");
    queue.add("ns/a");
    expect(queue.depth).toBe(1);
    await script.finish("ns/busy");
    await script.finish("ns/a");
    expect(script.calls.map((c) => c.key)).toEqual(["ns/busy", "ns/a"]);
    expect(queue.depth).toBe(0);
    expect(queue.active).toBe(0);
  });

  it("never runs one key on two workers, and runs it again after a run during which it was added", async () => {
    const { script, queue } = setup({ workers: 4 });
    queue.add("ns/a");
    await ManualClock.settle();
    queue.add("ns/a");
    queue.add("ns/a");
    await ManualClock.settle();
    expect(script.inProgress()).toEqual(["ns/a"]);
    await script.finish("ns/a");
    expect(script.inProgress()).toEqual(["ns/a"]);
    await script.finish("ns/a");
    expect(script.callsOf("ns/a")).toHaveLength(2);
    expect(queue.active).toBe(0);
  });

  it("handles as many keys at once as it has workers, in the order they were added", async () => {
    const { script, queue } = setup({ workers: 2 });
    for (const k of ["ns/a", "ns/b", "ns/c", "ns/d"]) queue.add(k);
    await ManualClock.settle();
    expect(script.inProgress()).toEqual(["ns/a", "ns/b"]);
    expect(queue.depth).toBe(2);
    await script.finish("ns/b");
    expect(script.inProgress()).toEqual(["ns/a", "ns/c"]);
    await script.finish("ns/a");
    await script.finish("ns/c");
    await script.finish("ns/d");
    expect(script.maxRunning).toBe(2);
    expect(script.calls.map((c) => c.key)).toEqual(["ns/a", "ns/b", "ns/c", "ns/d"]);
  });

  it("waits for start before handing out keys", async () => {
    const clock = new ManualClock();
    const script = new Script(clock);
    const queue = new WorkQueue({ name: "t", handler: script.handler, workers: 1, retryBaseMs: 100, retryMaxMs: 1000, clock });
    queue.add("ns/a");
    await ManualClock.settle();
    expect(script.calls).toHaveLength(0);
    queue.start();
    await ManualClock.settle();
    expect(script.inProgress()).toEqual(["ns/a"]);
  });

  it("retries a failing key with capped exponential backoff and resets it after a success", async () => {
    const { clock, script, queue } = setup({ retryBaseMs: 100, retryMaxMs: 500 });
    const t0 = clock.now();
    queue.add("ns/a");
    await ManualClock.settle();
    for (let i = 0; i < 5; i++) {
      await script.fail("ns/a");
      await clock.advance(1000);
    }
    expect(script.callsOf("ns/a").map((at) => at - t0)).toEqual([0, 100, 1200, 2400, 3500, 4500]);
    expect(queue.failuresOf("ns/a")).toBe(5);
    await script.finish("ns/a");
    expect(queue.failuresOf("ns/a")).toBe(0);
    queue.add("ns/a");
    await ManualClock.settle();
    await script.fail("ns/a");
    await clock.advance(100);
    expect(script.inProgress()).toEqual(["ns/a"]);
  });

  it("keeps the backoff of one key apart from the others", async () => {
    const { clock, script, queue } = setup({ workers: 2 });
    queue.add("ns/bad");
    queue.add("ns/good");
    await ManualClock.settle();
    await script.fail("ns/bad");
    await script.finish("ns/good");
    expect(queue.failuresOf("ns/bad")).toBe(1);
    expect(queue.failuresOf("ns/good")).toBe(0);
    await clock.advance(99);
    expect(script.callsOf("ns/bad")).toHaveLength(1);
    await clock.advance(1);
    expect(script.callsOf("ns/bad")).toHaveLength(2);
  });

  it("does not retry a key that failed with a TerminalError", async () => {
    const { clock, script, queue } = setup();
    queue.add("ns/a");
    await ManualClock.settle();
    await script.fail("ns/a", new TerminalError("spec.keyHash is not a sha256 hash"));
    await clock.advance(60_000);
    expect(script.callsOf("ns/a")).toHaveLength(1);
    expect(queue.scheduled).toBe(0);
    expect(queue.failuresOf("ns/a")).toBe(0);
  });

  it("runs a key again after requeueAfter", async () => {
    const { clock, script, queue } = setup();
    const t0 = clock.now();
    queue.add("ns/a");
    await ManualClock.settle();
    await script.finish("ns/a", { requeueAfter: 5000 });
    expect(queue.scheduled).toBe(1);
    await clock.advance(4999);
    expect(script.callsOf("ns/a")).toHaveLength(1);
    await clock.advance(1);
    expect(script.callsOf("ns/a").map((at) => at - t0)).toEqual([0, 5000]);
  });

  it("keeps the earlier of two timed adds of a key", async () => {
    const { clock, script, queue } = setup();
    const t0 = clock.now();
    queue.addAfter("ns/a", 3000);
    queue.addAfter("ns/a", 8000);
    queue.addAfter("ns/b", 8000);
    queue.addAfter("ns/b", 2000);
    expect(queue.scheduled).toBe(2);
    await clock.advance(2000);
    await script.finish("ns/b");
    await clock.advance(1000);
    await script.finish("ns/a");
    await clock.advance(20_000);
    expect(script.calls.map((c) => [c.key, c.at - t0])).toEqual([
      ["ns/b", 2000],
      ["ns/a", 3000],
    ]);
  });

  it("runs a key at once when it is added while a timed add waits, and drops the timed add", async () => {
    const { clock, script, queue } = setup();
    queue.addAfter("ns/a", 5000);
    queue.add("ns/a");
    await ManualClock.settle();
    expect(script.callsOf("ns/a")).toEqual([clock.now()]);
    await script.finish("ns/a");
    expect(queue.scheduled).toBe(0);
    await clock.advance(10_000);
    expect(script.callsOf("ns/a")).toHaveLength(1);
  });

  it("runs a key in backoff at once when it is added again", async () => {
    const { clock, script, queue } = setup({ retryBaseMs: 10_000, retryMaxMs: 10_000 });
    queue.add("ns/a");
    await ManualClock.settle();
    await script.fail("ns/a");
    await clock.advance(10);
    queue.add("ns/a");
    await ManualClock.settle();
    expect(script.callsOf("ns/a")).toHaveLength(2);
  });

  it("shutdown stops taking work and waits for the runs in progress", async () => {
    const { clock, script, queue } = setup({ workers: 1 });
    queue.add("ns/a");
    queue.add("ns/b");
    queue.addAfter("ns/c", 100);
    await ManualClock.settle();
    let done = false;
    const stopped = queue.shutdown().then(() => {
      done = true;
    });
    await ManualClock.settle();
    expect(done).toBe(false);
    await script.finish("ns/a", { requeueAfter: 10 });
    await stopped;
    expect(done).toBe(true);
    queue.add("ns/d");
    await clock.advance(10_000);
    expect(script.calls.map((c) => c.key)).toEqual(["ns/a"]);
    expect(clock.pendingTimers).toBe(0);
  });

  it("aborts the handlers' signal on shutdown", async () => {
    const clock = new ManualClock();
    let seen: AbortSignal | undefined;
    const queue = new WorkQueue({
      name: "t",
      workers: 1,
      retryBaseMs: 1,
      retryMaxMs: 1,
      clock,
      handler: (_key, { signal }) => {
        seen = signal;
        return new Promise((resolve) => {
          signal.addEventListener("abort", () => {
            resolve(undefined);
          });
        });
      },
    });
    queue.start();
    queue.add("ns/a");
    await ManualClock.settle();
    expect(seen?.aborted).toBe(false);
    await queue.shutdown();
    expect(seen?.aborted).toBe(true);
  });

  it("reports depth, adds, retries, waits and durations to the metrics callbacks", async () => {
    const depths: number[] = [];
    const processed: [number, WorkOutcome][] = [];
    const retried: number[] = [];
    const waited: number[] = [];
    let added = 0;
    const { clock, script, queue } = setup({
      workers: 1,
      metrics: {
        depth: (n) => depths.push(n),
        added: () => added++,
        retried: (ms) => retried.push(ms),
        waited: (ms) => waited.push(ms),
        processed: (ms, outcome) => processed.push([ms, outcome]),
      },
    });
    queue.add("ns/a");
    queue.add("ns/b");
    queue.add("ns/b");
    await clock.advance(30);
    await script.finish("ns/a", { requeueAfter: 1000 });
    await clock.advance(20);
    await script.fail("ns/b");
    await clock.advance(100);
    await script.fail("ns/b", new TerminalError("bad spec"));
    await clock.advance(1000);
    await script.finish("ns/a");
    expect(added).toBe(4);
    expect(retried).toEqual([100]);
    expect(waited).toEqual([0, 30, 0, 0]);
    expect(processed).toEqual([
      [30, "requeue"],
      [20, "error"],
      [0, "terminal"],
      [120, "success"],
    ]);
    // a is taken at once (1 -> 0); b waits behind it (1) until a ends (0).
    expect(depths.slice(0, 4)).toEqual([1, 0, 1, 0]);
    expect(depths.at(-1)).toBe(0);
  });

  it("rejects a configuration without workers or with a base above the maximum", () => {
    const handler = (): Promise<undefined> => Promise.resolve(undefined);
    expect(() => new WorkQueue({ name: "t", handler, workers: 0, retryBaseMs: 1, retryMaxMs: 2 })).toThrow(/workers/);
    expect(() => new WorkQueue({ name: "t", handler, workers: 1, retryBaseMs: 5, retryMaxMs: 2 })).toThrow(/retryBaseMs/);
  });

  it("keys objects by namespace/name and splits the key back", () => {
    expect(objectKey({ metadata: { namespace: "shop", name: "acme" } })).toBe("shop/acme");
    expect(splitKey("shop/acme")).toEqual({ namespace: "shop", name: "acme" });
    expect(splitKey(objectKey({ metadata: { name: "cluster-wide" } }))).toEqual({ namespace: "", name: "cluster-wide" });
  });
});
