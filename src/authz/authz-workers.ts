// `keyward authz --authz-workers W` (W > 1): the data plane on several cores
// (ADR 22). The primary forks W workers (src/cluster/pool.ts); each runs
// startAuthz with its own watches, index and limit counters and serves Check
// on the shared gRPC and HTTP ports. Usage is the primary's: workers send their
// answered checks to it in batches, and its one usage service (decision log,
// per-key metrics, status.usage writes, alerts, access log receiver) takes
// them as it would from an in-process data plane.
import type { KubeConfig } from "@kubernetes/client-node";
import { Registry, collectDefaultMetrics } from "prom-client";
import { runWorker, startWorkerPool, type WorkerPool } from "../cluster/pool.ts";
import type { Config } from "../config/config.ts";
import { KubeRest } from "../k8s/rest.ts";
import type { Logger } from "../log.ts";
import { fromDecision, type CheckEvent } from "../check/event.ts";
import type { CheckInput, Decision } from "../check/decision.ts";
import { startAuthz } from "./service.ts";
import { compactHeap } from "../util/heap.ts";

/** A worker sends its checks at least this often, and sooner when this many are waiting. */
const BATCH_MS = 100;
const BATCH_MAX = 512;

/** What a worker sends the primary. */
interface UsageBatch {
  usage: CheckEvent[];
}

/** The worker's side of usage: checks as usage events, sent to the primary in batches. */
export class UsageBatcher {
  private events: CheckEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly send: (b: UsageBatch) => void;
  private readonly xffTrustedHops: number;

  constructor(send: (b: UsageBatch) => void, xffTrustedHops: number) {
    this.send = send;
    this.xffTrustedHops = xffTrustedHops;
  }

  onDecision = (front: string, d: Decision, seconds: number, input: CheckInput | undefined, cancelled: boolean): void => {
    this.events.push(fromDecision(d, input, seconds, cancelled, { xffTrustedHops: this.xffTrustedHops, front, at: Date.now() }));
    if (this.events.length >= BATCH_MAX) this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.flush();
      }, BATCH_MS);
      this.timer.unref();
    }
  };

  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.events.length === 0) return;
    const usage = this.events;
    this.events = [];
    this.send({ usage });
  }
}

/** In a forked worker: serve checks until the primary says stop. */
export async function runAuthzWorker(config: Config, kc: KubeConfig, log: Logger): Promise<void> {
  await runWorker(async ({ slot, send }) => {
    const wlog = log.child({ worker: slot });
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const rest = new KubeRest(kc, { qps: config.kubeQps, burst: config.kubeBurst });
    const usage = new UsageBatcher(send, config.xffTrustedHops);
    // Listens only once its index is synced: the shared socket sends a worker no connection before.
    const authz = await startAuthz({ config, kc, rest, log: wlog.child({ component: "authz" }), registry, onDecision: usage.onDecision, listenWhenSynced: true, settleHeap: compactHeap });
    return {
      registry,
      ready: () => authz.ready(),
      info: { grpcPort: authz.grpcPort, httpPort: authz.httpPort },
      stop: async () => {
        await authz.stop();
        usage.flush();
        rest.close();
      },
    };
  }, log);
}

export interface AuthzWorkersOptions {
  config: Config;
  log: Logger;
  /** The primary's registry: usage metrics; the workers' are aggregated with it. */
  registry: Registry;
  /** The one usage service, in the primary. */
  usage: { record(e: CheckEvent): void };
  onFatal: (err: Error) => void;
}

/** In the primary: fork the workers and feed their checks to the usage service. */
export function startAuthzWorkers(options: AuthzWorkersOptions): WorkerPool {
  return startWorkerPool({
    count: options.config.authzWorkers,
    log: options.log,
    registry: options.registry,
    onMessage: (slot, data) => {
      const events = (data as Partial<UsageBatch> | undefined)?.usage;
      if (!Array.isArray(events)) return;
      for (const e of events) {
        try {
          options.usage.record(e);
        } catch (err) {
          options.log.warn("usage from a worker not recorded", { worker: slot, err });
        }
      }
    },
    perWorker: {
      source: "keyward_authz_decisions_total",
      name: "keyward_authz_worker_checks_total",
      help: "Checks answered by each worker process (--authz-workers), by worker slot; starts again from 0 when a worker is replaced.",
    },
    onFatal: options.onFatal,
  });
}
