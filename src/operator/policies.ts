// ApiKeyPolicy status, written by the leading operator: which hosts the policy
// owns (the same ownership the data plane routes by, src/policy/hosts.ts), its
// rule count, and an Accepted condition. A policy that loses a host to another
// namespace gets Accepted=False (HostConflict) and a Warning Event.
import { API_VERSION, type ApiKeyPolicy, type ApiKeyPolicyStatus } from "../api/types.ts";
import { describeConflicts, HostOwnership, type HostAssignments } from "../policy/hosts.ts";
import { policyClaim } from "../policy/policy.ts";
import { jsonEqual } from "../util/json.ts";
import type { EventRecorder } from "../k8s/events.ts";
import type { KubeRest } from "../k8s/rest.ts";
import { FIELD_MANAGER } from "./reconciler.ts";
import { setCondition } from "./status.ts";

export const HOST_CONFLICT = "HostConflict";

/** The status `p` should have under `ownership` (pure; lastTransitionTime kept while the condition holds). */
export function policyStatus(p: ApiKeyPolicy, ownership: HostOwnership, now: number): ApiKeyPolicyStatus {
  const conflicts = ownership.conflicts(policyClaim(p));
  const gen = p.metadata.generation;
  const ruleCount = p.spec.rules.length;
  const accepted =
    conflicts.length === 0
      ? { type: "Accepted", status: "True" as const, reason: "Accepted", message: `the ext_authz servers enforce ${ruleCount} rule(s) for every host of this policy` }
      : {
          type: "Accepted",
          status: "False" as const,
          reason: HOST_CONFLICT,
          message: `hosts owned by another namespace are not enforced by this policy: ${describeConflicts(conflicts)}`,
        };
  const status: ApiKeyPolicyStatus = {
    ...(p.status ?? {}),
    observedGeneration: gen,
    ruleCount,
    conditions: setCondition(p.status?.conditions, { ...accepted, observedGeneration: gen }, now),
  };
  if (conflicts.length > 0) status.conflicts = conflicts.map((c) => ({ host: c.host, owners: [...c.owners] }));
  else delete status.conflicts;
  return status;
}

export interface PolicyStatusDeps {
  rest: KubeRest;
  events: EventRecorder;
  now: () => number;
  assigned: HostAssignments;
  /** Every ApiKeyPolicy the operator watches. */
  list(): ApiKeyPolicy[];
  get(namespace: string, name: string): ApiKeyPolicy | undefined;
}

/** Reconciles one policy's status at a time; the ownership is recomputed after any policy changes. */
export class PolicyStatusReconciler {
  private readonly d: PolicyStatusDeps;
  private ownership: HostOwnership | undefined;

  constructor(deps: PolicyStatusDeps) {
    this.d = deps;
  }

  /** Some policy was added, changed or deleted: ownership must be computed again. */
  invalidate(): void {
    this.ownership = undefined;
  }

  async reconcile(namespace: string, name: string): Promise<void> {
    const p = this.d.get(namespace, name);
    if (!p || p.metadata.deletionTimestamp) return;
    this.ownership ??= new HostOwnership(
      this.d.list().map((x) => policyClaim(x)),
      this.d.assigned,
    );
    const next = policyStatus(p, this.ownership, this.d.now());
    const prev = p.status ?? {};
    if (jsonEqual(next, prev)) return;
    const body = { metadata: { resourceVersion: p.metadata.resourceVersion }, status: { ...next, conflicts: next.conflicts ?? null } };
    await this.d.rest.request(
      "PATCH",
      `/apis/keyward.dev/v1alpha1/namespaces/${encodeURIComponent(namespace)}/apikeypolicies/${encodeURIComponent(name)}/status`,
      { body, contentType: "application/merge-patch+json", query: { fieldManager: FIELD_MANAGER } },
    );
    const was = prev.conditions?.find((c) => c.type === "Accepted");
    const is = next.conditions?.find((c) => c.type === "Accepted");
    if (is?.reason === HOST_CONFLICT && (was?.reason !== HOST_CONFLICT || was.message !== is.message)) {
      this.d.events.record({ ...p, apiVersion: API_VERSION, kind: "ApiKeyPolicy" }, "Warning", HOST_CONFLICT, is.message);
    }
  }
}
