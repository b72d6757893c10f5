// The controller work queue: which objects need reconciling, and when.
//
// Events only say which object to look at; the queue turns them into calls of
// one handler, like client-go's workqueue and controller-runtime's controller:
//
//  - keys (`namespace/name`) are de-duplicated while waiting: adding a key that
//    is already waiting does nothing;
//  - a key is never handled by two workers at once: a key added while it is
//    being handled runs once more after the current run;
//  - `workers` keys are handled concurrently;
//  - a handler that throws is retried with capped exponential backoff per key
//    (retryBaseMs * 2^(failures-1), at most retryMaxMs), reset when it succeeds;
//    a TerminalError is not retried;
//  - a handler that returns `{ requeueAfter }` runs again after that long (for
//    rotation, expiry and grace periods). Of two timed adds the earlier wins;
//    an immediate add runs the key now and drops its timed add, because the
//    handler is level-triggered and re-establishes any timing it still needs.
import { KeywardError } from "../errors.ts";
import { silentLogger, type Logger } from "../log.ts";
import { systemClock, type Clock } from "./clock.ts";

/** What a handler asks of the queue after a successful run. */
export interface ReconcileResult {
  /** Run this key again after this many milliseconds (0 = right away). */
  requeueAfter?: number;
}

/**
 * Handles one key. Resolve (with nothing or a ReconcileResult) when done; throw to
 * retry with backoff; throw a TerminalError to give up. `signal` aborts on shutdown.
 */
export type ReconcileHandler = (
  key: string,
  ctx: { signal: AbortSignal },
  // void lets a handler that never requeues be a plain `async (key) => { ... }`.
  // eslint-disable-next-line @typescript-eslint/no-invalid-void-type
) => Promise<ReconcileResult | undefined | void>;

/** A failure that retrying cannot fix (an invalid spec, say): the key is not retried. */
export class TerminalError extends KeywardError {
  constructor(message: string, options?: ErrorOptions) {
    super("ReconcileTerminal", message, options);
    this.name = "TerminalError";
  }
}

/** How a handler run ended. */
export type WorkOutcome = "success" | "requeue" | "error" | "terminal";

/** Callbacks for metrics; each is optional. */
export interface WorkQueueMetrics {
  /** The number of keys waiting to run now changed (keys in progress or scheduled for later are not counted). */
  depth?(depth: number): void;
  /** A key was added that was not already waiting. */
  added?(): void;
  /** A failed key will be retried after `delayMs` (0 when it was added again meanwhile and runs at once). */
  retried?(delayMs: number): void;
  /** A key waited `ms` from being added to a worker taking it. */
  waited?(ms: number): void;
  /** A handler ran for `ms` and ended with `outcome`. */
  processed?(ms: number, outcome: WorkOutcome): void;
}

export interface WorkQueueOptions {
  /** Name for logs, such as "apikeys". */
  name: string;
  handler: ReconcileHandler;
  /** Keys handled at once. */
  workers: number;
  /** First retry delay after a failure. */
  retryBaseMs: number;
  /** Longest retry delay. */
  retryMaxMs: number;
  log?: Logger;
  clock?: Clock;
  metrics?: WorkQueueMetrics;
}

/** The queue key of an object: `namespace/name` (`/name` for cluster-scoped objects). */
export function objectKey(obj: { metadata?: { namespace?: string; name?: string } }): string {
  return `${obj.metadata?.namespace ?? ""}/${obj.metadata?.name ?? ""}`;
}

/** Splits a queue key back into namespace and name. */
export function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf("/");
  return i === -1 ? { namespace: "", name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

interface Timed {
  at: number;
  cancel: () => void;
}

export class WorkQueue {
  private readonly opts: WorkQueueOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly metrics: WorkQueueMetrics;
  /** Keys ready to run, in order; `head` is the next one. */
  private ready: string[] = [];
  private head = 0;
  /** Keys that must run (waiting in `ready`, or to run again after their current run). */
  private readonly dirty = new Map<string, number>();
  private readonly processing = new Set<string>();
  private readonly timed = new Map<string, Timed>();
  private readonly failures = new Map<string, number>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly abort = new AbortController();
  private started = false;
  private stopping = false;

  constructor(opts: WorkQueueOptions) {
    if (!Number.isInteger(opts.workers) || opts.workers < 1) {
      throw new KeywardError("ConfigInvalid", `work queue ${opts.name}: workers must be a whole number of at least 1`);
    }
    if (opts.retryBaseMs <= 0 || opts.retryMaxMs < opts.retryBaseMs) {
      throw new KeywardError("ConfigInvalid", `work queue ${opts.name}: need 0 < retryBaseMs <= retryMaxMs`);
    }
    this.opts = opts;
    this.clock = opts.clock ?? systemClock;
    this.log = (opts.log ?? silentLogger).child({ queue: opts.name });
    this.metrics = opts.metrics ?? {};
  }

  /** Keys waiting to run now. */
  get depth(): number {
    return this.ready.length - this.head;
  }

  /** Keys being handled right now. */
  get active(): number {
    return this.processing.size;
  }

  /** Keys scheduled to run later (requeueAfter or retry backoff). */
  get scheduled(): number {
    return this.timed.size;
  }

  /** Consecutive failures of a key since its last success. */
  failuresOf(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Starts handing keys to the handler. Keys added before start wait until then. */
  start(): void {
    if (this.stopping) return;
    this.started = true;
    this.pump();
  }

  /** Queues a key to run now (or right after its current run). */
  add(key: string): void {
    if (this.stopping) return;
    this.cancelTimed(key);
    if (this.dirty.has(key)) return;
    this.dirty.set(key, this.clock.now());
    this.metrics.added?.();
    if (this.processing.has(key)) return;
    this.ready.push(key);
    this.metrics.depth?.(this.depth);
    this.pump();
  }

  /** Queues a key to run after `delayMs`, unless it already runs sooner. */
  addAfter(key: string, delayMs: number): void {
    if (this.stopping || !Number.isFinite(delayMs)) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    if (this.dirty.has(key)) return;
    const at = this.clock.now() + delayMs;
    const existing = this.timed.get(key);
    if (existing && existing.at <= at) return;
    existing?.cancel();
    const cancel = this.clock.setTimer(() => {
      this.timed.delete(key);
      this.add(key);
    }, delayMs);
    this.timed.set(key, { at, cancel });
  }

  /**
   * Stops taking work: waiting and scheduled keys are dropped, the handlers'
   * signal is aborted, and the promise resolves when the runs in progress end.
   */
  async shutdown(): Promise<void> {
    this.stopping = true;
    for (const t of this.timed.values()) t.cancel();
    this.timed.clear();
    this.ready = [];
    this.head = 0;
    this.dirty.clear();
    this.abort.abort(new KeywardError("Timeout", `work queue ${this.opts.name} is shutting down`));
    this.metrics.depth?.(0);
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
  }

  private cancelTimed(key: string): void {
    const t = this.timed.get(key);
    if (!t) return;
    t.cancel();
    this.timed.delete(key);
  }

  private take(): string | undefined {
    if (this.head >= this.ready.length) return undefined;
    const key = this.ready[this.head++];
    if (this.head > 1024 && this.head * 2 > this.ready.length) {
      this.ready = this.ready.slice(this.head);
      this.head = 0;
    }
    return key;
  }

  private pump(): void {
    while (this.started && !this.stopping && this.processing.size < this.opts.workers) {
      const key = this.take();
      if (key === undefined) return;
      const addedAt = this.dirty.get(key) ?? this.clock.now();
      this.dirty.delete(key);
      this.processing.add(key);
      this.metrics.depth?.(this.depth);
      this.metrics.waited?.(this.clock.now() - addedAt);
      const run = this.process(key).finally(() => {
        this.inFlight.delete(run);
      });
      this.inFlight.add(run);
    }
  }

  private async process(key: string): Promise<void> {
    const started = this.clock.now();
    let outcome: WorkOutcome;
    let after: number | undefined;
    try {
      const result = (await this.opts.handler(key, { signal: this.abort.signal })) as ReconcileResult | undefined;
      this.failures.delete(key);
      const requeueAfter = result?.requeueAfter;
      if (requeueAfter !== undefined && Number.isFinite(requeueAfter)) {
        outcome = "requeue";
        after = Math.max(0, requeueAfter);
      } else {
        outcome = "success";
      }
    } catch (err) {
      if (err instanceof TerminalError) {
        outcome = "terminal";
        this.failures.delete(key);
        this.log.error("reconcile failed for good; not retrying", { key, err });
      } else {
        outcome = "error";
        const failures = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, failures);
        after = Math.min(this.opts.retryMaxMs, this.opts.retryBaseMs * 2 ** (failures - 1));
        if (!this.stopping) {
          this.metrics.retried?.(this.dirty.has(key) ? 0 : after);
          this.log.warn("reconcile failed; retrying", { key, failures, retryInMs: after, err });
        }
      }
    }
    this.metrics.processed?.(this.clock.now() - started, outcome);
    this.processing.delete(key);
    if (this.stopping) return;
    if (this.dirty.has(key)) {
      // Added while it ran: run again now; any timing is re-established by that run.
      this.ready.push(key);
      this.metrics.depth?.(this.depth);
    } else if (after !== undefined) {
      this.addAfter(key, after);
    }
    this.pump();
  }
}
