// The parts startUsage (service.ts) wires: the ApiKey watch usage reads, the
// alert engine and its periodic checks, and the recorder that hands each
// check and upstream answer to the decision log, the per-key metrics, the
// status flusher and the alerts.
import { APIKEY_PLURAL, API_VERSION, type ApiKey } from "../api/types.ts";
import type { CheckEvent, KeyRef, UpstreamEvent } from "../check/event.ts";
import type { Config } from "../config/config.ts";
import type { Clock } from "../k8s/clock.ts";
import type { KubeEventRecorder } from "../k8s/events.ts";
import { CollectionWatch } from "../k8s/informer.ts";
import type { RoleDeps } from "../deps.ts";
import type { Logger } from "../log.ts";
import { AlertEngine, type Alert } from "./alerts.ts";
import type { DecisionLog } from "./decisionlog.ts";
import type { UsageFlusher } from "./flusher.ts";
import type { UsageMetrics } from "./metrics.ts";
import { periodRequests } from "./model.ts";
import { revocationLagSeconds } from "./revocation.ts";
import { usageView } from "./view.ts";

/** The ApiKeys usage reads (the flusher's base, the alerts' expiry list); each change may show a revocation's lag. */
export function usageStore(deps: Pick<RoleDeps, "config" | "kc" | "rest">, clock: Clock, metrics: UsageMetrics, log: Logger): CollectionWatch<ApiKey> {
  const { config } = deps;
  return new CollectionWatch<ApiKey>(deps.kc, deps.rest, {
    apiPrefix: `/apis/${API_VERSION}`,
    plural: APIKEY_PLURAL,
    namespaces: config.namespaces,
    staleAfterMs: config.watchStaleAfter,
    resyncMs: config.watchResync,
    onLifecycle: (event, err) => {
      if (event === "error" || event === "handler_error") log.warn("usage watch problem", { event, err });
    },
    onChange: (type, obj, old) => {
      const lag = revocationLagSeconds(type, obj, old, clock.now());
      if (lag !== undefined) metrics.revocationLag(lag);
    },
    transform: usageView,
  });
}

export interface AlertDeps {
  config: Config;
  clock: Clock;
  store: Pick<CollectionWatch<ApiKey>, "get" | "list">;
  events: Pick<KubeEventRecorder, "record">;
  metrics: Pick<UsageMetrics, "alert">;
  log: Logger;
  flusher: () => UsageFlusher | undefined;
}

/** The alert engine (config.usageAlerts): each alert is a metric, a Warning Event on its ApiKey and a log line. */
export function usageAlerts(d: AlertDeps): AlertEngine | undefined {
  const { config, clock, store } = d;
  if (!config.usageAlerts) return undefined;
  const raise = (a: Alert): void => {
    d.metrics.alert(a.kind, a.keyId);
    const ak = store.get(a.namespace, a.name);
    const obj = { apiVersion: API_VERSION, kind: "ApiKey", metadata: { namespace: a.namespace, name: a.name, uid: a.uid, resourceVersion: ak?.metadata.resourceVersion } };
    d.events.record(obj, "Warning", a.kind, a.message);
    d.log.warn("usage alert", { alert: a.kind, apikey: `${a.namespace}/${a.name}`, key_id: a.keyId, message: a.message });
  };
  return new AlertEngine({
    now: () => clock.now(),
    emit: raise,
    learningMs: config.usageAlertLearning,
    cooldownMs: config.usageAlertCooldown,
    silenceMs: config.usageAlertSilence,
    expiryWindowMs: config.usageAlertExpiryWindow,
    spikeFactor: config.usageAlertSpikeFactor,
    minRequests: config.usageAlertMinRequests,
    quotaUsed: (key: KeyRef, per) => periodRequests(store.get(key.namespace, key.name)?.status?.usage, d.flusher()?.pending(key.namespace, key.name), clock.now(), per),
    apiKeys: () => store.list(),
  });
}

/** Runs the alert checks every `everyMs` until the returned function is called; a check that throws is logged. */
export function alertTicks(clock: Clock, alerts: Pick<AlertEngine, "tick">, everyMs: number, log: Pick<Logger, "error">): () => void {
  let stopped = false;
  let cancel: (() => void) | undefined;
  const arm = (): void => {
    cancel = clock.setTimer(() => {
      try {
        alerts.tick();
      } catch (err) {
        log.error("usage alert check failed", { err });
      }
      if (!stopped) arm();
    }, everyMs);
  };
  arm();
  return () => {
    stopped = true;
    cancel?.();
  };
}

export interface Recorder {
  record: (e: CheckEvent) => void;
  /** An upstream answer for the key version `keyId` of ApiKey `apikey` (namespace/name). */
  recordUpstream: (apikey: string, keyId: string, e: Omit<UpstreamEvent, "key">) => void;
}

/** Hands each check and upstream answer to every consumer there is. */
export function usageRecorder(d: {
  store: Pick<CollectionWatch<ApiKey>, "get">;
  metrics: Pick<UsageMetrics, "check" | "upstream">;
  decisionLog?: Pick<DecisionLog, "write">;
  flusher?: Pick<UsageFlusher, "recordCheck" | "recordUpstream">;
  alerts?: Pick<AlertEngine, "observeCheck" | "observeUpstream">;
}): Recorder {
  return {
    record: (e) => {
      d.decisionLog?.write(e);
      d.metrics.check(e);
      d.flusher?.recordCheck(e);
      d.alerts?.observeCheck(e);
    },
    recordUpstream: (apikey, keyId, u) => {
      const [ns = "", name = ""] = apikey.split("/");
      const ak = d.store.get(ns, name);
      const key: KeyRef = { namespace: ns, name, uid: ak?.metadata.uid ?? apikey, keyId, owner: ak?.spec.owner ?? "" };
      const e: UpstreamEvent = { ...u, key };
      d.metrics.upstream(keyId, e.responseCode, e.upstreamSeconds);
      d.flusher?.recordUpstream(e);
      d.alerts?.observeUpstream(e);
    },
  };
}
