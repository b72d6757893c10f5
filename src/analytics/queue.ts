// The analytics write path: a bounded queue between the checks and the store.
// push() is O(1) and never waits; rows go to the store in batches of at most
// `batchSize`, as soon as a batch is full or `flushIntervalMs` after the first
// row waited, with one write in flight at a time. KeyRecords wait in a map by
// uid (the latest record of a key wins) and are written before the rows.
//
// When the store is slow or down, rows pile up; once `capacity` rows wait, each
// new row drops the oldest one. A batch the store refused goes back to the
// front of the queue (it holds the oldest rows) and is written again after
// `retryMs`, or dropped first if newer rows need its place. Every dropped row is
// counted; an episode of drops is logged once when it starts and once when it
// ends (the first write that leaves less than a batch waiting), with its count.
import type { Clock } from "../k8s/clock.ts";
import type { Logger } from "../log.ts";
import type { AnalyticsWriter, KeyRecord, RequestRow } from "./row.ts";

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
}

export class AnalyticsQueue {
  private readonly options: AnalyticsQueueOptions;
  private readonly retryMs: number;
  /** A ring of `capacity` slots: rows[head], rows[head+1], ... are waiting, oldest first. */
  private readonly ring: (RequestRow | undefined)[];
  private head = 0;
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

  constructor(options: AnalyticsQueueOptions) {
    if (options.capacity < 1 || options.batchSize < 1) throw new RangeError("analytics queue capacity and batch size must be at least 1");
    this.options = options;
    this.retryMs = options.retryMs ?? options.flushIntervalMs;
    this.ring = new Array<RequestRow | undefined>(options.capacity);
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

  /** Queues a row; drops the oldest waiting row when the queue is full. Never waits. */
  push(row: RequestRow): void {
    if (this.stopped) {
      this.drop(1);
      return;
    }
    const cap = this.options.capacity;
    if (this.size === cap) {
      this.ring[this.head] = undefined;
      this.head = (this.head + 1) % cap;
      this.size--;
      this.drop(1);
    }
    this.ring[(this.head + this.size) % cap] = row;
    this.size++;
    this.schedule(this.size >= this.options.batchSize ? 0 : this.options.flushIntervalMs);
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
    this.ring.fill(undefined);
    this.size = 0;
    this.keys.clear();
    if (left > 0) {
      this.drop(left);
      this.options.log.warn("analytics rows not written at shutdown", { dropped: left, err: this.lastError });
    }
    this.endEpisode(true);
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
      void this.writeOnce();
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
    const p = (keysFirst ? this.writeKeys() : this.writeRows()).then((ok) => {
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
    const n = Math.min(this.size, this.options.batchSize);
    if (n === 0) return true;
    const cap = this.options.capacity;
    const batch: RequestRow[] = new Array<RequestRow>(n);
    for (let i = 0; i < n; i++) {
      const at = (this.head + i) % cap;
      batch[i] = this.ring[at] as RequestRow;
      this.ring[at] = undefined;
    }
    this.head = (this.head + n) % cap;
    this.size -= n;
    try {
      await this.options.writer.writeRequests(batch);
    } catch (err) {
      this.failed(err);
      this.requeue(batch);
      return false;
    }
    this.writtenTotal += n;
    this.options.counters?.written(n);
    this.lastError = undefined;
    this.endEpisode(false);
    return true;
  }

  private failed(err: unknown): void {
    this.lastError = err;
    this.options.counters?.failed();
    this.options.log.debug("analytics write failed; retrying", { err });
  }

  /** Puts a refused batch back at the front (its rows are the oldest); what does not fit is dropped, oldest first. */
  private requeue(batch: RequestRow[]): void {
    const cap = this.options.capacity;
    const room = cap - this.size;
    const keep = Math.min(room, batch.length);
    const lost = batch.length - keep;
    for (let i = batch.length - 1; i >= lost; i--) {
      this.head = (this.head - 1 + cap) % cap;
      this.ring[this.head] = batch[i];
      this.size++;
    }
    if (lost > 0) this.drop(lost);
  }
}
