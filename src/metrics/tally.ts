// Counters and histograms for the check path: plain numbers bumped per request and read
// into the registry only when it is scraped. prom-client's own inc() and observe() hash
// the label values on every call and find the bucket through a number-keyed object, so
// each check left strings behind and spent ~1 µs there (docs/benchmarks.md). The
// exposition is prom-client's: same names, types, labels and aggregation across workers.
import { Counter, Histogram, type Aggregator, type MetricObjectWithValues, type MetricType, type MetricValueWithName, type Registry } from "prom-client";

/** One series of a tallied metric: its label values, fixed when it was made. */
export interface CounterSeries {
  inc(): void;
}

export interface HistogramSeries {
  observe(value: number): void;
}

interface TallyOptions<L extends string> {
  name: string;
  help: string;
  labelNames: readonly L[];
  registry: Registry;
}

type Labels<L extends string> = Record<L, string>;

class CountedSeries<L extends string> implements CounterSeries {
  n = 0;
  readonly labels: Labels<L>;
  constructor(labels: Labels<L>) {
    this.labels = labels;
  }
  inc(): void {
    this.n++;
  }
}

/**
 * A counter whose series are resolved once (`series(labels)`) and bumped with `inc()`.
 * Two series with the same labels add up. It is a prom-client Counter to the registry;
 * its values are the series' counts, put in when the registry reads it.
 */
export class TallyCounter<L extends string> extends Counter<L> {
  private readonly all: CountedSeries<L>[];

  constructor(options: TallyOptions<L>) {
    const all: CountedSeries<L>[] = [];
    super({
      name: options.name,
      help: options.help,
      labelNames: options.labelNames,
      registers: [options.registry],
      collect() {
        // prom-client's own reset: the series' counts stay.
        Counter.prototype.reset.call(this);
        for (const s of all) if (s.n > 0) this.inc(s.labels, s.n);
      },
    });
    this.all = all;
  }

  series(labels: Labels<L>): CounterSeries {
    const s = new CountedSeries({ ...labels });
    this.all.push(s);
    return s;
  }

  /** The sum of every series' count (not read from the registry). */
  total(): number {
    let n = 0;
    for (const s of this.all) n += s.n;
    return n;
  }

  override reset(): void {
    // prom-client's constructor calls reset() before this class's fields are set.
    for (const s of (this.all as CountedSeries<L>[] | undefined) ?? []) s.n = 0;
    super.reset();
  }
}

class ObservedSeries<L extends string> implements HistogramSeries {
  /** Observations per bucket, not cumulative; the last is above every bound (+Inf). */
  readonly counts: number[];
  sum = 0;
  count = 0;
  readonly labels: Labels<L>;
  private readonly bounds: readonly number[];

  constructor(labels: Labels<L>, bounds: readonly number[]) {
    this.labels = labels;
    this.bounds = bounds;
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > (b[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

/**
 * A histogram whose series are resolved once (`series(labels)`) and fed with `observe()`.
 * It is a prom-client Histogram to the registry (scrapes, worker aggregation, resetMetrics);
 * observations made through prom-client's own observe() are not reported.
 */
export class TallyHistogram<L extends string> extends Histogram<L | "le"> {
  private readonly all: ObservedSeries<L>[] = [];
  private readonly bounds: readonly number[];
  private readonly metric: { name: string; help: string };

  constructor(options: TallyOptions<L> & { buckets: readonly number[] }) {
    const bounds = [...options.buckets].sort((a, b) => a - b);
    super({ name: options.name, help: options.help, labelNames: options.labelNames, buckets: bounds, registers: [options.registry] });
    this.bounds = bounds;
    this.metric = { name: options.name, help: options.help };
  }

  series(labels: Labels<L>): HistogramSeries {
    const s = new ObservedSeries<L>({ ...labels }, this.bounds);
    this.all.push(s);
    return s;
  }

  override reset(): void {
    // prom-client's constructor calls reset() before this class's fields are set.
    for (const s of (this.all as ObservedSeries<L>[] | undefined) ?? []) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }

  override get(): Promise<MetricObjectWithValues<MetricValueWithName<L | "le">>> {
    // Buckets carry prom-client's `exemplar: null` (no exemplars), so workers' JSON matches its own.
    type Value = MetricValueWithName<L | "le"> & { exemplar?: null };
    const values: Value[] = [];
    // Series with the same labels are reported as one, as prom-client would have kept them.
    const merged = new Map<string, { labels: Labels<L>; counts: number[]; sum: number; count: number }>();
    for (const s of this.all) {
      if (s.count === 0) continue;
      const key = JSON.stringify(s.labels);
      const m = merged.get(key);
      if (!m) merged.set(key, { labels: s.labels, counts: [...s.counts], sum: s.sum, count: s.count });
      else {
        s.counts.forEach((c, i) => (m.counts[i] = (m.counts[i] as number) + c));
        m.sum += s.sum;
        m.count += s.count;
      }
    }
    const name = this.metric.name;
    for (const m of merged.values()) {
      let acc = 0;
      this.bounds.forEach((le, i) => {
        acc += m.counts[i] as number;
        values.push({ labels: { le, ...m.labels }, value: acc, metricName: `${name}_bucket`, exemplar: null });
      });
      values.push({ labels: { le: "+Inf", ...m.labels }, value: m.count, metricName: `${name}_bucket`, exemplar: null });
      values.push({ labels: { ...m.labels } as Value["labels"], value: m.sum, metricName: `${name}_sum` });
      values.push({ labels: { ...m.labels } as Value["labels"], value: m.count, metricName: `${name}_count` });
    }
    // Set by prom-client's constructor; its typings leave them out (and type `type` as a numeric enum).
    const { type, aggregator } = this as unknown as { type: MetricType; aggregator: Aggregator };
    // No `collect`: prom-client's typings ask for one that its own get() never returns, and a
    // function would not survive the structured clone that takes a worker's metrics to the primary.
    const out: Omit<MetricObjectWithValues<Value>, "collect"> = { name, help: this.metric.help, type, aggregator, values };
    return Promise.resolve(out as MetricObjectWithValues<Value>);
  }

  /** What Registry.metrics() reads when the metric has it: the same values as get(). */
  getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<L | "le">>> {
    return this.get();
  }
}
