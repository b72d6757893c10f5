// The worker pool's restart policy: after a worker exits, restart its slot at
// once, later (backoff), or give up. Pure: the pool applies the verdict.

export interface RestartPolicy {
  /** Restart delay after an exit: baseMs, doubled per exit in a row, at most maxMs. */
  backoff: { baseMs: number; maxMs: number };
  /** A worker that served this long before it exited resets its slot's backoff. */
  stableMs: number;
  /** Exits in a row of one slot before serving again, after which the pool gives up. */
  maxFailures: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = { backoff: { baseMs: 500, maxMs: 30_000 }, stableMs: 60_000, maxFailures: 5 };

/** The slot's exits in a row after this one, and whether to restart it (after delayMs) or give up. */
export type ExitVerdict = { failures: number; giveUp: true } | { failures: number; giveUp: false; delayMs: number };

/** The verdict on an exit of a worker that was `serving` (since `servingSince`) after `failures` exits in a row. */
export function afterExit(policy: RestartPolicy, slot: { serving: boolean; servingSince: number; failures: number }, now: number): ExitVerdict {
  const failures = slot.serving && now - slot.servingSince >= policy.stableMs ? 0 : slot.failures + 1;
  if (!slot.serving && failures >= policy.maxFailures) return { failures, giveUp: true };
  const delayMs = failures === 0 ? 0 : Math.min(policy.backoff.maxMs, policy.backoff.baseMs * 2 ** (failures - 1));
  return { failures, giveUp: false, delayMs };
}
