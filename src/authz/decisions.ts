// What the data plane does with each decision once it is answered: count it, time
// it, log it (denials at info, allowed requests at debug) and hand it to the
// decision listener (usage accounting).
import type { Logger, PreparedLine } from "../log.ts";
import type { CounterSeries } from "../metrics/tally.ts";
import type { CheckInput, Decision } from "../check/decision.ts";
import type { AuthzMetrics } from "./metrics.ts";
import { REASONS } from "../check/reasons.ts";
import { DecisionCache, decisionVariant } from "./response-cache.ts";
import { decisionMetadata } from "./response.ts";

export type Front = "grpc" | "http";

export type DecisionListener = (front: Front, d: Decision, seconds: number, input: CheckInput | undefined, cancelled: boolean) => void;

export interface DecisionRecorderOptions {
  front: Front;
  metrics: Pick<AuthzMetrics, "decisions" | "checkSeconds">;
  log: Logger;
  /** Runs off the answer's path; what it throws is logged, never turned into a decision. */
  listener?: DecisionListener | undefined;
}

/** Request fields are the caller's to choose: logged at most 256 characters long. */
function clip(v: string | undefined): string | undefined {
  return v !== undefined && v.length > 256 ? `${v.slice(0, 256)}...` : v;
}

/** The fields of a decision's log line that do not depend on the request. Never the key. */
function fixedFields(front: Front, d: Decision, cancelled: boolean): Record<string, unknown> {
  return { front, status: d.status, ...decisionMetadata(d), ...(cancelled ? { reason: "cancelled" } : {}) };
}

/** The onDecision of a front (FrontOptions). */
export function decisionRecorder(options: DecisionRecorderOptions): (d: Decision, seconds: number, input: CheckInput | undefined, cancelled: boolean) => void {
  const { front, metrics, log, listener } = options;
  // Series resolved once per reason, not per request.
  const counters = new Map<string, CounterSeries>();
  const timer = metrics.checkSeconds.series({ front });
  const counter = (reason: string, outcome: string): CounterSeries => {
    let c = counters.get(reason);
    if (!c) {
      c = metrics.decisions.series({ outcome, reason, front });
      counters.set(reason, c);
    }
    return c;
  };
  // The "check" line's fixed part, rendered once per key entry, rule and reason (cancelled
  // checks are rare and rendered in full).
  const lines = new DecisionCache<PreparedLine>((d) => log.prepare(d.status === 200 ? "debug" : "info", "check", fixedFields(front, d, false)));
  const logDecision = (d: Decision, input: CheckInput | undefined, cancelled: boolean): void => {
    const level = d.status === 200 && !cancelled ? "debug" : "info";
    if (!log.enabled(level)) return;
    const path = input?.path;
    const q = path?.indexOf("?") ?? -1;
    const request = {
      method: clip(input?.method),
      host: clip(input?.host),
      // The query string can carry the key: never logged.
      path: clip(q === -1 ? path : path?.slice(0, q)),
    };
    if (cancelled) log[level]("check", { ...fixedFields(front, d, true), ...request });
    else lines.get(d, decisionVariant(d))(request);
  };
  const onDecision = (d: Decision, seconds: number, input: CheckInput | undefined, cancelled: boolean): void => {
    const reason = cancelled ? "cancelled" : d.reason;
    counter(reason, cancelled ? "error" : REASONS[d.reason].outcome).inc();
    timer.observe(seconds);
    logDecision(d, input, cancelled);
    if (listener) {
      try {
        listener(front, d, seconds, input, cancelled);
      } catch (err) {
        log.warn("decision listener failed", { err });
      }
    }
  };
  return onDecision;
}
