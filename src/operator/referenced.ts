// Secrets an ApiKey brings itself (spec.existingSecret): read by name, never
// watched. keyward cannot label them (they belong to the user or to a tool such
// as External Secrets), so a label-selected watch would not see them, and a
// watch of every Secret would put every Secret of the cluster in memory.
//
// Instead each referenced Secret is re-read on an interval with a metadata-only
// GET (no data crosses the wire); only when its resourceVersion moved is it read
// in full, reduced at once to field hashes (toSecretView), and the ApiKeys that
// reference it are requeued. Reads are sequential: at most one Secret's data is
// in memory at a time.
import { isNotFound, type KubeRest } from "../k8s/rest.ts";
import { splitKey } from "../k8s/workqueue.ts";
import type { Logger } from "../log.ts";
import { secretPath, toSecretView, type SecretView } from "./secrets.ts";

/** Accept header that makes the apiserver answer with the object's metadata only. */
export const METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

export type SecretRead = "metadata" | "full" | "error";

export interface ReferencedSecretsOptions {
  rest: Pick<KubeRest, "request">;
  log: Logger;
  /** Re-read every referenced Secret about this often; 0 disables the re-reads. */
  intervalMs: number;
  /** Called with the ApiKeys (namespace/name) to requeue when a referenced Secret changed. */
  onChange: (apiKeys: readonly string[]) => void;
  /** Counts reads, for a metric. */
  onRead?: (read: SecretRead) => void;
}

const pathOf = (key: string): string => {
  const { namespace, name } = splitKey(key);
  return secretPath(namespace, name);
};

export class ReferencedSecrets {
  private readonly options: ReferencedSecretsOptions;
  /** secret namespace/name -> ApiKeys (namespace/name) that reference it. */
  private readonly referencedBy = new Map<string, Set<string>>();
  private readonly refOf = new Map<string, string>();
  private readonly views = new Map<string, SecretView>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running: Promise<void> | undefined;
  private stopped = true;

  constructor(opts: ReferencedSecretsOptions) {
    this.options = opts;
  }

  /** Records which Secret an ApiKey references (undefined: none, or the ApiKey is gone). */
  track(apiKey: string, secret: string | undefined): void {
    const prev = this.refOf.get(apiKey);
    if (prev === secret) return;
    if (prev !== undefined) {
      const set = this.referencedBy.get(prev);
      set?.delete(apiKey);
      if (set?.size === 0) {
        this.referencedBy.delete(prev);
        this.views.delete(prev);
      }
      this.refOf.delete(apiKey);
    }
    if (secret === undefined) return;
    this.refOf.set(apiKey, secret);
    let set = this.referencedBy.get(secret);
    if (!set) this.referencedBy.set(secret, (set = new Set()));
    set.add(apiKey);
  }

  /** The hashes of a referenced Secret as last read, if it was read and exists. */
  get(namespace: string, name: string): SecretView | undefined {
    return this.views.get(`${namespace}/${name}`);
  }

  /** Secrets whose hashes are held (each a few hundred bytes, never data). */
  get size(): number {
    return this.views.size;
  }

  /** Secrets referenced by at least one ApiKey. */
  get referenced(): number {
    return this.referencedBy.size;
  }

  /** Re-reads every referenced Secret once; requeues the ApiKeys of those that changed. */
  async refresh(): Promise<void> {
    for (const key of [...this.referencedBy.keys()]) {
      if (this.referencedBy.has(key)) await this.refreshOne(key);
    }
  }

  private async refreshOne(key: string): Promise<void> {
    const cached = this.views.get(key);
    let changed = false;
    try {
      const meta = await this.options.rest.request<{ metadata?: { resourceVersion?: string } }>("GET", pathOf(key), { accept: METADATA_ONLY });
      this.options.onRead?.("metadata");
      if (!cached || cached.metadata.resourceVersion !== meta.metadata?.resourceVersion) {
        const full = await this.options.rest.request<SecretView>("GET", pathOf(key));
        this.options.onRead?.("full");
        // Reduced to hashes before anything else sees it; the data is dropped with `full`.
        const view = toSecretView(full);
        changed = !cached || !sameHashes(cached, view);
        if (this.referencedBy.has(key)) this.views.set(key, view);
      }
    } catch (err) {
      if (isNotFound(err)) {
        changed = this.views.delete(key);
      } else {
        this.options.onRead?.("error");
        this.options.log.warn("reading a referenced Secret failed; keeping its last hashes", { secret: key, err });
        return;
      }
    }
    if (changed) this.options.onChange([...(this.referencedBy.get(key) ?? [])]);
  }

  /** Re-reads on the interval until stopped. */
  start(): void {
    if (!this.stopped || this.options.intervalMs <= 0) return;
    this.stopped = false;
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.refresh().finally(() => {
        this.running = undefined;
        this.schedule();
      });
    }, this.options.intervalMs);
  }

  /** Stops the re-reads and drops the hashes: nothing stale is left to short-cut a later reconcile. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
    this.views.clear();
  }
}

function sameHashes(a: SecretView, b: SecretView): boolean {
  const ka = Object.keys(a.hashes);
  return ka.length === Object.keys(b.hashes).length && ka.every((k) => a.hashes[k] === b.hashes[k]);
}
