// Which ApiKeys a Secret change concerns. An ApiKey that keyward issues into a
// Secret (spec.secretName, default <name>-apikey) is found from that Secret's
// namespace/name; one that brings its own (spec.existingSecret) is handed to
// the re-reads of referenced Secrets (referenced.ts); one with spec.keyHash
// names no Secret.
import type { ApiKey } from "../api/types.ts";
import { objectKey } from "../k8s/workqueue.ts";

export const keyOf = (ns: string | undefined, name: string | undefined): string => objectKey({ metadata: { namespace: ns, name } });

/** Where spec.existingSecret references go (ReferencedSecrets). */
export interface ExistingSecretTracker {
  track(apiKey: string, secret: string | undefined): void;
}

export class SecretReferences {
  /** Secret namespace/name -> the ApiKeys issuing into it. */
  private readonly referencedBy = new Map<string, Set<string>>();
  /** ApiKey namespace/name -> the Secret it issues into. */
  private readonly refsOf = new Map<string, string>();
  private readonly existing: ExistingSecretTracker;

  constructor(existing: ExistingSecretTracker) {
    this.existing = existing;
  }

  /** Records the Secret the ApiKey names now (`removed`: the ApiKey is gone), forgetting the one it named before. */
  track(ak: ApiKey, removed: boolean): void {
    const k = keyOf(ak.metadata.namespace, ak.metadata.name);
    const prev = this.refsOf.get(k);
    if (prev) this.forget(prev, k);
    this.refsOf.delete(k);
    const existing = ak.spec.existingSecret?.name;
    this.existing.track(k, removed || !existing ? undefined : keyOf(ak.metadata.namespace, existing));
    if (removed || existing || ak.spec.keyHash) return;
    const sk = keyOf(ak.metadata.namespace, ak.spec.secretName ?? `${ak.metadata.name}-apikey`);
    this.refsOf.set(k, sk);
    let set = this.referencedBy.get(sk);
    if (!set) this.referencedBy.set(sk, (set = new Set()));
    set.add(k);
  }

  /** The ApiKeys (namespace/name) that issue into the Secret `secret` (namespace/name). */
  apiKeysOf(secret: string): readonly string[] {
    return [...(this.referencedBy.get(secret) ?? [])];
  }

  /** Secrets some ApiKey issues into (for tests and metrics). */
  get size(): number {
    return this.referencedBy.size;
  }

  private forget(secret: string, apiKey: string): void {
    const set = this.referencedBy.get(secret);
    set?.delete(apiKey);
    if (set?.size === 0) this.referencedBy.delete(secret);
  }
}
