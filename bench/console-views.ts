// The usage API's console views on SQLite (a file in a temporary directory),
// through the real HTTP handler with a caller who may read every namespace
// (reviews answered from memory, so only keyward's own work is measured):
//   - the inventory of --keys keys (every key live in the data plane's view, each
//     with rows), its time and CPU per answer (median of --repeat);
//   - one poll cycle of the key page: the views the page asks for every 5 s
//     (key, latency, status-codes, endpoints, countries, networks, denials,
//     alerts) for one key: wall time, CPU time of this process, and the bytes
//     answered.
// Rows: --rows spread over the last 90 days (those older than the 30-day
// per-request retention end up in the daily rollups only).
//
//   node bench/console-views.ts [--keys 10000] [--rows 1000000] [--repeat 7]
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { KeyRecord, RequestRow } from "../src/analytics/row.ts";
import { openAnalyticsStore } from "../src/analytics/store.ts";
import type { ApiKey } from "../src/api/types.ts";
import { createLogger } from "../src/log.ts";
import { ApiAuth } from "../src/usage/api-auth.ts";
import { listenUsageApi } from "../src/usage/api.ts";
import { median } from "./lib/stats.ts";

const DAY = 86_400_000;
const { values } = parseArgs({ options: { keys: { type: "string", default: "10000" }, rows: { type: "string", default: "1000000" }, repeat: { type: "string", default: "7" } } });
const nKeys = Number(values.keys);
const nRows = Number(values.rows);
const repeat = Number(values.repeat);
const now = Date.now();

const dir = mkdtempSync(join(tmpdir(), "keyward-console-bench-"));
const log = createLogger({ sink: () => {} });
const store = await openAnalyticsStore({ store: "sqlite", sqlitePath: join(dir, "a.db"), postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => now }, log);

const keys: KeyRecord[] = [];
const live: ApiKey[] = [];
for (let i = 0; i < nKeys; i++) {
  const namespace = `team-${i % 20}`;
  const name = `key-${i}`;
  keys.push({ uid: `u${i}`, namespace, name, owner: `owner-${i % 50}`, labels: { tier: i % 2 ? "gold" : "free" }, scopes: ["read"], createdAt: now - 120 * DAY });
  live.push({
    apiVersion: "keyward.dev/v1alpha1",
    kind: "ApiKey",
    metadata: { namespace, name, uid: `u${i}`, labels: { tier: i % 2 ? "gold" : "free" } },
    spec: { owner: `owner-${i % 50}`, scopes: ["read"] },
    status: { state: "Active", currentKeyId: `kw_${String(i).padStart(8, "0")}`, keys: [{ id: `kw_${String(i).padStart(8, "0")}`, hash: "sha256:0", state: "active" }] },
  });
}
await store.upsertKeys(keys);
const seedStart = performance.now();
const OUTCOMES = ["allowed", "allowed", "allowed", "allowed", "allowed", "allowed", "allowed", "forbidden", "limited", "unauthenticated"] as const;
for (let done = 0; done < nRows; ) {
  const batch: RequestRow[] = [];
  for (let j = 0; j < 5000 && done < nRows; j++, done++) {
    const k = done % nKeys;
    const outcome = OUTCOMES[done % OUTCOMES.length] ?? "allowed";
    batch.push({
      at: now - Math.floor((done / nRows) * 90 * DAY),
      uid: `u${k}`,
      keyId: `kw_${String(k).padStart(8, "0")}`,
      front: "http",
      route: `GET /r${done % 20}`,
      method: "GET",
      path: `/r${done % 20}/${done % 97}`,
      outcome,
      reason: outcome === "allowed" ? "allowed" : outcome === "limited" ? "rate_limited" : "scope_missing",
      status: outcome === "allowed" ? 200 : outcome === "limited" ? 429 : 403,
      source: `203.0.113.${done % 250}`,
      network: "203.0.113.0/24",
      country: ["DE", "US", "FR"][done % 3] ?? "",
      checkMicros: 40 + (done % 30),
      ...(outcome === "allowed" ? { upstreamStatus: 200, upstreamMicros: 900 + (done % 500) } : {}),
    });
  }
  await store.writeRequests(batch);
}
const seedS = (performance.now() - seedStart) / 1000;

const reviewer = { reviewToken: () => Promise.resolve({ username: "platform" }), mayGetApiKeys: () => Promise.resolve(true) };
const api = await listenUsageApi({ address: "127.0.0.1:0", queries: store.queries, console: { live: () => live, retentionMs: 30 * DAY }, auth: new ApiAuth(reviewer, { audiences: [], cacheTtlMs: 60_000 }), log });

function get(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: api.port, path, headers: { authorization: "Bearer t" } }, (res) => {
      let size = 0;
      res.on("data", (c: Buffer) => (size += c.length));
      res.on("end", () => {
        if (res.statusCode !== 200) reject(new Error(`${path}: HTTP ${String(res.statusCode)}`));
        else resolve(size);
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/** Median wall and CPU ms of `fn`, and what it returned last. */
async function measure<T>(fn: () => Promise<T>): Promise<{ wallMs: number; cpuMs: number; last: T }> {
  const walls: number[] = [];
  const cpus: number[] = [];
  let last: T = await fn();
  for (let i = 0; i < repeat; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    last = await fn();
    walls.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpus.push((c.user + c.system) / 1000);
  }
  return { wallMs: median(walls), cpuMs: median(cpus), last };
}

const inventory = await measure(() => get("/api/v1/inventory?sort=requests24h&order=desc"));
const key = `team-${7 % 20}/key-7`;
const KEY_PAGE = [`key?key=${key}`, `latency?key=${key}&since=24h`, `status-codes?key=${key}`, `endpoints?key=${key}`, `countries?key=${key}`, `networks?key=${key}`, `denials?key=${key}`, `alerts?key=${key}`];
const poll = async (): Promise<number> => {
  let bytes = 0;
  for (const v of KEY_PAGE) bytes += await get(`/api/v1/${v}`);
  return bytes;
};
const cycle = await measure(poll);
const key90 = await measure(() => get(`/api/v1/latency?key=${key}&step=day&since=2160h`));

console.log(JSON.stringify({ keys: nKeys, rows: nRows, seedSeconds: Math.round(seedS), repeat, inventory: { wallMs: Math.round(inventory.wallMs), cpuMs: Math.round(inventory.cpuMs), bytes: inventory.last }, keyPagePoll: { views: KEY_PAGE.length, wallMs: Math.round(cycle.wallMs * 10) / 10, cpuMs: Math.round(cycle.cpuMs * 10) / 10, bytes: cycle.last }, keyTimeline90dDaily: { wallMs: Math.round(key90.wallMs * 10) / 10 } }, null, 2));
await api.stop();
await store.close();
rmSync(dir, { recursive: true, force: true });
