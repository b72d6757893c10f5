import { describe, expect, it, vi } from "vitest";
import { FakeWorker } from "./fakes.test-support.ts";
import { emptySlot, type Slot } from "./protocol.ts";
import { stopWorkers } from "./stop.ts";

function pool(...workers: (FakeWorker | undefined)[]) {
  const slots: Slot[] = workers.map((w, i) => ({ ...emptySlot(i), worker: w }));
  const watchers = new Set<() => void>();
  const warned: unknown[] = [];
  const exit = (i: number): void => {
    const s = slots[i];
    if (s) s.worker = undefined;
    for (const f of [...watchers]) f();
  };
  const opts = {
    log: { warn: (_m: string, f?: unknown) => warned.push(f) },
    timeoutMs: 1000,
    onExit: (f: () => void) => {
      watchers.add(f);
      return () => watchers.delete(f);
    },
  };
  return { slots, exit, opts, warned, watchers };
}

describe("stopWorkers", () => {
  it("asks every live worker to stop and resolves once the last has exited, cancelling pending restarts", async () => {
    const a = new FakeWorker(1);
    const b = new FakeWorker(2);
    const p = pool(a, undefined, b);
    const restart = vi.fn();
    const empty = p.slots[1];
    if (empty) empty.timer = setTimeout(restart, 0);
    let done = false;
    const stopping = stopWorkers(p.slots, p.opts).then(() => (done = true));
    expect(a.sent).toEqual([{ kind: "keyward:stop" }]);
    expect(b.sent).toEqual([{ kind: "keyward:stop" }]);
    p.exit(0);
    await Promise.resolve();
    expect(done).toBe(false);
    p.exit(2);
    await stopping;
    expect(p.watchers.size).toBe(0);
    await new Promise((r) => setImmediate(r));
    expect(restart).not.toHaveBeenCalled();
    expect(a.killed).toEqual([]);
  });

  it("kills the workers still running after the timeout", async () => {
    vi.useFakeTimers();
    try {
      const stuck = new FakeWorker(7);
      const p = pool(stuck);
      const stopping = stopWorkers(p.slots, p.opts);
      vi.advanceTimersByTime(999);
      expect(stuck.killed).toEqual([]);
      vi.advanceTimersByTime(1);
      expect(stuck.killed).toEqual(["SIGKILL"]);
      expect(p.warned).toEqual([{ worker: 0, pid: 7 }]);
      p.exit(0);
      await stopping;
    } finally {
      vi.useRealTimers();
    }
  });

  it("sends SIGTERM to a worker whose channel is gone", async () => {
    const gone = new FakeWorker(3, () => {
      throw new Error("channel closed");
    });
    const p = pool(gone);
    const stopping = stopWorkers(p.slots, p.opts);
    expect(gone.killed).toEqual(["SIGTERM"]);
    p.exit(0);
    await stopping;
  });

  it("returns at once with no live worker", async () => {
    await stopWorkers(pool(undefined).slots, pool().opts);
  });
});
