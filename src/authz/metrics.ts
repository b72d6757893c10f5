// The data plane's Prometheus metrics, registered on the registry it is given.
import { Counter, Gauge, type Registry } from "prom-client";
import { TallyCounter, TallyHistogram } from "../metrics/tally.ts";

export interface AuthzMetrics {
  /** Per check: resolve a series once per label set, then bump it (src/metrics/tally.ts). */
  decisions: TallyCounter<"outcome" | "reason" | "front">;
  checkSeconds: TallyHistogram<"front">;
  watchEvents: Counter<"resource" | "event">;
}

export function createAuthzMetrics(registry: Registry, sizes: { keys: () => number; apiKeys: () => number; policies: () => number }): AuthzMetrics {
  const decisions = new TallyCounter({
    name: "keyward_authz_decisions_total",
    help: "Check decisions by outcome (allowed, unauthenticated, forbidden, invalid, limited, error), reason code and front end (grpc, http).",
    labelNames: ["outcome", "reason", "front"] as const,
    registry,
  });
  const checkSeconds = new TallyHistogram({
    name: "keyward_authz_check_duration_seconds",
    help: "Time from receiving a check to having its answer, in seconds.",
    labelNames: ["front"] as const,
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05],
    registry,
  });
  const watchEvents = new Counter({
    name: "keyward_authz_watch_events_total",
    help: "Lifecycle events of the data plane's ApiKey and ApiKeyPolicy watches.",
    labelNames: ["resource", "event"] as const,
    registers: [registry],
  });
  new Gauge({
    name: "keyward_authz_index_keys",
    // Each worker (--authz-workers) holds the whole index: the aggregate is one worker's size, not the sum.
    aggregator: "max",
    help: "Key hashes in the index (an ApiKey in rotation contributes two).",
    registers: [registry],
    collect() {
      this.set(sizes.keys());
    },
  });
  new Gauge({
    name: "keyward_authz_index_apikeys",
    aggregator: "max",
    help: "ApiKeys that contribute at least one hash to the index.",
    registers: [registry],
    collect() {
      this.set(sizes.apiKeys());
    },
  });
  new Gauge({
    name: "keyward_authz_index_policies",
    aggregator: "max",
    help: "ApiKeyPolicies in the route table.",
    registers: [registry],
    collect() {
      this.set(sizes.policies());
    },
  });
  return { decisions, checkSeconds, watchEvents };
}
