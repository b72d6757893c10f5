import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createLogger } from "../log.ts";
import { openAnalyticsStore, startAnalyticsStore, type AnalyticsStore, type AnalyticsStoreOptions } from "./store.ts";
import { RENEW_AFTER_KEY_RECORDS, START_SQLITE_CACHE_KIB, startWriterThread, WRITER_THREAD_NAME, type WriterThread } from "./writer-thread.ts";
import { openWriterThreadStore, openWriteStore, WRITER_SQLITE_CACHE_KIB } from "./write-store.ts";
import { CompiledQuery } from "kysely";
import { forwardingLogger, toWire, fromWire, unwireFields, type ThreadReply, type WriterCall } from "./thread-wire.ts";
import { KeywardError } from "../errors.ts";
import { ManualClock } from "../k8s/clock.ts";
import { MessageChannel, Worker } from "node:worker_threads";
import type { RequestRow } from "./row.ts";

const DAY = 86_400_000;

/** The names of this process's threads (Linux). */
function threadNames(): string[] {
  return readdirSync(`/proc/${process.pid}/task`).map((t) => {
    try {
      return readFileSync(`/proc/${process.pid}/task/${t}/comm`, "utf8").trim();
    } catch {
      return "";
    }
  });
}

/** The thread ids (Linux) of this process's analytics writer threads. */
function writerThreadIds(): string[] {
  return readdirSync(`/proc/${process.pid}/task`).filter((t) => {
    try {
      return readFileSync(`/proc/${process.pid}/task/${t}/comm`, "utf8").trim() === WRITER_THREAD_NAME;
    } catch {
      return false;
    }
  });
}

describe("the analytics writer on its own thread", () => {
  const dirs: string[] = [];
  const stores: AnalyticsStore[] = [];
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const options = (path: string): AnalyticsStoreOptions => ({ store: "sqlite", sqlitePath: path, postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, writerThread: true });
  const file = (): string => {
    const d = mkdtempSync(join(tmpdir(), "keyward-writer-thread-"));
    dirs.push(d);
    return join(d, "analytics.sqlite");
  };

  /** A writer thread that dies on cue (writer-worker.crash.test-support.ts), over a fresh store file, and its log lines. */
  const crashingWriter = async (): Promise<{ path: string; lines: string[]; writer: WriterThread }> => {
    const lines: string[] = [];
    const path = file();
    await (await openAnalyticsStore({ ...options(path), writerThread: false }, createLogger({ sink: () => {} }))).close();
    const writer = startWriterThread(options(path), createLogger({ sink: (l) => lines.push(l) }), new URL("./writer-worker.crash.test-support.ts", import.meta.url));
    await writer.opened;
    return { path, lines, writer };
  };
  /** Writes the key record, closes the writer, and opens the store file to read what it wrote. */
  const closedAndRead = async (writer: WriterThread, path: string, now: number): Promise<AnalyticsStore> => {
    await writer.upsertKeys([{ uid: "u", namespace: "ns", name: "k", owner: "o", labels: {}, scopes: [], createdAt: now - DAY }]);
    await writer.close();
    const reader = await openAnalyticsStore({ ...options(path), writerThread: false }, createLogger({ sink: () => {} }));
    stores.push(reader);
    return reader;
  };

  it("writes batches from its own thread, and the caller's queries read them: the caller's thread spends a fraction of an inline write's CPU", async () => {
    const now = Date.now();
    // Each row its own rollup: a batch far longer to write than to hand over.
    const rows: RequestRow[] = Array.from({ length: 5000 }, (_, i) => ({ at: now - 1000 - i, uid: "u", keyId: "kw_1", front: "grpc", outcome: "allowed", reason: "ok", status: 200, checkMicros: 5, country: `c${i}`, path: `/v1/x/${i}` }));
    const key = { uid: "u", namespace: "ns", name: "k", owner: "o", labels: { tier: "gold" }, scopes: ["read"], createdAt: now - DAY };
    /** CPU microseconds this thread spent writing the batch into a fresh store, its writer on a thread or not. */
    const callerCpu = async (writerThread: boolean): Promise<{ store: AnalyticsStore; micros: number }> => {
      const store = await openAnalyticsStore({ ...options(file()), writerThread }, createLogger({ sink: () => {} }));
      stores.push(store);
      await store.upsertKeys([key]);
      const c0 = process.threadCpuUsage();
      await store.writeRequests(rows);
      const c1 = process.threadCpuUsage(c0);
      return { store, micros: c1.user + c1.system };
    };
    const inline = await callerCpu(false);
    const threaded = await callerCpu(true);
    expect(threadNames()).toContain(WRITER_THREAD_NAME);
    // Handing 5000 rows over is a few milliseconds; SQLite's statements ran on the writer's thread.
    expect(threaded.micros).toBeLessThan(inline.micros / 3);
    expect(await threaded.store.queries.topKeys({ since: now - DAY, until: now })).toMatchObject([{ namespace: "ns", name: "k", requests: 5000 }]);
    expect(await threaded.store.queries.countries({ since: now - DAY, until: now }, 1000)).toHaveLength(1000);
  });

  it("moves a row batch's buffers to the thread rather than copying them", async () => {
    const store = await openAnalyticsStore(options(file()), createLogger({ sink: () => {} }));
    stores.push(store);
    const now = Date.now();
    const post = vi.spyOn(Worker.prototype, "postMessage");
    try {
      await store.writeRequests([{ at: now - 10, uid: "u", keyId: "kw_1", front: "grpc", outcome: "allowed", reason: "ok", status: 200, checkMicros: 5, path: "/v1/x" }]);
      const sent = post.mock.calls.find(([m]) => (m as { op?: string }).op === "rows");
      const transfer = sent?.[1] as readonly ArrayBuffer[] | undefined;
      expect(transfer?.length).toBeGreaterThan(0);
      // A moved buffer is detached on this side.
      for (const b of transfer ?? []) expect(b.byteLength).toBe(0);
    } finally {
      post.mockRestore();
    }
  });

  it("places the rows' networks and countries on its own thread, from the shipped country database", async () => {
    const store = await openAnalyticsStore(options(file()), createLogger({ sink: () => {} }));
    stores.push(store);
    expect(store.placesGeography).toBe(true);
    const now = Date.now();
    await store.upsertKeys([{ uid: "u", namespace: "ns", name: "k", owner: "o", labels: {}, scopes: [], createdAt: now - DAY }]);
    // Rows as the check thread makes them: their source only (unplacedRowFromCheck).
    const row = (source: string): RequestRow => ({ at: now - 10, uid: "u", keyId: "kw_1", front: "grpc", outcome: "allowed", reason: "ok", status: 200, checkMicros: 5, source });
    await store.writeRequests([row("81.2.69.160"), row("8.8.8.8"), row("10.1.2.3"), row("2001:db8::1")]);
    const got = await store.queries.countries({ since: now - DAY, until: now }, 10);
    expect(Object.fromEntries(got.map((c) => [c.country, c.requests]))).toEqual({ GB: 1, US: 1, private: 1, "": 1 });
    const networks = await store.queries.networks({ since: now - DAY, until: now }, 10);
    expect(networks.map((n) => n.network).sort()).toEqual(["10.1.2.0/24", "2001:db8::/48", "8.8.8.0/24", "81.2.69.0/24"]);
  });

  it("started for keyward authz, returns once the file is probed, before the thread has opened the store; writes wait for the thread, and its error is `opened`'s", async () => {
    const path = file();
    const started = await startAnalyticsStore(options(path), createLogger({ sink: () => {} }));
    let open = false;
    const opened = started.opened.then(() => { open = true; });
    // The thread is still loading its modules: the caller went on without it.
    expect(open).toBe(false);
    await started.store.upsertKeys([{ uid: "u", namespace: "ns", name: "k", owner: "o", labels: {}, scopes: [], createdAt: 0 }]);
    await opened;
    expect(await started.store.queries.keyNamespaces()).toEqual(["ns"]);
    await started.store.close();
    // What the thread meets opening (here the country database) rejects `opened`, not the start.
    const failing = await startAnalyticsStore({ ...options(file()), countryDatabase: "/nonexistent/country.mmdb" }, createLogger({ sink: () => {} }));
    await expect(failing.opened).rejects.toMatchObject({ code: "ConfigInvalid" });
    await failing.store.close();
    // A bad path is found before: the start itself fails.
    const d = mkdtempSync(join(tmpdir(), "keyward-writer-thread-"));
    dirs.push(d);
    writeFileSync(join(d, "not-a-dir"), "");
    await expect(startAnalyticsStore(options(join(d, "not-a-dir", "x.sqlite")), createLogger({ sink: () => {} }))).rejects.toMatchObject({ code: "AnalyticsStoreFailed" });
  }, 30_000);

  it("stops start-up with ConfigInvalid when the country database cannot be read", async () => {
    const err = await openAnalyticsStore({ ...options(file()), countryDatabase: "/nonexistent/country.mmdb" }, createLogger({ sink: () => {} })).then(
      async (s) => {
        await s.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ name: "KeywardError", code: "ConfigInvalid", message: expect.stringContaining("/nonexistent/country.mmdb") as unknown });
  });

  it("keeps a store's start-up failure as the store's error: a SQLite path that cannot be written", async () => {
    const d = mkdtempSync(join(tmpdir(), "keyward-writer-thread-"));
    dirs.push(d);
    writeFileSync(join(d, "not-a-dir"), "");
    await expect(openAnalyticsStore(options(join(d, "not-a-dir", "x.sqlite")), createLogger({ sink: () => {} }))).rejects.toMatchObject({ code: "AnalyticsStoreFailed" });
  });

  it("rejects with the store's own error when the thread cannot open the store, and leaves no thread behind", async () => {
    const d = mkdtempSync(join(tmpdir(), "keyward-writer-thread-"));
    dirs.push(d);
    writeFileSync(join(d, "not-a-dir"), "");
    const err = await startWriterThread(options(join(d, "not-a-dir", "x.sqlite")), createLogger({ sink: () => {} })).opened.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ name: "KeywardError", code: "AnalyticsStoreFailed", message: expect.stringContaining("not-a-dir") as unknown });
    await expect.poll(() => threadNames().includes(WRITER_THREAD_NAME)).toBe(false);
  });

  it("refuses a write the store refuses, with the store's error, and takes the next one", async () => {
    const path = file();
    const store = await openAnalyticsStore(options(path), createLogger({ sink: () => {} }));
    stores.push(store);
    const now = Date.now();
    // outcome is NOT NULL: the batch's transaction fails whole, on the thread.
    const bad = [{ at: now, uid: "u", keyId: "kw_1", front: "grpc", outcome: null, reason: "ok", status: 200, checkMicros: 5 }] as unknown as RequestRow[];
    await expect(store.writeRequests(bad)).rejects.toThrow(/NOT NULL/i);
    await store.writeRequests([{ at: now - 10, uid: "u", keyId: "kw_1", front: "grpc", outcome: "allowed", reason: "ok", status: 200, checkMicros: 5 }]);
    await store.upsertKeys([{ uid: "u", namespace: "ns", name: "k", owner: "o", labels: {}, scopes: [], createdAt: now - DAY }]);
    expect(await store.queries.topKeys({ since: now - DAY, until: now })).toMatchObject([{ name: "k", requests: 1 }]);
  });

  it("fails the call in flight when its thread dies, and starts a new thread at the next call", async () => {
    const { path, lines, writer } = await crashingWriter();
    const now = Date.now();
    const row = (requestId: string): RequestRow => ({ at: now - 10, requestId, uid: "u", keyId: "kw_1", front: "grpc", outcome: "allowed", reason: "ok", status: 200, checkMicros: 5 });
    await expect(writer.writeRequests([row("crash")])).rejects.toThrow(/analytics writer thread exited \(code 3\)/);
    expect(lines.join("\n")).toContain("analytics writer thread exited; a new one starts at the next call");
    await writer.writeRequests([row("r-1"), row("r-2")]);
    const reader = await closedAndRead(writer, path, now);
    expect(threadNames()).not.toContain(WRITER_THREAD_NAME);
    expect(await reader.queries.topKeys({ since: now - DAY, until: now })).toMatchObject([{ name: "k", requests: 2 }]);
  });

  it("sends a batch again at once, from a new string table, to a thread started anew between two writes", async () => {
    const { path, writer } = await crashingWriter();
    const now = Date.now();
    const row = (requestId: string, route: string): RequestRow => ({ at: now - 10, requestId, uid: "u", keyId: "kw_1", front: "grpc", outcome: "allowed", reason: "ok", status: 200, checkMicros: 5, route });
    await writer.writeRequests([row("r-1", "GET /a")]);
    // The thread dies outside a write: the check thread's table says it holds strings it does not.
    await expect(writer.runRetention()).rejects.toThrow(/analytics writer thread exited \(code 4\)/);
    // The next write is refused by the new thread and sent again from a new table: the caller sees it taken.
    await writer.writeRequests([row("r-2", "GET /a"), row("r-3", "GET /b")]);
    await writer.writeRequests([row("r-4", "GET /b")]);
    const reader = await closedAndRead(writer, path, now);
    expect(await reader.queries.topKeys({ since: now - DAY, until: now })).toMatchObject([{ name: "k", requests: 4 }]);
    expect(await reader.queries.endpoints({ since: now - DAY, until: now }, "route")).toMatchObject([{ endpoint: "GET /a", requests: 2 }, { endpoint: "GET /b", requests: 2 }]);
  });

  it("renewed after the key records, ends the old thread once its write in flight has landed, then writes everything after on a new one, from a new string table: nothing lost or written twice", async () => {
    const path = file();
    const store = await openAnalyticsStore(options(path), createLogger({ sink: () => {} }));
    stores.push(store);
    const before = writerThreadIds();
    expect(before).toHaveLength(1);
    const now = Date.now();
    const rows = (n: number, route: string): RequestRow[] => Array.from({ length: n }, (_, i) => ({ at: now - 1000 - i, uid: "u", keyId: "kw_1", front: "grpc", outcome: "allowed", reason: "ok", status: 200, checkMicros: 5, route }));
    const posted = vi.spyOn(Worker.prototype, "postMessage");
    try {
      const inFlight = store.writeRequests(rows(2000, "GET /a"));
      const renewing = store.afterKeyRecords!(RENEW_AFTER_KEY_RECORDS);
      // Made while the old thread closes: held for the new one, its strings in a table of its own.
      const after = store.writeRequests([...rows(3, "GET /a"), ...rows(2, "GET /b")]);
      await Promise.all([inFlight, renewing, after]);
      await store.upsertKeys([{ uid: "u", namespace: "ns", name: "k", owner: "o", labels: {}, scopes: [], createdAt: now - DAY }]);
      // Each batch sent once: none refused by the new thread for a table it does not hold.
      expect(posted.mock.calls.filter(([c]) => (c as { op?: string }).op === "rows")).toHaveLength(2);
    } finally {
      posted.mockRestore();
    }
    const renewed = writerThreadIds();
    expect(renewed).toHaveLength(1);
    expect(renewed).not.toEqual(before);
    expect(await store.queries.topKeys({ since: now - DAY, until: now })).toMatchObject([{ name: "k", requests: 2005 }]);
    expect(await store.queries.endpoints({ since: now - DAY, until: now }, "route")).toMatchObject([{ endpoint: "GET /a", requests: 2003 }, { endpoint: "GET /b", requests: 2 }]);
   }, 30_000);

  it("renewed with nothing to write meanwhile, ends the old thread before it starts the new one: the old one's memory is freed before the new one allocates", async () => {
    const store = await openAnalyticsStore(options(file()), createLogger({ sink: () => {} }));
    stores.push(store);
    const before = writerThreadIds();
    let most = 0;
    const state = { renewed: false };
    const renewing = store.afterKeyRecords!(RENEW_AFTER_KEY_RECORDS).finally(() => {
      state.renewed = true;
    });
    while (!state.renewed) {
      most = Math.max(most, writerThreadIds().length);
      await new Promise((r) => setImmediate(r));
    }
    await renewing;
    expect(most).toBe(1);
    await expect.poll(() => writerThreadIds()).toHaveLength(1);
    expect(writerThreadIds()).not.toEqual(before);
  }, 30_000);

  it("from RENEW_AFTER_KEY_RECORDS ApiKeys listed at start, writes their records with a page cache of START_SQLITE_CACHE_KIB, then starts anew; below it, neither", async () => {
    const writer = startWriterThread(options(file()), createLogger({ sink: () => {} }), new URL("./writer-worker.calls.test-support.ts", import.meta.url));
    const calls = async (): Promise<WriterCall[]> => (await writer.runRetention()) as unknown as WriterCall[];
    try {
      await writer.beforeKeyRecords(RENEW_AFTER_KEY_RECORDS - 1);
      await writer.upsertKeys([]);
      await writer.afterKeyRecords(RENEW_AFTER_KEY_RECORDS - 1);
      const first = writerThreadIds();
      expect(await calls()).toEqual([{ op: "keys", keys: [] }]);
      await writer.beforeKeyRecords(RENEW_AFTER_KEY_RECORDS);
      expect(await calls()).toEqual([{ op: "keys", keys: [] }, { op: "pageCache", kib: START_SQLITE_CACHE_KIB }]);
      expect(writerThreadIds()).toEqual(first);
      await writer.afterKeyRecords(RENEW_AFTER_KEY_RECORDS);
      // A new thread, which was asked nothing: its connection has the writer's own page cache (WRITER_SQLITE_CACHE_KIB).
      expect(await calls()).toEqual([]);
      expect(writerThreadIds()).not.toEqual(first);
    } finally {
      await writer.close();
    }
  }, 30_000);

  it("opens the writer thread's SQLite connection with a page cache of WRITER_SQLITE_CACHE_KIB, smaller than the store's own", async () => {
    const ws = await openWriterThreadStore({ ...options(file()), writerThread: false }, createLogger({ sink: () => {} }));
    try {
      expect((await ws.backend.db.executeQuery(CompiledQuery.raw("pragma cache_size"))).rows[0]).toEqual({ cache_size: -WRITER_SQLITE_CACHE_KIB });
      expect(WRITER_SQLITE_CACHE_KIB).toBeLessThan(8192);
    } finally {
      await ws.close();
    }
  });

  it("sets the SQLite connection's page cache when asked", async () => {
    const ws = await openWriteStore({ ...options(file()), writerThread: false }, createLogger({ sink: () => {} }));
    try {
      const cacheSize = async (): Promise<unknown> => (await ws.backend.db.executeQuery(CompiledQuery.raw("pragma cache_size"))).rows[0];
      expect(await cacheSize()).toEqual({ cache_size: -8192 });
      await ws.pageCache(START_SQLITE_CACHE_KIB);
      expect(await cacheSize()).toEqual({ cache_size: -START_SQLITE_CACHE_KIB });
    } finally {
      await ws.close();
    }
  });

  it("ends its thread after writerIdleMs without a call, and the next write starts a new one, from a new string table: nothing lost or written twice (ADR 71)", async () => {
    const path = file();
    const clock = new ManualClock(Date.now());
    const store = await openAnalyticsStore({ ...options(path), writerIdleMs: 60_000, writerClock: clock }, createLogger({ sink: () => {} }));
    stores.push(store);
    const now = Date.now();
    const rows = (n: number, route: string): RequestRow[] => Array.from({ length: n }, (_, i) => ({ at: now - 1000 - i, uid: "u", keyId: "kw_1", front: "grpc", outcome: "allowed", reason: "ok", status: 200, checkMicros: 5, route }));
    await store.writeRequests(rows(3, "GET /a"));
    const first = writerThreadIds();
    expect(first).toHaveLength(1);
    await clock.advance(59_999);
    expect(writerThreadIds()).toEqual(first);
    await clock.advance(1);
    await expect.poll(() => writerThreadIds(), { timeout: 10_000 }).toEqual([]);
    const posted = vi.spyOn(Worker.prototype, "postMessage");
    try {
      // The new thread holds none of the old one's strings: the batch carries its whole table and is taken at once.
      await store.writeRequests([...rows(2, "GET /a"), ...rows(1, "GET /b")]);
      expect(posted.mock.calls.filter(([c]) => (c as { op?: string }).op === "rows")).toHaveLength(1);
    } finally {
      posted.mockRestore();
    }
    const second = writerThreadIds();
    expect(second).toHaveLength(1);
    expect(second).not.toEqual(first);
    await store.upsertKeys([{ uid: "u", namespace: "ns", name: "k", owner: "o", labels: {}, scopes: [], createdAt: now - DAY }]);
    expect(await store.queries.topKeys({ since: now - DAY, until: now })).toMatchObject([{ name: "k", requests: 6 }]);
    expect(await store.queries.endpoints({ since: now - DAY, until: now }, "route")).toMatchObject([{ endpoint: "GET /a", requests: 5 }, { endpoint: "GET /b", requests: 1 }]);
  }, 30_000);

  it("never ends its thread while a write is in flight: the idle time counts from the last call's end", async () => {
    const clock = new ManualClock(Date.now());
    const store = await openAnalyticsStore({ ...options(file()), writerIdleMs: 1_000, writerClock: clock }, createLogger({ sink: () => {} }));
    stores.push(store);
    const now = Date.now();
    const writing = store.writeRequests(Array.from({ length: 5000 }, (_, i) => ({ at: now - 1000 - i, uid: "u", keyId: "kw_1", front: "grpc", outcome: "allowed" as const, reason: "ok", status: 200, checkMicros: 5 })));
    // No idle timer runs while the write is in flight, however much time passes.
    expect(clock.pendingTimers).toBe(0);
    await clock.advance(10_000);
    const during = writerThreadIds();
    expect(during).toHaveLength(1);
    await writing;
    await clock.advance(999);
    expect(writerThreadIds()).toEqual(during);
    await clock.advance(1);
    await expect.poll(() => writerThreadIds(), { timeout: 10_000 }).toEqual([]);
  }, 30_000);

  it("with an idle end, ends its thread after the start's key records and starts none until the next call", async () => {
    const clock = new ManualClock(Date.now());
    const writer = startWriterThread({ ...options(file()), writerIdleMs: 60_000, writerClock: clock }, createLogger({ sink: () => {} }), new URL("./writer-worker.calls.test-support.ts", import.meta.url));
    try {
      await writer.opened;
      await writer.beforeKeyRecords(RENEW_AFTER_KEY_RECORDS);
      await writer.upsertKeys([]);
      expect(writerThreadIds()).toHaveLength(1);
      await writer.afterKeyRecords(RENEW_AFTER_KEY_RECORDS);
      // Ended, and none started in its place.
      expect(writer.running).toBe(false);
      expect(writerThreadIds()).toEqual([]);
      // A new thread, which was asked nothing.
      expect(await writer.runRetention()).toEqual([]);
      expect(writerThreadIds()).toHaveLength(1);
    } finally {
      await writer.close();
    }
  }, 30_000);

  it("runs retention once the store is open and every retentionIntervalMs after, on a thread started for it when none runs", async () => {
    const clock = new ManualClock(Date.now());
    const lines: string[] = [];
    const posted = vi.spyOn(Worker.prototype, "postMessage");
    const retentions = (): number => posted.mock.calls.filter(([c]) => (c as { op?: string }).op === "retention").length;
    const writer = startWriterThread({ ...options(file()), retentionIntervalMs: 3_600_000, writerIdleMs: 60_000, writerClock: clock }, createLogger({ sink: (l) => lines.push(l) }), new URL("./writer-worker.calls.test-support.ts", import.meta.url));
    try {
      await writer.opened;
      await expect.poll(retentions).toBe(1);
      // Answered: the idle end and the next run wait on the clock.
      await expect.poll(() => clock.pendingTimers).toBe(2);
      await clock.advance(60_000);
      await expect.poll(() => writerThreadIds(), { timeout: 10_000 }).toEqual([]);
      await clock.advance(3_600_000 - 60_000 - 1);
      expect(retentions()).toBe(1);
      await clock.advance(1);
      // The hourly run starts a thread of its own; it ends again once idle.
      await expect.poll(retentions).toBe(2);
      expect(writerThreadIds()).toHaveLength(1);
      await expect.poll(() => clock.pendingTimers).toBe(2);
      await clock.advance(60_000);
      await expect.poll(() => writerThreadIds(), { timeout: 10_000 }).toEqual([]);
      expect(lines.filter((l) => l.includes("retention failed"))).toEqual([]);
    } finally {
      posted.mockRestore();
      await writer.close();
    }
  }, 30_000);

  it("closed while it renews its thread, ends both threads and starts none", async () => {
    const store = await openAnalyticsStore(options(file()), createLogger({ sink: () => {} }));
    const renewing = store.afterKeyRecords!(RENEW_AFTER_KEY_RECORDS);
    await store.close();
    expect(writerThreadIds()).toEqual([]);
    await renewing;
    expect(writerThreadIds()).toEqual([]);
   }, 30_000);

  it("ends its thread on close, after the write in flight has landed", async () => {
    const path = file();
    const store = await openAnalyticsStore(options(path), createLogger({ sink: () => {} }));
    const now = Date.now();
    const writing = store.writeRequests(Array.from({ length: 2000 }, (_, i) => ({ at: now - 1000 - i, uid: "u", keyId: "kw_1", front: "grpc", outcome: "allowed" as const, reason: "ok", status: 200, checkMicros: 5 })));
    const closing = store.close();
    await writing;
    await closing;
    expect(threadNames()).not.toContain(WRITER_THREAD_NAME);
    const again = await openAnalyticsStore({ ...options(path), writerThread: false }, createLogger({ sink: () => {} }));
    stores.push(again);
    await again.upsertKeys([{ uid: "u", namespace: "ns", name: "k", owner: "o", labels: {}, scopes: [], createdAt: now - DAY }]);
    expect(await again.queries.topKeys({ since: now - DAY, until: now })).toMatchObject([{ requests: 2000 }]);
  });

  it("carries an error's KeywardError code, code and causes across threads, and a log line's fields, or the line alone when a field cannot cross", async () => {
    const pgErr = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" });
    const back = fromWire(structuredClone(toWire(new KeywardError("AnalyticsStoreFailed", "analytics store postgres://kw@db/kw: refused", { cause: pgErr }))));
    expect(back).toBeInstanceOf(KeywardError);
    expect(back).toMatchObject({ code: "AnalyticsStoreFailed", message: "analytics store postgres://kw@db/kw: refused", cause: { message: "connect ECONNREFUSED 127.0.0.1:1", code: "ECONNREFUSED" } });
    const { port1, port2 } = new MessageChannel();
    const got: ThreadReply[] = [];
    port2.on("message", (r: ThreadReply) => got.push(r));
    const log = forwardingLogger((r) => { port1.postMessage(r); }, (l) => l !== "debug", { component: "analytics" });
    log.debug("not sent");
    log.child({ store: "sqlite x" }).warn("analytics store connection lost", { err: pgErr });
    log.info("with a function", { f: () => 1 });
    await expect.poll(() => got.length).toBe(2);
    port1.close();
    const [lost, fn] = got as (ThreadReply & { op: "log" })[];
    expect(lost).toMatchObject({ level: "warn", msg: "analytics store connection lost" });
    expect(unwireFields(lost!.fields)).toMatchObject({ component: "analytics", store: "sqlite x", err: { message: "connect ECONNREFUSED 127.0.0.1:1", code: "ECONNREFUSED" } });
    expect(fn).toMatchObject({ level: "info", msg: "with a function", fields: { fieldsDropped: true } });
  });
});
