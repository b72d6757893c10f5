// The analytics write path: a bounded queue between the checks and the store.
// push() is O(1) and never waits; rows go to the store in batches of at most
// `batchSize`, as soon as a batch is full or `flushIntervalMs` after the first
// row waited, with one write in flight at a time. KeyRecords wait in a map by
// uid (the latest record of a key wins) and are written before the rows.
//
// Rows wait in columns (row-columns.ts, ADR 65), a batch's worth to a RowColumns, so a waiting
// row is no object: a check's row is written there straight from its event (pushCheck). A
// writer that takes columns (the writer thread) gets them as they are; any other gets row
// objects made from them at the write.
//
// When the store is slow or down, rows pile up; once `capacity` rows wait, each
// new row drops the oldest one. A batch the store refused goes back to the
// front of the queue (it holds the oldest rows) and is written again after
// `retryMs`, or dropped first if newer rows need its place. Every dropped row is
// counted; an episode of drops is logged once when it starts and once when it
// ends (the first write that leaves less than a batch waiting), with its count.
//
// While the process is short of CPU (`cpu`: its cgroup's throttling, ADR 75, or its thread
// waiting for a CPU, ADR 76), the queue sheds: new rows are counted as dropped without being made, and no
// write starts, so the CPU goes to the checks; an episode of shedding is logged once when it
// starts, with its reason, and once when it ends. Rows already waiting stay, and are written once
// the CPU is no longer short.
import type { Clock } from "../k8s/clock.ts";
import type { Logger } from "../log.ts";
import type { CheckEvent } from "../check/event.ts";
import type { AnalyticsWriter, KeyRecord, RequestRow } from "./row.ts";
import type { CpuPressure } from "../util/cpu-pressure.ts";
import { DEFAULT_ROW_TABLE_LIMITS, RowColumns, rowsOf, StringTable, type RowTableLimits } from "./row-columns.ts";

export interface QueueCounters {
  /** Rows the store accepted. */
  written(n: number): void;
  /** Rows dropped: the oldest, to make room, or those left when stopping. */
  dropped(n: number): void;
  /** A write (rows or keys) the store refused. */
  failed(): void;
}

export interface AnalyticsQueueOptions {
  writer: AnalyticsWriter;
  clock: Clock;
  /** Rows waiting at most (the batch in flight is not counted). */
  capacity: number;
  /** Rows per writeRequests call, at most. */
  batchSize: number;
  /** Longest a row waits before a write starts, when no batch fills sooner. */
  flushIntervalMs: number;
  /** Wait after a refused write before the next one; default flushIntervalMs. */
  retryMs?: number;
  log: Logger;
  counters?: QueueCounters;
  /** Bounds of the string table the rows' repeated strings are kept in (row-columns.ts). */
  tableLimits?: RowTableLimits;
  /** Whether the process is short of CPU: while it is, rows are shed and no write starts. None: never. */
  cpu?: CpuPressure;
}

/** Emptied columns kept for the next rows, at most: their buffers are not allocated anew. */
const SPARE_COLUMNS = 2;

export class AnalyticsQueue {
  private readonly options: AnalyticsQueueOptions;
  private readonly retryMs: number;
  /** The rows waiting, oldest first, a batch's worth at most in each; only the last takes new rows. */
  private waiting: RowColumns[] = [];
  private spare: RowColumns[] = [];
  private table = new StringTable();
  private readonly tableLimits: RowTableLimits;
  private size = 0;
  private keys = new Map<string, KeyRecord>();
  private writing: Promise<boolean> | undefined;
  private keysRefused = false;
  private timer: (() => void) | undefined;
  private timerAt = Infinity;
  /** After a refused write, no write starts before this time, however many rows come. */
  private notBefore = 0;
  private stopped = false;
  /** Rows dropped since start. */
  private droppedTotal = 0;
  /** Open drop episode: when it started and the drop count then. */
  private episode: { since: number; droppedBefore: number } | undefined;
  private lastError: unknown;
  private writtenTotal = 0;
  /** Open shedding episode: when it started and the drop count then. */
  private shedEpisode: { since: number; droppedBefore: number } | undefined;
  /** Why the CPU was short at the last call of shedding() that found it so. */
  private shortWhy = "";

  constructor(options: AnalyticsQueueOptions) {
    if (options.capacity < 1 || options.batchSize < 1) throw new RangeError("analytics queue capacity and batch size must be at least 1");
    this.options = options;
    this.retryMs = options.retryMs ?? options.flushIntervalMs;
    this.tableLimits = options.tableLimits ?? DEFAULT_ROW_TABLE_LIMITS;
  }

  /** Rows waiting (not counting a batch being written). */
  get queued(): number {
    return this.size;
  }

  /** Rows dropped since start. */
  get dropped(): number {
    return this.droppedTotal;
  }

  /** Rows the store accepted since start. */
  get written(): number {
    return this.writtenTotal;
  }

  /**
   * Whether rows are being shed now: the process was short of CPU in the last sampling interval
   * (ADR 75, 76). A shedding episode ends, and is logged, at the first call that finds it no longer is.
   */
  shedding(): boolean {
    const cpu = this.options.cpu;
    if (!cpu) return false;
    const why = cpu.short(this.options.clock.now());
    if (why === undefined) this.endShedEpisode();
    else this.shortWhy = why;
    return why !== undefined;
  }

  private endShedEpisode(): void {
    const ep = this.shedEpisode;
    if (!ep) return;
    this.shedEpisode = undefined;
    this.options.log.info("analytics rows no longer shed: keyward is no longer short of CPU", { dropped: this.droppedTotal - ep.droppedBefore, forMs: this.options.clock.now() - ep.since });
  }

  /** Counts `n` rows as dropped without making them: shed while the CPU is short (see shedding). */
  shed(n: number): void {
    if (n <= 0) return;
    if (!this.shedEpisode) {
      this.shedEpisode = { since: this.options.clock.now(), droppedBefore: this.droppedTotal };
      this.options.log.warn("analytics rows shed: keyward is short of CPU; checks go first and new rows are dropped until it is not", { why: this.shortWhy, queued: this.size });
    }
    this.droppedTotal += n;
    this.options.counters?.dropped(n);
  }

  /** Queues a row; drops the oldest waiting row when the queue is full. Never waits. */
  push(row: RequestRow): void {
    const c = this.room();
    if (!c) return;
    c.appendRow(row);
    this.added();
  }

  /**
   * Queues the row of a check (without its network and country: for a writer that places them,
   * AnalyticsWriter.placesGeography), written straight from its event; false, and nothing
   * queued or dropped, when the check has no key. Drops the oldest waiting row when the queue is
   * full. Never waits.
   */
  pushCheck(e: CheckEvent): boolean {
    if (!e.key) return false;
    const c = this.room();
    if (!c) return true;
    c.appendCheck(e);
    this.added();
    return true;
  }

  /** The columns the next row goes into, a waiting row dropped if the queue is full; undefined (the row counted as dropped) once stopped. */
  private room(): RowColumns | undefined {
    if (this.stopped) {
      this.drop(1);
      return undefined;
    }
    if (this.size === this.options.capacity) this.dropOldest();
    const last = this.waiting.at(-1);
    if (last && !last.full && last.table === this.table) return last;
    // A new batch's columns; a table past its bounds gives way to a new one between batches.
    if (this.table.full(this.tableLimits)) this.table = new StringTable();
    const c = this.spare.pop() ?? new RowColumns(this.options.batchSize, this.table);
    c.clear(this.table);
    this.waiting.push(c);
    return c;
  }

  private added(): void {
    this.size++;
    if (this.size >= this.options.batchSize) this.schedule(0);
    // An armed timer fires within the flush interval already (no timer is armed while a write is in flight).
    else if (this.timer === undefined) this.schedule(this.options.flushIntervalMs);
  }

  private dropOldest(): void {
    const first = this.waiting[0] as RowColumns;
    first.dropFront(1);
    if (first.count === 0) this.release(this.waiting.shift() as RowColumns);
    this.size--;
    this.drop(1);
  }

  /** Keeps emptied columns for the next rows, up to SPARE_COLUMNS, holding none of their rows' strings. */
  private release(c: RowColumns): void {
    if (this.spare.length >= SPARE_COLUMNS || c.capacity !== this.options.batchSize) return;
    c.clear(this.table);
    this.spare.push(c);
  }

  /** Queues a key record for the next write; a later record of the same uid replaces it. */
  upsertKey(k: KeyRecord): void {
    if (this.stopped) return;
    this.keys.set(k.uid, k);
    this.schedule(this.options.flushIntervalMs);
  }

  /** Writes everything waiting now, batch after batch; resolves when the queue is empty or a write failed. */
  async flush(): Promise<void> {
    this.cancelTimer();
    if (this.writing) await this.writing;
    while (this.size > 0 || this.keys.size > 0) {
      if (!(await this.writeOnce())) return;
    }
  }

  /** Stops taking rows, writes what waits (one try per batch); rows still left are counted as dropped. */
  async stop(): Promise<void> {
    await this.flush();
    this.stopped = true;
    this.cancelTimer();
    if (this.writing) await this.writing;
    const left = this.size;
    this.waiting = [];
    this.size = 0;
    this.keys.clear();
    if (left > 0) {
      this.drop(left);
      this.options.log.warn("analytics rows not written at shutdown", { dropped: left, err: this.lastError });
    }
    this.endEpisode(true);
    this.endShedEpisode();
  }

  private drop(n: number): void {
    this.droppedTotal += n;
    this.options.counters?.dropped(n);
    if (!this.episode) {
      this.episode = { since: this.options.clock.now(), droppedBefore: this.droppedTotal - n };
      this.options.log.warn("analytics rows dropped: the store is behind; the oldest rows give way", { queued: this.size, capacity: this.options.capacity, err: this.lastError });
    }
  }

  /** Ends the drop episode once a write left less than a batch waiting (the store caught up), or when stopping. */
  private endEpisode(force: boolean): void {
    const ep = this.episode;
    if (!ep || (!force && this.size >= this.options.batchSize)) return;
    this.episode = undefined;
    this.options.log.info("analytics rows no longer dropped", { dropped: this.droppedTotal - ep.droppedBefore, forMs: this.options.clock.now() - ep.since });
  }

  /** Arms the flush timer to fire within `ms` (an earlier one stays). */
  private schedule(ms: number): void {
    if (this.stopped || this.writing) return;
    const now = this.options.clock.now();
    const at = Math.max(now + ms, this.notBefore);
    if (this.timer && this.timerAt <= at) return;
    this.cancelTimer();
    this.timerAt = at;
    this.timer = this.options.clock.setTimer(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      // While the CPU is short, the write waits for the next sampling interval (ADR 75, 76).
      const cpu = this.options.cpu;
      if (cpu && this.shedding()) this.schedule(cpu.intervalMs);
      else void this.writeOnce();
    }, at - now);
  }

  private cancelTimer(): void {
    this.timer?.();
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  /**
   * One write: the keys waiting, else one batch of rows (after a refused key write, rows go
   * first, so a key the store refuses cannot hold the rows back). Resolves true when the store
   * accepted it; a write already in flight is the one waited for.
   */
  private writeOnce(): Promise<boolean> {
    if (this.writing) return this.writing;
    const keysFirst = this.keys.size > 0 && (!this.keysRefused || this.size === 0);
    return this.inFlight(keysFirst ? this.writeKeys() : this.writeRows(), keysFirst);
  }

  /**
   * Writes key records that `make` makes once the write starts, after the write in flight, as the
   * queue's one write then; resolves whether the store took them. Nothing here holds them while
   * the store writes them (the writer thread works on its own copy): a chunk of the start's key
   * records (usage's recordKeys) is not kept alive, and promoted to the old generation, while it
   * waits for the store. Records the store refuses are the caller's to queue (upsertKey).
   */
  async writeKeysNow(make: () => readonly KeyRecord[]): Promise<boolean> {
    while (this.writing) await this.writing;
    if (this.stopped) return false;
    const sent = this.sendKeys(make).then(
      () => true,
      (err: unknown) => {
        this.failed(err);
        return false;
      },
    );
    return this.inFlight(sent, true);
  }

  /** Not async: once the writer has the records, no frame of this queue holds them. */
  private sendKeys(make: () => readonly KeyRecord[]): Promise<void> {
    return this.options.writer.upsertKeys(make());
  }

  /** `write` as the write in flight: when it settles, the next write is scheduled. */
  private inFlight(write: Promise<boolean>, keysFirst: boolean): Promise<boolean> {
    const p = write.then((ok) => {
      this.writing = undefined;
      if (keysFirst) this.keysRefused = !ok;
      this.notBefore = ok ? 0 : this.options.clock.now() + this.retryMs;
      if (!this.stopped) {
        if (!ok) this.schedule(this.retryMs);
        else if (this.size >= this.options.batchSize || this.keys.size > 0) this.schedule(0);
        else if (this.size > 0) this.schedule(this.options.flushIntervalMs);
      }
      return ok;
    });
    this.writing = p;
    return p;
  }

  private async writeKeys(): Promise<boolean> {
    const batch = [...this.keys.values()];
    this.keys = new Map();
    try {
      await this.options.writer.upsertKeys(batch);
      return true;
    } catch (err) {
      this.failed(err);
      // Back in the map, unless a newer record of the key came meanwhile.
      for (const k of batch) if (!this.keys.has(k.uid)) this.keys.set(k.uid, k);
      return false;
    }
  }

  private async writeRows(): Promise<boolean> {
    const batch = this.takeBatch();
    if (!batch) return true;
    const n = batch.count;
    try {
      const w = this.options.writer;
      await (w.writeColumns ? w.writeColumns(batch) : w.writeRequests(rowsOf(batch)));
    } catch (err) {
      this.failed(err);
      this.requeue(batch);
      return false;
    }
    this.release(batch);
    this.writtenTotal += n;
    this.options.counters?.written(n);
    this.lastError = undefined;
    this.endEpisode(false);
    return true;
  }

  /**
   * The oldest rows waiting, a batch at most, out of the queue: the first columns when they hold
   * that many (or all there is), else the rows of the first columns and those after, moved into
   * one (as far as they share a string table).
   */
  private takeBatch(): RowColumns | undefined {
    const n = Math.min(this.size, this.options.batchSize);
    if (n === 0) return undefined;
    const first = this.waiting[0] as RowColumns;
    let batch: RowColumns;
    if (first.count === n || this.waiting.length === 1 || this.waiting[1]?.table !== first.table) {
      batch = this.waiting.shift() as RowColumns;
    } else {
      batch = this.spare.pop() ?? new RowColumns(this.options.batchSize, first.table);
      batch.clear(first.table);
      while (batch.count < n) {
        const c = this.waiting[0];
        if (!c || c.table !== batch.table) break;
        batch.takeFrom(c, Math.min(c.count, n - batch.count));
        if (c.count === 0) this.release(this.waiting.shift() as RowColumns);
      }
    }
    this.size -= batch.count;
    return batch;
  }

  private failed(err: unknown): void {
    this.lastError = err;
    this.options.counters?.failed();
    this.options.log.debug("analytics write failed; retrying", { err });
  }

  /** Puts a refused batch back at the front (its rows are the oldest); what does not fit is dropped, oldest first. */
  private requeue(batch: RowColumns): void {
    const room = this.options.capacity - this.size;
    const lost = Math.max(0, batch.count - room);
    batch.dropFront(lost);
    if (batch.count > 0) {
      this.waiting.unshift(batch);
      this.size += batch.count;
    } else this.release(batch);
    if (lost > 0) this.drop(lost);
  }
}
