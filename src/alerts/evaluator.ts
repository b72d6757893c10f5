// One evaluation of the alerts: the conditions that hold now (rules.ts), set
// against the alert state in the store. A condition not firing yet fires,
// unless it started within the cooldown (the state row says when, for every
// replica and across restarts): a Warning Event on the ApiKey, a log line, and
// Alertmanager. One still firing is re-sent to Alertmanager. A firing alert
// whose condition is gone resolves: Alertmanager gets it with endsAt now.
import { API_VERSION } from "../api/types.ts";
import type { AlertQueries, AlertState } from "../analytics/alert-queries.ts";
import type { EventRecorder } from "../k8s/events.ts";
import type { Logger } from "../log.ts";
import type { AlertmanagerClient, PushedAlert } from "./alertmanager.ts";
import type { AlertMetrics } from "./metrics.ts";
import { conditions, type AlertName, type Condition, type QuotaKey, type Thresholds } from "./rules.ts";

export interface EvaluatorOptions {
  queries: AlertQueries;
  thresholds: Thresholds;
  cooldownMs: number;
  /** How long Alertmanager keeps a firing alert without a re-send; a few evaluation intervals. */
  resendValidMs: number;
  now: () => number;
  quotas: () => readonly QuotaKey[];
  events: Pick<EventRecorder, "record">;
  metrics: AlertMetrics;
  log: Logger;
  alertmanager?: AlertmanagerClient;
}

export interface Evaluation {
  /** Alerts that started firing in this evaluation. */
  fired: Condition[];
  /** Alerts that resolved. */
  resolved: AlertState[];
  /** Conditions that hold but fired within the cooldown. */
  cooling: Condition[];
  /** Alerts firing after it. */
  firing: number;
}

const ref = (a: { uid: string; alert: string }): string => `${a.uid} ${a.alert}`;
const iso = (ms: number): string => new Date(ms).toISOString();

function pushed(a: Pick<AlertState, "alert" | "namespace" | "name" | "owner" | "message">, startsAt: number, endsAt: number): PushedAlert {
  return {
    labels: { alertname: a.alert, alert: a.alert, namespace: a.namespace, apikey: a.name, owner: a.owner, source: "keyward" },
    annotations: { summary: `${a.alert} on ApiKey ${a.namespace}/${a.name}`, description: a.message },
    startsAt: iso(startsAt),
    endsAt: iso(endsAt),
  };
}

export async function evaluate(options: EvaluatorOptions): Promise<Evaluation> {
  const now = options.now();
  const holding = await conditions(options.queries, options.thresholds, now, options.quotas());
  const states = new Map((await options.queries.states()).map((s) => [ref(s), s]));
  const result: Evaluation = { fired: [], resolved: [], cooling: [], firing: 0 };
  const out: PushedAlert[] = [];
  const firing = new Map<AlertName, number>();
  const held = new Set<string>();
  for (const c of holding) {
    held.add(ref(c));
    const s = states.get(ref(c));
    if (s?.firing === 1) {
      if (s.message !== c.message) await options.queries.touch(c.uid, c.alert, c.message);
      out.push(pushed(c, s.fired_at, now + options.resendValidMs));
    } else if (await options.queries.fire({ uid: c.uid, alert: c.alert, namespace: c.namespace, name: c.name, owner: c.owner, message: c.message }, now, options.cooldownMs)) {
      result.fired.push(c);
      options.events.record({ apiVersion: API_VERSION, kind: "ApiKey", metadata: { namespace: c.namespace, name: c.name, uid: c.uid } }, "Warning", c.alert, c.message);
      options.log.warn("usage alert", { alert: c.alert, apikey: `${c.namespace}/${c.name}`, owner: c.owner, message: c.message });
      out.push(pushed(c, now, now + options.resendValidMs));
    } else {
      result.cooling.push(c);
      continue;
    }
    firing.set(c.alert, (firing.get(c.alert) ?? 0) + 1);
  }
  for (const s of states.values()) {
    if (s.firing !== 1 || held.has(ref(s))) continue;
    if (await options.queries.resolve(s.uid, s.alert, now)) {
      result.resolved.push(s);
      options.log.info("usage alert resolved", { alert: s.alert, apikey: `${s.namespace}/${s.name}` });
      out.push(pushed(s, s.fired_at, now));
    }
  }
  options.metrics.firing(firing);
  result.firing = [...firing.values()].reduce((a, b) => a + b, 0);
  if (options.alertmanager && out.length) {
    try {
      await options.alertmanager.push(out);
      options.metrics.pushed(true);
    } catch (err) {
      options.metrics.pushed(false);
      options.log.warn("alertmanager push failed; re-sent at the next evaluation", { err, alerts: out.length });
    }
  }
  return result;
}
