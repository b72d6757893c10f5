// Usage analytics in the ext_authz process: every answered check (and, with
// the access log receiver, every upstream answer) goes to the decision log,
// the per-key metrics, the status flusher and the alert engine. startUsage
// owns a watch of ApiKeys (the flusher's base and the alerts' expiry list),
// the flush and alert timers, and the optional access log server.
import { hostname } from "node:os";
import { APIKEY_PLURAL, API_VERSION, type ApiKey } from "../api/types.ts";
import type { CheckInput, Decision } from "../check/decision.ts";
import type { RoleDeps } from "../deps.ts";
import { systemClock, type Clock } from "../k8s/clock.ts";
import { KubeEventRecorder } from "../k8s/events.ts";
import { CollectionWatch } from "../k8s/informer.ts";
import { startAccessLogServer } from "../accesslog/server.ts";
import { AlertEngine, type Alert } from "./alerts.ts";
import { DecisionLog, decisionLogSink } from "./decisionlog.ts";
import { fromDecision, type CheckEvent, type KeyRef, type UpstreamEvent } from "../check/event.ts";
import { UsageFlusher, type FlushReport } from "./flusher.ts";
import { createUsageMetrics } from "./metrics.ts";
import { periodRequests } from "./model.ts";
import { revocationLagSeconds } from "./revocation.ts";

/** What the check path calls: once per answered (or cancelled) check. */
export interface UsageSink {
  onDecision(front: string, d: Decision, seconds: number, input: CheckInput | undefined, cancelled: boolean): void;
}

export interface UsageDeps extends RoleDeps {
  /** Time and timers (flush, alert checks); default the system clock, or `now` with system timers. */
  clock?: Clock;
  /** Reporting instance of the Events; default hostname_pid. */
  identity?: string;
  /** Decision log lines; default per config.decisionLog. */
  decisionLogSink?: (line: string) => void;
  /** Starts the access log receiver when config.accessLogAddress is set; default src/accesslog. */
  startAccessLog?: typeof startAccessLogServer;
}

export interface UsageHandle extends UsageSink {
  record(e: CheckEvent): void;
  /** An upstream answer for the key version `keyId` of ApiKey `apikey` (namespace/name). */
  recordUpstream(apikey: string, keyId: string, e: Omit<UpstreamEvent, "key">): void;
  accessLogPort: number | undefined;
  /** Writes pending usage now (tests, shutdown). */
  flush(): Promise<FlushReport>;
  /** Runs the periodic alert checks now (tests). */
  tickAlerts(): void;
  ready(): boolean;
  stop(): Promise<void>;
}

const ALERT_TICK_MS = 60_000;

export async function startUsage(deps: UsageDeps): Promise<UsageHandle> {
  const { config, kc, rest, registry } = deps;
  const log = deps.log.child({ component: "usage" });
  const now = deps.now;
  const clock: Clock = deps.clock ?? (now ? { now, setTimer: (fn, ms) => systemClock.setTimer(fn, ms) } : systemClock);
  const identity = deps.identity ?? (config.identity || `${hostname()}_${process.pid}`);

  let flusher: UsageFlusher | undefined;
  const metrics = createUsageMetrics(registry, { perKey: config.usagePerKeyMetrics, perKeyMax: config.usagePerKeyMetricsMax, pendingKeys: () => flusher?.pendingKeys ?? 0 });

  const store = new CollectionWatch<ApiKey>(kc, rest, {
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
  });

  if (config.usageStatus) {
    flusher = new UsageFlusher({
      rest,
      store,
      clock,
      intervalMs: config.usageFlushInterval,
      topRoutes: config.usageTopRoutes,
      log,
      onResult: (r) => {
        metrics.flush(r);
      },
    });
  }

  const events = new KubeEventRecorder({ rest, component: "keyward-authz", instance: identity, log, now: () => clock.now() });
  const raise = (a: Alert): void => {
    metrics.alert(a.kind, a.keyId);
    const ak = store.get(a.namespace, a.name);
    const obj = { apiVersion: API_VERSION, kind: "ApiKey", metadata: { namespace: a.namespace, name: a.name, uid: a.uid, resourceVersion: ak?.metadata.resourceVersion } };
    events.record(obj, "Warning", a.kind, a.message);
    log.warn("usage alert", { alert: a.kind, apikey: `${a.namespace}/${a.name}`, key_id: a.keyId, message: a.message });
  };
  const alerts = config.usageAlerts
    ? new AlertEngine({
        now: () => clock.now(),
        emit: raise,
        learningMs: config.usageAlertLearning,
        cooldownMs: config.usageAlertCooldown,
        silenceMs: config.usageAlertSilence,
        expiryWindowMs: config.usageAlertExpiryWindow,
        spikeFactor: config.usageAlertSpikeFactor,
        minRequests: config.usageAlertMinRequests,
        quotaUsed: (key: KeyRef, per) => periodRequests(store.get(key.namespace, key.name)?.status?.usage, flusher?.pending(key.namespace, key.name), clock.now(), per),
        apiKeys: () => store.list(),
      })
    : undefined;

  const sink = deps.decisionLogSink ?? decisionLogSink(config.decisionLog);
  const decisionLog = sink
    ? new DecisionLog({ sink, sampleAllowed: config.decisionLogSampleAllowed, sampleDenied: config.decisionLogSampleDenied })
    : undefined;

  const record = (e: CheckEvent): void => {
    decisionLog?.write(e);
    metrics.check(e);
    flusher?.recordCheck(e);
    alerts?.observeCheck(e);
  };

  const recordUpstream = (apikey: string, keyId: string, u: Omit<UpstreamEvent, "key">): void => {
    const [ns = "", name = ""] = apikey.split("/");
    const ak = store.get(ns, name);
    const key: KeyRef = { namespace: ns, name, uid: ak?.metadata.uid ?? apikey, keyId, owner: ak?.spec.owner ?? "" };
    const e: UpstreamEvent = { ...u, key };
    metrics.upstream(keyId, e.responseCode, e.upstreamSeconds);
    flusher?.recordUpstream(e);
    alerts?.observeUpstream(e);
  };

  await store.start();

  let accessLog: { port: number; stop(): Promise<void> } | undefined;
  if (config.accessLogAddress) {
    try {
      accessLog = await (deps.startAccessLog ?? startAccessLogServer)({
        address: config.accessLogAddress,
        onUpstream: recordUpstream,
        log,
        onEntry: (r) => {
          metrics.accessLogEntry(r);
        },
      });
    } catch (err) {
      await store.stop();
      throw err;
    }
  }

  flusher?.start();
  let stopped = false;
  let cancelTick: (() => void) | undefined;
  const armTick = (): void => {
    cancelTick = clock.setTimer(() => {
      try {
        alerts?.tick();
      } catch (err) {
        log.error("usage alert check failed", { err });
      }
      if (!stopped) armTick();
    }, ALERT_TICK_MS);
  };
  if (alerts) armTick();

  return {
    onDecision(front, d, seconds, input, cancelled) {
      record(fromDecision(d, input, seconds, cancelled, { xffTrustedHops: config.xffTrustedHops, front, at: clock.now() }));
    },
    record,
    recordUpstream,
    accessLogPort: accessLog?.port,
    flush: () => flusher?.flush() ?? Promise.resolve({ written: 0, failed: 0 }),
    tickAlerts: () => alerts?.tick(),
    ready: () => store.synced,
    stop: async () => {
      stopped = true;
      cancelTick?.();
      await accessLog?.stop();
      await flusher?.stop();
      await store.stop();
      await events.flush();
    },
  };
}
