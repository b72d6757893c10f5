// SQLite's per-request rows in segments (migration 4, ADR 62): the writer fills segments of
// SEGMENT_ROWS rows in turn and widens each one's time span; every view finds one key's rows by
// segment, key and time (requests_seg_uid_at) with the same answers as before; SQLite's planner
// goes by key when the filter names keys and by time otherwise; retention drops a segment with
// its last rows; and a store made before segments gets them at its next start, its rows kept.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { Kysely } from "kysely";
import { afterEach, describe, expect, it } from "vitest";
import { AlertQueries } from "./alert-queries.ts";
import { createLogger } from "../log.ts";
import { statementRecorder } from "./plans.test-support.ts";
import { AnalyticsQueries } from "./queries.ts";
import type { RequestRow } from "./row.ts";
import { applyMigrations, DAY_MS, HOUR_MS, MIGRATIONS, SEGMENT_ROWS, type AnalyticsDB } from "./schema.ts";
import { NodeSqliteDialect } from "./sqlite-dialect.ts";
import { openAnalyticsStore, type AnalyticsStore } from "./store.ts";

const END = Date.UTC(2026, 5, 15);
const KEYS = 40;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempPath(): string {
  const dir = mkdtempSync(join(tmpdir(), "keyward-segments-"));
  dirs.push(dir);
  return join(dir, "a.sqlite");
}

const uidOf = (k: number): string => `uid-${String(k).padStart(3, "0")}`;

/** Row i of a run of n over the 4 days before END: key i % KEYS, a network per key and hour. */
function row(i: number, n: number): RequestRow {
  const k = i % KEYS;
  const at = END - 4 * DAY_MS + Math.floor((i * 4 * DAY_MS) / n);
  return {
    at,
    uid: uidOf(k),
    keyId: `kw_${k}`,
    front: "grpc",
    outcome: i % 9 === 0 ? "forbidden" : "allowed",
    reason: i % 9 === 0 ? "scope_missing" : "allowed",
    status: i % 9 === 0 ? 403 : 200,
    checkMicros: 10 + (i % 7),
    route: `GET /r${i % 3}`,
    path: `/r${i % 3}/${i % 11}`,
    policy: "ns/p",
    rule: `rule${i % 2}`,
    network: `198.51.${k}.${Math.floor(at / HOUR_MS) % 4}/32`,
    country: "DE",
    source: `198.51.${k}.1`,
  };
}

async function open(path: string, now = END): Promise<AnalyticsStore> {
  return openAnalyticsStore({ store: "sqlite", sqlitePath: path, postgresUrl: "", retentionMs: 30 * DAY_MS, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => now }, createLogger({ sink: () => {} }));
}

async function seed(store: AnalyticsStore, n: number, batch = 1000): Promise<RequestRow[]> {
  await store.upsertKeys(Array.from({ length: KEYS }, (_, k) => ({ uid: uidOf(k), namespace: `ns-${k % 4}`, name: `key-${k}`, owner: `o${k % 3}`, labels: { tier: k % 2 ? "a" : "b" }, scopes: [], createdAt: 0 })));
  const rows = Array.from({ length: n }, (_, i) => row(i, n));
  for (let i = 0; i < n; i += batch) await store.writeRequests(rows.slice(i, i + batch));
  return rows;
}

/** Every answer a view gives from per-request rows, for one key, one namespace, and every key. */
async function answers(q: AnalyticsQueries, a: AlertQueries): Promise<unknown> {
  const range = { since: END - 3 * DAY_MS + 1234, until: END - 5 * HOUR_MS };
  const out: Record<string, unknown> = {};
  for (const [name, f] of Object.entries({ key: { ...range, key: "ns-1/key-5" }, byId: { ...range, key: "kw_9" }, ns: { ...range, namespaces: ["ns-2"] }, owner: { ...range, owner: "o1", selector: "tier=a" }, all: range })) {
    out[name] = {
      top: await q.topKeys(f, 100),
      hours: await q.timeline(f, "hour"),
      statuses: await q.statusCodes(f),
      paths: await q.endpoints(f, "path"),
      routes: await q.endpoints(f, "route"),
      countries: await q.countries(f),
      networks: await q.networks(f, 100),
      denials: await q.denials(f, 100),
      rules: await q.rulesUsed(f),
    };
  }
  out.versions = await q.keyVersions(uidOf(5));
  out.activity = await q.keyActivity({ key: "ns-1/key-5" });
  out.lastUses = [...(await q.lastUses())].sort();
  out.windows = await a.windowCounts(END - DAY_MS, END);
  out.newNetworks = await a.newValues("network", END - 2 * HOUR_MS, END - 4 * DAY_MS);
  return out;
}

describe("SQLite's segments", () => {
  it("are filled SEGMENT_ROWS rows at a time, a batch never split, each with the span of its rows", async () => {
    const path = tempPath();
    const store = await open(path);
    const n = 2 * SEGMENT_ROWS + 3000;
    await seed(store, n, 1500);
    await store.close();
    const raw = new DatabaseSync(path);
    const segs = raw.prepare("select seg, first_at, last_at, n from request_segments order by seg").all() as { seg: number; first_at: number; last_at: number; n: number }[];
    const byRows = raw.prepare("select seg, min(at) as first_at, max(at) as last_at, count(*) as n from requests group by seg order by seg").all();
    raw.close();
    expect(segs).toEqual(byRows.map((r) => ({ ...r })));
    // 1,500-row batches: a segment takes batches until it holds SEGMENT_ROWS rows or more.
    const perSegment = Math.ceil(SEGMENT_ROWS / 1500) * 1500;
    expect(segs.map((s) => s.n)).toEqual([perSegment, perSegment, n - 2 * perSegment]);
    expect(segs.map((s) => s.seg)).toEqual([1, 2, 3]);
  });

  it("answer every view from per-request rows as the rows do, a late row found in the segment it was written to", async () => {
    const path = tempPath();
    const store = await open(path);
    const rows = await seed(store, 3 * SEGMENT_ROWS);
    // Written last, into the newest segment, but timed in the first day: the segment's span widens to it.
    const late: RequestRow = { ...row(7, 3 * SEGMENT_ROWS), uid: uidOf(5), keyId: "kw_5", at: END - 3 * DAY_MS + 5000, network: "192.0.2.0/24", path: "/late" };
    await store.writeRequests([late]);
    const segmented = await answers(store.queries, store.alerts);
    await store.close();

    // The same rows in a store without segments: every row in segment 0, its span all of them, no index by segment.
    const plain = tempPath();
    const other = await open(plain);
    await seed(other, 0);
    for (let i = 0; i < rows.length; i += 1000) await other.writeRequests(rows.slice(i, i + 1000));
    await other.writeRequests([late]);
    await other.close();
    const flat = new DatabaseSync(plain);
    flat.exec("drop index requests_seg_uid_at; update requests set seg = 0; delete from request_segments; insert into request_segments select 0, min(at), max(at), count(*) from requests");
    flat.close();
    const reopened = await open(plain);
    expect(segmented).toEqual(await answers(reopened.queries, reopened.alerts));
    await reopened.close();
    // The late row's hour, far from its segment's other rows: found because the segment's span widened to it.
    const again = await open(path);
    expect((await again.queries.endpoints({ since: END - 3 * DAY_MS, until: END - 3 * DAY_MS + HOUR_MS, key: "ns-1/key-5" }, "path")).map((e) => e.endpoint)).toContain("/late");
    await again.close();
  });

  it("lead SQLite's planner by key when the filter names keys, and by time when it does not", async () => {
    const path = tempPath();
    const store = await open(path);
    await seed(store, 2 * SEGMENT_ROWS);
    await store.close();
    const plans = async (raw: DatabaseSync): Promise<Record<string, string>> => {
      const recorded = statementRecorder();
      const db = new Kysely<AnalyticsDB>({ dialect: new NodeSqliteDialect(raw), log: recorded.log });
      const q = new AnalyticsQueries(db, { requestsFrom: () => END - 30 * DAY_MS });
      const range = { since: END - 2 * DAY_MS + 1, until: END };
      const key = { ...range, key: "ns-1/key-5" };
      const run: Record<string, () => Promise<unknown>> = {
        hours: () => q.timeline(key, "hour"),
        paths: () => q.endpoints(key, "path"),
        networks: () => q.networks(key),
        denials: () => q.denials(key),
        rules: () => q.rulesUsed(key),
        namespace: () => q.topKeys({ ...range, namespaces: ["ns-1"] }),
        versions: () => q.keyVersions(uidOf(5)),
        activity: () => q.keyActivity({ key: "ns-1/key-5" }),
        newNetworks: () => new AlertQueries(db).newValues("network", END - HOUR_MS, END - 3 * DAY_MS),
        every: () => q.topKeys(range),
      };
      const out: Record<string, string> = {};
      for (const [name, fn] of Object.entries(run)) {
        const from = recorded.statements.length;
        await fn();
        const s = recorded.statements.slice(from).find((x) => /\brequests\b/.test(x.sql))!;
        out[name] = (raw.prepare(`explain query plan ${s.sql}`).all(...(s.parameters as (string | number)[])) as { detail: string }[]).map((r) => r.detail).join("\n");
      }
      await db.destroy();
      return out;
    };
    const withStat = await plans(new DatabaseSync(path));
    for (const name of ["hours", "paths", "networks", "denials", "rules", "namespace", "versions", "activity", "newNetworks"]) {
      expect(withStat[name], name).toMatch(/SEARCH (t|q|h)( EXISTS)? USING (COVERING )?INDEX requests_seg_uid_at \(seg=\? AND uid=\?/);
      expect(withStat[name], name).not.toMatch(/requests_seg_uid_at \(seg=\?\)/);
    }
    expect(withStat.every).toMatch(/SEARCH t USING INDEX requests_at \(at>\? AND at<\?\)/);

    // Without the index's description, the planner reads every key's rows of the range's segments.
    const bare = new DatabaseSync(path);
    bare.exec("delete from sqlite_stat1; analyze sqlite_schema");
    const without = await plans(bare);
    expect(Object.values(without).filter((p) => /requests_seg_uid_at \(seg=\?\)/.test(p)).length).toBeGreaterThan(0);
  });

  it("go with retention once every row of their span is dropped; a store whose segments all went starts anew", async () => {
    const path = tempPath();
    let store = await open(path);
    await seed(store, 3 * SEGMENT_ROWS);
    await store.close();
    // Rows span END-4d .. END: with the clock 33 days on, the first day (and the segment within it) is past retention.
    store = await open(path, END + 29 * DAY_MS + 1);
    await store.runRetention();
    await store.close();
    let raw = new DatabaseSync(path);
    const cutoff = Math.floor((END + 29 * DAY_MS + 1 - 30 * DAY_MS) / DAY_MS) * DAY_MS;
    const left = raw.prepare("select seg, first_at, last_at from request_segments order by seg").all() as { seg: number; first_at: number; last_at: number }[];
    expect(left.length).toBeGreaterThan(0);
    expect(left.every((s) => s.last_at >= cutoff)).toBe(true);
    expect(left[0]!.seg).toBeGreaterThan(1);
    raw.close();

    store = await open(path, END + 40 * DAY_MS);
    await store.runRetention();
    raw = new DatabaseSync(path);
    expect(raw.prepare("select count(*) as n from request_segments").get()).toEqual({ n: 0 });
    raw.close();
    await store.writeRequests([{ ...row(5, 1), at: END + 40 * DAY_MS - 1000 }]);
    expect(await store.queries.keyVersions(uidOf(5))).toMatchObject([{ keyId: "kw_5", lastUsedAt: END + 40 * DAY_MS - 1000 }]);
    await store.close();
  });

  it("come to a store made before them at its next start: its rows are segment 0, found by key as before", async () => {
    const path = tempPath();
    const raw = new DatabaseSync(path);
    const db = new Kysely<AnalyticsDB>({ dialect: new NodeSqliteDialect(raw) });
    await applyMigrations(db, "sqlite", () => 0, MIGRATIONS.filter((m) => m.version < 4));
    const old = Array.from({ length: 500 }, (_, i) => row(i, 500));
    for (let i = 0; i < old.length; i += 100) {
      await db
        .insertInto("requests")
        .values(old.slice(i, i + 100).map((r) => ({ at: r.at, uid: r.uid, key_id: r.keyId, front: r.front, outcome: r.outcome, reason: r.reason, status: r.status, check_micros: r.checkMicros, path: r.path ?? null })))
        .execute();
    }
    await db.destroy();

    const lines: string[] = [];
    const store = await openAnalyticsStore({ store: "sqlite", sqlitePath: path, postgresUrl: "", retentionMs: 30 * DAY_MS, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => END }, createLogger({ sink: (l) => lines.push(l) }));
    expect(lines.join("\n")).toContain('"versions":[4]');
    await store.upsertKeys([{ uid: uidOf(5), namespace: "ns-1", name: "key-5", owner: "o", labels: {}, scopes: [], createdAt: 0 }]);
    await store.writeRequests([{ ...row(5, 1), at: END - 1000, path: "/new" }]);
    const paths = await store.queries.endpoints({ since: END - 5 * DAY_MS + 1, until: END, key: "ns-1/key-5" }, "path");
    const expected = new Map<string, number>();
    for (const r of old.filter((x) => x.uid === uidOf(5))) expected.set(r.path!, (expected.get(r.path!) ?? 0) + 1);
    expected.set("/new", 1);
    expect(new Map(paths.map((p) => [p.endpoint, p.requests]))).toEqual(expected);
    await store.close();

    const after = new DatabaseSync(path);
    expect(after.prepare("select seg, n from request_segments order by seg").all().map((r) => ({ ...r }))).toEqual([
      { seg: 0, n: 500 },
      { seg: 1, n: 1 },
    ]);
    const indexes = after.prepare("select name from sqlite_master where type = 'index' and tbl_name = 'requests' order by name").all().map((r) => r.name);
    expect(indexes).toEqual(["requests_at", "requests_seg_uid_at"]);
    after.close();
  });
});
