// Whether the thread that makes analytics rows waits for a CPU: the share of wall time it spent
// runnable but not running, from its scheduler statistics (/proc/thread-self/schedstat: time on
// the CPU, time waiting on a run queue, both in ns). A pod without a CPU limit is never throttled
// (cpu-throttle.ts), but on a node whose CPUs are all busy its threads queue for them, the checks'
// too, and the CPU a store's writes take is CPU the checks then wait for. Analytics sheds its work
// while that wait is `threshold` of the time or more (ADR 0076, cpu-pressure.ts). Time the thread
// was stopped by its CPU limit is taken out: that is the throttling signal's (cpu-throttle.ts).
// Where the file is missing (not Linux) it never is.
import { performance } from "node:perf_hooks";
import { sampledPressure, type CpuPressure } from "./cpu-pressure.ts";
import { ownThrottledNanos, readText, type ReadText } from "./cpu-throttle.ts";

/** The calling thread's scheduler statistics. */
export const SCHEDSTAT = "/proc/thread-self/schedstat";

/** How often the run queue wait is read, at most (ms). */
export const RUN_DELAY_INTERVAL_MS = 100;

/** The run queue wait (ns) of a schedstat text, its second field; undefined when malformed. */
export function runDelayNanos(text: string | undefined): number | undefined {
  const f = text?.trim().split(/\s+/);
  if (f?.length !== 3) return undefined;
  const n = Number(f[1]);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

export interface RunDelayOptions {
  /** The schedstat reader; default the file system. */
  read?: ReadText;
  /** Wall time (ms); default performance.now. */
  nowMs?: () => number;
  intervalMs?: number;
  /**
   * The process's cgroup's throttled time so far (ns); default its own cgroup's (cpu-throttle.ts).
   * A thread stopped by its CPU limit counts as waiting on the run queue; that time is the
   * throttling signal's, not a full node's, and is taken out.
   */
  throttledNs?: () => number | undefined;
}

/**
 * The thread's run queue sampler: pressed when it waited for a CPU `threshold` of the wall time
 * since the last reading or more, time throttled by its CPU limit aside (short from two such
 * readings in a row, cpu-pressure.ts). It must be called on the thread it measures. A reading is
 * two small file reads (a few µs each).
 */
export function runDelay(threshold: number, o: RunDelayOptions = {}): CpuPressure {
  if (!(threshold > 0 && threshold <= 1)) throw new RangeError(`a run delay threshold must be above 0 and at most 1, got ${threshold}`);
  const read = o.read ?? readText;
  const nowMs = o.nowMs ?? (() => performance.now());
  const throttledNs = o.throttledNs ?? ownThrottledNanos();
  let last: { delayNs: number; throttledNs: number | undefined; atMs: number } | undefined;
  return sampledPressure(
    `keyward waits for a CPU (runnable, not running, ${Number((threshold * 100).toFixed(2))}% of the time or more)`,
    () => {
      const delayNs = runDelayNanos(read(SCHEDSTAT));
      const throttled = throttledNs();
      const atMs = nowMs();
      const before = last;
      last = delayNs === undefined ? undefined : { delayNs, throttledNs: throttled, atMs };
      if (!before || delayNs === undefined || atMs <= before.atMs) return undefined;
      const stoppedNs = throttled !== undefined && before.throttledNs !== undefined ? Math.max(0, throttled - before.throttledNs) : 0;
      return (delayNs - before.delayNs - stoppedNs) / 1e6 / (atMs - before.atMs) >= threshold;
    },
    o.intervalMs ?? RUN_DELAY_INTERVAL_MS,
  );
}
