// A stand-in for the usage API behind the console's real page server, in tests and the console
// bench: keyward's own routing and files (src/console/server.ts, static.ts) serve the pages
// and uPlot with their security headers, and the API's views are answered from generated data
// in their documented shapes. The browser suite proper runs against the real server;
// this one lets the pages be measured at sizes (10,000 keys, 90 days) that the real stack
// would take minutes to seed.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { consoleRoutes } from "../../src/console/server.ts";
import { ConsoleFiles } from "../../src/console/static.ts";
import { API_PREFIX } from "../../src/console/views.ts";
import { sendView } from "../../src/usage/api.ts";

const HOUR = 3_600_000;
const DAY = 86_400_000;

export interface FixtureKey {
  namespace: string;
  name: string;
  uid: string;
  keyId: string;
  owner: string;
  labels: Record<string, string>;
  state: "Pending" | "Active" | "Rotating" | "Expired" | "Disabled" | "Failed" | "Deleted";
  expiresAt?: number;
  lastUsedAt?: number;
  requests24h: number;
  firingAlerts: string[];
}

export interface FixtureData {
  now: number;
  keys: FixtureKey[];
  /** Days of hourly traffic each key's timeline holds. */
  days: number;
}

/** `n` keys over a few namespaces and owners, deterministic. */
export function fixtureData(n: number, days = 1, now = Date.now()): FixtureData {
  const keys: FixtureKey[] = [];
  const states = ["Active", "Active", "Active", "Rotating", "Expired", "Disabled"] as const;
  for (let i = 0; i < n; i++) {
    const ns = `team-${i % 7}`;
    keys.push({
      namespace: ns,
      name: `key-${String(i).padStart(5, "0")}`,
      uid: `uid-${i}`,
      keyId: `kid${i.toString(36)}`,
      owner: `owner-${i % 13}@example.com`,
      labels: { tier: i % 3 === 0 ? "free" : "paid", app: `app-${i % 5}` },
      state: states[i % states.length] ?? "Active",
      ...(i % 4 === 0 ? {} : { expiresAt: now + ((i % 90) - 10) * DAY }),
      ...(i % 5 === 0 ? {} : { lastUsedAt: now - (i % 48) * HOUR }),
      requests24h: (i * 7919) % 100_000,
      firingAlerts: i % 50 === 0 ? ["KeySilent"] : [],
    });
  }
  return { now, keys, days };
}

type Answer = { status: number; body: unknown };

function matches(k: FixtureKey, q: URLSearchParams): boolean {
  const ns = q.get("namespace");
  if (ns && k.namespace !== ns) return false;
  const owner = q.get("owner");
  if (owner && k.owner !== owner) return false;
  for (const term of (q.get("selector") ?? "").split(",").filter(Boolean)) {
    const [name, value] = term.split("=");
    if (name === undefined || k.labels[name] !== value) return false;
  }
  return true;
}

function series(d: FixtureData, step: string, since: number): Record<string, number>[] {
  const size = step === "day" ? DAY : HOUR;
  const from = Math.max(since, d.now - d.days * DAY);
  const out: Record<string, number>[] = [];
  for (let at = Math.floor(from / size) * size; at < d.now; at += size) {
    const h = Math.floor(at / HOUR);
    const requests = (((h * 31) % 17) + 20) * (size / HOUR);
    const s401 = (h % 3) * (size / HOUR);
    const s403 = (h % 2) * (size / HOUR);
    const s429 = (h % 5 === 0 ? 4 : 0) * (size / HOUR);
    const allowed = requests - s401 - s403 - s429;
    out.push({
      at,
      requests,
      allowed,
      denied: requests - allowed,
      status4xx: s401 + s403 + s429 + 1,
      status5xx: h % 7 === 0 ? 1 : 0,
      status401: s401,
      status403: s403,
      status429: s429,
      upstream2xx: allowed - 2,
      upstream3xx: 1,
      upstream4xx: 1,
      upstream5xx: 0,
      requestBytes: requests * 100,
      responseBytes: requests * 800,
      checkMicrosAvg: 180 + (h % 11) * 10,
      checkMicrosP50: 150 + (h % 7) * 5,
      upstreamMicrosAvg: 12_000 + (h % 13) * 500,
    });
  }
  return out;
}

function sinceOf(q: URLSearchParams, now: number): number {
  const s = q.get("since");
  if (!s) return now - DAY;
  const m = /^(\d+)([hd])$/.exec(s);
  if (m) return now - Number(m[1]) * (m[2] === "h" ? HOUR : DAY);
  return Date.parse(s.length === 10 ? `${s}T00:00:00Z` : s);
}

/** The answer of one view, in the usage API's envelope. */
export function answer(d: FixtureData, view: string, q: URLSearchParams): Answer {
  const a = rawAnswer(d, view, q);
  if (a.status !== 200) return a;
  const envelope = { view, since: new Date(sinceOf(q, d.now)).toISOString(), until: new Date(d.now).toISOString(), namespaces: "all" };
  if (view === "key" || view === "review") return { status: 200, body: { ...envelope, item: a.body } };
  const items = a.body as unknown[];
  return { status: 200, body: { ...envelope, ...(view === "inventory" ? { total: items.length } : {}), items } };
}

function rawAnswer(d: FixtureData, view: string, q: URLSearchParams): Answer {
  const keyParam = q.get("key") ?? "";
  const key = d.keys.find((k) => `${k.namespace}/${k.name}` === keyParam || k.keyId === keyParam);
  const alert = (k: FixtureKey, name: string, firing: boolean) => ({
    alert: name,
    namespace: k.namespace,
    name: k.name,
    owner: k.owner,
    state: firing ? "firing" : "resolved",
    startsAt: d.now - 3 * HOUR,
    ...(firing ? {} : { endsAt: d.now - HOUR }),
    summary: `${k.namespace}/${k.name}: ${name}`,
  });
  switch (view) {
    case "inventory": {
      const items = d.keys.filter((k) => matches(k, q));
      return { status: 200, body: items };
    }
    case "key":
      if (!key) return { status: 404, body: { error: `no such key ${keyParam}` } };
      return {
        status: 200,
        body: {
          ...key,
          scopes: ["orders:read", "orders:write"],
          createdAt: d.now - 30 * DAY,
          versions: [
            { keyId: key.keyId, state: "active", createdAt: d.now - 2 * DAY, lastUsedAt: key.lastUsedAt },
            { keyId: `${key.keyId}old`, state: "grace", createdAt: d.now - 16 * DAY, graceUntil: d.now + DAY, lastUsedAt: d.now - 3 * DAY },
            { keyId: `${key.keyId}older`, state: "expired", createdAt: d.now - 30 * DAY, graceUntil: d.now - 14 * DAY },
          ],
          alerts: key.firingAlerts.map((a) => alert(key, a, true)),
        },
      };
    case "timeline":
    case "latency":
      if (!key) return { status: 400, body: { error: "key is required" } };
      return { status: 200, body: series(d, q.get("step") ?? "hour", sinceOf(q, d.now)) };
    case "endpoints":
      return { status: 200, body: ["GET /orders", "POST /orders", "GET /orders/{id}", ""].map((endpoint, i) => ({ endpoint, requests: 1000 - i * 200, allowed: 900 - i * 200, denied: 100, status4xx: 100, status5xx: i, checkMicrosAvg: 200 + i * 20 })) };
    case "countries":
      return { status: 200, body: [{ country: "DE", requests: 700 }, { country: "US", requests: 250 }, { country: "private", requests: 50 }] };
    case "networks":
      return { status: 200, body: [{ network: "203.0.113.0/24", requests: 800, firstAt: d.now - 5 * DAY, lastAt: d.now - HOUR }, { network: "10.0.0.0/8", requests: 50, firstAt: d.now - DAY, lastAt: d.now - 2 * HOUR }] };
    case "denials":
      return { status: 200, body: key ? [{ at: d.now - 10 * 60_000, namespace: key.namespace, name: key.name, keyId: key.keyId, method: "DELETE", path: "/orders/7", status: 403, reason: "scope orders:admin missing", sourceAddress: "203.0.113.9", country: "DE" }] : [] };
    case "alerts":
      return { status: 200, body: d.keys.filter((k) => matches(k, q)).flatMap((k) => [...k.firingAlerts.map((a) => alert(k, a, true)), ...(k.state === "Expired" && k.name.endsWith("4") ? [alert(k, "KeyErrorRate", false)] : [])]) };
    case "review": {
      const ks = d.keys.filter((k) => matches(k, q));
      const rk = (k: FixtureKey) => ({ namespace: k.namespace, name: k.name, owner: k.owner });
      return {
        status: 200,
        body: {
          generatedAt: new Date(d.now).toISOString(),
          source: "cluster",
          notChecked: [],
          options: { olderThanDays: 90, expiringWithinDays: 14, ownerLabel: "", scopeWindowDays: 30 },
          keys: ks.length,
          unused90: ks.filter((k) => k.lastUsedAt === undefined).slice(0, 20).map((k) => ({ ...rk(k), idleDays: 120 })),
          unused30: [],
          unusedScopes: ks.slice(0, 3).map((k) => ({ ...rk(k), granted: ["orders:read", "orders:write"], unused: ["orders:write"], unknownRules: [] })),
          neverRotated: ks.slice(0, 5).map((k) => ({ ...rk(k), since: "2026-01-01T00:00:00Z", ageDays: 334, rotation: "none", external: false })),
          olderThan: [],
          expiringSoon: [],
          withoutOwner: [],
        },
      };
    }
    default:
      return { status: 404, body: { error: "no such view" } };
  }
}

export interface ConsoleFixture {
  url: string;
  data: FixtureData;
  /** Answers to force for a view (an error status, say), by view name. */
  overrides: Map<string, Answer>;
  /** API paths asked for, in order. */
  calls: string[];
  /** The view and status of each answer, in order ("inventory 304"). */
  answered: string[];
  close(): Promise<void>;
}

export async function startConsoleFixture(data: FixtureData): Promise<ConsoleFixture> {
  const overrides = new Map<string, Answer>();
  const calls: string[] = [];
  const answered: string[] = [];
  // keyward's own page routing, files and security headers (CSP included); only the API is a stand-in
  const server: Server = createServer(
    consoleRoutes(new ConsoleFiles(), (req, res) => {
      const url = new URL(req.url ?? "/", "http://fixture");
      const view = url.pathname.slice(API_PREFIX.length);
      calls.push(`${view}?${url.searchParams.toString()}`);
      const a = overrides.get(view) ?? answer(data, view, url.searchParams);
      if (a.status === 200) {
        // As the usage API answers: tagged, and 304 for an If-None-Match that names the tag.
        sendView(req, res, a.body);
      } else {
        const body = JSON.stringify(a.body);
        res.writeHead(a.status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)), "cache-control": "no-store" });
        res.end(body);
      }
      answered.push(`${view} ${String(res.statusCode)}`);
    }),
  );
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/`,
    data,
    overrides,
    calls,
    answered,
    close: () => new Promise<void>((ok) => { server.closeAllConnections(); server.close(() => { ok(); }); }),
  };
}
