// The usage module's Prometheus metrics. Decisions by outcome and reason, the
// check latency, index sizes and watch lifecycles are the data plane's own
// (src/authz/metrics.ts); reconciles are the operator's. Added here: upstream
// answers from access logs, status flushes, alerts, revocation lag, and the
// opt-in per-key series.
//
// Per-key series are labelled by the public key id only (never the key, the
// owner or the ApiKey name) and capped: after `perKeyMax` distinct ids, further
// keys are counted under key_id="_other", so cardinality stays bounded.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { JoinKind } from "../accesslog/join.ts";
import { ACCESS_LOG_DROPS, type AccessLogDrop } from "../accesslog/drops.ts";
import type { AlertName } from "../alerts/rules.ts";
import type { CheckEvent } from "../check/event.ts";
import type { FlushResult } from "./flusher.ts";

export const OTHER_KEY = "_other";

export interface UsageMetricsOptions {
  perKey: boolean;
  perKeyMax: number;
  pendingKeys: () => number;
}

export interface UsageMetrics {
  check(e: CheckEvent): void;
  upstream(keyId: string, responseCode: number, seconds: number | undefined): void;
  flush(result: FlushResult): void;
  alert(kind: AlertName, keyId: string | undefined): void;
  revocationLag(seconds: number): void;
  accessLogEntry(result: JoinKind): void;
  /** Connections, streams, messages or entries the access log service refused. */
  accessLogDropped(reason: AccessLogDrop, n: number): void;
  /** Distinct key ids with their own series (for tests). */
  readonly perKeyIds: number;
}

export function statusClass(code: number): string {
  return code >= 100 && code < 600 ? `${Math.floor(code / 100)}xx` : "other";
}

export function createUsageMetrics(registry: Registry, options: UsageMetricsOptions): UsageMetrics {
  const upstreamResponses = new Counter({
    name: "keyward_upstream_responses_total",
    help: "Upstream responses to requests with a key, by status class (2xx..5xx), from Envoy access logs.",
    labelNames: ["class"] as const,
    registers: [registry],
  });
  const upstreamSeconds = new Histogram({
    name: "keyward_upstream_duration_seconds",
    help: "Time from the first request byte to the last upstream response byte, from Envoy access logs.",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const accessLogEntries = new Counter({
    name: "keyward_access_log_entries_total",
    help: "Envoy access log entries received: joined to a key through ext_authz metadata, denied (by the ext_authz server; no upstream answer), unattributed (no key), or invalid.",
    labelNames: ["result"] as const,
    registers: [registry],
  });
  const accessLogDrops = new Counter({
    name: "keyward_access_log_dropped_total",
    help: "What the access log service refused: connections whose TLS handshake failed (handshake) or whose certificate names no allowed identity (peer), connections over the limit (connections), streams over the per-connection limit (streams), messages over the size limit (message_size); entries past the per-message limit (entries), too old or ahead (age), or upstream answers without a valid proof that keyward checked the request (unproven).",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  for (const reason of ACCESS_LOG_DROPS) accessLogDrops.inc({ reason }, 0);
  const flushes = new Counter({
    name: "keyward_usage_status_writes_total",
    help: "Per-key usage flushes to ApiKey status by result (written, unchanged, conflict, gone, error).",
    labelNames: ["result"] as const,
    registers: [registry],
  });
  new Gauge({
    name: "keyward_usage_pending_keys",
    help: "ApiKeys with usage seen by this process and not yet written to status.",
    registers: [registry],
    collect() {
      this.set(options.pendingKeys());
    },
  });
  const alerts = new Counter({
    name: "keyward_usage_alerts_total",
    help: "Usage alerts that started firing (an Event on the ApiKey), by alert; counted by the elected alert evaluator (docs/usage.md, Alerts).",
    labelNames: ["alert"] as const,
    registers: [registry],
  });
  const revocation = new Histogram({
    name: "keyward_revocation_propagation_seconds",
    help: "From the write that revoked a key (disabled, expired, rotated out of grace; deleted when a deletionTimestamp is set) to this process's watch seeing it; whole-second precision from managedFields.",
    buckets: [0.25, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [registry],
  });

  const ids = new Set<string>();
  const idFor = (keyId: string): string => {
    if (ids.has(keyId)) return keyId;
    if (ids.size >= options.perKeyMax) return OTHER_KEY;
    ids.add(keyId);
    return keyId;
  };
  const perKey = <L extends string>(name: string, help: string, label: L): Counter<"key_id" | L> | undefined =>
    options.perKey ? new Counter({ name, help, labelNames: ["key_id", label] as const, registers: [registry] }) : undefined;
  const keyRequests = perKey(
    "keyward_key_requests_total",
    "Checks per key id and outcome (opt-in, --usage-per-key-metrics; capped by --usage-per-key-metrics-max, the rest under key_id=\"_other\").",
    "outcome",
  );
  const keyUpstream = perKey("keyward_key_upstream_responses_total", "Upstream responses per key id and status class, from Envoy access logs (opt-in, capped like keyward_key_requests_total).", "class");
  const keyRoutes = perKey("keyward_key_route_requests_total", "Checks per key id and route (method and policy path pattern; opt-in, capped like keyward_key_requests_total).", "route");
  const keyLastUsed = options.perKey
    ? new Gauge({
        name: "keyward_key_last_used_timestamp_seconds",
        help: "When a request with this key id was last checked, as a Unix time (opt-in, capped like keyward_key_requests_total).",
        labelNames: ["key_id"] as const,
        registers: [registry],
      })
    : undefined;
  const routeRequests = new Counter({
    name: "keyward_route_requests_total",
    help: "Checks per matched policy rule and outcome (bounded by the rules in ApiKeyPolicies).",
    labelNames: ["policy", "rule", "outcome"] as const,
    registers: [registry],
  });
  const keyAlerts = perKey("keyward_key_alerts_total", "Usage alerts per key id and alert (opt-in, capped like keyward_key_requests_total).", "alert");

  return {
    check(e) {
      if (e.policy && e.rule) routeRequests.inc({ policy: e.policy, rule: e.rule, outcome: e.outcome });
      const keyId = e.key?.keyId;
      if (!keyRequests || !keyId) return;
      const id = idFor(keyId);
      keyRequests.inc({ key_id: id, outcome: e.outcome });
      if (e.route) keyRoutes?.inc({ key_id: id, route: e.route });
      keyLastUsed?.set({ key_id: id }, e.at / 1000);
    },
    upstream(keyId, code, seconds) {
      const cls = statusClass(code);
      upstreamResponses.inc({ class: cls });
      if (seconds !== undefined) upstreamSeconds.observe(seconds);
      keyUpstream?.inc({ key_id: idFor(keyId), class: cls });
    },
    flush(result) {
      flushes.inc({ result });
    },
    alert(kind, keyId) {
      alerts.inc({ alert: kind });
      if (keyAlerts && keyId) keyAlerts.inc({ key_id: idFor(keyId), alert: kind });
    },
    revocationLag(seconds) {
      revocation.observe(Math.max(0, seconds));
    },
    accessLogEntry(result) {
      accessLogEntries.inc({ result });
    },
    accessLogDropped(reason, n) {
      accessLogDrops.inc({ reason }, n);
    },
    get perKeyIds() {
      return ids.size;
    },
  };
}
