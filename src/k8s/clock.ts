// Time as a dependency. The work queue and the leader elector read the time and
// set timers only through a Clock, so their unit tests drive time by hand
// (ManualClock) instead of sleeping, and production code uses the system clock.

/** The time source and timer facility of a component. */
export interface Clock {
  /** Milliseconds since the epoch: wall time, which may jump when the system clock is set. */
  now(): number;
  /**
   * Milliseconds from an arbitrary origin on a clock that never jumps, for measuring
   * intervals. Absent, now() serves (as in tests, where time only moves by hand).
   */
  monotonic?(): number;
  /** Calls `fn` once after `ms` milliseconds; the returned function cancels the call. */
  setTimer(fn: () => void, ms: number): () => void;
}

/** Node's setTimeout caps delays at 2^31-1 ms (about 24.8 days) and fires at once above it. */
const MAX_TIMEOUT_MS = 2_147_483_647;

/**
 * A system timer. Timers longer than Node's limit are chained, so a rotation scheduled 30 days
 * ahead fires in 30 days rather than immediately. Unreferenced (`unref`), it does not keep the
 * process alive.
 */
function systemTimer(fn: () => void, ms: number, unref: boolean): () => void {
  let handle: ReturnType<typeof setTimeout>;
  const arm = (remaining: number): void => {
    if (remaining > MAX_TIMEOUT_MS) {
      handle = setTimeout(() => {
        arm(remaining - MAX_TIMEOUT_MS);
      }, MAX_TIMEOUT_MS);
    } else {
      handle = setTimeout(fn, Math.max(0, remaining));
    }
    if (unref) handle.unref();
  };
  arm(ms);
  return () => {
    clearTimeout(handle);
  };
}

/** The system clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimer: (fn, ms) => systemTimer(fn, ms, false),
};

/**
 * The system clock for background work (an idle thread's end, retention, an idle compaction):
 * its timers do not keep the process alive.
 */
export const backgroundClock: Clock = {
  ...systemClock,
  setTimer: (fn, ms) => systemTimer(fn, ms, true),
};

interface ManualTimer {
  at: number;
  seq: number;
  fn: () => void;
}

/**
 * A clock for tests: time stands still until `advance` moves it, firing due
 * timers in order and letting promise chains settle after each one.
 */
export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private timers: ManualTimer[] = [];

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimer(fn: () => void, ms: number): () => void {
    const timer: ManualTimer = { at: this.t + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((x) => x !== timer);
    };
  }

  /** Timers set and not yet fired or cancelled. */
  get pendingTimers(): number {
    return this.timers.length;
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await ManualClock.settle();
    for (;;) {
      const next = this.earliest();
      if (!next || next.at > end) break;
      this.timers = this.timers.filter((x) => x !== next);
      this.t = next.at;
      next.fn();
      await ManualClock.settle();
    }
    this.t = end;
    await ManualClock.settle();
  }

  /** Lets pending promise callbacks run (no time passes). */
  static async settle(): Promise<void> {
    for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  }

  private earliest(): ManualTimer | undefined {
    let best: ManualTimer | undefined;
    for (const x of this.timers) if (!best || x.at < best.at || (x.at === best.at && x.seq < best.seq)) best = x;
    return best;
  }
}
