// The parts startUsage (service.ts) wires: the ApiKey watch usage reads, the
// live keys with a quota the alert evaluator reads, and the recorder that
// hands each check and upstream answer to the analytics rows, the decision
// log, the per-key metrics and the status flusher.
import type { ApiKey } from "../api/types.ts";
import type { ApiKeyRecord } from "../apikeys/record.ts";
import { usageApiKeyWatch, type ApiKeyWatch } from "../apikeys/watch.ts";
import type { Condition, QuotaKey } from "../alerts/rules.ts";
import type { CheckEvent, KeyRef, UpstreamEvent } from "../check/event.ts";
import type { Clock } from "../k8s/clock.ts";
import type { ChangeType, WatchListener } from "../k8s/informer.ts";
import type { RoleDeps } from "../deps.ts";
import type { Logger } from "../log.ts";
import type { DecisionLog } from "./decisionlog.ts";
import type { Ingest } from "./ingest.ts";
import type { UsageFlusher } from "./flusher.ts";
import type { UsageMetrics } from "./metrics.ts";
import { revocationLagSeconds } from "./revocation.ts";

/**
 * The ApiKeys usage reads (the flusher's base, the alert evaluator's quotas), as records
 * (src/apikeys/record.ts); each change may show a revocation's lag. Usage's own watch, or
 * `shared`, the watch the data plane reads too.
 */
export function usageStore(deps: Pick<RoleDeps, "config" | "kc" | "rest">, clock: Clock, metrics: UsageMetrics, log: Logger, onKey?: (type: ChangeType, obj: ApiKey, old: ApiKeyRecord | undefined) => void, shared?: ApiKeyWatch): ApiKeyWatch {
  const listener: WatchListener<ApiKey, ApiKeyRecord> = {
    onLifecycle: (event, err) => {
      if (event === "error" || event === "handler_error") log.warn("usage watch problem", { event, err });
    },
    onChange: (type, obj, old) => {
      const lag = revocationLagSeconds(type, obj, old, clock.now());
      if (lag !== undefined) metrics.revocationLag(lag);
      onKey?.(type, obj, old);
    },
  };
  if (shared) {
    shared.listen(listener);
    return shared;
  }
  return usageApiKeyWatch(deps, listener);
}

/** The live ApiKeys with a quota, as the alert evaluator names them (quotas are not in the analytics store). */
export function quotaKeys(store: Pick<ApiKeyWatch, "list">): QuotaKey[] {
  const out: QuotaKey[] = [];
  for (const r of store.list()) {
    const q = r.quota;
    if (!q || !r.uid) continue;
    out.push({ uid: r.uid, namespace: r.namespace, name: r.name, owner: r.owner, requests: q.requests, per: q.per });
  }
  return out;
}

/**
 * What an alert that starts firing adds to the usage metrics: keyward_usage_alerts_total, and with
 * per-key series keyward_key_alerts_total under the ApiKey's current key id (alerts are per ApiKey).
 */
export function alertFired(store: Pick<ApiKeyWatch, "get">, metrics: Pick<UsageMetrics, "alert">): (c: Condition) => void {
  return (c) => {
    metrics.alert(c.alert, store.get(c.namespace, c.name)?.currentKeyId);
  };
}

export interface Recorder {
  record: (e: CheckEvent) => void;
  /** An upstream answer for the key version `keyId` of ApiKey `apikey` (namespace/name). */
  recordUpstream: (apikey: string, keyId: string, e: Omit<UpstreamEvent, "key">) => void;
}

/** Hands each check and upstream answer to every consumer there is. */
export function usageRecorder(d: {
  store: Pick<ApiKeyWatch, "get">;
  metrics: Pick<UsageMetrics, "check" | "upstream">;
  decisionLog?: Pick<DecisionLog, "write">;
  flusher?: Pick<UsageFlusher, "recordCheck" | "recordUpstream">;
  ingest?: Pick<Ingest, "check">;
}): Recorder {
  return {
    record: (e) => {
      d.ingest?.check(e);
      d.decisionLog?.write(e);
      d.metrics.check(e);
      d.flusher?.recordCheck(e);
    },
    recordUpstream: (apikey, keyId, u) => {
      const [ns = "", name = ""] = apikey.split("/");
      const r = d.store.get(ns, name);
      const key: KeyRef = { namespace: ns, name, uid: r?.uid ?? apikey, keyId, owner: r?.owner ?? "" };
      const e: UpstreamEvent = { ...u, key };
      d.metrics.upstream(keyId, e.responseCode, e.upstreamSeconds);
      d.flusher?.recordUpstream(e);
    },
  };
}
