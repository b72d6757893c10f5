// The keyward operator: watches ApiKeys and the Secrets it manages (label-selected;
// Secrets brought through spec.existingSecret are re-read by name, see
// referenced.ts), feeds a work queue keyed
// namespace/name, and reconciles each ApiKey serially. With leader election on,
// every replica keeps its caches warm but only the leader works the queue.
// It also watches ApiKeyPolicies and writes their status (policies.ts): which
// hosts each one owns, through a second queue worked by the leader as well.
import { hostname } from "node:os";
import type { ApiKey } from "../api/types.ts";
import { changedBeyondUsage } from "../api/changes.ts";
import type { RoleDeps } from "../deps.ts";
import { KubeEventRecorder } from "../k8s/events.ts";
import type { ChangeType } from "../k8s/informer.ts";
import { parseHostAssignments } from "../policy/hosts.ts";
import { HashClaims } from "./claims.ts";
import { startLeadership, type Leadership } from "./leadership.ts";
import { cachedSecretsGauge, countRequests, createOperatorMetrics, type OperatorMetrics } from "./metrics.ts";
import { PolicyStatusReconciler } from "./policies.ts";
import { queueMetrics } from "./queue.ts";
import { ApiKeyReconciler } from "./reconciler.ts";
import { ReferencedSecrets } from "./referenced.ts";
import { keyOf, SecretReferences } from "./references.ts";
import type { SecretView } from "./secrets.ts";
import { operatorWatches, type OperatorWatches } from "./watches.ts";
import { ApiKeyWork, PolicyWork } from "./work.ts";

export type OperatorDeps = RoleDeps;

export interface OperatorHandle {
  ready(): boolean;
  isLeader(): boolean;
  /** Stops; `releaseLease: false` leaves the Lease held, as a crashed replica would. */
  stop(opts?: { releaseLease?: boolean }): Promise<void>;
}

/** The work only the leader does: both queues and the existingSecret re-reads. */
interface LeaderWork {
  start(): void;
  stop(): Promise<void>;
}

/** The watches' change handlers: which ApiKeys (and policies) each change puts in the queue. */
function changeHandlers(metrics: OperatorMetrics, refs: SecretReferences, claims: HashClaims, apiKeys: ApiKeyWork, policies: PolicyWork) {
  return {
    lifecycle: metrics.watchLifecycle,
    apiKey: (type: ChangeType, ak: ApiKey, old?: ApiKey): void => {
      const k = keyOf(ak.metadata.namespace, ak.metadata.name);
      refs.track(ak, type === "delete");
      for (const c of claims.update(k, type === "delete" ? undefined : ak)) apiKeys.enqueue(c);
      // The data plane's usage writes change nothing the operator acts on.
      if (type !== "delete" && changedBeyondUsage(old, ak)) apiKeys.enqueue(k);
    },
    secret: (_type: ChangeType, s: SecretView): void => {
      for (const k of refs.apiKeysOf(keyOf(s.metadata.namespace, s.metadata.name))) apiKeys.enqueue(k);
      const owner = s.metadata.ownerReferences?.find((o) => o.controller === true && o.kind === "ApiKey");
      if (owner) apiKeys.enqueue(keyOf(s.metadata.namespace, owner.name));
    },
    policy: policies.onChange,
  };
}

/** Starts the leader's work now (no election) or whenever this replica becomes the leader. */
function lead(deps: OperatorDeps, identity: string, leader: OperatorMetrics["leader"], work: LeaderWork): Leadership | undefined {
  const { config, rest, log } = deps;
  if (!config.leaderElect) {
    leader.set(1);
    work.start();
    return undefined;
  }
  return startLeadership({
    config,
    rest,
    log,
    identity,
    onStart: () => {
      leader.set(1);
      log.info("leading: reconciling ApiKeys", { identity });
      work.start();
    },
    onStop: async () => {
      leader.set(0);
      log.info("no longer leading: stopped reconciling", { identity });
      await work.stop();
    },
  });
}

export async function startOperator(deps: OperatorDeps): Promise<OperatorHandle> {
  const { config, rest, log, registry } = deps;
  const now = deps.now ?? Date.now;
  const identity = config.identity || `${hostname()}_${process.pid}`;
  const metrics = createOperatorMetrics(registry, log);
  rest.setRequestHook(countRequests(registry));
  const events = new KubeEventRecorder({ rest, component: "keyward-operator", instance: identity, log, now });
  // Secrets named by spec.existingSecret: read by name on an interval, never watched.
  const referenced: ReferencedSecrets = new ReferencedSecrets({
    rest,
    log,
    intervalMs: config.existingSecretResync,
    onChange: (keys) => { for (const k of keys) apiKeyWork.enqueue(k); },
    onRead: (read) => { metrics.secretReads.inc({ read }); },
  });
  // Which ApiKey holds each key hash: one owner per hash.
  const claims = new HashClaims();
  const apiKeyWork: ApiKeyWork = new ApiKeyWork({
    config,
    log,
    queueMetrics: queueMetrics(registry),
    metrics,
    reconcile: (ns, name) => reconciler.reconcile(watches.apiKeys.get(ns, name)),
    keys: () => watches.apiKeys.list().map((ak) => keyOf(ak.metadata.namespace, ak.metadata.name)),
  });
  const policyStatus = new PolicyStatusReconciler({ rest, events, now, assigned: parseHostAssignments(config.hostOwners), list: () => watches.policies.list(), get: (ns, name) => watches.policies.get(ns, name) });
  const policyWork = new PolicyWork({ config, log, status: policyStatus, list: () => watches.policies.list() });
  const watches: OperatorWatches = operatorWatches(deps, changeHandlers(metrics, new SecretReferences(referenced), claims, apiKeyWork, policyWork));
  cachedSecretsGauge(registry, () => watches.secrets.list().length, () => referenced.size);
  const reconciler = new ApiKeyReconciler({
    rest,
    secrets: { get: (ns, name) => watches.secrets.get(ns, name) ?? referenced.get(ns, name) },
    events, log, now, claims, defaultGraceMs: config.defaultGracePeriod,
    onOutcome: (o) => { metrics.reconciles.inc({ result: o }); },
    onFailure: (reason) => { metrics.failures.inc({ reason }); },
  });

  await watches.start();
  log.info("operator caches synced", { apikeys: watches.apiKeys.list().length, apikeypolicies: watches.policies.list().length, secrets: watches.secrets.list().length });
  const work: LeaderWork = {
    // Only the leader re-reads existingSecret references; a standby has no queue to feed.
    start: () => { apiKeyWork.start(); referenced.start(); policyWork.start(); },
    stop: async () => { await Promise.all([apiKeyWork.stop(), policyWork.stop(), referenced.stop()]); },
  };
  const leadership = lead(deps, identity, metrics.leader, work);
  return {
    ready: () => watches.synced(),
    isLeader: () => (leadership ? leadership.isLeader() : true),
    stop: async (stopOpts = {}) => {
      await leadership?.stop({ release: stopOpts.releaseLease ?? true });
      await work.stop();
      await watches.stop();
      await events.flush();
    },
  };
}
