// What startUsage adds to each answered check for the analytics store, alone: the check's event
// (fromDecision) handed to the ingest queue, which makes its row after the turn and writes
// batches to the store (on its writer thread, or inline on this one). Without the status
// flusher, the decision log and the per-key metrics, so the difference to no listener is the
// analytics rows' cost. `events`: the check's event alone, kept until the turn ends as ingest
// keeps it — what usage makes for every check whether or not analytics is on.
import type { Registry } from "prom-client";
import type { DecisionListener } from "../../src/authz/decisions.ts";
import { analyticsStoreOptions, openAnalyticsStore, type AnalyticsStore } from "../../src/analytics/store.ts";
import { fromDecision, type CheckEvent } from "../../src/check/event.ts";
import { loadConfig } from "../../src/config/config.ts";
import { systemClock } from "../../src/k8s/clock.ts";
import type { Logger } from "../../src/log.ts";
import { startIngest } from "../../src/usage/ingest.ts";
import { apiKeyObject } from "./fixture.ts";

export interface ListenerOptions {
  /** The bench's ApiKeys (apiKeyObject(0..keys-1)): their key records are written first. */
  keys: number;
  registry: Registry;
  log: Logger;
  sqlitePath: string;
  postgresUrl: string;
  writerThread: boolean;
  /**
   * Rows shed while the CPU is short (ADR 75, 76), as keyward does by default. false where the
   * bench measures what each row costs: in a bench's own busy process, shed rows cost nothing.
   */
  shedding?: boolean;
}

/** The listener of `kind` (events, sqlite or postgres); rows counted in `registry`'s keyward_analytics_rows_* metrics. */
export async function analyticsListener(kind: string, o: ListenerOptions): Promise<DecisionListener> {
  // keyward's defaults, and what the environment sets as it would for keyward (KEYWARD_ANALYTICS_THREAD_NICE, ...).
  const loaded = loadConfig([], process.env).config;
  const config = o.shedding === false ? { ...loaded, analyticsShedWhenThrottled: false, analyticsShedRunDelay: 0 } : loaded;
  const xffTrustedHops = config.xffTrustedHops;
  if (kind === "events") {
    let turn: CheckEvent[] = [];
    return (front, d, seconds, input, cancelled) => {
      if (turn.push(fromDecision(d, input, seconds, cancelled, { xffTrustedHops, front, at: Date.now() })) === 1) {
        setImmediate(() => {
          turn = [];
        });
      }
    };
  }
  if (kind !== "sqlite" && kind !== "postgres") throw new Error(`--analytics must be off, events, sqlite or postgres, got ${kind}`);
  // A run's rows go to a file of its own: a shared one would carry its size and locks from run to run.
  if (kind === "sqlite" && o.sqlitePath === "") throw new Error("--analytics sqlite needs --analytics-path, a file of the run's own");
  const store: AnalyticsStore = await openAnalyticsStore(
    // As keyward opens it from its settings, with this run's file or database.
    { ...analyticsStoreOptions({ ...config, analyticsStore: kind, analyticsSqlitePath: o.sqlitePath, analyticsPostgresUrl: o.postgresUrl })!, rollupRetentionMs: 0, retentionIntervalMs: 0, writerThread: o.writerThread },
    o.log,
  );
  const ingest = await startIngest({ writer: store, config, clock: systemClock, log: o.log, registry: o.registry, uidOf: () => undefined });
  for (let i = 0; i < o.keys; i++) ingest.keyChange("add", apiKeyObject(i));
  await ingest.flush();
  return (front, d, seconds, input, cancelled) => {
    ingest.check(fromDecision(d, input, seconds, cancelled, { xffTrustedHops, front, at: Date.now() }));
  };
}
