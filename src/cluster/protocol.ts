// What the primary and its workers say to each other, and the pool's view of a
// worker slot. Messages are objects whose `kind` starts with "keyward:"; other
// messages (prom-client's own) are ignored.
import type { Registry } from "prom-client";

/** The environment variable that tells a forked worker its slot (0 … count-1). */
export const SLOT_ENV = "KEYWARD_WORKER_SLOT";

/** A registry's metrics as getMetricsAsJSON returns them (prom-client's typings say `type` is an enum; it is a string). */
export interface MetricJson {
  name: string;
  help: string;
  type: string;
  aggregator: string;
  values: { labels: Record<string, string | number>; value: number; metricName?: string }[];
}
export type Metrics = MetricJson[];
export const asJson = async (r: Registry): Promise<Metrics> => (await r.getMetricsAsJSON()) as unknown as Metrics;

export type ToWorker = { kind: "keyward:metrics"; id: number } | { kind: "keyward:stop" };
export type ToPrimary =
  | { kind: "keyward:serving"; info: unknown }
  | { kind: "keyward:ready"; ready: boolean }
  | { kind: "keyward:metrics"; id: number; metrics?: Metrics; error?: string }
  | { kind: "keyward:app"; data: unknown };

/** What the pool's units use of a node:cluster Worker (a fake in unit tests). */
export interface PoolWorker {
  send(m: ToWorker): unknown;
  isConnected(): boolean;
  readonly process: { readonly pid?: number | undefined; kill(signal: NodeJS.Signals): unknown };
}

/** One place in the pool: the worker in it now, and what the pool knows of its runs. */
export interface Slot<W extends PoolWorker = PoolWorker> {
  slot: number;
  worker: W | undefined;
  info: unknown;
  serving: boolean;
  ready: boolean;
  servingSince: number;
  /** Exits in a row without a stable run. */
  failures: number;
  restarts: number;
  timer: NodeJS.Timeout | undefined;
  /** This worker's metrics as last served: what its counters add once it is gone. */
  lastMetrics: Metrics | undefined;
}

export function emptySlot<W extends PoolWorker>(slot: number): Slot<W> {
  return { slot, worker: undefined, info: undefined, serving: false, ready: false, servingSince: 0, failures: 0, restarts: 0, timer: undefined, lastMetrics: undefined };
}
