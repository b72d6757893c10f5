// The write path's Prometheus metrics: rows made (by the half of a request they
// came from), written, dropped and waiting, and writes the store refused.
import { Counter, Gauge, type Registry } from "prom-client";
import type { QueueCounters } from "./queue.ts";

/** Which half of a request a row was built from (src/analytics/rows.ts). */
export type RowSource = "check" | "access_log";

export interface AnalyticsMetrics {
  counters: QueueCounters;
  /** `n` rows made (default 1). */
  row(from: RowSource, n?: number): void;
}

export function createAnalyticsMetrics(registry: Registry, queued: () => number): AnalyticsMetrics {
  const rows = new Counter({
    name: "keyward_analytics_rows_total",
    help: "Request rows made for the analytics store, by the half of the request they came from (check, access_log).",
    labelNames: ["from"] as const,
    registers: [registry],
  });
  const written = new Counter({ name: "keyward_analytics_rows_written_total", help: "Request rows the analytics store accepted.", registers: [registry] });
  const dropped = new Counter({
    name: "keyward_analytics_rows_dropped_total",
    help: "Request rows dropped before the analytics store took them: the oldest, when the queue was full (store slow or down), or left at shutdown.",
    registers: [registry],
  });
  const failures = new Counter({ name: "keyward_analytics_write_failures_total", help: "Writes (rows or key records) the analytics store refused; retried.", registers: [registry] });
  new Gauge({
    name: "keyward_analytics_rows_queued",
    help: "Request rows waiting for the analytics store.",
    registers: [registry],
    collect() {
      this.set(queued());
    },
  });
  return {
    counters: { written: (n) => { written.inc(n); }, dropped: (n) => { dropped.inc(n); }, failed: () => { failures.inc(); } },
    row: (from, n = 1) => { rows.inc({ from }, n); },
  };
}
