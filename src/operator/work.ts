// The leader's work: the ApiKey queue, reconciled with the ApiKeyReconciler,
// and the ApiKeyPolicy status queue. Both exist only while this replica leads.
import type { ApiKeyPolicy } from "../api/types.ts";
import type { Config } from "../config/config.ts";
import type { ChangeType } from "../k8s/informer.ts";
import { splitKey, WorkQueue } from "../k8s/workqueue.ts";
import type { Logger } from "../log.ts";
import type { OperatorMetrics } from "./metrics.ts";
import type { PolicyStatusReconciler } from "./policies.ts";
import { createQueue, type QueueMetrics } from "./queue.ts";
import type { ReconcileResult } from "./reconciler.ts";
import { keyOf } from "./references.ts";

export interface ApiKeyWorkOptions {
  config: Config;
  log: Logger;
  queueMetrics: QueueMetrics;
  metrics: Pick<OperatorMetrics, "reconciles" | "duration">;
  /** Reconciles the ApiKey namespace/name as the cache holds it. */
  reconcile(ns: string, name: string): Promise<ReconcileResult>;
  /** Every cached ApiKey's namespace/name: all are queued when the work starts. */
  keys(): string[];
}

export class ApiKeyWork {
  private readonly options: ApiKeyWorkOptions;
  private queue: WorkQueue | undefined;

  constructor(options: ApiKeyWorkOptions) {
    this.options = options;
  }

  /** Queues namespace/name; a no-op while the work is stopped (a standby). */
  readonly enqueue = (k: string): void => {
    this.queue?.add(k);
  };

  start(): void {
    this.queue = createQueue(this.options.config, this.handle, this.options.log, this.options.queueMetrics);
    for (const k of this.options.keys()) this.queue.add(k);
  }

  async stop(): Promise<void> {
    const q = this.queue;
    this.queue = undefined;
    await q?.shutdown();
  }

  private readonly handle = async (k: string): Promise<{ requeueAfter?: number }> => {
    const { namespace: ns, name } = splitKey(k);
    const { reconciles, duration } = this.options.metrics;
    const end = duration.startTimer();
    try {
      const result = await this.options.reconcile(ns, name);
      if (result.requeueAfter !== undefined) reconciles.inc({ result: "requeued" });
      return result;
    } catch (err) {
      reconciles.inc({ result: "error" });
      this.options.log.warn("reconcile failed; retrying with backoff", { apikey: k, err });
      throw err;
    } finally {
      end();
    }
  };
}

export interface PolicyWorkOptions {
  config: Config;
  log: Logger;
  status: Pick<PolicyStatusReconciler, "reconcile" | "invalidate">;
  list(): ApiKeyPolicy[];
}

/** ApiKeyPolicy status: any policy change can move a host's owner, so every policy is looked at again. */
export class PolicyWork {
  private readonly options: PolicyWorkOptions;
  private queue: WorkQueue | undefined;

  constructor(options: PolicyWorkOptions) {
    this.options = options;
  }

  readonly onChange = (type: ChangeType, p: ApiKeyPolicy, old?: ApiKeyPolicy): void => {
    // Our own status writes change neither hosts nor rules: nothing to redo.
    if (old && old.metadata.generation === p.metadata.generation && type === "update") {
      this.queue?.add(keyOf(p.metadata.namespace, p.metadata.name));
      return;
    }
    this.options.status.invalidate();
    this.enqueueAll();
  };

  start(): void {
    const { config, log, status } = this.options;
    this.queue = new WorkQueue({
      name: "apikeypolicies",
      workers: 1,
      retryBaseMs: config.retryBase,
      retryMaxMs: config.retryMax,
      log,
      handler: async (k) => {
        const { namespace: ns, name } = splitKey(k);
        try {
          await status.reconcile(ns, name);
        } catch (err) {
          log.warn("ApiKeyPolicy status not written; retrying with backoff", { apikeypolicy: k, err });
          throw err;
        }
      },
    });
    this.queue.start();
    status.invalidate();
    this.enqueueAll();
  }

  async stop(): Promise<void> {
    const q = this.queue;
    this.queue = undefined;
    await q?.shutdown();
  }

  private enqueueAll(): void {
    const q = this.queue;
    if (!q) return;
    for (const p of this.options.list()) q.add(keyOf(p.metadata.namespace, p.metadata.name));
  }
}
