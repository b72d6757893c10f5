// Who owns a key hash that more than one ApiKey claims. The operator (which refuses
// the newer claim) and the data plane's index (which gives the hash to the older
// claim whatever order the watch delivers them in) use this one rule.
//
// A claim's age is when the hash entered that ApiKey's status.keys (the version's
// createdAt, written by the operator), not when the ApiKey was created: keyHash can
// be edited, so an old ApiKey edited to declare someone else's hash makes a new claim.
// Without createdAt, metadata.creationTimestamp stands in; without both, the claim is
// the newest. Equal ages (the same second) are ordered by the ApiKeys' uids, which the
// apiserver picks at random, rather than by names a tenant chooses; one claim always wins.
import type { ApiKey, KeyVersion } from "./types.ts";

/** Claim ages are whole seconds from this instant (so they stay small integers). */
const EPOCH_MS = Date.UTC(2020, 0, 1);
/** The range of a small integer in every V8 build: an entry keeps its age without a boxed number. */
const OLDEST = -(2 ** 30);
/** The age of a claim with no time: newer than any dated claim. */
export const NEWEST_CLAIM = 2 ** 30 - 1;

function timeMs(t: string | Date | undefined): number {
  if (t instanceof Date) return t.getTime();
  return typeof t === "string" ? Date.parse(t) : Number.NaN;
}

/**
 * The age of one ApiKey's claim on the hash of `version`: a small integer, lower is
 * older. Times before 1986 or after 2054 are clamped (and then ordered by name).
 */
export function claimAge(version: Pick<KeyVersion, "createdAt">, creationTimestamp: string | Date | undefined): number {
  let ms = timeMs(version.createdAt);
  if (Number.isNaN(ms)) ms = timeMs(creationTimestamp);
  if (Number.isNaN(ms)) return NEWEST_CLAIM;
  return Math.min(NEWEST_CLAIM, Math.max(OLDEST, Math.floor((ms - EPOCH_MS) / 1000)));
}

export interface Claim {
  /** `namespace/name` of the ApiKey. */
  readonly ref: string;
  /** metadata.uid of the ApiKey (its ref when it has none). */
  readonly uid: string;
  /** claimAge() of its claim. */
  readonly age: number;
}

/** One ApiKey's claim on the hash of one of its status versions. */
export function claimOf(apiKey: ApiKey, version: Pick<KeyVersion, "createdAt">): Claim {
  const ref = `${apiKey.metadata.namespace}/${apiKey.metadata.name}`;
  return { ref, uid: apiKey.metadata.uid ?? ref, age: claimAge(version, apiKey.metadata.creationTimestamp) };
}

/** True when claim `a` is older than claim `b` (and so owns the hash over it). */
export function olderClaim(a: Claim, b: Claim): boolean {
  if (a.age !== b.age) return a.age < b.age;
  return a.uid !== b.uid ? a.uid < b.uid : a.ref < b.ref;
}
