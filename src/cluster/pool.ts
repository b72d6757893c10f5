// A pool of worker processes sharing listening sockets (node:cluster): the
// primary forks them, replaces one that exits (restart.ts), stops them on
// shutdown (stop.ts), knows when every one serves and is ready, and serves
// their metrics aggregated with its own (pool-metrics.ts). What a worker runs
// is the caller's: `runWorker` (worker.ts) wraps it in the worker process.
// `keyward authz --authz-workers` and the check bench's `--workers` are built on it.
//
// Messages between primary and workers are in protocol.ts. The caller's
// messages go through `send` / `onMessage` as `keyward:app`.
import cluster, { type Worker } from "node:cluster";
import { AggregatorRegistry, Counter, type Registry } from "prom-client";
import type { Logger } from "../log.ts";
import { PoolMetrics } from "./pool-metrics.ts";
import { emptySlot, SLOT_ENV, type Metrics, type Slot, type ToPrimary } from "./protocol.ts";
import { afterExit, DEFAULT_RESTART_POLICY, type RestartPolicy } from "./restart.ts";
import { stopWorkers } from "./stop.ts";

export { SLOT_ENV } from "./protocol.ts";
export { runWorker, type WorkerBody, type WorkerContext } from "./worker.ts";

export interface PoolOptions extends Partial<RestartPolicy> {
  count: number;
  log: Logger;
  /** The primary's own metrics, served together with the workers'. */
  registry?: Registry;
  /** A worker's `send`. */
  onMessage?: (slot: number, data: unknown) => void;
  /**
   * A per-worker counter computed at scrape time from each worker's `source` counter (its values
   * summed), labelled `worker` (the slot): shows how checks spread over the workers.
   */
  perWorker?: { source: string; name: string; help: string };
  /** How long stop() waits for workers to finish before killing them. */
  stopTimeoutMs?: number;
  /** How long a metrics request waits for each worker. */
  metricsTimeoutMs?: number;
  /** The pool gave up: a worker keeps exiting before it serves. */
  onFatal: (err: Error) => void;
}

export interface WorkerState {
  slot: number;
  pid: number | undefined;
  /** What the worker sent when it began serving (its ports). */
  info: unknown;
  serving: boolean;
  ready: boolean;
  restarts: number;
}

export interface WorkerPool {
  /** Resolves when every worker serves; rejects when one exits before (nothing is restarted then). */
  readonly started: Promise<void>;
  /** Every slot has a worker that serves and is ready. */
  ready(): boolean;
  workers(): WorkerState[];
  /** Each serving worker's own metrics (a worker that does not answer in time is left out). */
  collect(): Promise<{ slot: number; pid: number; metrics: Metrics }[]>;
  /** Prometheus text: the primary's metrics and every worker's, aggregated. */
  metrics(): Promise<string>;
  readonly contentType: string;
  /** Stops every worker (each finishes what it serves), killing those that take too long. */
  stop(): Promise<void>;
}

class PrimaryPool implements WorkerPool {
  readonly contentType = AggregatorRegistry.PROMETHEUS_CONTENT_TYPE;
  private readonly opts: PoolOptions;
  private readonly log: Logger;
  private readonly policy: RestartPolicy;
  private readonly slots: Slot<Worker>[];
  private readonly pool: PoolMetrics;
  private readonly restartsTotal: Counter | undefined;
  readonly started: Promise<void>;
  private resolveStarted!: () => void;
  private rejectStarted!: (err: Error) => void;
  private isStarted = false;
  private readonly exitWatchers = new Set<() => void>();
  private stopping = false;

  constructor(opts: PoolOptions) {
    this.opts = opts;
    this.log = opts.log;
    const d = DEFAULT_RESTART_POLICY;
    this.policy = { backoff: opts.backoff ?? d.backoff, stableMs: opts.stableMs ?? d.stableMs, maxFailures: opts.maxFailures ?? d.maxFailures };
    this.slots = Array.from({ length: opts.count }, (_, slot) => emptySlot<Worker>(slot));
    this.pool = new PoolMetrics({ registry: opts.registry, perWorker: opts.perWorker, timeoutMs: opts.metricsTimeoutMs ?? 5000 });
    this.restartsTotal = opts.registry
      ? new Counter({ name: "keyward_authz_worker_restarts_total", help: "Worker processes started in place of one that exited (--authz-workers).", registers: [opts.registry] })
      : undefined;
    this.started = new Promise<void>((res, rej) => {
      this.resolveStarted = res;
      this.rejectStarted = rej;
    });
    // The caller may only look at ready(); an early exit must not become an unhandled rejection.
    this.started.catch(() => undefined);
  }

  forkAll(): void {
    for (const s of this.slots) this.fork(s);
  }

  ready(): boolean {
    return this.isStarted && this.slots.every((s) => s.serving && s.ready);
  }

  workers(): WorkerState[] {
    return this.slots.map((s) => ({ slot: s.slot, pid: s.worker?.process.pid, info: s.info, serving: s.serving, ready: s.ready, restarts: s.restarts }));
  }

  collect(): Promise<{ slot: number; pid: number; metrics: Metrics }[]> {
    return this.pool.collect(this.slots);
  }

  metrics(): Promise<string> {
    return this.pool.text(this.slots);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (!this.isStarted) this.rejectStarted(new Error("stopped before every authz worker served"));
    await stopWorkers(this.slots, {
      log: this.log,
      timeoutMs: this.opts.stopTimeoutMs ?? 20_000,
      onExit: (f) => {
        this.exitWatchers.add(f);
        return () => this.exitWatchers.delete(f);
      },
    });
  }

  private fork(s: Slot<Worker>): void {
    s.timer = undefined;
    const w = cluster.fork({ [SLOT_ENV]: String(s.slot) });
    Object.assign(s, { worker: w, serving: false, ready: false });
    w.on("message", (m: ToPrimary) => {
      this.onMessage(s, w, m);
    });
    // Handled once the channel is closed too, so every message the worker sent has been read.
    w.on("exit", (code: number | null, signal: string | null) => {
      if (w.isConnected()) w.once("disconnect", () => { this.onExit(s, w, code, signal); });
      else this.onExit(s, w, code, signal);
    });
  }

  private onMessage(s: Slot<Worker>, w: Worker, m: ToPrimary): void {
    switch (m.kind) {
      case "keyward:serving":
        Object.assign(s, { serving: true, ready: true, info: m.info, servingSince: Date.now() });
        this.log.info("authz worker serving", { worker: s.slot, pid: w.process.pid });
        if (!this.isStarted && this.slots.every((x) => x.serving)) {
          this.isStarted = true;
          this.resolveStarted();
        }
        break;
      case "keyward:ready":
        s.ready = m.ready;
        break;
      case "keyward:metrics":
        this.pool.answer(m.id, m.metrics);
        break;
      case "keyward:app":
        this.opts.onMessage?.(s.slot, m.data);
        break;
    }
  }

  private onExit(s: Slot<Worker>, w: Worker, code: number | null, signal: string | null): void {
    if (s.worker !== w) return;
    const pid = w.process.pid;
    const how = `code ${code ?? "none"}, signal ${signal ?? "none"}`;
    const verdict = afterExit(this.policy, s, Date.now());
    this.pool.retire(s);
    Object.assign(s, { worker: undefined, serving: false, ready: false });
    if (this.stopping) {
      for (const f of [...this.exitWatchers]) f();
      return;
    }
    if (!this.isStarted) {
      this.rejectStarted(new Error(`authz worker ${s.slot} (pid ${pid ?? "?"}) exited before it served (${how})`));
      return;
    }
    s.failures = verdict.failures;
    if (verdict.giveUp) {
      this.log.error("authz worker keeps failing; giving up", { worker: s.slot, pid, code, signal, failures: s.failures });
      this.opts.onFatal(new Error(`authz worker ${s.slot} exited ${s.failures} times in a row before it served (last: ${how})`));
      return;
    }
    s.restarts++;
    this.restartsTotal?.inc();
    this.log.warn("authz worker exited; starting a new one", { worker: s.slot, pid, code, signal, restartInMs: verdict.delayMs, restarts: s.restarts });
    s.timer = setTimeout(() => {
      if (!this.stopping) this.fork(s);
    }, verdict.delayMs);
  }
}

export function startWorkerPool(opts: PoolOptions): WorkerPool {
  if (!cluster.isPrimary) throw new Error("startWorkerPool runs in the primary process");
  // Structured clone instead of JSON for the messages (usage batches, metrics).
  cluster.setupPrimary({ serialization: "advanced" });
  const pool = new PrimaryPool(opts);
  pool.forkAll();
  return pool;
}
