// The keyward operator: watches ApiKeys and the Secrets it manages (label-selected;
// Secrets brought through spec.existingSecret are re-read by name, see
// referenced.ts), feeds a work queue keyed
// namespace/name, and reconciles each ApiKey serially. With leader election on,
// every replica keeps its caches warm but only the leader works the queue.
// It also watches ApiKeyPolicies and writes their status (policies.ts): which
// hosts each one owns, through a second queue worked by the leader as well.
import { hostname } from "node:os";
import { Counter, Gauge, Histogram } from "prom-client";
import { APIKEY_PLURAL, APIKEYPOLICY_PLURAL, API_VERSION, type ApiKey, type ApiKeyPolicy } from "../api/types.ts";
import { parseHostAssignments } from "../policy/hosts.ts";
import { KubeEventRecorder } from "../k8s/events.ts";
import { CollectionWatch, type LifecycleEvent } from "../k8s/informer.ts";
import type { RoleDeps } from "../deps.ts";
import { onlyUsageChanged } from "../api/changes.ts";
import { HashClaims } from "./claims.ts";
import { ApiKeyReconciler } from "./reconciler.ts";
import { MANAGED_SECRETS_SELECTOR, toSecretView, type SecretView } from "./secrets.ts";
import { ReferencedSecrets } from "./referenced.ts";
import { createQueue, queueMetrics } from "./queue.ts";
import { objectKey, splitKey, WorkQueue } from "../k8s/workqueue.ts";
import { PolicyStatusReconciler } from "./policies.ts";
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
  const assigned = parseHostAssignments(config.hostOwners);

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

  const qm = queueMetrics(registry);
  let queue: WorkQueue | undefined;
  const enqueue = (k: string): void => queue?.add(k);

  const secretReads = new Counter({
    name: "keyward_operator_secret_reads_total",
    help: "Re-reads of Secrets named by spec.existingSecret (metadata: metadata-only GET; full: the Secret changed and was read; error)",
    labelNames: ["read"],
    registers: [registry],
  });
  // Secrets named by spec.existingSecret: read by name on an interval, never watched.
  const referenced = new ReferencedSecrets({
    rest,
    log,
    intervalMs: config.existingSecretResync,
    onChange: (keys) => {
      for (const k of keys) enqueue(k);
    },
    onRead: (read) => { secretReads.inc({ read }); },
  });
  // Secrets keyward issues into: secret ns/name -> ApiKey keys, so a Secret change requeues its ApiKeys.
  const referencedBy = new Map<string, Set<string>>();
  const refsOf = new Map<string, string>();
  const track = (ak: ApiKey, remove: boolean): void => {
    const k = keyOf(ak.metadata.namespace, ak.metadata.name);
    const prev = refsOf.get(k);
    if (prev) referencedBy.get(prev)?.delete(k);
    refsOf.delete(k);
    const existing = ak.spec.existingSecret?.name;
    referenced.track(k, remove || !existing ? undefined : keyOf(ak.metadata.namespace, existing));
    if (remove || existing || ak.spec.keyHash) return;
    const sk = keyOf(ak.metadata.namespace, ak.spec.secretName ?? `${ak.metadata.name}-apikey`);
    refsOf.set(k, sk);
    let set = referencedBy.get(sk);
    if (!set) referencedBy.set(sk, (set = new Set()));
    set.add(k);
  };

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
  // Only the Secrets keyward created (labelled): memory does not grow with the cluster's Secrets.
  const secrets = new CollectionWatch<SecretView>(kc, rest, {
    ...watched,
    apiPrefix: "/api/v1",
    plural: "secrets",
    labelSelector: MANAGED_SECRETS_SELECTOR,
    transform: toSecretView,
    onLifecycle: lifecycle("secrets"),
    onChange: (_type, s) => {
      const sk = keyOf(s.metadata.namespace, s.metadata.name);
      for (const k of referencedBy.get(sk) ?? []) enqueue(k);
      const owner = s.metadata.ownerReferences?.find((o) => o.controller === true && o.kind === "ApiKey");
      if (owner) enqueue(keyOf(s.metadata.namespace, owner.name));
    },
  });

  // ApiKeyPolicy status: any policy change can move a host's owner, so every policy is looked at again.
  let policyQueue: WorkQueue | undefined;
  const enqueueAllPolicies = (): void => {
    if (!policyQueue) return;
    for (const p of policies.list()) policyQueue.add(keyOf(p.metadata.namespace, p.metadata.name));
  };
  const policies: CollectionWatch<ApiKeyPolicy> = new CollectionWatch<ApiKeyPolicy>(kc, rest, {
    ...watched,
    apiPrefix: `/apis/${API_VERSION}`,
    plural: APIKEYPOLICY_PLURAL,
    onLifecycle: lifecycle("apikeypolicies"),
    onChange: (type, p, old) => {
      // Our own status writes change neither hosts nor rules: nothing to redo.
      if (old && old.metadata.generation === p.metadata.generation && type === "update") {
        policyQueue?.add(keyOf(p.metadata.namespace, p.metadata.name));
        return;
      }
      policyStatus.invalidate();
      enqueueAllPolicies();
    },
  });
  const policyStatus = new PolicyStatusReconciler({
    rest,
    events,
    now,
    assigned,
    list: () => policies.list(),
    get: (ns, name) => policies.get(ns, name),
  });

  new Gauge({
    name: "keyward_operator_cached_secrets",
    help: "Secrets whose field hashes the operator holds (managed: keyward's labelled Secrets, watched; referenced: spec.existingSecret, re-read by name)",
    labelNames: ["source"],
    registers: [registry],
    collect() {
      this.set({ source: "managed" }, secrets.list().length);
      this.set({ source: "referenced" }, referenced.size);
    },
  });

  const reconciler = new ApiKeyReconciler({
    rest,
    secrets: { get: (ns, name) => secrets.get(ns, name) ?? referenced.get(ns, name) },
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

  await Promise.all([apiKeys.start(), secrets.start(), policies.start()]);
  log.info("operator caches synced", { apikeys: apiKeys.list().length, apikeypolicies: policies.list().length, secrets: secrets.list().length });

  const startWork = (): void => {
    queue = createQueue(config, handle, log, qm);
    // Only the leader re-reads existingSecret references; a standby has no queue to feed.
    referenced.start();
    for (const ak of apiKeys.list()) queue.add(keyOf(ak.metadata.namespace, ak.metadata.name));
    policyQueue = new WorkQueue({
      name: "apikeypolicies",
      workers: 1,
      retryBaseMs: config.retryBase,
      retryMaxMs: config.retryMax,
      log,
      handler: async (k) => {
        const { namespace: ns, name } = splitKey(k);
        try {
          await policyStatus.reconcile(ns, name);
        } catch (err) {
          log.warn("ApiKeyPolicy status not written; retrying with backoff", { apikeypolicy: k, err });
          throw err;
        }
      },
    });
    policyQueue.start();
    policyStatus.invalidate();
    enqueueAllPolicies();
  };
  const stopWork = async (): Promise<void> => {
    const q = queue;
    const pq = policyQueue;
    queue = undefined;
    policyQueue = undefined;
    await Promise.all([q?.shutdown(), pq?.shutdown(), referenced.stop()]);
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
    ready: () => apiKeys.synced && secrets.synced && policies.synced,
    isLeader: () => (leadership ? leadership.isLeader() : true),
    stop: async (stopOpts = {}) => {
      await leadership?.stop({ release: stopOpts.releaseLease ?? true });
      await stopWork();
      await Promise.all([apiKeys.stop(), secrets.stop(), policies.stop()]);
      await events.flush();
    },
  };
}
