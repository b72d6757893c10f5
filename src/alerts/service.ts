// The alert evaluator of the data plane: every replica campaigns for one Lease
// (--usage-alert-lease-name); the one that holds it evaluates the alerts from
// the analytics store every --usage-alert-interval, and stops as soon as it
// loses the Lease. The cooldown and firing state live in the store, so a new
// leader carries on where the last one stopped.
import type { Registry } from "prom-client";
import type { AlertQueries } from "../analytics/alert-queries.ts";
import type { Config } from "../config/config.ts";
import { systemClock, type Clock } from "../k8s/clock.ts";
import type { EventRecorder } from "../k8s/events.ts";
import { LeaderElector } from "../k8s/leader.ts";
import type { KubeRest } from "../k8s/rest.ts";
import type { Logger } from "../log.ts";
import { alertmanagerClient } from "./alertmanager.ts";
import { evaluate, type Evaluation } from "./evaluator.ts";
import { createAlertMetrics } from "./metrics.ts";
import { thresholds, type Condition, type QuotaKey } from "./rules.ts";

export interface AlertServiceDeps {
  config: Config;
  rest: Pick<KubeRest, "request">;
  log: Logger;
  registry: Registry;
  queries: AlertQueries;
  events: Pick<EventRecorder, "record">;
  /** Live ApiKeys with a quota. */
  quotas: () => readonly QuotaKey[];
  identity: string;
  clock?: Clock;
  /** Called for each alert that starts firing (keyward_usage_alerts_total, keyward_key_alerts_total). */
  onFired?: (alert: Condition) => void;
}

export interface AlertService {
  isLeader(): boolean;
  /** Evaluations this replica has finished (tests). */
  readonly evaluations: number;
  /** Resolves with the next evaluation this replica finishes (tests). */
  nextEvaluation(): Promise<Evaluation>;
  /** Stops campaigning; releases the Lease unless `release` is false (what a crash looks like). */
  stop(opts?: { release?: boolean }): Promise<void>;
}

/** Alertmanager keeps a firing alert this many evaluation intervals without a re-send. */
const RESEND_VALID_INTERVALS = 4;

export function startAlertService(d: AlertServiceDeps): AlertService {
  const { config } = d;
  const clock = d.clock ?? systemClock;
  const log = d.log.child({ component: "alerts" });
  const metrics = createAlertMetrics(d.registry);
  const alertmanager = config.alertmanagerUrl ? alertmanagerClient(config.alertmanagerUrl, config.alertmanagerTimeout) : undefined;
  let count = 0;
  let waiters: ((e: Evaluation) => void)[] = [];
  const once = async (): Promise<void> => {
    const start = performance.now();
    try {
      const e = await evaluate({
        queries: d.queries,
        thresholds: thresholds(config),
        cooldownMs: config.usageAlertCooldown,
        resendValidMs: RESEND_VALID_INTERVALS * config.usageAlertInterval,
        now: () => clock.now(),
        quotas: d.quotas,
        events: d.events,
        metrics,
        log,
        ...(alertmanager ? { alertmanager } : {}),
      });
      metrics.evaluated(true, (performance.now() - start) / 1000);
      for (const c of e.fired) d.onFired?.(c);
      count++;
      const w = waiters;
      waiters = [];
      for (const f of w) f(e);
    } catch (err) {
      metrics.evaluated(false, (performance.now() - start) / 1000);
      log.error("usage alert evaluation failed; retried at the next interval", { err });
    }
  };
  const lead = (signal: AbortSignal): Promise<void> =>
    new Promise<void>((resolve) => {
      metrics.leading(true);
      log.info("evaluating usage alerts on this replica");
      let cancel: (() => void) | undefined;
      let busy = false;
      const run = (): void => {
        busy = true;
        cancel = undefined;
        void once().then(() => {
          busy = false;
          if (signal.aborted) resolve();
          else cancel = clock.setTimer(run, config.usageAlertInterval);
        });
      };
      // An evaluation under way finishes first: a successor never overlaps with it.
      signal.addEventListener("abort", () => {
        if (busy) return;
        cancel?.();
        resolve();
      });
      run();
    });
  const elector = new LeaderElector({
    rest: d.rest,
    name: config.usageAlertLeaseName,
    namespace: config.leaseNamespace,
    identity: d.identity,
    leaseDurationMs: config.leaseDuration,
    renewDeadlineMs: config.leaseRenewDeadline,
    retryPeriodMs: config.leaseRetryPeriod,
    log,
    clock,
    onStartedLeading: lead,
    onStoppedLeading: () => {
      metrics.leading(false);
    },
  });
  const running = elector.run().catch((err: unknown) => {
    log.error("alert evaluator election stopped", { err });
  });
  return {
    isLeader: () => elector.isLeader(),
    get evaluations() {
      return count;
    },
    nextEvaluation: () => new Promise<Evaluation>((resolve) => waiters.push(resolve)),
    stop: async (o = {}) => {
      await elector.stop({ release: o.release ?? true });
      await running;
    },
  };
}
