// The keyward operator: watches ApiKeys and Secrets, feeds a work queue keyed
// namespace/name, and reconciles each ApiKey serially. With leader election on,
// every replica keeps its caches warm but only the leader works the queue.
import { hostname } from "node:os";
import { Counter, Gauge, Histogram } from "prom-client";
import { APIKEY_PLURAL, API_VERSION, type ApiKey } from "../api/types.ts";
import { KubeEventRecorder } from "../k8s/events.ts";
import { CollectionWatch, type LifecycleEvent } from "../k8s/informer.ts";
import type { RoleDeps } from "../deps.ts";
import { onlyUsageChanged } from "../usage/changes.ts";
import { HashClaims } from "./claims.ts";
import { ApiKeyReconciler } from "./reconciler.ts";
import { toSecretView, type SecretView } from "./secrets.ts";
import { createQueue, queueMetrics } from "./queue.ts";
import { objectKey, splitKey, type WorkQueue } from "../k8s/workqueue.ts";
import { startLeadership, type Leadership } from "./leadership.ts";

export type OperatorDeps = RoleDeps;

export interface OperatorHandle {
  ready(): boolean;
  isLeader(): boolean;
  /** Stops; `releaseLease: false` leaves the Lease held, as a crashed replica would. */
  stop(opts?: { releaseLease?: boolean }): Promise<void>;
}

const keyOf = (ns: string | undefined, name: string | undefined): string => objectKey({ metadata: { namespace: ns, name } });


export async function startOperator(deps: OperatorDeps): Promise<OperatorHandle> {
  const { config, kc, rest, log, registry } = deps;
  const now = deps.now ?? Date.now;
  const identity = config.identity || `${hostname()}_${process.pid}`;

  const watchEvents = new Counter({
    name: "keyward_watch_events_total",
    help: "Watch lifecycle events by resource and event (list, relist, connect, reconnect, gone, timeout, error, stale, resync)",
    labelNames: ["component", "resource", "event"],
    registers: [registry],
  });
  const reconciles = new Counter({
    name: "keyward_operator_reconciles_total",
    help: "ApiKey reconciles by result (updated, unchanged, error, requeued)",
    labelNames: ["result"],
    registers: [registry],
  });
  const failures = new Counter({
    name: "keyward_operator_failures_total",
    help: "ApiKey reconcile failures by reason (SecretConflict, SecretNotFound, WeakKey, ReconcileError, ...)",
    labelNames: ["reason"],
    registers: [registry],
  });
  const duration = new Histogram({
    name: "keyward_operator_reconcile_duration_seconds",
    help: "Time to reconcile one ApiKey",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const apiRequests = new Counter({
    name: "keyward_operator_kube_requests_total",
    help: "Requests the operator sent to the kube-apiserver, by verb",
    labelNames: ["verb"],
    registers: [registry],
  });
  const leaderGauge = new Gauge({ name: "keyward_operator_leader", help: "1 while this replica leads", registers: [registry] });
  rest.setRequestHook((verb) => { apiRequests.inc({ verb }); });

  const events = new KubeEventRecorder({ rest, component: "keyward-operator", instance: identity, log, now });
  const lifecycle = (resource: string) => (event: LifecycleEvent, err?: unknown) => {
    watchEvents.inc({ component: "operator", resource, event });
    if (event === "error" || event === "handler_error") log.warn("watch problem", { resource, event, err });
    else log.debug("watch", { resource, event });
  };

  // Secrets referenced by ApiKeys: secret ns/name -> ApiKey keys, so a Secret change requeues its ApiKeys.
  const referencedBy = new Map<string, Set<string>>();
  const refsOf = new Map<string, string>();
  const track = (ak: ApiKey, remove: boolean): void => {
    const k = keyOf(ak.metadata.namespace, ak.metadata.name);
    const prev = refsOf.get(k);
    if (prev) referencedBy.get(prev)?.delete(k);
    refsOf.delete(k);
    if (remove) return;
    const secretName = ak.spec.existingSecret?.name ?? (ak.spec.keyHash ? undefined : (ak.spec.secretName ?? `${ak.metadata.name}-apikey`));
    if (!secretName) return;
    const sk = keyOf(ak.metadata.namespace, secretName);
    refsOf.set(k, sk);
    let set = referencedBy.get(sk);
    if (!set) referencedBy.set(sk, (set = new Set()));
    set.add(k);
  };

  const qm = queueMetrics(registry);
  let queue: WorkQueue | undefined;
  const enqueue = (k: string): void => queue?.add(k);

  // Which ApiKey holds each key hash: one owner per hash.
  const claims = new HashClaims();

  const watched = { namespaces: config.namespaces, staleAfterMs: config.watchStaleAfter, resyncMs: config.watchResync };
  const apiKeys = new CollectionWatch<ApiKey>(kc, rest, {
    ...watched,
    apiPrefix: `/apis/${API_VERSION}`,
    plural: APIKEY_PLURAL,
    onLifecycle: lifecycle("apikeys"),
    onChange: (type, ak, old) => {
      track(ak, type === "delete");
      for (const k of claims.update(keyOf(ak.metadata.namespace, ak.metadata.name), type === "delete" ? undefined : ak)) enqueue(k);
      // The data plane's usage writes change nothing the operator acts on.
      if (type !== "delete" && !onlyUsageChanged(old, ak)) enqueue(keyOf(ak.metadata.namespace, ak.metadata.name));
    },
  });
  const secrets = new CollectionWatch<SecretView>(kc, rest, {
    ...watched,
    apiPrefix: "/api/v1",
    plural: "secrets",
    transform: toSecretView,
    onLifecycle: lifecycle("secrets"),
    onChange: (_type, s) => {
      const sk = keyOf(s.metadata.namespace, s.metadata.name);
      for (const k of referencedBy.get(sk) ?? []) enqueue(k);
      const owner = s.metadata.ownerReferences?.find((o) => o.controller === true && o.kind === "ApiKey");
      if (owner) enqueue(keyOf(s.metadata.namespace, owner.name));
    },
  });

  const reconciler = new ApiKeyReconciler({
    rest,
    secrets,
    events,
    log,
    now,
    defaultGraceMs: config.defaultGracePeriod,
    claims,
    onOutcome: (o) => { reconciles.inc({ result: o }); },
    onFailure: (reason) => { failures.inc({ reason }); },
  });

  const handle = async (k: string): Promise<{ requeueAfter?: number }> => {
    const { namespace: ns, name } = splitKey(k);
    const end = duration.startTimer();
    try {
      const result = await reconciler.reconcile(apiKeys.get(ns, name));
      if (result.requeueAfter !== undefined) reconciles.inc({ result: "requeued" });
      return result;
    } catch (err) {
      reconciles.inc({ result: "error" });
      log.warn("reconcile failed; retrying with backoff", { apikey: k, err });
      throw err;
    } finally {
      end();
    }
  };

  await Promise.all([apiKeys.start(), secrets.start()]);
  log.info("operator caches synced", { apikeys: apiKeys.list().length });

  const startWork = (): void => {
    queue = createQueue(config, handle, log, qm);
    for (const ak of apiKeys.list()) queue.add(keyOf(ak.metadata.namespace, ak.metadata.name));
  };
  const stopWork = async (): Promise<void> => {
    const q = queue;
    queue = undefined;
    await q?.shutdown();
  };

  let leadership: Leadership | undefined;
  if (config.leaderElect) {
    leadership = startLeadership({
      config,
      rest,
      log,
      identity,
      onStart: () => {
        leaderGauge.set(1);
        log.info("leading: reconciling ApiKeys", { identity });
        startWork();
      },
      onStop: async () => {
        leaderGauge.set(0);
        log.info("no longer leading: stopped reconciling", { identity });
        await stopWork();
      },
    });
  } else {
    leaderGauge.set(1);
    startWork();
  }

  return {
    ready: () => apiKeys.synced && secrets.synced,
    isLeader: () => (leadership ? leadership.isLeader() : true),
    stop: async (stopOpts = {}) => {
      await leadership?.stop({ release: stopOpts.releaseLease ?? true });
      await stopWork();
      await Promise.all([apiKeys.stop(), secrets.stop()]);
      await events.flush();
    },
  };
}
