// Seeded usage for the alert tests: one ApiKey per alert that must fire, and a
// near miss beside most of them that must not. The unit tests run it on
// SQLite; the integration suite runs the same seed on PostgreSQL.
import type { KeyRecord, RequestRow } from "../analytics/row.ts";
import type { AlertName, QuotaKey } from "./rules.ts";

export const DAY = 86_400_000;
export const HOUR = 3_600_000;
const MIN = 60_000;
/** The seed's "now": noon UTC. */
export const NOW = Date.UTC(2026, 5, 15, 12, 0, 0);
const SEED_NOW = NOW;

/** The seeded ApiKeys, as of `now`, in `namespace`. */
export function alertKeys(NOW: number, namespace = "team"): KeyRecord[] {
  const key = (name: string, o: Partial<KeyRecord> = {}): KeyRecord => ({ uid: `u-${name}`, namespace, name, owner: "alice", labels: {}, scopes: [], createdAt: NOW - DAY, ...o });
  return [
  key("limited"),
  key("limited-low"),
  key("errors"),
  key("errors-low"),
  key("forbidden"),
  key("forbidden-dirty"),
  key("silent"),
  key("roaming"),
  key("newcomer"),
  key("dormant", { createdAt: NOW - 60 * DAY }),
  key("dormant-long", { createdAt: NOW - 100 * DAY }),
  key("fresh", { createdAt: NOW - 10 * DAY }),
  key("expiring", { expiresAt: NOW + 2 * DAY }),
  key("expiring-later", { expiresAt: NOW + 10 * DAY }),
  key("quota"),
  key("quota-low"),
  key("deleted", { createdAt: NOW - 100 * DAY, deletedAt: NOW - DAY }),
  ];
}

export const ALERT_KEYS = alertKeys(NOW);

export function quotas(namespace = "team"): QuotaKey[] {
  return [
    { uid: "u-quota", namespace, name: "quota", owner: "alice", requests: 100, per: "day" },
    { uid: "u-quota-low", namespace, name: "quota-low", owner: "alice", requests: 100, per: "day" },
  ];
}

export const QUOTAS = quotas();

/** Which ApiKeys (by name) each alert fires on at NOW with the default thresholds. */
export const EXPECTED: Record<AlertName, string[]> = {
  RateLimitedHigh: ["limited"],
  UpstreamErrorsHigh: ["errors"],
  ForbiddenSpike: ["forbidden"],
  KeySilent: ["silent"],
  NewSourceNetwork: ["roaming"],
  NewSourceCountry: ["roaming"],
  KeyDormant: ["dormant"],
  KeyDormantLong: ["dormant-long"],
  KeyExpiringSoon: ["expiring"],
  QuotaNearlyUsed: ["quota"],
};

type Extra = Partial<RequestRow>;

function rowsOf(name: string, n: number, at: (i: number) => number, extra: (i: number) => Extra = () => ({})): RequestRow[] {
  return Array.from({ length: n }, (_, i) => ({ at: at(i), uid: `u-${name}`, keyId: `kw_${name}`, front: "http", outcome: "allowed", reason: "allowed", status: 200, checkMicros: 50, ...extra(i) }));
}

const limited = (every: number) => (i: number): Extra => (i % every === 0 ? { outcome: "limited", reason: "rate_limited", status: 429 } : {});
const upstream = (bad: number) => (i: number): Extra => ({ upstreamStatus: i < bad ? 503 : 200, upstreamMicros: 900 });
const forbidden: Extra = { outcome: "forbidden", reason: "scope_missing", status: 403 };

/** The seeded requests, as of `NOW` (the quota's fall in the last 85 seconds: the same UTC day at any hour but the first seconds). */
export function alertRows(NOW = SEED_NOW): RequestRow[] {
  const rows = rowsOf;
  return [
    // 10 of 100 in the last 20 minutes were 429s; 3 of 100 are under 5%.
    ...rows("limited", 100, (i) => NOW - 20 * MIN + i * 10_000, limited(10)),
    ...rows("limited-low", 100, (i) => NOW - 20 * MIN + i * 10_000, (i) => (i < 3 ? limited(1)(i) : {})),
    // 2% of the upstream's answers were 5xx; 1% is not over 1%.
    ...rows("errors", 100, (i) => NOW - 20 * MIN + i * 10_000, upstream(2)),
    ...rows("errors-low", 100, (i) => NOW - 20 * MIN + i * 10_000, upstream(1)),
    // Ten 403s in the last 4 minutes on a key clean for a day; the other had one 12 hours ago.
    ...rows("forbidden", 20, (i) => NOW - 6 * HOUR + i * 1000),
    ...rows("forbidden", 10, (i) => NOW - 4 * MIN + i * 1000, () => forbidden),
    ...rows("forbidden-dirty", 1, () => NOW - 12 * HOUR, () => forbidden),
    ...rows("forbidden-dirty", 10, (i) => NOW - 4 * MIN + i * 1000, () => forbidden),
    // 100 requests, the last 3 hours ago.
    ...rows("silent", 100, (i) => NOW - 20 * HOUR + i * 10 * MIN),
    // Ten days of one network and country, then another of each 10 minutes ago; a key with no history.
    ...rows("roaming", 20, (i) => NOW - 10 * DAY + i * MIN, () => ({ source: "203.0.113.9", network: "203.0.113.0/24", country: "DE" })),
    ...rows("roaming", 1, () => NOW - 10 * MIN, () => ({ source: "198.51.100.4", network: "198.51.100.0/24", country: "US" })),
    ...rows("newcomer", 1, () => NOW - 10 * MIN, () => ({ source: "198.51.100.5", network: "198.51.100.0/24", country: "US" })),
    // Last used 40 days ago.
    ...rows("dormant", 5, (i) => NOW - 40 * DAY + i * MIN),
    // 85 and 50 of a 100-a-day quota used today.
    ...rows("quota", 85, (i) => NOW - 85_000 + i * 1000),
    ...rows("quota-low", 50, (i) => NOW - 85_000 + i * 1000),
  ];
}
