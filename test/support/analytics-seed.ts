// Seeded usage for the analytics suites: three ApiKeys (one deleted), and
// requests spread over the 40 days before NOW with varied routes, paths,
// statuses, countries and networks, some with the upstream's answer.
import type { KeyRecord, RequestRow } from "../../src/analytics/row.ts";

export const DAY = 86_400_000;
export const HOUR = 3_600_000;
/** The seed's "now": noon UTC. */
export const NOW = Date.UTC(2026, 5, 15, 12, 0, 0);

export const KEYS: KeyRecord[] = [
  { uid: "u-checkout", namespace: "team-a", name: "checkout", owner: "alice", labels: { tier: "gold", env: "prod" }, scopes: ["orders:read"], createdAt: NOW - 60 * DAY },
  { uid: "u-search", namespace: "team-a", name: "search", owner: "bob", labels: { tier: "silver" }, scopes: [], createdAt: NOW - 60 * DAY },
  { uid: "u-billing", namespace: "team-b", name: "billing", owner: "alice", labels: { env: "prod" }, scopes: ["invoices:write"], createdAt: NOW - 60 * DAY, deletedAt: NOW - 2 * HOUR },
];

/** The seed's keys with their namespaces team-a and team-b renamed to a suite's own. */
export function keysIn(teamA: string, teamB: string): KeyRecord[] {
  const rename: Record<string, string> = { "team-a": teamA, "team-b": teamB };
  return KEYS.map((k) => ({ ...k, namespace: rename[k.namespace] ?? k.namespace }));
}

const KEY_IDS: Record<string, string> = { "u-checkout": "kw_chk00001", "u-search": "kw_srch0001", "u-billing": "kw_bill0001" };
const ROUTES = [
  { route: "GET /orders/{id}", method: "GET", path: (i: number) => `/orders/${i % 7}` },
  { route: "POST /orders", method: "POST", path: () => "/orders" },
  { route: undefined, method: "GET", path: () => "/unknown" },
];
const COUNTRIES = ["DE", "US", "private", undefined];
const NETWORKS = ["203.0.113.0/24", "198.51.100.0/24", "10.1.2.0/24"];

/** Deterministic requests: per key, per day back to 39 days ago, a few per hour slot. */
export function seedRows(): RequestRow[] {
  const rows: RequestRow[] = [];
  let i = 0;
  for (const [ki, key] of KEYS.entries()) {
    for (let d = 0; d < 40; d++) {
      const perDay = 3 + ((d * (ki + 2)) % 5);
      for (let j = 0; j < perDay; j++) {
        i++;
        const at = NOW - d * DAY - (j * 2 + ki) * HOUR - (i % 60) * 1000;
        const r = ROUTES[(i + ki) % ROUTES.length]!;
        const kind = i % 10;
        const denied = kind === 7 ? { outcome: "forbidden" as const, reason: "scope_missing", status: 403 } : kind === 8 ? { outcome: "limited" as const, reason: "rate_limited", status: 429 } : undefined;
        const upstream = !denied && i % 3 !== 0 ? { upstreamStatus: kind === 5 ? 503 : kind === 6 ? 404 : 200, upstreamMicros: 1000 + (i % 13) * 100, requestBytes: 100 + (i % 5), responseBytes: 2000 + (i % 11) } : {};
        const country = COUNTRIES[i % COUNTRIES.length];
        const net = NETWORKS[(i + d) % NETWORKS.length]!;
        rows.push({
          at,
          requestId: `req-${i}`,
          uid: key.uid,
          keyId: KEY_IDS[key.uid]!,
          front: i % 2 ? "grpc" : "http",
          ...(r.route ? { route: r.route, policy: `${key.namespace}/api`, rule: "main" } : {}),
          method: r.method,
          host: "api.example.com",
          path: r.path(i),
          outcome: denied?.outcome ?? "allowed",
          reason: denied?.reason ?? "allowed",
          status: denied?.status ?? 200,
          source: `${net.split("/")[0]!.replace(/0$/, "")}${(i % 200) + 1}`,
          network: net,
          ...(country ? { country } : {}),
          checkMicros: 50 + (i % 17),
          ...upstream,
        });
      }
    }
  }
  return rows;
}

/** The status the client got, as the store counts it. */
export function clientStatus(r: RequestRow): number {
  return r.upstreamStatus ?? r.status;
}
