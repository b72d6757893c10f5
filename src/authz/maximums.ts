// The limits a check spends: the key's own limits, each kind falling back to the
// policy's defaults, held under the policy's maximums (spec.maximums).
//
// A maximum binds a key when the key's limit of that kind is larger, or absent:
//  - rate: larger when it refills faster (requests per period, compared per
//    millisecond, so 120/1m is larger than 1/1s) or allows a larger burst;
//  - quota: larger when it can admit more requests within one period of the
//    maximum. Same period: more requests. A day quota against a month maximum:
//    31 days of it exceed the maximum. A month quota against a day maximum: it
//    exceeds the maximum (all of it may be spent in one day).
// A binding maximum is counted in addition to the key's own limit, per key and
// policy, so a request passes only when both admit it: the key never gets more
// than its own limit (counted across policies as before) nor more than the
// maximum through this policy. The decision metadata names the capped kinds.
import type { KeyEntry } from "../index/keys.ts";
import type { LimitSpec, QuotaSpec, RateSpec } from "../limits/spec.ts";
import type { CompiledPolicy } from "../policy/policy.ts";

export type CappedKind = "rate" | "quota";

export interface EffectiveLimits {
  /** The key's own limits, each kind falling back to the policy's defaults. */
  readonly limits: LimitSpec;
  /** Names the counters of `limits`. */
  readonly subject: string;
  /** The policy's maximums that bind this key, counted apart; undefined when none does. */
  readonly ceiling: { readonly subject: string; readonly limits: LimitSpec } | undefined;
  /** The kinds a maximum binds, for the decision metadata. */
  readonly capped: readonly CappedKind[];
}

/** The most days a month quota's period has. */
const LONGEST_MONTH_DAYS = 31;

export function rateLarger(own: RateSpec | undefined, max: RateSpec): boolean {
  return own === undefined || own.perMs > max.perMs || own.burst > max.burst;
}

export function quotaLarger(own: QuotaSpec | undefined, max: QuotaSpec): boolean {
  if (own === undefined) return true;
  if (own.per === max.per) return own.requests > max.requests;
  if (own.per === "day") return own.requests * LONGEST_MONTH_DAYS > max.requests;
  return own.requests > max.requests;
}

const NO_CAP: readonly CappedKind[] = [];
const memo = new WeakMap<CompiledPolicy, WeakMap<KeyEntry, EffectiveLimits>>();

function compute(entry: KeyEntry, policy: CompiledPolicy): EffectiveLimits {
  const own = entry.record.limits;
  const def = policy.defaults;
  const uid = entry.record.uid;
  const ownOnly = (own.rate || !def.rate) && (own.quota || !def.quota);
  const limits: LimitSpec = ownOnly ? own : { rate: own.rate ?? def.rate, quota: own.quota ?? def.quota };
  const subject = ownOnly ? `${uid}|` : `${uid}|${policy.ref}`;
  const max = policy.maximums;
  const rate = max.rate && rateLarger(limits.rate, max.rate) ? max.rate : undefined;
  const quota = max.quota && quotaLarger(limits.quota, max.quota) ? max.quota : undefined;
  if (!rate && !quota) return { limits, subject, ceiling: undefined, capped: NO_CAP };
  const capped: CappedKind[] = [];
  if (rate) capped.push("rate");
  if (quota) capped.push("quota");
  return { limits, subject, ceiling: { subject: `${uid}|${policy.ref}|max`, limits: { rate, quota } }, capped };
}

/**
 * The limits of `entry` under `policy`. Remembered per policy and key entry: a watch
 * event replaces the entry, a policy event recompiles the policy, so nothing stale is used.
 */
export function effectiveLimits(entry: KeyEntry, policy: CompiledPolicy): EffectiveLimits {
  let byEntry = memo.get(policy);
  if (!byEntry) memo.set(policy, (byEntry = new WeakMap()));
  let e = byEntry.get(entry);
  if (!e) byEntry.set(entry, (e = compute(entry, policy)));
  return e;
}
