// The operator's work queue: ApiKeys keyed namespace/name, with the retry
// settings from the config and a depth gauge.
import type { Registry } from "prom-client";
import { Gauge, Histogram } from "prom-client";
import type { Config } from "../config/config.ts";
import { WorkQueue, type ReconcileHandler } from "../k8s/workqueue.ts";
import type { Logger } from "../log.ts";

export interface QueueMetrics {
  depth: Gauge;
  wait: Histogram;
}

export function queueMetrics(registry: Registry): QueueMetrics {
  return {
    depth: new Gauge({ name: "keyward_operator_queue_depth", help: "ApiKeys waiting to be reconciled now", registers: [registry] }),
    wait: new Histogram({
      name: "keyward_operator_queue_wait_seconds",
      help: "Time an ApiKey waited in the queue before a worker took it",
      buckets: [0.001, 0.01, 0.1, 0.5, 1, 5, 30],
      registers: [registry],
    }),
  };
}

export function createQueue(config: Config, handler: ReconcileHandler, log: Logger, metrics: QueueMetrics): WorkQueue {
  const q = new WorkQueue({
    name: "apikeys",
    handler,
    workers: config.workers,
    retryBaseMs: config.retryBase,
    retryMaxMs: config.retryMax,
    log,
    metrics: {
      depth: (d) => { metrics.depth.set(d); },
      waited: (ms) => {
        metrics.wait.observe(ms / 1000);
      },
    },
  });
  q.start();
  return q;
}
