import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../k8s/clock.ts";
import { createLogger } from "../log.ts";
import type { RequestRow } from "./row.ts";
import { READER_THREAD_NAME } from "./sqlite-reader.ts";
import { openAnalyticsStore, type AnalyticsStore } from "./store.ts";

const DAY = 86_400_000;
const readers = (): number => threadNames().filter((n) => n === READER_THREAD_NAME).length;
/** Polls until `pred` holds, for up to five seconds. */
async function until(pred: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error("condition not met within 5 s");
    await new Promise((r) => setTimeout(r, 10));
  }
}
const threadNames = (): string[] => readdirSync(`/proc/${process.pid}/task`).map((t) => { try { return readFileSync(`/proc/${process.pid}/task/${t}/comm`, "utf8").trim(); } catch { return ""; } });

describe("the SQLite store's reads on their own thread", () => {
  let dir: string;
  let threaded: AnalyticsStore;
  let inline: AnalyticsStore;
  const now = Date.now();
  const clock = new ManualClock(now);
  let readersBeforeAnyRead = -1;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "keyward-sqlite-reader-"));
    const path = join(dir, "analytics.sqlite");
    const base = { store: "sqlite" as const, sqlitePath: path, postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0 };
    threaded = await openAnalyticsStore({ ...base, writerThread: true, readerIdleMs: 60_000, readerClock: clock }, createLogger({ sink: () => {} }));
    inline = await openAnalyticsStore(base, createLogger({ sink: () => {} }));
    await threaded.upsertKeys(Array.from({ length: 50 }, (_, i) => ({ uid: `u${i}`, namespace: "ns", name: `k${i}`, owner: "o", labels: {}, scopes: [], createdAt: now - 40 * DAY })));
    for (let b = 0; b < 20; b++) {
      const rows: RequestRow[] = Array.from({ length: 1000 }, (_, j) => ({ at: now - 1000 - (b * 1000 + j) * 60_000, uid: `u${j % 50}`, keyId: `kw_${j % 50}`, front: "grpc", outcome: j % 10 === 0 ? "forbidden" : "allowed", reason: "ok", status: j % 10 === 0 ? 403 : 200, checkMicros: 5, route: `GET /r${j % 7}` }));
      await threaded.writeRequests(rows);
    }
    readersBeforeAnyRead = readers();
  });
  afterAll(async () => {
    await threaded.close();
    await inline.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("answers the views and the alert queries as a connection on the caller's thread does, several at once, and keeps the alert state", async () => {
    const f = { since: now - 20 * DAY, until: now - 1 };
    const [keys, endpoints, windows] = await Promise.all([threaded.queries.topKeys(f, 50), threaded.queries.endpoints(f, "route", 10), threaded.alerts.windowCounts(now - 2 * DAY, now)]);
    expect(keys).toHaveLength(50);
    expect(keys.reduce((n, k) => n + k.requests, 0)).toBe(20_000);
    expect(keys).toEqual(await inline.queries.topKeys(f, 50));
    expect(endpoints).toEqual(await inline.queries.endpoints(f, "route", 10));
    expect(windows).toEqual(await inline.alerts.windowCounts(now - 2 * DAY, now));
    // The evaluator's conditional writes, and what they say they changed.
    const alert = { uid: "u1", alert: "KeySilent", namespace: "ns", name: "k1", owner: "o", message: "silent" };
    expect(await threaded.alerts.fire(alert, now, 3_600_000)).toBe(true);
    expect(await threaded.alerts.fire(alert, now + 1, 3_600_000)).toBe(false);
    expect(await inline.alerts.states()).toMatchObject([{ uid: "u1", alert: "KeySilent", firing: 1, fired_at: now }]);
    expect(await threaded.alerts.resolve("u1", "KeySilent", now + 2)).toBe(true);
  });

  it("starts the reader thread at the first read, not with the store, and ends it once idle; a read after that starts it again", async () => {
    // The store opened, its key records and 20 batches written: no reader yet.
    expect(readersBeforeAnyRead).toBe(0);
    const f = { since: now - 20 * DAY, until: now - 1 };
    const first = await threaded.queries.topKeys(f, 5);
    expect(readers()).toBe(1);
    await clock.advance(59_000);
    expect(readers()).toBe(1);
    // A read in between starts the idle time again.
    await threaded.queries.topKeys(f, 5);
    await clock.advance(59_000);
    expect(readers()).toBe(1);
    await clock.advance(1_000);
    await until(() => readers() === 0);
    expect(await threaded.queries.topKeys(f, 5)).toEqual(first);
    expect(readers()).toBe(1);
    // A read that comes while the thread is ending goes to a new one.
    await clock.advance(60_000);
    const [a, b] = await Promise.all([threaded.queries.topKeys(f, 5), threaded.alerts.windowCounts(now - 2 * DAY, now)]);
    expect(a).toEqual(first);
    expect(b).toEqual(await inline.alerts.windowCounts(now - 2 * DAY, now));
    await until(() => readers() === 1);
  });

  it("still fails the start when the file cannot be opened, and leaves no thread behind", async () => {
    const file = join(dir, "plain-file");
    writeFileSync(file, "x");
    const before = threadNames().length;
    await expect(openAnalyticsStore({ store: "sqlite", sqlitePath: join(file, "analytics.sqlite"), postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, writerThread: true }, createLogger({ sink: () => {} }))).rejects.toMatchObject({ code: "AnalyticsStoreFailed" });
    await until(() => threadNames().length <= before);
  });

  it("runs a view over per-request rows on the reader thread: the caller's thread spends a fraction of what running it itself costs", async () => {
    const f = { since: now - 20 * DAY, until: now - 1 };
    const cpu = async (s: AnalyticsStore): Promise<number> => {
      const c0 = process.threadCpuUsage();
      for (let i = 0; i < 5; i++) await s.queries.endpoints(f, "path", 100);
      const c = process.threadCpuUsage(c0);
      return c.user + c.system;
    };
    const own = await cpu(inline);
    const off = await cpu(threaded);
    expect(off).toBeLessThan(own / 3);
  });
});
