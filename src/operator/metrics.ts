// The operator's own metrics (the work queue's are in queue.ts).
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { LifecycleEvent } from "../k8s/informer.ts";
import type { Logger } from "../log.ts";

export interface OperatorMetrics {
  reconciles: Counter<"result">;
  failures: Counter<"reason">;
  duration: Histogram;
  leader: Gauge;
  secretReads: Counter<"read">;
  /** A watch's lifecycle handler: counted, and logged (problems as warnings). */
  watchLifecycle: (resource: string) => (event: LifecycleEvent, err?: unknown) => void;
}

export function createOperatorMetrics(registry: Registry, log: Logger): OperatorMetrics {
  const watchEvents = new Counter({
    name: "keyward_watch_events_total",
    help: "Watch lifecycle events by resource and event (list, relist, connect, reconnect, gone, timeout, error, stale, resync)",
    labelNames: ["component", "resource", "event"],
    registers: [registry],
  });
  return {
    reconciles: new Counter({ name: "keyward_operator_reconciles_total", help: "ApiKey reconciles by result (updated, unchanged, error, requeued)", labelNames: ["result"], registers: [registry] }),
    failures: new Counter({
      name: "keyward_operator_failures_total",
      help: "ApiKey reconcile failures by reason (SecretConflict, SecretNotFound, WeakKey, ReconcileError, ...)",
      labelNames: ["reason"],
      registers: [registry],
    }),
    duration: new Histogram({
      name: "keyward_operator_reconcile_duration_seconds",
      help: "Time to reconcile one ApiKey",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    leader: new Gauge({ name: "keyward_operator_leader", help: "1 while this replica leads", registers: [registry] }),
    secretReads: new Counter({
      name: "keyward_operator_secret_reads_total",
      help: "Re-reads of Secrets named by spec.existingSecret (metadata: metadata-only GET; full: the Secret changed and was read; error)",
      labelNames: ["read"],
      registers: [registry],
    }),
    watchLifecycle: (resource) => (event, err) => {
      watchEvents.inc({ component: "operator", resource, event });
      if (event === "error" || event === "handler_error") log.warn("watch problem", { resource, event, err });
      else log.debug("watch", { resource, event });
    },
  };
}

/** Counts the operator's requests to the kube-apiserver by verb. */
export function countRequests(registry: Registry): (verb: string) => void {
  const apiRequests = new Counter({ name: "keyward_operator_kube_requests_total", help: "Requests the operator sent to the kube-apiserver, by verb", labelNames: ["verb"], registers: [registry] });
  return (verb) => {
    apiRequests.inc({ verb });
  };
}

/** Secrets whose field hashes the operator holds, by source. */
export function cachedSecretsGauge(registry: Registry, managed: () => number, referenced: () => number): void {
  new Gauge({
    name: "keyward_operator_cached_secrets",
    help: "Secrets whose field hashes the operator holds (managed: keyward's labelled Secrets, watched; referenced: spec.existingSecret, re-read by name)",
    labelNames: ["source"],
    registers: [registry],
    collect() {
      this.set({ source: "managed" }, managed());
      this.set({ source: "referenced" }, referenced());
    },
  });
}
