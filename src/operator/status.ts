// Pure helpers for ApiKey status: conditions, key versions, rotation schedule.
// Nothing here talks to the apiserver; times are passed in (milliseconds).
import { parseDuration } from "../util/duration.ts";
import type { ApiKey, ApiKeyState, ApiKeyStatus, Condition, KeyVersion } from "../api/types.ts";

/** Most key versions kept in status (the CRD allows 8). */
export const MAX_KEY_VERSIONS = 8;

export const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

/**
 * Sets a condition the way apimachinery's SetStatusCondition does: lastTransitionTime
 * moves only when the status flips; reason, message and observedGeneration always update.
 */
export function setCondition(conditions: Condition[] | undefined, next: Omit<Condition, "lastTransitionTime">, now: number): Condition[] {
  const list = [...(conditions ?? [])];
  const i = list.findIndex((c) => c.type === next.type);
  const prev = i === -1 ? undefined : list[i];
  const cond: Condition = {
    ...next,
    lastTransitionTime: prev && prev.status === next.status ? prev.lastTransitionTime : iso(now),
  };
  if (i === -1) list.push(cond);
  else list[i] = cond;
  return list;
}

export function activeKey(status: ApiKeyStatus | undefined): KeyVersion | undefined {
  return status?.keys?.find((k) => k.state === "active");
}

/**
 * Replaces the active key with `next`. The previous active key moves to grace until
 * now + graceMs (dropped at once when graceMs is 0); older grace keys stay until
 * their own end. At most MAX_KEY_VERSIONS are kept, newest first.
 */
export function promoteKey(keys: KeyVersion[] | undefined, next: KeyVersion, now: number, graceMs: number): KeyVersion[] {
  const out: KeyVersion[] = [next];
  for (const k of keys ?? []) {
    if (k.hash === next.hash) continue;
    if (k.state === "active") {
      if (graceMs > 0) out.push({ ...k, state: "grace", expiresAt: iso(now + graceMs) });
    } else out.push(k);
  }
  return out.slice(0, MAX_KEY_VERSIONS);
}

/** Drops grace keys whose grace has ended; returns the kept keys and the next grace end (ms), if any. */
export function pruneGrace(keys: KeyVersion[] | undefined, now: number): { keys: KeyVersion[]; nextEnd: number | undefined } {
  let nextEnd: number | undefined;
  const kept = (keys ?? []).filter((k) => {
    if (k.state !== "grace") return true;
    const end = k.expiresAt ? Date.parse(k.expiresAt) : now;
    if (end <= now) return false;
    nextEnd = nextEnd === undefined ? end : Math.min(nextEnd, end);
    return true;
  });
  return { keys: kept, nextEnd };
}

export type RotationReason = "schedule" | "trigger" | "annotation";

/** Why the issued key must rotate now, if it must, and when the next scheduled rotation is. */
export function rotationDue(
  apiKey: ApiKey,
  status: ApiKeyStatus,
  annotation: string | undefined,
  now: number,
): { due: RotationReason | undefined; nextRotationAt: number | undefined } {
  const rotation = apiKey.spec.rotation;
  const active = activeKey(status);
  let nextRotationAt: number | undefined;
  if (rotation?.every && active) {
    const base = Date.parse(status.lastRotationAt ?? active.createdAt ?? iso(now));
    nextRotationAt = base + parseDuration(rotation.every);
  }
  if (!active) return { due: undefined, nextRotationAt };
  if ((rotation?.trigger ?? "") !== (status.observedTrigger ?? "")) return { due: "trigger", nextRotationAt };
  if ((annotation ?? "") !== (status.observedRotateAnnotation ?? "")) return { due: "annotation", nextRotationAt };
  if (nextRotationAt !== undefined && now >= nextRotationAt) return { due: "schedule", nextRotationAt };
  return { due: undefined, nextRotationAt };
}

/** The one-word state shown by kubectl get. */
export function summarizeState(opts: { disabled: boolean; expired: boolean; failed: boolean; keys: KeyVersion[] }): ApiKeyState {
  if (opts.disabled) return "Disabled";
  if (opts.expired) return "Expired";
  if (opts.failed) return "Failed";
  if (!opts.keys.some((k) => k.state === "active")) return "Pending";
  return opts.keys.some((k) => k.state === "grace") ? "Rotating" : "Active";
}

/**
 * Splits the key versions into those this ApiKey may publish and those whose hash another
 * ApiKey holds by an older claim (`takenElsewhere`). activeTaken: the active key was one.
 */
export function withoutTaken(
  keys: KeyVersion[] | undefined,
  takenElsewhere: (v: KeyVersion) => boolean,
): { keys: KeyVersion[]; taken: KeyVersion[]; activeTaken: boolean } {
  const kept: KeyVersion[] = [];
  const taken: KeyVersion[] = [];
  for (const k of keys ?? []) (takenElsewhere(k) ? taken : kept).push(k);
  return { keys: kept, taken, activeTaken: taken.some((k) => k.state === "active") };
}
