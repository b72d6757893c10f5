// Usage as it is kept in ApiKey status.usage, and the pure arithmetic on it:
// a KeyDelta collects what one process saw since its last flush; mergeUsage
// adds a delta to the stored usage and drops whatever fell out of its window.
// Adding is commutative, so several ext_authz replicas each add their own
// deltas and the totals come out right.
import type { DailyUsage, UsageStatus } from "../api/types.ts";
import type { CheckEvent, KeyRef, UpstreamEvent } from "../check/event.ts";

export const DAILY_DAYS = 30;
export const HOURLY_HOURS = 24;
/** Route counts one delta keeps per key before lumping the rest into "other". */
const MAX_DELTA_ROUTES = 200;
const OTHER_ROUTE = "other";
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

export type DailyCounter = Exclude<keyof DailyUsage, "date">;
const DAILY_COUNTERS: readonly DailyCounter[] = [
  "allowed",
  "unauthenticated",
  "forbidden",
  "invalid",
  "limited",
  "error",
  "upstream2xx",
  "upstream3xx",
  "upstream4xx",
  "upstream5xx",
];

export interface KeyDelta {
  key: KeyRef;
  /** ms; 0 when the delta holds only upstream answers. */
  lastUsedAt: number;
  versions: Map<string, number>;
  daily: Map<string, Partial<Record<DailyCounter, number>>>;
  /** hour start (ms) -> requests checked. */
  hourly: Map<number, number>;
  /** `<per>|<period start ISO>` -> allowed requests. */
  periodAllowed: Map<string, number>;
  /** month start ISO -> route -> requests. */
  routes: Map<string, Map<string, number>>;
}

export const isoDate = (ms: number): string => new Date(ms).toISOString().slice(0, 10);
const iso = (ms: number): string => new Date(ms).toISOString().replace(".000Z", "Z");
const hourStart = (ms: number): number => Math.floor(ms / HOUR) * HOUR;

/** Start of the UTC day or month that contains `ms`. */
export function periodStart(ms: number, per: "day" | "month"): number {
  const d = new Date(ms);
  return per === "day" ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) : Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

export function newDelta(key: KeyRef): KeyDelta {
  return { key, lastUsedAt: 0, versions: new Map(), daily: new Map(), hourly: new Map(), periodAllowed: new Map(), routes: new Map() };
}

/** The UTC day of `at` and the starts of its day and month, as stored; cached, since every check asks. */
interface DayInfo {
  index: number;
  date: string;
  dayStart: string;
  monthStart: string;
}
let lastDay: DayInfo | undefined;
function dayInfo(at: number): DayInfo {
  const index = Math.floor(at / DAY);
  if (lastDay?.index !== index) {
    lastDay = { index, date: isoDate(at), dayStart: iso(index * DAY), monthStart: iso(periodStart(at, "month")) };
  }
  return lastDay;
}

function bump(d: KeyDelta, at: number, counter: DailyCounter): void {
  const date = dayInfo(at).date;
  let c = d.daily.get(date);
  if (!c) d.daily.set(date, (c = {}));
  c[counter] = (c[counter] ?? 0) + 1;
}

/** Adds one check of this key to the delta. Cancelled checks count nowhere in status. */
export function addCheck(d: KeyDelta, e: CheckEvent): void {
  if (e.outcome === "cancelled") return;
  d.key = e.key ?? d.key;
  d.lastUsedAt = Math.max(d.lastUsedAt, e.at);
  if (e.key) d.versions.set(e.key.keyId, Math.max(d.versions.get(e.key.keyId) ?? 0, e.at));
  bump(d, e.at, e.outcome);
  const h = hourStart(e.at);
  d.hourly.set(h, (d.hourly.get(h) ?? 0) + 1);
  const day = dayInfo(e.at);
  if (e.outcome === "allowed") {
    const per = e.key?.quota?.per ?? "month";
    const pk = per === "day" ? `day|${day.dayStart}` : `month|${day.monthStart}`;
    d.periodAllowed.set(pk, (d.periodAllowed.get(pk) ?? 0) + 1);
  }
  if (e.route) {
    const month = day.monthStart;
    let m = d.routes.get(month);
    if (!m) d.routes.set(month, (m = new Map<string, number>()));
    const route = m.has(e.route) || m.size < MAX_DELTA_ROUTES ? e.route : OTHER_ROUTE;
    m.set(route, (m.get(route) ?? 0) + 1);
  }
}

/** Adds one upstream answer (from the access log) to the delta. */
export function addUpstream(d: KeyDelta, e: UpstreamEvent): void {
  const cls = Math.floor(e.responseCode / 100);
  if (cls < 2 || cls > 5) return;
  bump(d, e.at, `upstream${cls}xx` as DailyCounter);
}

export interface MergeOptions {
  now: number;
  /** Ids of the key versions in status.keys; per-version times of other ids are dropped. */
  versionIds?: readonly string[];
  /** The key's quota period; default the period already stored, else month. */
  quotaPer?: "day" | "month";
  topRoutes: number;
}

/**
 * The stored usage plus a delta, with old hours, days, periods and route months
 * dropped. undefined when there is no usage at all.
 */
export function mergeUsage(current: UsageStatus | undefined, delta: KeyDelta | undefined, options: MergeOptions): UsageStatus | undefined {
  const cur = current ?? {};
  const lastMs = Math.max(cur.lastUsedAt ? Date.parse(cur.lastUsedAt) || 0 : 0, delta?.lastUsedAt ?? 0);
  const hasDaily = (cur.daily?.length ?? 0) > 0 || (delta?.daily.size ?? 0) > 0;
  if (lastMs === 0 && !hasDaily) return undefined;
  const out: UsageStatus = {};
  if (lastMs > 0) out.lastUsedAt = iso(lastMs);

  // Per key version.
  const versions = new Map<string, number>();
  for (const v of cur.keys ?? []) versions.set(v.id, Date.parse(v.lastUsedAt) || 0);
  for (const [id, t] of delta?.versions ?? []) versions.set(id, Math.max(versions.get(id) ?? 0, t));
  const keep = options.versionIds ? new Set(options.versionIds) : undefined;
  const keys = [...versions]
    .filter(([id, t]) => t > 0 && (!keep || keep.has(id)))
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, 8)
    .map(([id, t]) => ({ id, lastUsedAt: iso(t) }));
  if (keys.length) out.keys = keys;

  // The last 24 hours.
  const firstHour = hourStart(options.now) - (HOURLY_HOURS - 1) * HOUR;
  const hourly = new Map<number, number>();
  for (const h of cur.hourly ?? []) {
    const t = Date.parse(h.hour);
    if (t >= firstHour) hourly.set(t, (hourly.get(t) ?? 0) + h.requests);
  }
  for (const [t, n] of delta?.hourly ?? []) if (t >= firstHour) hourly.set(t, (hourly.get(t) ?? 0) + n);
  const hours = [...hourly].filter(([, n]) => n > 0).sort((a, b) => a[0] - b[0]);
  out.requests24h = hours.reduce((s, [, n]) => s + n, 0);
  if (hours.length) out.hourly = hours.map(([t, n]) => ({ hour: iso(t), requests: n }));

  // Allowed requests in the current quota period.
  const per = options.quotaPer ?? cur.currentPeriod?.per ?? "month";
  const start = iso(periodStart(options.now, per));
  const stored = cur.currentPeriod && cur.currentPeriod.per === per && cur.currentPeriod.start === start ? cur.currentPeriod.requests : 0;
  out.currentPeriod = { per, start, requests: stored + (delta?.periodAllowed.get(`${per}|${start}`) ?? 0) };

  // The last 30 days.
  const firstDay = isoDate(Date.parse(isoDate(options.now)) - (DAILY_DAYS - 1) * DAY);
  const days = new Map<string, DailyUsage>();
  const addDay = (date: string, counts: Partial<Record<DailyCounter, number>>): void => {
    if (date < firstDay) return;
    let d = days.get(date);
    if (!d) days.set(date, (d = { date }));
    for (const c of DAILY_COUNTERS) {
      const n = counts[c];
      if (n) d[c] = (d[c] ?? 0) + n;
    }
  };
  for (const d of cur.daily ?? []) addDay(d.date, d);
  for (const [date, counts] of delta?.daily ?? []) addDay(date, counts);
  const daily = [...days.values()].sort((a, b) => a.date.localeCompare(b.date));
  if (daily.length) out.daily = daily;

  // Top routes this calendar month.
  const month = iso(periodStart(options.now, "month"));
  const routes = new Map<string, number>();
  if (cur.topRoutesSince === month) for (const r of cur.topRoutes ?? []) routes.set(r.route, r.requests);
  for (const [r, n] of delta?.routes.get(month) ?? []) routes.set(r, (routes.get(r) ?? 0) + n);
  const top = [...routes]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, options.topRoutes)
    .map(([route, requests]) => ({ route, requests }));
  if (top.length) {
    out.topRoutes = top;
    out.topRoutesSince = month;
  }
  return out;
}

/** Allowed requests of the current quota period, stored plus not yet flushed. */
export function periodRequests(stored: UsageStatus | undefined, delta: KeyDelta | undefined, now: number, per: "day" | "month"): number {
  const day = dayInfo(now);
  const start = per === "day" ? day.dayStart : day.monthStart;
  const s = stored?.currentPeriod && stored.currentPeriod.per === per && stored.currentPeriod.start === start ? stored.currentPeriod.requests : 0;
  return s + (delta?.periodAllowed.get(`${per}|${start}`) ?? 0);
}
