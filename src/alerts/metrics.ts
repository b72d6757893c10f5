// The alert evaluator's metrics. keyward_alerts_firing counts the keys each
// alert fires on, labelled by alert only: its series are bounded by the alert
// names, however many keys there are. Which keys fire is in the Events, the
// logs and Alertmanager, never in a label. Only the leader reports; the others
// report zero.
import { Counter, Gauge, type Registry } from "prom-client";
import { ALERTS, type AlertName } from "./rules.ts";

export interface AlertMetrics {
  /** Keys each alert fires on now (an alert absent fires on none). */
  firing(byAlert: ReadonlyMap<AlertName, number>): void;
  pushed(ok: boolean): void;
  evaluated(ok: boolean, seconds: number): void;
  leading(on: boolean): void;
}

export function createAlertMetrics(registry: Registry): AlertMetrics {
  const firing = new Gauge({ name: "keyward_alerts_firing", help: "ApiKeys each usage alert fires on now, by alert; reported by the elected evaluator, zero elsewhere.", labelNames: ["alert"] as const, registers: [registry] });
  const pushes = new Counter({ name: "keyward_alerts_pushes_total", help: "Pushes of usage alerts to Alertmanager, by result (ok, error).", labelNames: ["result"] as const, registers: [registry] });
  const evaluations = new Counter({ name: "keyward_alerts_evaluations_total", help: "Usage alert evaluations by this replica, by result (ok, error).", labelNames: ["result"] as const, registers: [registry] });
  const duration = new Gauge({ name: "keyward_alerts_evaluation_seconds", help: "How long the last usage alert evaluation took.", registers: [registry] });
  const leader = new Gauge({ name: "keyward_alerts_leader", help: "1 while this replica is the elected usage alert evaluator.", registers: [registry] });
  const set = (by: ReadonlyMap<AlertName, number>): void => {
    for (const a of ALERTS) firing.set({ alert: a }, by.get(a) ?? 0);
  };
  set(new Map());
  leader.set(0);
  return {
    firing: set,
    pushed: (ok) => {
      pushes.inc({ result: ok ? "ok" : "error" });
    },
    evaluated: (ok, seconds) => {
      evaluations.inc({ result: ok ? "ok" : "error" });
      duration.set(seconds);
    },
    leading: (on) => {
      leader.set(on ? 1 : 0);
      if (!on) set(new Map());
    },
  };
}
