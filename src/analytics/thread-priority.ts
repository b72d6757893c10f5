// The analytics store's threads run below the thread answering checks: each lowers its own
// scheduling priority (its nice value) when it starts. On a saturated CPU the kernel then gives
// the checks their time first and the store what is left; a store that falls behind drops its
// oldest rows, counted (queue.ts), and never slows a check. With spare CPU the nice value
// changes nothing: an idle core runs the store's thread whatever its priority.
//
// Linux schedules threads, so a thread's nice is its own: setpriority(2) on a thread id changes
// that thread alone. Node names no thread id; /proc/thread-self links to /proc/PID/task/TID.
import { readlinkSync } from "node:fs";
import { getPriority, setPriority } from "node:os";

/** The calling thread's kernel id, or undefined where /proc/thread-self does not exist (not Linux). */
export function ownThreadId(): number | undefined {
  let link: string;
  try {
    link = readlinkSync("/proc/thread-self");
  } catch {
    return undefined;
  }
  const tid = Number(/\/task\/(\d+)$/.exec(link)?.[1]);
  return Number.isSafeInteger(tid) && tid > 0 ? tid : undefined;
}

/** Nice values the kernel takes: -20 (first) to 19 (last). */
export const MAX_NICE = 19;

export interface Lowered {
  tid: number;
  /** The nice value the thread runs at now. */
  nice: number;
}

/**
 * Lowers the calling thread's priority to nice `nice` (0–19). Never raises it: a thread already
 * at that nice or beyond (the whole process started with `nice`, say) keeps its own, as raising
 * a priority needs CAP_SYS_NICE. Returns undefined where threads have no id to set it on.
 */
export function lowerOwnPriority(nice: number): Lowered | undefined {
  if (!Number.isInteger(nice) || nice < 0 || nice > MAX_NICE) throw new RangeError(`a thread's nice value is a whole number from 0 to ${MAX_NICE}, got ${nice}`);
  const tid = ownThreadId();
  if (tid === undefined) return undefined;
  const now = getPriority(tid);
  if (now < nice) setPriority(tid, nice);
  return { tid, nice: getPriority(tid) };
}
