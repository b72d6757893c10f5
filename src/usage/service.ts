// Usage analytics in the ext_authz process: every answered check (and, with
// the access log receiver, every upstream answer) goes to the decision log,
// the per-key metrics, the status flusher and the alert engine. startUsage
// owns a watch of ApiKeys (the flusher's base and the alerts' expiry list),
// the flush and alert timers, and the optional access log server.
import { hostname } from "node:os";
import type { CheckInput, Decision } from "../check/decision.ts";
import type { RoleDeps } from "../deps.ts";
import { systemClock, type Clock } from "../k8s/clock.ts";
import { KubeEventRecorder } from "../k8s/events.ts";
import { startAccessLogServer } from "../accesslog/server.ts";
import type { JoinKind } from "../accesslog/join.ts";
import { DecisionLog, decisionLogSink } from "./decisionlog.ts";
import { fromDecision, type CheckEvent, type UpstreamEvent } from "../check/event.ts";
import { UsageFlusher, type FlushReport, type FlushResult } from "./flusher.ts";
import { createUsageMetrics } from "./metrics.ts";
import { alertTicks, usageAlerts, usageRecorder, usageStore } from "./wiring.ts";

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
  const { config } = deps;
  const log = deps.log.child({ component: "usage" });
  const now = deps.now;
  const clock: Clock = deps.clock ?? (now ? { now, setTimer: (fn, ms) => systemClock.setTimer(fn, ms) } : systemClock);
  const identity = deps.identity ?? (config.identity || `${hostname()}_${process.pid}`);

  let flusher: UsageFlusher | undefined;
  const metrics = createUsageMetrics(deps.registry, { perKey: config.usagePerKeyMetrics, perKeyMax: config.usagePerKeyMetricsMax, pendingKeys: () => flusher?.pendingKeys ?? 0 });
  const store = usageStore(deps, clock, metrics, log);
  if (config.usageStatus) {
    const onResult = (r: FlushResult): void => { metrics.flush(r); };
    flusher = new UsageFlusher({ rest: deps.rest, store, clock, intervalMs: config.usageFlushInterval, topRoutes: config.usageTopRoutes, log, onResult });
  }
  const events = new KubeEventRecorder({ rest: deps.rest, component: "keyward-authz", instance: identity, log, now: () => clock.now() });
  const alerts = usageAlerts({ config, clock, store, events, metrics, log, flusher: () => flusher });
  const sink = deps.decisionLogSink ?? decisionLogSink(config.decisionLog);
  const decisionLog = sink ? new DecisionLog({ sink, sampleAllowed: config.decisionLogSampleAllowed, sampleDenied: config.decisionLogSampleDenied }) : undefined;
  const { record, recordUpstream } = usageRecorder({ store, metrics, decisionLog, flusher, alerts });

  await store.start();
  let accessLog: { port: number; stop(): Promise<void> } | undefined;
  if (config.accessLogAddress) {
    const onEntry = (r: JoinKind): void => { metrics.accessLogEntry(r); };
    accessLog = await (deps.startAccessLog ?? startAccessLogServer)({ address: config.accessLogAddress, onUpstream: recordUpstream, log, onEntry }).catch(async (err: unknown) => {
      await store.stop();
      throw err;
    });
  }
  flusher?.start();
  const stopTicks = alerts ? alertTicks(clock, alerts, ALERT_TICK_MS, log) : undefined;

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
      stopTicks?.();
      await accessLog?.stop();
      await flusher?.stop();
      await store.stop();
      await events.flush();
    },
  };
}
