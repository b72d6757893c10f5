// In-memory rate limits and quotas for one authz replica.
//
// rate:  a token bucket per key (size `burst`, refilled at requests/per);
// quota: a counter per key per UTC calendar day or month.
// take() is synchronous, so concurrent checks on the one Node.js thread can
// never both spend the last token. A request is counted only when every limit
// admits it: a request refused by its quota does not spend a rate token, and
// one refused by its rate does not count against the quota.
//
// A ceiling (an ApiKeyPolicy's maximums) is a second set of limits with its own
// counters: a request is admitted only when both admit it, and both are spent.
//
// A restart forgets every bucket and counter: buckets start full and quotas
// start from zero. This is the `memory` limits store, and the local fallback of
// the `redis` store (redis-store.ts), which shares counters across processes.
import type { LimitSpec, QuotaSpec, RateSpec } from "./spec.ts";

export interface LimitVerdict {
  readonly ok: boolean;
  readonly reason: "rate_limited" | "quota_exceeded" | undefined;
  /** The limit that is closest to refusing (for RateLimit-* headers); undefined without limits. */
  readonly limit: number | undefined;
  readonly remaining: number;
  /** Seconds until the limit shown resets (a full token, or the next period). */
  readonly resetSeconds: number;
  /** Seconds a refused caller should wait. */
  readonly retryAfterSeconds: number;
}

export const UNLIMITED: LimitVerdict = { ok: true, reason: undefined, limit: undefined, remaining: 0, resetSeconds: 0, retryAfterSeconds: 0 };

/** The limits a check spends beyond a key's own: a policy's binding maximums (maximums.ts). */
export interface Ceiling {
  readonly subject: string;
  readonly limits: LimitSpec;
}

/**
 * What the check path spends limits through. The memory store answers at once; the
 * redis store answers a Promise for a key with limits, and at once for a key without.
 */
export interface LimitTaker {
  take(subject: string, limits: LimitSpec, nowMs: number, ceiling?: Ceiling): LimitVerdict | Promise<LimitVerdict>;
  /** Drops the local state of a subject (its ApiKey was deleted). */
  forget(subjectPrefix: string): void;
}

/** A refusal by a rate whose bucket holds `tokens` (< 1). */
export function rateRefused(rate: RateSpec, tokens: number): LimitVerdict {
  const secs = Math.max(1, Math.ceil((1 - tokens) / rate.perMs / 1000));
  return { ok: false, reason: "rate_limited", limit: rate.requests, remaining: 0, resetSeconds: secs, retryAfterSeconds: secs };
}

/** A refusal by a quota that is spent until `periodEndMs`. */
export function quotaRefused(quota: QuotaSpec, periodEndMs: number, nowMs: number): LimitVerdict {
  const secs = Math.max(1, Math.ceil((periodEndMs - nowMs) / 1000));
  return { ok: false, reason: "quota_exceeded", limit: quota.requests, remaining: 0, resetSeconds: secs, retryAfterSeconds: secs };
}

/** An admission shown by a rate whose bucket holds `tokens` after the request was spent. */
export function rateAdmitted(rate: RateSpec, tokens: number): LimitVerdict {
  const secs = Math.max(0, Math.ceil((rate.burst - tokens) / rate.perMs / 1000));
  return { ok: true, reason: undefined, limit: rate.requests, remaining: Math.floor(tokens), resetSeconds: secs, retryAfterSeconds: 0 };
}

/** An admission shown by a quota that counted `count` requests this period. */
export function quotaAdmitted(quota: QuotaSpec, count: number, periodEndMs: number, nowMs: number): LimitVerdict {
  const secs = Math.max(0, Math.ceil((periodEndMs - nowMs) / 1000));
  return { ok: true, reason: undefined, limit: quota.requests, remaining: quota.requests - count, resetSeconds: secs, retryAfterSeconds: 0 };
}

interface Bucket {
  tokens: number;
  lastMs: number;
  spec: string;
}

interface Counter {
  periodEndMs: number;
  count: number;
  spec: string;
}

/** Of two admissions, the one with fewer requests left (the first on a tie). */
export function fewestLeft(a: LimitVerdict, b: LimitVerdict): LimitVerdict {
  return a.limit === undefined || b.remaining < a.remaining ? b : a;
}

/** End of the UTC calendar day or month that contains `nowMs`. */
export function periodEnd(nowMs: number, per: "day" | "month"): number {
  const d = new Date(nowMs);
  return per === "day"
    ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1)
    : Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}

export class Limiter implements LimitTaker {
  private readonly buckets = new Map<string, Bucket>();
  private readonly counters = new Map<string, Counter>();

  /** Number of keys with live state, for metrics. */
  get size(): number {
    return Math.max(this.buckets.size, this.counters.size);
  }

  /**
   * Checks and, when admitted, spends one request of `subject`'s limits, and of the
   * ceiling's when there is one.
   */
  take(subject: string, limits: LimitSpec, nowMs: number, ceiling?: Ceiling): LimitVerdict {
    if (ceiling) return this.takeBoth(subject, limits, ceiling.subject, ceiling.limits, nowMs);
    const { rate, quota } = limits;
    if (!rate && !quota) return UNLIMITED;
    let bucket: Bucket | undefined;
    let counter: Counter | undefined;
    if (rate) bucket = this.refill(subject, rate, nowMs);
    if (quota) counter = this.counter(subject, quota, nowMs);
    if (bucket && rate && bucket.tokens < 1) return rateRefused(rate, bucket.tokens);
    if (counter && quota && counter.count >= quota.requests) return quotaRefused(quota, counter.periodEndMs, nowMs);
    if (bucket) bucket.tokens -= 1;
    if (counter) counter.count += 1;
    // Report the limit with the fewest requests left.
    const rateLeft = bucket && rate ? Math.floor(bucket.tokens) : Infinity;
    const quotaLeft = counter && quota ? quota.requests - counter.count : Infinity;
    if (rate && bucket && rateLeft <= quotaLeft) return rateAdmitted(rate, bucket.tokens);
    if (quota && counter) return quotaAdmitted(quota, counter.count, counter.periodEndMs, nowMs);
    return UNLIMITED;
  }

  /** take() with a ceiling: rates are checked before quotas, the key's own before the ceiling's. */
  private takeBoth(subject: string, limits: LimitSpec, capSubject: string, cap: LimitSpec, nowMs: number): LimitVerdict {
    const rates: [Bucket, RateSpec][] = [];
    const quotas: [Counter, QuotaSpec][] = [];
    for (const [s, l] of [
      [subject, limits],
      [capSubject, cap],
    ] as const) {
      if (l.rate) rates.push([this.refill(s, l.rate, nowMs), l.rate]);
    }
    for (const [s, l] of [
      [subject, limits],
      [capSubject, cap],
    ] as const) {
      if (l.quota) quotas.push([this.counter(s, l.quota, nowMs), l.quota]);
    }
    for (const [b, r] of rates) if (b.tokens < 1) return rateRefused(r, b.tokens);
    for (const [c, q] of quotas) if (c.count >= q.requests) return quotaRefused(q, c.periodEndMs, nowMs);
    // Spend everything; report the limit with the fewest requests left.
    let best: LimitVerdict = UNLIMITED;
    for (const [b, r] of rates) {
      b.tokens -= 1;
      best = fewestLeft(best, rateAdmitted(r, b.tokens));
    }
    for (const [c, q] of quotas) {
      c.count += 1;
      best = fewestLeft(best, quotaAdmitted(q, c.count, c.periodEndMs, nowMs));
    }
    return best;
  }

  /** Drops the state of a subject (its ApiKey was deleted). */
  forget(subjectPrefix: string): void {
    for (const k of this.buckets.keys()) if (k.startsWith(subjectPrefix)) this.buckets.delete(k);
    for (const k of this.counters.keys()) if (k.startsWith(subjectPrefix)) this.counters.delete(k);
  }

  private refill(subject: string, rate: RateSpec, nowMs: number): Bucket {
    let b = this.buckets.get(subject);
    if (b?.spec !== rate.id) {
      // New key, or its rate changed: start with a full bucket.
      b = { tokens: rate.burst, lastMs: nowMs, spec: rate.id };
      this.buckets.set(subject, b);
      return b;
    }
    const elapsed = nowMs - b.lastMs;
    if (elapsed > 0) {
      b.tokens = Math.min(rate.burst, b.tokens + elapsed * rate.perMs);
      b.lastMs = nowMs;
    }
    return b;
  }

  private counter(subject: string, quota: QuotaSpec, nowMs: number): Counter {
    let c = this.counters.get(subject);
    if (c?.spec !== quota.id || nowMs >= c.periodEndMs) {
      c = { periodEndMs: periodEnd(nowMs, quota.per), count: 0, spec: quota.id };
      this.counters.set(subject, c);
    }
    return c;
  }
}
