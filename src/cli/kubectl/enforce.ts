// When a rotation or a revocation is in force, read from what the operator
// reports in the ApiKey's status, and the poll that waits for it.
import type { ApiKey, Condition } from "../../api/types.ts";
import { KeywardError } from "../../errors.ts";
import { formatDuration } from "../../util/duration.ts";

export const readyOf = (ak: ApiKey): Condition | undefined => ak.status?.conditions?.find((c) => c.type === "Ready");

/** What a wait sees at one poll: done, failed (the operator reports a failure), or not yet (with what it shows). */
export type Progress = { done: true } | { done: false; failed?: string; showing: string };

/** Reasons of Ready=False that a wait should not sit through: the operator needs the user to act. */
const FAILURES = new Set(["SecretConflict", "SecretNotFound", "SecretKeyMissing", "WeakKey", "HashConflict"]);

const showing = (ak: ApiKey): string => {
  const ready = readyOf(ak);
  return `the ApiKey shows state ${ak.status?.state ?? "none"}, Ready ${ready ? `${ready.status} (${ready.reason})` : "not reported"}`;
};

const failure = (ak: ApiKey): string | undefined => {
  const ready = readyOf(ak);
  return ready?.status === "False" && FAILURES.has(ready.reason) ? `${ready.reason}: ${ready.message}` : undefined;
};

/**
 * A rotation asked for with annotation value `asked` is in force once the operator has observed that
 * value and reports a different active key than `previousKeyId`, with Ready=True.
 */
export function rotationProgress(ak: ApiKey, asked: string, previousKeyId: string | undefined): Progress {
  const st = ak.status;
  const active = st?.keys?.find((k) => k.state === "active");
  if (st?.observedRotateAnnotation === asked && active && active.id !== previousKeyId && readyOf(ak)?.status === "True") return { done: true };
  const failed = failure(ak);
  return { done: false, showing: showing(ak), ...(failed ? { failed } : {}) };
}

/** A revocation written at `generation` is in force once the operator reports state Disabled for that generation or a later one. */
export function revocationProgress(ak: ApiKey, generation: number): Progress {
  const st = ak.status;
  if (st?.state === "Disabled" && (st.observedGeneration ?? 0) >= generation) return { done: true };
  return { done: false, showing: showing(ak) };
}

/** Polls `read` until `check` reports done; throws on a reported failure or after `timeoutMs`. */
export async function waitUntil<T>(
  read: () => Promise<T>,
  check: (seen: T) => Progress,
  opts: { timeoutMs: number; what: string; intervalMs?: number; now?: () => number },
): Promise<T> {
  const now = opts.now ?? Date.now;
  const deadline = now() + opts.timeoutMs;
  for (;;) {
    const seen = await read();
    const p = check(seen);
    if (p.done) return seen;
    if (p.failed) throw new KeywardError("ReconcileTerminal", `${opts.what}: the operator reports ${p.failed}`);
    if (now() >= deadline) {
      throw new KeywardError(
        "Timeout",
        `${opts.what}: not done within ${formatDuration(opts.timeoutMs)} (${p.showing}); is the keyward operator running and watching this namespace?`,
      );
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 250));
  }
}
