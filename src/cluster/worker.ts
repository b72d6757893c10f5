// The worker's side of the pool: runs the caller's body in a forked worker as a
// part of the worker's lifecycle, tells the primary once it serves and when its
// readiness changes, answers metrics requests, and stops on the primary's word
// (or SIGTERM sent to the worker itself).
import cluster from "node:cluster";
import type { Registry } from "prom-client";
import { isKeywardError } from "../errors.ts";
import { Lifecycle } from "../lifecycle/lifecycle.ts";
import type { Logger } from "../log.ts";
import { asJson, SLOT_ENV, type ToPrimary, type ToWorker } from "./protocol.ts";

export interface WorkerBody {
  /** This worker's metrics, collected by the primary. */
  registry?: Registry;
  /** Can the worker decide (its caches are synced)? Reported to the primary when it changes. */
  ready(): boolean;
  /** Sent to the primary with the first report (its ports). */
  info?: unknown;
  /** Stops serving, finishing what is in flight. Messages sent until it resolves are delivered. */
  stop(): Promise<void>;
}

export interface WorkerContext {
  /** This worker's slot, 0 … count-1 (a replacement takes the slot of the worker it replaces). */
  slot: number;
  /** A message for the primary's onMessage. */
  send: (data: unknown) => void;
}

/** Messages to the primary; stopping waits until every one sent has been delivered. */
function primaryChannel(): { send: (m: ToPrimary) => void; stop: () => Promise<void> } {
  const inFlight = new Set<Promise<void>>();
  return {
    send: (m) => {
      if (!process.connected) return;
      const p = new Promise<void>((resolve) => {
        process.send?.(m, undefined, {}, () => {
          resolve();
        });
      });
      inFlight.add(p);
      void p.then(() => inFlight.delete(p));
    },
    stop: async () => {
      await Promise.all(inFlight);
    },
  };
}

/** Reports the body's readiness to the primary when it changes (polled). */
function readinessReporter(body: WorkerBody, send: (m: ToPrimary) => void): { stop(): Promise<void> } {
  let ready = body.ready();
  send({ kind: "keyward:serving", info: body.info });
  if (!ready) send({ kind: "keyward:ready", ready });
  const poll = setInterval(() => {
    const now = body.ready();
    if (now === ready) return;
    ready = now;
    send({ kind: "keyward:ready", ready });
  }, 200);
  poll.unref();
  return {
    stop: () => {
      clearInterval(poll);
      return Promise.resolve();
    },
  };
}

/**
 * Runs in a forked worker: starts `body`, tells the primary once it serves, answers metrics
 * requests, and stops on the primary's word or SIGTERM (asked before it serves, the worker exits
 * at once). A worker whose start throws exits 1. SIGINT is the primary's to handle (a terminal
 * sends it to the whole process group).
 */
export async function runWorker(start: (ctx: WorkerContext) => Promise<WorkerBody>, log: Logger): Promise<void> {
  if (!cluster.isWorker || !process.send) throw new Error("runWorker runs in a cluster worker");
  const slot = Number(process.env[SLOT_ENV] ?? "0");
  const wlog = log.child({ worker: slot });
  process.on("SIGINT", () => undefined);
  const lc = new Lifecycle({ log: wlog, signals: ["SIGTERM"] });
  const channel = primaryChannel();
  lc.add("messages to the primary", channel);
  let body: WorkerBody | undefined;
  process.on("message", (m: ToWorker) => {
    if (m.kind === "keyward:stop") void lc.shutdown("primary");
    if (m.kind !== "keyward:metrics") return;
    const reply = (r: Omit<Extract<ToPrimary, { kind: "keyward:metrics" }>, "kind" | "id">): void => {
      channel.send({ kind: "keyward:metrics", id: m.id, ...r });
    };
    if (!body?.registry) reply({ metrics: [] });
    else asJson(body.registry).then((metrics) => { reply({ metrics }); }, (err: unknown) => { reply({ error: String(err) }); });
  });
  try {
    body = await lc.start("authz worker", () => start({ slot, send: (data) => { channel.send({ kind: "keyward:app", data }); } }));
  } catch (err) {
    if (isKeywardError(err, "Stopping")) return;
    wlog.error("authz worker could not start", { err });
    process.exit(1);
  }
  lc.add("readiness reports", readinessReporter(body, channel.send));
}
