// Usage analytics in the ext_authz process: every answered check (and, with
// the access log receiver, every upstream answer) goes to the analytics rows,
// the decision log, the per-key metrics and the status flusher. startUsage
// owns a watch of ApiKeys, or shares the data plane's (the flusher's base and
// the alerts' quotas), the
// flush timer, the optional access log server, and the alert evaluator's
// campaign for its Lease (src/alerts, ADR 45).
import { hostname } from "node:os";
import type { ApiKey } from "../api/types.ts";
import type { CheckInput, Decision } from "../check/decision.ts";
import { apiKeyOf, type ApiKeyRecord } from "../apikeys/record.ts";
import { keyRecordFrom } from "../analytics/rows.ts";
import type { ChangeType } from "../k8s/informer.ts";
import type { ApiKeyWatch } from "../apikeys/watch.ts";
import type { RoleDeps } from "../deps.ts";
import { systemClock, type Clock } from "../k8s/clock.ts";
import { KubeEventRecorder } from "../k8s/events.ts";
import type { startAccessLogServer } from "../accesslog/server.ts";
import type { AccessLogDrop } from "../accesslog/drops.ts";
import { accessLogLimits, openAccessLogTls } from "../accesslog/settings.ts";
import { loadProofKeys } from "../accesslog/proof.ts";
import type { JoinKind } from "../accesslog/join.ts";
import type { HttpLogEntry } from "../accesslog/proto.ts";
import { DecisionLog, decisionLogSink } from "./decisionlog.ts";
import { fromDecision, type CheckEvent, type UpstreamEvent } from "../check/event.ts";
import { UsageFlusher, type FlushReport, type FlushResult } from "./flusher.ts";
import { createUsageMetrics, type UsageMetrics } from "./metrics.ts";
import { alertFired, quotaKeys, usageRecorder, usageStore, type Recorder } from "./wiring.ts";
import type { Logger } from "../log.ts";
import type { AnalyticsWriter } from "../analytics/row.ts";
import type { AlertQueries } from "../analytics/alert-queries.ts";
import { startAlertService, type AlertService } from "../alerts/service.ts";
import { startIngest, type Ingest } from "./ingest.ts";

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
  /** The analytics store: given, every attributed request becomes a row (src/usage/ingest.ts, ADR 37). */
  analyticsWriter?: AnalyticsWriter;
  /** The analytics store's alert queries: given and config.usageAlerts, this replica campaigns to evaluate alerts (ADR 45). */
  alertQueries?: AlertQueries;
  /**
   * An ApiKey watch shared with the data plane in this process (one list and one watch for
   * both, ADR 0034; src/apikeys/watch.ts). Default: usage's own.
   */
  apiKeys?: ApiKeyWatch;
}

export interface UsageHandle extends UsageSink {
  record(e: CheckEvent): void;
  /** An upstream answer for the key version `keyId` of ApiKey `apikey` (namespace/name). */
  recordUpstream(apikey: string, keyId: string, e: Omit<UpstreamEvent, "key">): void;
  accessLogPort: number | undefined;
  /** Writes pending usage now (tests, shutdown), and the analytics rows waiting. */
  flush(): Promise<FlushReport>;
  /** The alert evaluator's campaign, when alerts are on (tests). */
  alerts: AlertService | undefined;
  /** Settles once the record of every ApiKey listed at start has been handed to the analytics store. */
  keysRecorded: Promise<void>;
  ready(): boolean;
  /** The ApiKeys usage watches (what their records hold, src/apikeys/record.ts), once synced: the console views' live state. */
  apiKeys(): readonly ApiKey[] | undefined;
  stop(): Promise<void>;
}

/**
 * The access log receiver (upstream answers, and the analytics rows' HTTP entries), when
 * config.accessLogAddress is set; its stop also stops following its TLS files.
 */
async function startAccessLog(deps: UsageDeps, log: Logger, metrics: UsageMetrics, onUpstream: Recorder["recordUpstream"], ingest: Ingest | undefined): Promise<{ port: number; stop(): Promise<void> } | undefined> {
  const { config } = deps;
  const address = config.accessLogAddress;
  if (!address) return undefined;
  const onEntry = (r: JoinKind): void => { metrics.accessLogEntry(r); };
  const onHttpEntry = ingest ? (e: HttpLogEntry): void => { ingest.accessLogEntry(e); } : undefined;
  const onDrop = (reason: AccessLogDrop, n: number): void => { metrics.accessLogDropped(reason, n); };
  const tls = await openAccessLogTls(config, log);
  try {
    // The receiver (and grpc-js under it) loads only when it runs.
    const start = deps.startAccessLog ?? (await import("../accesslog/server.ts")).startAccessLogServer;
    const server = await start({
      address,
      onUpstream,
      log,
      onEntry,
      onHttpEntry,
      onDrop,
      ...(tls ? { tls, allowedPeers: config.accessLogAllowedPeers } : {}),
      limits: accessLogLimits(config),
      ...(config.accessLogProofKeyFile ? { proofKeys: await loadProofKeys(config.accessLogProofKeyFile) } : {}),
    });
    return {
      port: server.port,
      stop: async () => {
        await server.stop();
        tls?.close();
      },
    };
  } catch (err) {
    tls?.close();
    throw err;
  }
}

export async function startUsage(deps: UsageDeps): Promise<UsageHandle> {
  const { config } = deps;
  const log = deps.log.child({ component: "usage" });
  const now = deps.now;
  const clock: Clock = deps.clock ?? (now ? { now, setTimer: (fn, ms) => systemClock.setTimer(fn, ms) } : systemClock);
  const identity = deps.identity ?? (config.identity || `${hostname()}_${process.pid}`);

  let flusher: UsageFlusher | undefined;
  const metrics = createUsageMetrics(deps.registry, { perKey: config.usagePerKeyMetrics, perKeyMax: config.usagePerKeyMetricsMax, pendingKeys: () => flusher?.pendingKeys ?? 0 });
  let ingest: Ingest | undefined;
  // Key records are not made as the list arrives, but after it, a chunk at a time (recordKeys):
  // start-up does not wait for them, nor do they take the list's CPU (ADR 61).
  let listed = false;
  const onKey = (type: ChangeType, obj: ApiKey, old: ApiKeyRecord | undefined): void => {
    if (!listed) return;
    ingest?.keyChange(type, obj, old && apiKeyOf(old));
    if (type !== "delete") flusher?.keyChanged(obj.metadata.namespace, obj.metadata.name);
  };
  const store = usageStore(deps, clock, metrics, log, onKey, deps.apiKeys);
  if (deps.analyticsWriter) {
    ingest = await startIngest({ writer: deps.analyticsWriter, config, clock, log, registry: deps.registry, uidOf: (ns, name) => store.get(ns, name)?.uid });
  }
  if (config.usageStatus) {
    const onResult = (r: FlushResult): void => { metrics.flush(r); };
    flusher = new UsageFlusher({ rest: deps.rest, store, clock, intervalMs: config.usageFlushInterval, topRoutes: config.usageTopRoutes, log, onResult });
  }
  const events = new KubeEventRecorder({ rest: deps.rest, component: "keyward-authz", instance: identity, log, now: () => clock.now() });
  const sink = deps.decisionLogSink ?? decisionLogSink(config.decisionLog);
  const decisionLog = sink ? new DecisionLog({ sink, sampleAllowed: config.decisionLogSampleAllowed, sampleDenied: config.decisionLogSampleDenied }) : undefined;
  const { record, recordUpstream } = usageRecorder({ store, metrics, decisionLog, flusher, ingest });

  await store.start();
  listed = true;
  const keysRecorded = ingest
    ?.recordKeys(store.list(), (r) => {
      // Made from the record the cache holds as it is now, sharing its frozen labels and scopes:
      // no ApiKey is made back from it, which at 100,000 keys was most of what the main thread
      // allocated, and promoted, while the records were written.
      const cur = store.get(r.namespace, r.name);
      return cur && keyRecordFrom(cur);
    })
    .catch((err: unknown) => {
      log.warn("analytics key records not all written at start; each is written at its next change", { err });
    });
  const accessLog = await startAccessLog(deps, log, metrics, recordUpstream, ingest).catch(async (err: unknown) => {
    await store.stop();
    await ingest?.stop();
    throw err;
  });
  flusher?.start();
  const alertQueries = deps.alertQueries;
  const alerts =
    config.usageAlerts && alertQueries
      ? startAlertService({ config, rest: deps.rest, log, registry: deps.registry, queries: alertQueries, events, quotas: () => quotaKeys(store), identity, clock, onFired: alertFired(store, metrics) })
      : undefined;

  return {
    onDecision(front, d, seconds, input, cancelled) {
      record(fromDecision(d, input, seconds, cancelled, { xffTrustedHops: config.xffTrustedHops, front, at: clock.now() }));
    },
    record,
    recordUpstream,
    accessLogPort: accessLog?.port,
    flush: async () => {
      await ingest?.flush();
      return (await flusher?.flush()) ?? { written: 0, failed: 0 };
    },
    alerts,
    keysRecorded: keysRecorded ?? Promise.resolve(),
    ready: () => store.synced,
    apiKeys: () => (store.synced ? store.list().map(apiKeyOf) : undefined),
    stop: async () => {
      await alerts?.stop();
      await accessLog?.stop();
      await ingest?.stop();
      await flusher?.stop();
      await store.stop();
      await events.flush();
    },
  };
}
