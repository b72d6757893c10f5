// Limits as the check path uses them: parsed once from an ApiKey or a policy's
// defaults, with a stable id so a change of limits starts fresh counters.
import type { Limits } from "../api/types.ts";
import { parseDuration } from "../util/duration.ts";

export interface RateSpec {
  /** Tokens added per millisecond. */
  readonly perMs: number;
  /** Requests per period, as the RateLimit-Limit header shows it. */
  readonly requests: number;
  /** Bucket size. */
  readonly burst: number;
  readonly periodMs: number;
  readonly id: string;
}

export interface QuotaSpec {
  readonly requests: number;
  readonly per: "day" | "month";
  readonly id: string;
}

export interface LimitSpec {
  readonly rate: RateSpec | undefined;
  readonly quota: QuotaSpec | undefined;
}

/** Parses limits; an invalid rate or quota (the CRD prevents them) is dropped and reported through `onInvalid`. */
export function compileLimits(limits: Limits | undefined, onInvalid?: (what: string) => void): LimitSpec {
  let rate: RateSpec | undefined;
  let quota: QuotaSpec | undefined;
  if (limits?.rate) {
    const { requests, per, burst } = limits.rate;
    let periodMs = NaN;
    try {
      periodMs = parseDuration(per);
    } catch {
      /* reported below */
    }
    if (Number.isFinite(periodMs) && periodMs > 0 && requests > 0) {
      const b = Math.max(burst ?? requests, 1);
      rate = { perMs: requests / periodMs, requests, burst: b, periodMs, id: `r${requests}/${periodMs}/${b}` };
    } else onInvalid?.(`rate ${requests}/${per}`);
  }
  if (limits?.quota) {
    const { requests } = limits.quota;
    const per: string = limits.quota.per;
    if (requests > 0 && (per === "day" || per === "month")) quota = { requests, per, id: `q${requests}/${per}` };
    else onInvalid?.(`quota ${requests}/${per}`);
  }
  return { rate, quota };
}

export const NO_LIMITS: LimitSpec = { rate: undefined, quota: undefined };
