// The alerts, as conditions over the analytics store: each evaluation asks the
// store (src/analytics/alert-queries.ts) and returns every alert that holds
// now, per key. Firing, cooldown and resolving are the evaluator's.
import { alertKey, type AlertKey } from "../analytics/alert-key.ts";
import type { AlertQueries } from "../analytics/alert-queries.ts";
import { DAY_MS } from "../analytics/days.ts";
import type { Config } from "../config/config.ts";

export const ALERTS = [
  "KeySilent",
  "RateLimitedHigh",
  "UpstreamErrorsHigh",
  "ForbiddenSpike",
  "NewSourceNetwork",
  "NewSourceCountry",
  "KeyDormant",
  "KeyDormantLong",
  "KeyExpiringSoon",
  "QuotaNearlyUsed",
] as const;
export type AlertName = (typeof ALERTS)[number];

/** An alert that holds now on one ApiKey. */
export interface Condition extends AlertKey {
  alert: AlertName;
  message: string;
}

export interface Thresholds {
  silenceMs: number;
  windowMs: number;
  rateLimitedRatio: number;
  upstream5xxRatio: number;
  minRequests: number;
  forbiddenWindowMs: number;
  forbiddenMin: number;
  forbiddenCleanMs: number;
  sourceWindowMs: number;
  sourceHistoryMs: number;
  dormantMs: number;
  dormantLongMs: number;
  expiryWindowMs: number;
  quotaRatio: number;
}

export function thresholds(c: Config): Thresholds {
  return {
    silenceMs: c.usageAlertSilence,
    windowMs: c.usageAlertWindow,
    rateLimitedRatio: c.usageAlertRateLimitedRatio,
    upstream5xxRatio: c.usageAlertUpstream5xxRatio,
    minRequests: c.usageAlertMinRequests,
    forbiddenWindowMs: c.usageAlertForbiddenWindow,
    forbiddenMin: c.usageAlertForbiddenMin,
    forbiddenCleanMs: c.usageAlertForbiddenClean,
    sourceWindowMs: c.usageAlertSourceWindow,
    sourceHistoryMs: c.usageAlertSourceHistory,
    dormantMs: c.usageAlertDormant,
    dormantLongMs: c.usageAlertDormantLong,
    expiryWindowMs: c.usageAlertExpiryWindow,
    quotaRatio: c.usageAlertQuotaRatio,
  };
}

/** A live ApiKey with a quota (from the ApiKey watch: quotas are not in the store). */
export interface QuotaKey extends AlertKey {
  requests: number;
  per: "day" | "month";
}

/** How far back a key must have had traffic to be reported silent. */
export const SILENCE_LOOKBACK_MS = DAY_MS;

const pct = (x: number): string => `${(Math.round(x * 1000) / 10).toString()}%`;
const mins = (ms: number): number => Math.round(ms / 60_000);
const days = (ms: number): number => Math.round(ms / DAY_MS);

function periodStartDay(now: number, per: "day" | "month"): number {
  const d = new Date(now);
  const start = per === "day" ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) : Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  return start / DAY_MS;
}

/** Every alert that holds at `now`. */
export async function conditions(q: AlertQueries, t: Thresholds, now: number, quotas: readonly QuotaKey[]): Promise<Condition[]> {
  const out: Condition[] = [];
  const add = (k: AlertKey, alert: AlertName, message: string): void => {
    out.push({ ...alertKey(k), alert, message });
  };

  for (const w of await q.windowCounts(now - t.windowMs, now + 1)) {
    if (w.requests >= t.minRequests && w.limited / w.requests > t.rateLimitedRatio) {
      add(w, "RateLimitedHigh", `${pct(w.limited / w.requests)} of ${w.requests} requests in the last ${mins(t.windowMs)} minutes were refused with 429 (rate limit or quota); the client needs a higher limit or to slow down.`);
    }
    if (w.upstream >= t.minRequests && w.upstream5xx / w.upstream > t.upstream5xxRatio) {
      add(w, "UpstreamErrorsHigh", `${pct(w.upstream5xx / w.upstream)} of ${w.upstream} upstream answers in the last ${mins(t.windowMs)} minutes were 5xx.`);
    }
  }

  const spikes = (await q.windowCounts(now - t.forbiddenWindowMs, now + 1)).filter((w) => w.forbidden >= t.forbiddenMin);
  if (spikes.length) {
    const before = new Map((await q.windowCounts(now - t.forbiddenWindowMs - t.forbiddenCleanMs, now - t.forbiddenWindowMs)).map((w) => [w.uid, w.forbidden]));
    for (const w of spikes) {
      if ((before.get(w.uid) ?? 0) > 0) continue;
      add(w, "ForbiddenSpike", `${w.forbidden} requests were refused with 403 in the last ${mins(t.forbiddenWindowMs)} minutes, none in the ${mins(t.forbiddenCleanMs)} minutes before; the client may be calling routes its scopes do not cover.`);
    }
  }

  for (const w of await q.windowCounts(now - SILENCE_LOOKBACK_MS, now + 1)) {
    if (w.requests >= t.minRequests && now - w.lastAt >= t.silenceMs) {
      add(w, "KeySilent", `no request for ${mins(now - w.lastAt)} minutes, after ${w.requests} in the day before; an integration may be broken.`);
    }
  }

  const historyFrom = now - t.sourceHistoryMs;
  const since = now - t.sourceWindowMs;
  for (const n of await q.newValues("network", since, historyFrom)) {
    add(n, "NewSourceNetwork", `first request from network ${n.value} in ${days(t.sourceHistoryMs)} days. If this is not a new deployment, the key may have leaked: rotate it.`);
  }
  for (const n of await q.newValues("country", since, historyFrom)) {
    add(n, "NewSourceCountry", `first request from country ${n.value} in ${days(t.sourceHistoryMs)} days. If this is not expected, the key may have leaked: rotate it.`);
  }

  const long = new Set<string>();
  for (const d of await q.dormant(now - t.dormantLongMs)) {
    long.add(d.uid);
    add(d, "KeyDormantLong", `unused for ${days(t.dormantLongMs)} days or more${d.lastUsedAt !== undefined ? ` (last used ${new Date(d.lastUsedAt).toISOString().slice(0, 10)})` : " (never used)"}; revoke it if nobody needs it.`);
  }
  for (const d of await q.dormant(now - t.dormantMs)) {
    if (long.has(d.uid)) continue;
    add(d, "KeyDormant", `unused for ${days(t.dormantMs)} days or more${d.lastUsedAt !== undefined ? ` (last used ${new Date(d.lastUsedAt).toISOString().slice(0, 10)})` : " (never used)"}.`);
  }

  if (t.expiryWindowMs > 0) {
    for (const e of await q.expiring(now, now + t.expiryWindowMs)) {
      add(e, "KeyExpiringSoon", `the key expires at ${new Date(e.expiresAt).toISOString()} (in ${Math.round(((e.expiresAt - now) / DAY_MS) * 10) / 10} days); extend spec.expiresAt or give the client a new key.`);
    }
  }

  for (const per of ["day", "month"] as const) {
    const keys = quotas.filter((k) => k.per === per && k.requests > 0);
    const used = await q.allowedSince(keys.map((k) => k.uid), periodStartDay(now, per));
    for (const k of keys) {
      const n = used.get(k.uid) ?? 0;
      if (n >= t.quotaRatio * k.requests) add(k, "QuotaNearlyUsed", `${n} of ${k.requests} requests of this ${per}'s quota are used (${pct(n / k.requests)}).`);
    }
  }
  return out;
}
