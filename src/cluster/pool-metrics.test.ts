import { Counter, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { FakeWorker } from "./fakes.test-support.ts";
import { PoolMetrics } from "./pool-metrics.ts";
import { asJson, emptySlot, type Metrics, type Slot } from "./protocol.ts";

/** A worker registry with `checks` counted and a gauge, as its JSON. */
async function workerMetrics(checks: number): Promise<Metrics> {
  const r = new Registry();
  new Counter({ name: "checks_total", help: "c", registers: [r] }).inc(checks);
  return asJson(r);
}

function setup(answers: (Metrics | "silent")[], timeoutMs = 50) {
  const own = new Registry();
  new Counter({ name: "primary_total", help: "p", registers: [own] }).inc(1);
  const pm = new PoolMetrics({ registry: own, perWorker: { source: "checks_total", name: "worker_checks_total", help: "w" }, timeoutMs });
  const slots: Slot[] = answers.map((a, i) => ({
    ...emptySlot(i),
    serving: true,
    worker: new FakeWorker(100 + i, (m) => {
      if (m.kind === "keyward:metrics" && a !== "silent") queueMicrotask(() => { pm.answer(m.id, a); });
    }),
  }));
  return { pm, slots };
}

const value = (text: string, series: string): number => Number(text.split("\n").find((l) => l.startsWith(`${series} `))?.split(" ")[1]);

describe("PoolMetrics", () => {
  it("sums the workers' metrics with the primary's and labels a per-worker counter", async () => {
    const { pm, slots } = setup([await workerMetrics(3), await workerMetrics(4)]);
    const text = await pm.text(slots);
    expect(value(text, "checks_total")).toBe(7);
    expect(value(text, "primary_total")).toBe(1);
    expect(value(text, 'worker_checks_total{worker="0"}')).toBe(3);
    expect(value(text, 'worker_checks_total{worker="1"}')).toBe(4);
  });

  it("leaves out a worker that does not answer in time, or does not serve", async () => {
    const { pm, slots } = setup([await workerMetrics(3), "silent", await workerMetrics(5)]);
    const last = slots[2];
    if (last) last.serving = false;
    const got = await pm.collect(slots);
    expect(got.map((g) => [g.slot, g.pid])).toEqual([[0, 100]]);
  });

  it("keeps a retired worker's counters, so the pool's never go down", async () => {
    const { pm, slots } = setup([await workerMetrics(3), await workerMetrics(4)]);
    await pm.collect(slots);
    const gone = slots[1];
    if (!gone) throw new Error("no slot");
    pm.retire(gone);
    gone.worker = undefined;
    expect(gone.lastMetrics).toBeUndefined();
    expect(value(await pm.text(slots), "checks_total")).toBe(7);
  });
});
