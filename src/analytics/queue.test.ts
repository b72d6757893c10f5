import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../k8s/clock.ts";
import { createLogger } from "../log.ts";
import type { CheckEvent } from "../check/event.ts";
import { AnalyticsQueue, type AnalyticsQueueOptions } from "./queue.ts";
import type { AnalyticsWriter, KeyRecord, RequestRow } from "./row.ts";
import { RowBatchDecoder, RowBatchEncoder } from "./row-batch.ts";
import type { RowColumns } from "./row-columns.ts";
import { unplacedRowFromCheck } from "./rows.ts";

const row = (n: number): RequestRow => ({ at: n, uid: "u1", keyId: "kw_AbCdEfGh", front: "grpc", outcome: "allowed", reason: "ok", status: 200, checkMicros: 10, requestId: `r${n}` });
const key = (uid: string, owner = "acme"): KeyRecord => ({ uid, namespace: "shop", name: uid, owner, labels: {}, scopes: [], createdAt: 0 });

/** A store the test answers by hand: each write waits until the test resolves or rejects it. */
class FakeWriter implements AnalyticsWriter {
  readonly rows: number[] = [];
  readonly keys: KeyRecord[][] = [];
  readonly calls: ("rows" | "keys")[] = [];
  private pending: { ok: () => void; fail: (e: Error) => void }[] = [];
  /** Answer every write at once instead of holding it. */
  mode: "hold" | "ok" | "fail" = "ok";

  writeRequests(rows: readonly RequestRow[]): Promise<void> {
    this.calls.push("rows");
    return this.answer(() => this.rows.push(...rows.map((r) => r.at)));
  }

  upsertKeys(keys: readonly KeyRecord[]): Promise<void> {
    this.calls.push("keys");
    return this.answer(() => this.keys.push([...keys]));
  }

  get inFlight(): number {
    return this.pending.length;
  }

  /** Ends the oldest held write. */
  settle(ok: boolean): void {
    const p = this.pending.shift();
    if (!p) throw new Error("no write in flight");
    if (ok) p.ok();
    else p.fail(new Error("store down"));
  }

  private answer(onOk: () => void): Promise<void> {
    if (this.mode === "ok") {
      onOk();
      return Promise.resolve();
    }
    if (this.mode === "fail") return Promise.reject(new Error("store down"));
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ ok: () => { onOk(); resolve(); }, fail: reject });
    });
  }
}

const check = (n: number, more: Partial<CheckEvent> = {}): CheckEvent => ({
  at: n,
  key: { namespace: "shop", name: "acme", uid: "u1", keyId: "kw_AbCdEfGh", owner: "acme-team" },
  outcome: "allowed",
  reason: "ok",
  status: 200,
  front: "grpc",
  host: `h${n}.example`,
  path: `/v1/orders/${n}`,
  source: "81.2.69.160",
  latencySeconds: 0.00001,
  ...more,
});

/**
 * A writer that takes columns as the writer thread does: each batch encoded against the string
 * table its rows were written with, then decoded by "the thread" (which takes the batch's
 * strings before the store is tried). The test answers each write by hand: the store takes it,
 * refuses it, or the thread dies before it took anything (a new thread then holds no table).
 */
class ColumnsWriter implements AnalyticsWriter {
  readonly rows: RequestRow[] = [];
  private readonly encoder = new RowBatchEncoder();
  private thread = new RowBatchDecoder();
  private pending: ((answer: "ok" | "refuse" | "die") => void)[] = [];

  async writeColumns(c: RowColumns): Promise<void> {
    const batch = this.encoder.encodeColumns(c);
    const answer = await new Promise<"ok" | "refuse" | "die">((resolve) => this.pending.push(resolve));
    try {
      if (answer === "die") {
        this.thread = new RowBatchDecoder();
        throw new Error("the analytics writer thread exited (code 3)");
      }
      const rows = this.thread.decode(structuredClone(batch));
      if (answer === "refuse") throw new Error("store down");
      this.rows.push(...rows);
    } catch (err) {
      this.encoder.reset();
      throw err;
    }
  }

  writeRequests(): Promise<void> {
    return Promise.reject(new Error("rows go in columns to this writer"));
  }

  upsertKeys(): Promise<void> {
    return Promise.resolve();
  }

  answer(a: "ok" | "refuse" | "die"): void {
    const p = this.pending.shift();
    if (!p) throw new Error("no write in flight");
    p(a);
  }
}

function setup(o: Partial<AnalyticsQueueOptions> = {}) {
  const clock = new ManualClock(1_000_000);
  const writer = new FakeWriter();
  const logs: Record<string, unknown>[] = [];
  const counts = { written: 0, dropped: 0, failed: 0 };
  const q = new AnalyticsQueue({
    writer,
    clock,
    capacity: 10,
    batchSize: 4,
    flushIntervalMs: 1000,
    log: createLogger({ level: "debug", sink: (l) => logs.push(JSON.parse(l) as Record<string, unknown>) }),
    counters: { written: (n) => (counts.written += n), dropped: (n) => (counts.dropped += n), failed: () => counts.failed++ },
    ...o,
  });
  const episodes = () => logs.filter((l) => /^analytics rows (dropped|no longer)/.test(String(l.msg))).map((l) => ({ msg: l.msg, dropped: l.dropped }));
  return { clock, writer, q, counts, episodes };
}

describe("analytics queue", () => {
  it("writes a full batch at once and a partial one after the flush interval, in order", async () => {
    const { clock, writer, q } = setup();
    for (let i = 1; i <= 6; i++) q.push(row(i));
    await clock.advance(0);
    expect(writer.rows).toEqual([1, 2, 3, 4]);
    await clock.advance(999);
    expect(writer.rows).toEqual([1, 2, 3, 4]);
    await clock.advance(1);
    expect(writer.rows).toEqual([1, 2, 3, 4, 5, 6]);
    expect(q.queued).toBe(0);
    expect(q.written).toBe(6);
  });

  it("keeps one write in flight; rows pushed meanwhile wait their turn", async () => {
    const { clock, writer, q } = setup();
    writer.mode = "hold";
    for (let i = 1; i <= 9; i++) q.push(row(i));
    await clock.advance(5000);
    expect(writer.inFlight).toBe(1);
    expect(q.queued).toBe(5);
    writer.settle(true);
    await clock.advance(0);
    expect(writer.inFlight).toBe(1);
    writer.settle(true);
    await clock.advance(1000);
    writer.settle(true);
    await clock.advance(0);
    expect(writer.rows).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(writer.inFlight).toBe(0);
  });

  it("with a slow store drops exactly the oldest rows and logs the episode once at its start and once at its end", async () => {
    const { clock, writer, q, counts, episodes } = setup();
    writer.mode = "hold";
    for (let i = 1; i <= 4; i++) q.push(row(i));
    await clock.advance(0);
    expect(writer.inFlight).toBe(1); // rows 1-4 in flight
    for (let i = 5; i <= 30; i++) q.push(row(i)); // 26 rows for 10 places: 5..20 give way
    expect(q.dropped).toBe(16);
    expect(counts.dropped).toBe(16);
    expect(q.queued).toBe(10);
    expect(episodes()).toEqual([{ msg: "analytics rows dropped: the store is behind; the oldest rows give way", dropped: undefined }]);
    // A write goes through, but the queue stays full and rows keep coming: still the same episode.
    writer.settle(true);
    await clock.advance(0);
    expect(writer.rows).toEqual([1, 2, 3, 4]);
    expect(writer.inFlight).toBe(1); // 21..24
    for (let i = 31; i <= 38; i++) q.push(row(i)); // 8 rows for 4 places: 25..28 give way
    expect(q.dropped).toBe(20);
    writer.settle(true);
    await clock.advance(0);
    expect(episodes()).toHaveLength(1);
    writer.mode = "ok";
    writer.settle(true);
    await clock.advance(0);
    // Full batches go at once; the episode ends once less than a batch waits.
    expect(writer.rows).toEqual([1, 2, 3, 4, 21, 22, 23, 24, 29, 30, 31, 32, 33, 34, 35, 36]);
    expect(episodes()).toHaveLength(2);
    expect(episodes()[1]).toEqual({ msg: "analytics rows no longer dropped", dropped: 20 });
    await clock.advance(1000);
    expect(writer.rows.slice(-2)).toEqual([37, 38]);
    expect(counts).toEqual({ written: 18, dropped: 20, failed: 0 });
    expect(q.written + q.dropped).toBe(38);
  });

  it("with the store down retries the refused batch first, drops the oldest when full, and recovers in order", async () => {
    const { clock, writer, q, counts, episodes } = setup({ retryMs: 5000 });
    writer.mode = "fail";
    for (let i = 1; i <= 4; i++) q.push(row(i));
    await clock.advance(0);
    expect(counts.failed).toBe(1);
    expect(q.queued).toBe(4); // back at the front
    for (let i = 5; i <= 12; i++) q.push(row(i)); // 12 rows for 10 places: 1 and 2 give way
    expect(q.dropped).toBe(2);
    await clock.advance(4999);
    expect(counts.failed).toBe(1);
    await clock.advance(1);
    expect(counts.failed).toBe(2);
    // A refused batch that no longer fits: newer rows came while it was in flight.
    writer.mode = "hold";
    await clock.advance(5000);
    expect(writer.inFlight).toBe(1); // 3..6
    for (let i = 13; i <= 16; i++) q.push(row(i)); // 10 waiting again: 7..16
    writer.settle(false);
    await clock.advance(0);
    expect(q.dropped).toBe(6); // 3..6 did not fit back
    writer.mode = "ok";
    await clock.advance(4999);
    expect(writer.rows).toEqual([]);
    await clock.advance(1);
    expect(writer.rows).toEqual([7, 8, 9, 10, 11, 12, 13, 14]);
    await clock.advance(1000);
    expect(writer.rows).toEqual([7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
    expect(counts).toEqual({ written: 10, dropped: 6, failed: 3 });
    expect(episodes().map((e) => e.dropped)).toEqual([undefined, 6]);
  });

  it("writes key records before rows, the latest record of a key winning, and retries them when refused", async () => {
    const { clock, writer, q } = setup();
    q.upsertKey(key("a", "old"));
    q.upsertKey(key("b"));
    q.upsertKey(key("a", "new"));
    q.push(row(1));
    writer.mode = "fail";
    await clock.advance(1000);
    writer.mode = "ok";
    // After a refused key write the rows go first, then the keys again.
    await clock.advance(1000);
    expect(writer.calls).toEqual(["keys", "rows", "keys"]);
    expect(writer.keys).toEqual([[key("a", "new"), key("b")]]);
    expect(writer.rows).toEqual([1]);
  });

  it("writes key records made once their write starts, after the write in flight, as the queue's one write", async () => {
    const { clock, writer, q } = setup();
    writer.mode = "hold";
    for (let i = 1; i <= 4; i++) q.push(row(i));
    await clock.advance(0);
    expect(writer.inFlight).toBe(1);
    let made = 0;
    const written = q.writeKeysNow(() => {
      made++;
      return [key("a"), key("b")];
    });
    await clock.advance(0);
    // Not made while the rows' write is in flight.
    expect(made).toBe(0);
    writer.settle(true);
    await clock.advance(0);
    expect(made).toBe(1);
    expect(writer.calls).toEqual(["rows", "keys"]);
    // Rows pushed now wait for the key write, the one in flight.
    for (let i = 5; i <= 8; i++) q.push(row(i));
    await clock.advance(0);
    expect(writer.inFlight).toBe(1);
    writer.settle(true);
    await expect(written).resolves.toBe(true);
    await clock.advance(0);
    writer.settle(true);
    await clock.advance(0);
    expect(writer.keys).toEqual([[key("a"), key("b")]]);
    expect(writer.rows).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    // Refused: false, and nothing is kept (the caller queues them).
    writer.mode = "fail";
    await expect(q.writeKeysNow(() => [key("c")])).resolves.toBe(false);
    writer.mode = "ok";
    await q.flush();
    expect(writer.keys).toEqual([[key("a"), key("b")]]);
  });

  it("holds nothing of the key records it made while the store writes them", async () => {
    // A writer that, as the writer thread, works on its own copy (a structured clone) and
    // answers later.
    const copies: unknown[] = [];
    let answer: (() => void) | undefined;
    const writer: AnalyticsWriter = {
      writeRequests: () => Promise.resolve(),
      upsertKeys: (keys) => {
        copies.push(structuredClone(keys));
        return new Promise<void>((resolve) => (answer = resolve));
      },
    };
    const { q } = setup({ writer });
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    let record: WeakRef<KeyRecord> | undefined;
    const written = q.writeKeysNow(() => {
      const k = key("a");
      record = new WeakRef(k);
      return [k];
    });
    // Made and handed over; the write is still in flight.
    await new Promise((r) => setImmediate(r));
    expect(answer).toBeDefined();
    expect(copies).toHaveLength(1);
    // A collection now finds the record held by nothing, though its write has not settled.
    gc();
    await new Promise((r) => setImmediate(r));
    gc();
    expect(record?.deref()).toBeUndefined();
    answer?.();
    await expect(written).resolves.toBe(true);
  });

  it("stop writes what waits and counts what the store would not take as dropped", async () => {
    const { clock, writer, q, counts } = setup();
    for (let i = 1; i <= 6; i++) q.push(row(i));
    await q.stop();
    expect(writer.rows).toEqual([1, 2, 3, 4, 5, 6]);
    q.push(row(7));
    expect(counts.dropped).toBe(1);
    expect(clock.pendingTimers).toBe(0);

    const down = setup();
    down.writer.mode = "fail";
    for (let i = 1; i <= 6; i++) down.q.push(row(i));
    await down.q.stop();
    expect(down.counts).toEqual({ written: 0, dropped: 6, failed: 1 });
    expect(down.episodes().map((e) => e.dropped)).toEqual([undefined, 6]);
  });

  it("queues a check's row straight from its event, none for a check without a key, and hands a writer without columns row objects", async () => {
    const { clock, writer, q, counts } = setup();
    expect(q.pushCheck(check(1))).toBe(true);
    expect(q.pushCheck(check(2, { key: undefined, outcome: "unauthenticated", reason: "unknown_key", status: 401 }))).toBe(false);
    expect(q.pushCheck(check(3))).toBe(true);
    expect(q.queued).toBe(2);
    expect(counts.dropped).toBe(0);
    const rows: RequestRow[] = [];
    writer.writeRequests = (r) => {
      rows.push(...r);
      return Promise.resolve();
    };
    await clock.advance(1000);
    expect(rows).toEqual([unplacedRowFromCheck(check(1)), unplacedRowFromCheck(check(3))]);
  });

  it("gives a writer of columns every row once, in order, across a refused write, a thread that died and a string table started anew", async () => {
    const clock = new ManualClock(1_000_000);
    const writer = new ColumnsWriter();
    // Rows of new hosts outgrow a table of 6 strings within the first batch: the next batch's rows go to a new table.
    const q = new AnalyticsQueue({ writer, clock, capacity: 20, batchSize: 4, flushIntervalMs: 1000, retryMs: 1000, log: createLogger({ level: "error", sink: () => {} }), tableLimits: { maxStrings: 6, maxChars: 1_000_000 } });
    for (let i = 1; i <= 4; i++) q.pushCheck(check(i));
    await clock.advance(0);
    for (let i = 5; i <= 10; i++) q.pushCheck(check(i));
    // The thread took the first batch's strings, then the store refused it.
    writer.answer("refuse");
    await clock.advance(1000);
    // Sent again (its whole table: the thread may not hold it), and the thread dies.
    writer.answer("die");
    await clock.advance(1000);
    writer.answer("ok");
    await clock.advance(0);
    // The next batch is of the new table: sent whole to the thread, which holds the old one.
    writer.answer("ok");
    await clock.advance(1000);
    writer.answer("ok");
    await clock.advance(0);
    expect(writer.rows).toEqual(Array.from({ length: 10 }, (_, i) => unplacedRowFromCheck(check(i + 1))));
    expect([q.written, q.dropped, q.queued]).toEqual([10, 0, 0]);
  });

  it("while the CPU is short, counts shed rows as dropped, starts no write, keeps the rows waiting, and logs the episode once at each end", async () => {
    let throttled = false;
    const reads: number[] = [];
    const cpu = { intervalMs: 100, short: (now: number) => (reads.push(now), throttled ? "the CPU limit is hit" : undefined) };
    const { clock, writer, q, counts } = setup({ cpu });
    for (let i = 1; i <= 2; i++) q.push(row(i));
    throttled = true;
    expect(q.shedding()).toBe(true);
    q.shed(5);
    q.shed(3);
    expect(counts.dropped).toBe(8);
    expect(q.dropped).toBe(8);
    // The flush timer comes due while throttled: no write starts; it looks again each interval.
    await clock.advance(1000);
    expect(writer.calls).toEqual([]);
    await clock.advance(300);
    expect(writer.calls).toEqual([]);
    expect(q.queued).toBe(2);
    throttled = false;
    await clock.advance(100);
    expect(writer.rows).toEqual([1, 2]);
    expect(q.shedding()).toBe(false);
    expect(counts).toEqual({ written: 2, dropped: 8, failed: 0 });
    // Read on the clock the queue is given.
    expect(reads.every((t) => t >= 1_000_000)).toBe(true);
  });

  it("logs a shedding episode when it starts and when it ends, with the rows it shed", () => {
    let throttled = true;
    const logs: Record<string, unknown>[] = [];
    const { q } = setup({ cpu: { intervalMs: 100, short: () => (throttled ? "keyward waits for a CPU" : undefined) }, log: createLogger({ level: "debug", sink: (l) => logs.push(JSON.parse(l) as Record<string, unknown>) }) });
    const shedLogs = () => logs.filter((l) => /shed/.test(String(l.msg))).map((l) => ({ msg: l.msg, why: l.why, dropped: l.dropped }));
    expect(q.shedding()).toBe(true);
    q.shed(4);
    expect(q.shedding()).toBe(true);
    q.shed(6);
    expect(shedLogs()).toHaveLength(1);
    throttled = false;
    expect(q.shedding()).toBe(false);
    expect(q.shedding()).toBe(false);
    expect(shedLogs()).toEqual([
      { msg: "analytics rows shed: keyward is short of CPU; checks go first and new rows are dropped until it is not", why: "keyward waits for a CPU", dropped: undefined },
      { msg: "analytics rows no longer shed: keyward is no longer short of CPU", why: undefined, dropped: 10 },
    ]);
  });

  it("without a CPU sampler never sheds", () => {
    const { q } = setup();
    expect(q.shedding()).toBe(false);
  });

  it("never calls the store from push", () => {
    const { writer, q } = setup({ batchSize: 1 });
    q.push(row(1));
    expect(writer.calls).toEqual([]);
  });
});
