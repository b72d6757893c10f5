// The worker pool's metrics: each serving worker is asked for its registry's
// metrics (a worker that does not answer in time is left out), and they are
// aggregated with the primary's own, with the counters and histograms of
// workers that are gone (so the pool's counters never go down), and with an
// optional per-worker counter.
import { AggregatorRegistry, type Registry } from "prom-client";
import { asJson, type Metrics, type PoolWorker, type Slot, type ToWorker } from "./protocol.ts";

export interface PoolMetricsOptions {
  /** The primary's own metrics. */
  registry?: Registry;
  /** A per-worker counter computed at scrape time from each worker's `source` counter (its values summed), labelled `worker`. */
  perWorker?: { source: string; name: string; help: string };
  /** How long a metrics request waits for each worker. */
  timeoutMs: number;
}

/** Counters and histograms only: what keeps counting after the worker that counted it is gone. */
const cumulative = (ms: Metrics): Metrics => ms.filter((m) => m.type === "counter" || m.type === "histogram");

export class PoolMetrics {
  private readonly opts: PoolMetricsOptions;
  /** Counters and histograms of workers that are gone, summed. */
  private retired: Promise<Metrics> = Promise.resolve([]);
  private seq = 0;
  private readonly pending = new Map<number, (m: Metrics | undefined) => void>();

  constructor(opts: PoolMetricsOptions) {
    this.opts = opts;
  }

  /** A worker's answer to a request. */
  answer(id: number, metrics: Metrics | undefined): void {
    this.pending.get(id)?.(metrics);
  }

  /** The slot's worker is gone: its counters and histograms, as last collected, stay in the pool's. */
  retire(s: Slot): void {
    if (!s.lastMetrics) return;
    const gone = cumulative(s.lastMetrics);
    s.lastMetrics = undefined;
    this.retired = this.retired.then(async (r) => (r.length ? await asJson(AggregatorRegistry.aggregate([r, gone])) : gone));
  }

  /** Each serving worker's own metrics. */
  async collect(slots: readonly Slot[]): Promise<{ slot: number; pid: number; metrics: Metrics }[]> {
    const got = await Promise.all(slots.map(async (s) => ({ s, pid: s.worker?.process.pid ?? 0, metrics: await this.ask(s) })));
    return got.flatMap(({ s, pid, metrics }) => {
      if (!metrics) return [];
      s.lastMetrics = metrics;
      return [{ slot: s.slot, pid, metrics }];
    });
  }

  /** Prometheus text: the primary's metrics and every worker's, aggregated. */
  async text(slots: readonly Slot[]): Promise<string> {
    const workers = await this.collect(slots);
    // The primary's first: a metric each process has but that is not summed (start time) is the primary's.
    const own = this.opts.registry ? (await asJson(this.opts.registry)).map((m) => (m.aggregator === "omit" ? { ...m, aggregator: "first" } : m)) : [];
    const all = [own, ...workers.map((w) => w.metrics), await this.retired, this.perWorker(workers)].filter((m) => m.length > 0);
    return AggregatorRegistry.aggregate(all).metrics();
  }

  private perWorker(all: { slot: number; metrics: Metrics }[]): Metrics {
    const p = this.opts.perWorker;
    if (!p) return [];
    const values = all.map(({ slot, metrics }) => ({
      labels: { worker: String(slot) },
      value: (metrics.find((m) => m.name === p.source)?.values ?? []).reduce((sum, v) => sum + v.value, 0),
    }));
    return [{ name: p.name, help: p.help, type: "counter", aggregator: "sum", values }];
  }

  private ask(s: Slot): Promise<Metrics | undefined> {
    const w: PoolWorker | undefined = s.worker;
    if (!w || !s.serving || !w.isConnected()) return Promise.resolve(undefined);
    const id = ++this.seq;
    return new Promise((resolve) => {
      const done = (m: Metrics | undefined): void => {
        clearTimeout(timer);
        this.pending.delete(id);
        resolve(m);
      };
      const timer = setTimeout(() => {
        done(undefined);
      }, this.opts.timeoutMs);
      this.pending.set(id, done);
      const msg: ToWorker = { kind: "keyward:metrics", id };
      try {
        w.send(msg);
      } catch {
        done(undefined);
      }
    });
  }
}
