// Whether keyward is short of CPU now, from one or more sampled signals: its cgroup's CFS
// throttling (cpu-throttle.ts, a pod's limits.cpu hit) and its thread's wait for a CPU
// (run-delay.ts, a node whose CPUs are all busy, limit or not). Analytics sheds its work while
// either says so, so that the CPU goes to checks (ADR 0075, 0076).
// Each signal is read at most once per interval, by the first call after it is due. It counts
// only when two readings in a row show it: a single busy interval is a burst (a batch's write,
// a collection), not a pod out of CPU. Once counted it holds until two readings in a row do not
// show it: a pod at its limit has an interval without pressure now and then, and a write resumed
// in it is itself most of the next one's CPU (ADR 0076).

export interface CpuPressure {
  /** Why the CPU is short at `now` (ms), or undefined when it is not; a signal is read at most once per interval. */
  short(now: number): string | undefined;
  /** How often the signals are read, at most (ms). */
  readonly intervalMs: number;
}

/** One reading of a signal: whether the interval since the last reading was pressed; undefined when unknown. */
export type Reading = () => boolean | undefined;

/**
 * A signal sampled at most once per `intervalMs`: short, for the reason `why`, from a reading that
 * was pressed after one that was too, until a reading that was not after one that was not either.
 */
export function sampledPressure(why: string, reading: Reading, intervalMs: number): CpuPressure {
  if (!(intervalMs > 0)) throw new RangeError(`a CPU pressure interval must be positive, got ${intervalMs}`);
  let nextAt = -Infinity;
  let before = false;
  let short = false;
  return {
    intervalMs,
    short(now) {
      if (now >= nextAt) {
        nextAt = now + intervalMs;
        const pressed = reading() === true;
        short = short ? pressed || before : pressed && before;
        before = pressed;
      }
      return short ? why : undefined;
    },
  };
}

/** Short when any of `signals` is, for the first one's reason; every due signal is read. None: undefined. */
export function anyPressure(signals: CpuPressure[]): CpuPressure | undefined {
  if (signals.length <= 1) return signals[0];
  return {
    intervalMs: Math.min(...signals.map((s) => s.intervalMs)),
    short(now) {
      let why: string | undefined;
      for (const s of signals) {
        const w = s.short(now);
        why ??= w;
      }
      return why;
    },
  };
}
