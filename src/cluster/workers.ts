// A pool of worker processes sharing listening sockets (node:cluster): the
// primary forks them, replaces one that exits (with backoff), stops them on
// shutdown, knows when every one serves and is ready, and serves their metrics
// aggregated with its own. What a worker runs is the caller's: `runWorker` in
// the worker process wraps it. `keyward authz --authz-workers` and the check
// bench's `--workers` are built on it.
//
// Messages between primary and workers are objects whose `kind` starts with
// "keyward:"; other messages (prom-client's own) are ignored. The caller's
// messages go through `send` / `onMessage` as `keyward:app`.
import cluster, { type Worker } from "node:cluster";
import { AggregatorRegistry, Counter, type Registry } from "prom-client";
import type { Logger } from "../log.ts";

/** The environment variable that tells a forked worker its slot (0 … count-1). */
export const SLOT_ENV = "KEYWARD_WORKER_SLOT";

/** A registry's metrics as getMetricsAsJSON returns them (prom-client's typings say `type` is an enum; it is a string). */
interface MetricJson {
  name: string;
  help: string;
  type: string;
  aggregator: string;
  values: { labels: Record<string, string | number>; value: number; metricName?: string }[];
}
type Metrics = MetricJson[];
const asJson = async (r: Registry): Promise<Metrics> => (await r.getMetricsAsJSON()) as unknown as Metrics;

type ToWorker = { kind: "keyward:metrics"; id: number } | { kind: "keyward:stop" };
type ToPrimary =
  | { kind: "keyward:serving"; info: unknown }
  | { kind: "keyward:ready"; ready: boolean }
  | { kind: "keyward:metrics"; id: number; metrics?: Metrics; error?: string }
  | { kind: "keyward:app"; data: unknown };

export interface PoolOptions {
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
  /** Restart delay after an exit: baseMs, doubled per exit in a row, at most maxMs. */
  backoff?: { baseMs: number; maxMs: number };
  /** A worker that served this long before it exited resets its slot's backoff. */
  stableMs?: number;
  /** Exits in a row of one slot before serving again, after which the pool gives up (onFatal). */
  maxFailures?: number;
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

interface Slot {
  slot: number;
  worker: Worker | undefined;
  info: unknown;
  serving: boolean;
  ready: boolean;
  servingSince: number;
  /** Exits in a row without a stable run. */
  failures: number;
  restarts: number;
  timer: NodeJS.Timeout | undefined;
  /** This worker's metrics as last served: what its counters add once it is gone. */
  lastMetrics: Metrics | undefined;
}

/** Counters and histograms only: what keeps counting after the worker that counted it is gone. */
const cumulative = (ms: Metrics): Metrics => ms.filter((m) => m.type === "counter" || m.type === "histogram");

export function startWorkerPool(o: PoolOptions): WorkerPool {
  if (!cluster.isPrimary) throw new Error("startWorkerPool runs in the primary process");
  const log = o.log;
  const backoff = o.backoff ?? { baseMs: 500, maxMs: 30_000 };
  const stableMs = o.stableMs ?? 60_000;
  const maxFailures = o.maxFailures ?? 5;
  // Structured clone instead of JSON for the messages (usage batches, metrics).
  cluster.setupPrimary({ serialization: "advanced" });

  const restartsTotal = o.registry
    ? new Counter({ name: "keyward_authz_worker_restarts_total", help: "Worker processes started in place of one that exited (--authz-workers).", registers: [o.registry] })
    : undefined;
  const slots: Slot[] = Array.from({ length: o.count }, (_, slot) => ({
    slot,
    worker: undefined,
    info: undefined,
    serving: false,
    ready: false,
    servingSince: 0,
    failures: 0,
    restarts: 0,
    timer: undefined,
    lastMetrics: undefined,
  }));
  let stopping = false;
  let isStarted = false;
  /** Counters and histograms of workers that are gone, summed (so the pool's counters never go down). */
  let retired: Promise<Metrics> = Promise.resolve([]);
  let requestSeq = 0;
  const pending = new Map<number, (m: Metrics | undefined) => void>();
  const exited = new Set<() => void>();

  let resolveStarted!: () => void;
  let rejectStarted!: (err: Error) => void;
  const started = new Promise<void>((res, rej) => {
    resolveStarted = res;
    rejectStarted = rej;
  });
  // The caller may only look at ready(); an early exit must not become an unhandled rejection.
  started.catch(() => undefined);

  const fork = (s: Slot): void => {
    s.timer = undefined;
    const w = cluster.fork({ [SLOT_ENV]: String(s.slot) });
    s.worker = w;
    s.serving = false;
    s.ready = false;
    w.on("message", (m: ToPrimary) => {
      switch (m.kind) {
        case "keyward:serving":
          s.serving = true;
          s.ready = true;
          s.info = m.info;
          s.servingSince = Date.now();
          log.info("authz worker serving", { worker: s.slot, pid: w.process.pid });
          if (!isStarted && slots.every((x) => x.serving)) {
            isStarted = true;
            resolveStarted();
          }
          break;
        case "keyward:ready":
          s.ready = m.ready;
          break;
        case "keyward:metrics":
          pending.get(m.id)?.(m.metrics);
          break;
        case "keyward:app":
          o.onMessage?.(s.slot, m.data);
          break;
      }
    });
    // Handled once the channel is closed too, so every message the worker sent has been read.
    w.on("exit", (code: number | null, signal: string | null) => {
      if (w.isConnected()) {
        w.once("disconnect", () => {
          onExit(s, w, code, signal);
        });
      } else onExit(s, w, code, signal);
    });
  };

  const onExit = (s: Slot, w: Worker, code: number | null, signal: string | null): void => {
    if (s.worker !== w) return;
    const wasServing = s.serving;
    const pid = w.process.pid;
    if (s.lastMetrics) {
      const gone = cumulative(s.lastMetrics);
      retired = retired.then(async (r) => (r.length ? await asJson(AggregatorRegistry.aggregate([r, gone])) : gone));
    }
    s.worker = undefined;
    s.serving = false;
    s.ready = false;
    s.lastMetrics = undefined;
    if (stopping) {
      for (const f of exited) f();
      return;
    }
    if (!isStarted) {
      rejectStarted(new Error(`authz worker ${s.slot} (pid ${pid ?? "?"}) exited before it served (code ${code ?? "none"}, signal ${signal ?? "none"})`));
      return;
    }
    s.failures = wasServing && Date.now() - s.servingSince >= stableMs ? 0 : s.failures + 1;
    if (!wasServing && s.failures >= maxFailures) {
      const err = new Error(`authz worker ${s.slot} exited ${s.failures} times in a row before it served (last: code ${code ?? "none"}, signal ${signal ?? "none"})`);
      log.error("authz worker keeps failing; giving up", { worker: s.slot, pid, code, signal, failures: s.failures });
      o.onFatal(err);
      return;
    }
    const delayMs = s.failures === 0 ? 0 : Math.min(backoff.maxMs, backoff.baseMs * 2 ** (s.failures - 1));
    s.restarts++;
    restartsTotal?.inc();
    log.warn("authz worker exited; starting a new one", { worker: s.slot, pid, code, signal, restartInMs: delayMs, restarts: s.restarts });
    s.timer = setTimeout(() => {
      if (!stopping) fork(s);
    }, delayMs);
  };

  const ask = (s: Slot): Promise<Metrics | undefined> => {
    const w = s.worker;
    if (!w || !s.serving || !w.isConnected()) return Promise.resolve(undefined);
    const id = ++requestSeq;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        resolve(undefined);
      }, o.metricsTimeoutMs ?? 5000);
      pending.set(id, (m) => {
        clearTimeout(timer);
        pending.delete(id);
        resolve(m);
      });
      const msg: ToWorker = { kind: "keyward:metrics", id };
      try {
        w.send(msg);
      } catch {
        clearTimeout(timer);
        pending.delete(id);
        resolve(undefined);
      }
    });
  };

  const collect = async (): Promise<{ slot: number; pid: number; metrics: Metrics }[]> => {
    const got = await Promise.all(slots.map(async (s) => ({ s, pid: s.worker?.process.pid ?? 0, metrics: await ask(s) })));
    return got.flatMap(({ s, pid, metrics }) => {
      if (!metrics) return [];
      s.lastMetrics = metrics;
      return [{ slot: s.slot, pid, metrics }];
    });
  };

  const perWorkerMetric = (all: { slot: number; metrics: Metrics }[]): Metrics => {
    const p = o.perWorker;
    if (!p) return [];
    const values = all.map(({ slot, metrics }) => ({
      labels: { worker: String(slot) },
      value: (metrics.find((m) => m.name === p.source)?.values ?? []).reduce((sum, v) => sum + v.value, 0),
    }));
    return [{ name: p.name, help: p.help, type: "counter", aggregator: "sum", values }];
  };

  for (const s of slots) fork(s);

  return {
    started,
    ready: () => isStarted && slots.every((s) => s.serving && s.ready),
    workers: () =>
      slots.map((s) => ({
        slot: s.slot,
        pid: s.worker?.process.pid,
        info: s.info,
        serving: s.serving,
        ready: s.ready,
        restarts: s.restarts,
      })),
    collect,
    metrics: async () => {
      const workers = await collect();
      // The primary's first: a metric each process has but that is not summed (start time) is the primary's.
      const own = o.registry ? (await asJson(o.registry)).map((m) => (m.aggregator === "omit" ? { ...m, aggregator: "first" } : m)) : [];
      const all = [own, ...workers.map((w) => w.metrics), await retired, perWorkerMetric(workers)].filter((m) => m.length > 0);
      return AggregatorRegistry.aggregate(all).metrics();
    },
    contentType: AggregatorRegistry.PROMETHEUS_CONTENT_TYPE,
    stop: async () => {
      stopping = true;
      if (!isStarted) rejectStarted(new Error("stopped before every authz worker served"));
      const live = slots.filter((s) => {
        clearTimeout(s.timer);
        return s.worker !== undefined;
      });
      if (live.length === 0) return;
      await new Promise<void>((resolve) => {
        const check = (): void => {
          if (slots.every((s) => s.worker === undefined)) {
            clearTimeout(kill);
            exited.delete(check);
            resolve();
          }
        };
        exited.add(check);
        const kill = setTimeout(() => {
          for (const s of slots) {
            if (s.worker) {
              log.warn("authz worker did not stop in time; killing it", { worker: s.slot, pid: s.worker.process.pid });
              s.worker.process.kill("SIGKILL");
            }
          }
        }, o.stopTimeoutMs ?? 20_000);
        for (const s of live) {
          const msg: ToWorker = { kind: "keyward:stop" };
          try {
            s.worker?.send(msg);
          } catch {
            s.worker?.process.kill("SIGTERM");
          }
        }
      });
    },
  };
}

export interface WorkerBody {
  /** This worker's metrics, collected by the primary. */
  registry?: Registry;
  /** Can the worker decide (its caches are synced)? Reported to the primary when it changes. */
  ready(): boolean;
  /** Sent to the primary with the first report (its ports). */
  info?: unknown;
  /** Stops serving, finishing what is in flight. Messages sent until it resolves are delivered. */
  stop(): Promise<void>;
}

export interface WorkerContext {
  /** This worker's slot, 0 … count-1 (a replacement takes the slot of the worker it replaces). */
  slot: number;
  /** A message for the primary's onMessage. */
  send: (data: unknown) => void;
}

/**
 * Runs in a forked worker: starts `body`, tells the primary once it serves, answers metrics
 * requests, and stops on the primary's word (or SIGTERM sent to the worker itself). A worker
 * whose start throws exits 1. SIGINT is the primary's to handle (a terminal sends it to the
 * whole process group).
 */
export async function runWorker(start: (ctx: WorkerContext) => Promise<WorkerBody>, log: Logger): Promise<void> {
  if (!cluster.isWorker || !process.send) throw new Error("runWorker runs in a cluster worker");
  const slot = Number(process.env[SLOT_ENV] ?? "0");
  const inFlight = new Set<Promise<void>>();
  const send = (m: ToPrimary): void => {
    if (!process.connected) return;
    const p = new Promise<void>((resolve) => {
      process.send?.(m, undefined, {}, () => {
        resolve();
      });
    });
    inFlight.add(p);
    void p.then(() => inFlight.delete(p));
  };
  process.on("SIGINT", () => undefined);

  // Asked to stop before it serves, the worker exits at once.
  let body: WorkerBody | undefined;
  let stopping = false;
  // Readiness, reported to the primary when it changes.
  let ready = true;
  const poll = setInterval(() => {
    const now = body?.ready() ?? false;
    if (body && now !== ready) {
      ready = now;
      send({ kind: "keyward:ready", ready });
    }
  }, 200);
  poll.unref();
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    clearInterval(poll);
    log.info("authz worker stopping", { worker: slot, why });
    void (async () => {
      await body?.stop().catch((err: unknown) => {
        log.warn("error while stopping", { worker: slot, err });
      });
      await Promise.all(inFlight);
      process.exit(0);
    })();
  };
  process.on("SIGTERM", () => {
    stop("SIGTERM");
  });
  process.on("message", (m: ToWorker) => {
    if (m.kind === "keyward:stop") stop("primary");
    if (m.kind === "keyward:metrics") {
      const reply = (r: Omit<Extract<ToPrimary, { kind: "keyward:metrics" }>, "kind" | "id">): void => {
        send({ kind: "keyward:metrics", id: m.id, ...r });
      };
      if (!body?.registry) reply({ metrics: [] });
      else {
        asJson(body.registry).then(
          (metrics) => {
            reply({ metrics });
          },
          (err: unknown) => {
            reply({ error: String(err) });
          },
        );
      }
    }
  });

  try {
    body = await start({
      slot,
      send: (data) => {
        send({ kind: "keyward:app", data });
      },
    });
  } catch (err) {
    log.error("authz worker could not start", { worker: slot, err });
    process.exit(1);
  }
  ready = body.ready();
  send({ kind: "keyward:serving", info: body.info });
  if (!ready) send({ kind: "keyward:ready", ready });
}
