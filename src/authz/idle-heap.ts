// The heap compacted once a process has gone idle (ADR 0072).
//
// V8 has a memory reducer for this: once a thread's allocation rate falls, it runs collections
// that compact the old generation and shrink the young one, and hands the freed pages back. It
// measures the rate only at collections, so a thread that goes idle after a busy spell (the
// start's key records, a burst of checks) makes no more collections, keeps the busy rate as its
// last sample, and never reduces: the garbage of the spell stays resident for as long as the
// process idles (docs/benchmarks.md, "V8 never collects an idle thread"). This does what the
// reducer would have done, once per idle spell: when a whole period has passed without
// activity, after some activity since the last compaction.
import { Histogram, type Registry } from "prom-client";
import { backgroundClock, type Clock } from "../k8s/clock.ts";

export interface IdleCompactionOptions {
  /** How long without activity before the heap is compacted (ms); 0 never compacts. */
  idleMs: number;
  /** A count that grows with the work the process does (checks answered). */
  activity: () => number;
  /** Collects and compacts the heap (src/util/heap.ts). */
  compact: () => Promise<unknown>;
  /** Its timer. Default: the system clock's, which does not keep the process alive. */
  clock?: Pick<Clock, "setTimer">;
  /** A compaction that failed (it is tried again after the next busy spell). */
  onError?: (err: unknown) => void;
  /** Where `keyward_heap_idle_compaction_seconds` is registered, if anywhere. */
  registry?: Registry;
}

export interface IdleCompaction {
  /** Compactions run so far. */
  readonly compactions: number;
  stop(): void;
}

/**
 * Checks every `idleMs` whether `activity()` moved since the last check: when it did not, and it
 * had since the last compaction (or since the start: start-up is a busy spell), compacts once.
 * So the heap is compacted between one and two idle periods after the last activity, once.
 */
export function compactWhenIdle(o: IdleCompactionOptions): IdleCompaction {
  const clock = o.clock ?? backgroundClock;
  let seen = o.activity();
  let busy = true;
  let stopped = false;
  let compactions = 0;
  let cancel: (() => void) | undefined;
  const seconds = o.registry
    ? new Histogram({
        name: "keyward_heap_idle_compaction_seconds",
        help: "Heap compactions once the process was idle after a busy spell (--compact-heap-after-idle), by how long each paused the thread",
        buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
        registers: [o.registry],
      })
    : undefined;
  const tick = async (): Promise<void> => {
    cancel = undefined;
    const now = o.activity();
    if (now !== seen) {
      seen = now;
      busy = true;
    } else if (busy) {
      busy = false;
      try {
        const t0 = performance.now();
        await o.compact();
        compactions++;
        seconds?.observe((performance.now() - t0) / 1000);
      } catch (err) {
        busy = true;
        o.onError?.(err);
      }
      // What the compaction itself counted is not activity.
      seen = o.activity();
    }
    if (!stopped) cancel = clock.setTimer(() => void tick(), o.idleMs);
  };
  if (o.idleMs > 0) cancel = clock.setTimer(() => void tick(), o.idleMs);
  return {
    get compactions() {
      return compactions;
    },
    stop: () => {
      stopped = true;
      cancel?.();
      cancel = undefined;
    },
  };
}
