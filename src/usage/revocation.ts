// Revocation propagation lag: how long after the write that revoked a key a
// watching process learns of it. The write time comes from the newest
// managedFields entry (whole seconds, as the apiserver records it), so the
// figure is an upper bound with one-second resolution.
import type { ApiKey, ApiKeyState, KeyVersion } from "../api/types.ts";
import type { ApiKeyRecord } from "../apikeys/record.ts";
import type { ChangeType } from "../k8s/informer.ts";

/**
 * The key versions a key with these fields accepts, by id. An id is derived from its version's
 * hash (keyIdFromHash), so a version that goes away takes its id with it: the ids tell what the
 * hashes would, and the cache's records need not keep the hashes (ADR 0060).
 */
function acceptedOf(disabled: boolean | undefined, state: ApiKeyState | undefined, keys: readonly Pick<KeyVersion, "id">[] | undefined): Set<string> {
  const out = new Set<string>();
  if (disabled === true || state === "Disabled" || state === "Expired") return out;
  for (const k of keys ?? []) out.add(k.id);
  return out;
}

const accepted = (ak: ApiKey): Set<string> => acceptedOf(ak.spec.disabled, ak.status?.state, ak.status?.keys);

/** When the object was last written, from managedFields (ms), or undefined. */
export function lastWriteMs(ak: ApiKey): number | undefined {
  let best: number | undefined;
  for (const f of ak.metadata.managedFields ?? []) {
    const t = f.time ? Date.parse(f.time instanceof Date ? f.time.toISOString() : String(f.time)) : NaN;
    if (!Number.isNaN(t) && (best === undefined || t > best)) best = t;
  }
  return best;
}

/**
 * Seconds from the revoking write to `now`, when this change takes away a
 * key version that was accepted (disabled, expired, rotated out of grace, deleted);
 * undefined for any other change or when the write time is unknown.
 */
export function revocationLagSeconds(type: ChangeType, next: ApiKey, prev: ApiKeyRecord | undefined, now: number): number | undefined {
  if (type === "add") return undefined;
  const before = prev ? acceptedOf(prev.disabled, prev.state, prev.keys) : type === "delete" ? accepted(next) : new Set<string>();
  if (before.size === 0) return undefined;
  let revoked: boolean;
  let at: number | undefined;
  if (type === "delete") {
    revoked = true;
    const del = next.metadata.deletionTimestamp;
    at = del ? Date.parse(del instanceof Date ? del.toISOString() : String(del)) : undefined;
  } else {
    const after = accepted(next);
    revoked = [...before].some((h) => !after.has(h));
    at = lastWriteMs(next);
  }
  if (!revoked || at === undefined || Number.isNaN(at)) return undefined;
  return Math.max(0, (now - at) / 1000);
}
