import { AggregatorRegistry, Counter, Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { TallyCounter, TallyHistogram } from "./tally.ts";

const BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05];
type L = "outcome" | "reason" | "front";

/** The same metrics twice: prom-client's own, and the tallied ones under test. */
function pair() {
  const own = new Registry();
  const tallied = new Registry();
  const counter = new Counter<L>({ name: "t_decisions_total", help: "decisions", labelNames: ["outcome", "reason", "front"], registers: [own] });
  const histogram = new Histogram<"front">({ name: "t_seconds", help: "seconds", labelNames: ["front"], buckets: BUCKETS, registers: [own] });
  const tCounter = new TallyCounter<L>({ name: "t_decisions_total", help: "decisions", labelNames: ["outcome", "reason", "front"], registry: tallied });
  const tHistogram = new TallyHistogram<"front">({ name: "t_seconds", help: "seconds", labelNames: ["front"], buckets: BUCKETS, registry: tallied });
  return { own, tallied, counter, histogram, tCounter, tHistogram };
}

/** A deterministic stream of observations: bounds exactly, between them, above the last. */
function* observations(n: number, seed: number): Generator<{ front: string; reason: string; seconds: number }> {
  let x = seed;
  const next = (): number => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x / 2 ** 31;
  };
  for (let i = 0; i < n; i++) {
    const r = next();
    const seconds = r < 0.2 ? BUCKETS[Math.floor(next() * BUCKETS.length)]! : r < 0.25 ? 0.05 + next() : next() * 0.02;
    yield { front: next() < 0.7 ? "grpc" : "http", reason: ["ok", "key_unknown", "scope_missing"][Math.floor(next() * 3)]!, seconds };
  }
}

const OUTCOME: Record<string, string> = { ok: "allowed", key_unknown: "unauthenticated", scope_missing: "forbidden" };

function feed(p: ReturnType<typeof pair>, n: number, seed: number): void {
  // Series resolved once, as the check path does; two for one label set must add up.
  const series = new Map<string, { inc(): void }>();
  const timers = new Map<string, { observe(v: number): void }>();
  for (const o of observations(n, seed)) {
    const labels = { outcome: OUTCOME[o.reason]!, reason: o.reason, front: o.front };
    const key = `${o.front}/${o.reason}/${series.size % 2}`;
    let s = series.get(key);
    if (!s) series.set(key, (s = p.tCounter.series(labels)));
    s.inc();
    let t = timers.get(o.front);
    if (!t) timers.set(o.front, (t = p.tHistogram.series({ front: o.front })));
    t.observe(o.seconds);
    p.counter.inc(labels);
    p.histogram.observe({ front: o.front }, o.seconds);
  }
}

describe("tallied metrics", () => {
  it("expose exactly what prom-client's own counter and histogram would", async () => {
    const p = pair();
    expect(await p.tallied.metrics()).toBe(await p.own.metrics());
    feed(p, 5000, 7);
    const text = await p.tallied.metrics();
    expect(text).toBe(await p.own.metrics());
    expect(text).toMatch(/^t_seconds_bucket\{le="\+Inf",front="grpc"\} \d+$/m);
    // As workers send it to the primary (src/cluster/pool.ts): structured clone.
    const sent = async (r: Registry): Promise<unknown> => structuredClone(await r.getMetricsAsJSON());
    expect(await sent(p.tallied)).toEqual(await sent(p.own));
  });

  it("aggregate across workers as prom-client's own do", async () => {
    const a = pair();
    const b = pair();
    feed(a, 2000, 1);
    feed(b, 3000, 2);
    const own = AggregatorRegistry.aggregate([await a.own.getMetricsAsJSON(), await b.own.getMetricsAsJSON()]);
    const tallied = AggregatorRegistry.aggregate([await a.tallied.getMetricsAsJSON(), await b.tallied.getMetricsAsJSON()]);
    expect(await tallied.metrics()).toBe(await own.metrics());
  });

  it("start again from zero on resetMetrics, and keep counting after", async () => {
    const p = pair();
    feed(p, 500, 3);
    p.own.resetMetrics();
    p.tallied.resetMetrics();
    expect(await p.tallied.metrics()).toBe(await p.own.metrics());
    const s = p.tHistogram.series({ front: "grpc" });
    s.observe(0.003);
    p.histogram.observe({ front: "grpc" }, 0.003);
    p.tCounter.series({ outcome: "allowed", reason: "ok", front: "grpc" }).inc();
    p.counter.inc({ outcome: "allowed", reason: "ok", front: "grpc" });
    expect(await p.tallied.metrics()).toBe(await p.own.metrics());
  });

  it("give a counter's total over its series in process, two series of the same labels both counted", () => {
    const counter = new TallyCounter({ name: "t_total", help: "t", labelNames: ["front"], registry: new Registry() });
    const a = counter.series({ front: "grpc" });
    const b = counter.series({ front: "grpc" });
    const c = counter.series({ front: "http" });
    expect(counter.total()).toBe(0);
    a.inc();
    a.inc();
    b.inc();
    c.inc();
    expect(counter.total()).toBe(4);
  });
});
