// Reconciles one ApiKey: makes the key material, the Secret and the status agree
// with the spec. Level-triggered: it reads the current object and Secret and
// acts on what it sees, whatever event caused the call.
//
// Ordering for safety against stale caches and crashes: the status (with the new
// hash) is written first, with the object's resourceVersion as a precondition, so
// a reconcile that worked from a stale copy fails with 409 and retries before
// any Secret is touched; the Secret is written second. Decisions that replace a
// key (Secret missing or changed) are confirmed with a live read first, and never
// taken while the operator's own write of that key may still be in flight
// (deliveries.ts): the same key is written again instead.
import { claimOf } from "../api/claims.ts";
import type { ApiKey, ApiKeyStatus, KeyVersion } from "../api/types.ts";
import { ROTATE_ANNOTATION, SECRET_DATA_KEY } from "../api/types.ts";
import { parseDuration } from "../util/duration.ts";
import { jsonEqual } from "../util/json.ts";
import type { EventRecorder, EventType } from "../k8s/events.ts";
import { KubeApiError, isConflict, isNotFound, type KubeRest } from "../k8s/rest.ts";
import type { Logger } from "../log.ts";
import { DEFAULT_PREFIX, checkKeyStrength, generateKey, hashKey, keyIdFromHash } from "../keys/keymaterial.ts";
import type { ClaimView } from "./claims.ts";
import { InFlightDeliveries, outcomeUnknown, type Delivery } from "./deliveries.ts";
import {
  buildKeySecret,
  hasManagedLabels,
  hashSecretField,
  isOwnedBy,
  managedLabels,
  secretNameOf,
  secretPath,
  type SecretView,
} from "./secrets.ts";
import {
  activeKey,
  iso,
  promoteKey,
  pruneGrace,
  rotationDue,
  setCondition,
  summarizeState,
  withoutTaken,
} from "./status.ts";

export const FIELD_MANAGER = "keyward-operator";

/** A failure the user must fix (the object or a Secret); retried slowly, not with backoff. */
export class UserActionNeeded extends Error {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.name = "UserActionNeeded";
    this.reason = reason;
  }
}

export interface ReconcileResult {
  requeueAfter?: number;
}

export interface ReconcilerDeps {
  rest: KubeRest;
  secrets: { get(namespace: string, name: string): SecretView | undefined };
  events: EventRecorder;
  log: Logger;
  now: () => number;
  defaultGraceMs: number;
  /** Re-check interval while waiting for the user (conflicting or missing Secret). */
  userWaitMs?: number;
  generateKey?: (prefix: string) => string;
  /** Which ApiKey holds each hash; without it, every hash is taken to be free. */
  claims?: ClaimView;
  onOutcome?: (outcome: string) => void;
  onFailure?: (reason: string) => void;
}

interface Pending {
  events: { type: EventType; reason: string; message: string }[];
  /** Secret to write after the status: the plaintext goes nowhere else. */
  secret?: SecretWrite;
  /** Hashes refused because another ApiKey (holder, for keyward's log only) holds them. */
  refused: { hash: string; holder: string }[];
}

interface SecretWrite {
  key: string;
  keyId: string;
  /** The key's hash, as status.keys holds it. */
  hash: string;
  /** Create (the Secret is not there) rather than apply over it. */
  create: boolean;
}

const apiKeyPath = (ns: string, name: string): string =>
  `/apis/keyward.dev/v1alpha1/namespaces/${encodeURIComponent(ns)}/apikeys/${encodeURIComponent(name)}`;

export class ApiKeyReconciler {
  private readonly d: ReconcilerDeps;
  private readonly userWaitMs: number;
  private readonly gen: (prefix: string) => string;
  /** Keys whose Secret write has not been seen to land (in memory only, never logged). */
  private readonly deliveries: InFlightDeliveries;

  constructor(deps: ReconcilerDeps) {
    this.d = deps;
    this.userWaitMs = deps.userWaitMs ?? 60_000;
    this.gen = deps.generateKey ?? generateKey;
    this.deliveries = new InFlightDeliveries({ now: deps.now });
  }

  async reconcile(apiKey: ApiKey | undefined): Promise<ReconcileResult> {
    if (!apiKey || apiKey.metadata.deletionTimestamp) return {}; // the Secret goes with its owner (garbage collection)
    const now = this.d.now();
    const status: ApiKeyStatus = structuredClone(apiKey.status ?? {});
    const pending: Pending = { events: [], refused: [] };
    const spec = apiKey.spec;
    const disabled = spec.disabled === true;
    const expiresAt = spec.expiresAt ? Date.parse(spec.expiresAt) : undefined;
    const expired = expiresAt !== undefined && expiresAt <= now;
    let failure: UserActionNeeded | undefined;

    try {
      if (spec.keyHash) this.fromDeclaredHash(apiKey, status, now, pending);
      else if (spec.existingSecret) await this.fromExistingSecret(apiKey, status, now, pending);
      else await this.issue(apiKey, status, now, pending, disabled || expired);
    } catch (err) {
      if (!(err instanceof UserActionNeeded)) {
        await this.reportFailure(apiKey, "ReconcileError", err instanceof Error ? err.message : String(err), now);
        throw err;
      }
      failure = err;
    }

    const owned = this.dropTaken(apiKey, status, pending);
    if (owned && !failure) failure = owned;
    this.d.claims?.refused(refOf(apiKey), pending.refused.map((r) => r.hash));

    const { keys, nextEnd } = pruneGrace(status.keys, now);
    status.keys = keys;
    status.state = summarizeState({ disabled, expired, failed: failure !== undefined, keys });
    const gen = apiKey.metadata.generation;
    const ready = readyCondition(status, failure, disabled, expired, pending);
    status.conditions = setCondition(status.conditions, { ...ready, observedGeneration: gen }, now);
    status.observedGeneration = gen;
    const active = activeKey(status);
    status.currentKeyId = active?.id;
    const rotation = spec.keyHash || spec.existingSecret ? undefined : rotationDue(apiKey, status, annotationOf(apiKey), now);
    status.nextRotationAt = rotation?.nextRotationAt !== undefined ? iso(rotation.nextRotationAt) : undefined;
    // Warn once per failure reason, not on every re-check while waiting for the user.
    const prevReady = apiKey.status?.conditions?.find((c) => c.type === "Ready");
    const newFailure = failure !== undefined && prevReady?.reason !== failure.reason;
    if (failure && newFailure) pending.events.push({ type: "Warning", reason: failure.reason, message: failure.message });
    // Who holds a refused hash goes to keyward's own log only: the Event and status name no other
    // ApiKey. Once per conflict, like the Event (a key in grace dropped for one fails nothing).
    if (newFailure || !failure) {
      for (const r of pending.refused) this.d.log.warn("key hash held by another ApiKey; refused", { apikey: refOf(apiKey), keyId: keyIdFromHash(r.hash, "key"), heldBy: r.holder });
    }

    const changed = !jsonEqual(status, apiKey.status ?? {}); // undefined fields count as absent
    const uid = apiKey.metadata.uid ?? "";
    const secret = pending.secret;
    // Held from before the status write: once the hash may be in status, the key is owed to its Secret.
    if (secret) this.deliveries.hold(uid, secret.hash, { key: secret.key, keyId: secret.keyId, events: [...pending.events] });
    if (changed) {
      await this.writeStatus(apiKey, status).catch((err: unknown) => {
        if (secret && !outcomeUnknown(err)) this.deliveries.settle(uid, secret.hash);
        throw err;
      });
    }
    if (secret) await this.writeSecret(apiKey, status, secret);
    for (const e of pending.events) this.d.events.record(apiKey, e.type, e.reason, e.message);
    if (failure) this.d.onFailure?.(failure.reason);
    this.d.onOutcome?.(changed ? "updated" : "unchanged");

    const wakeups = [nextEnd, rotation?.nextRotationAt, expired ? undefined : expiresAt].filter(
      (t): t is number => t !== undefined && t > now,
    );
    let requeueAfter = wakeups.length ? Math.min(...wakeups) - now : undefined;
    if (failure) requeueAfter = Math.min(requeueAfter ?? this.userWaitMs, this.userWaitMs);
    return requeueAfter === undefined ? {} : { requeueAfter: Math.max(1, Math.ceil(requeueAfter)) };
  }

  // --- the three sources of key material ---------------------------------

  /** keyHash: the hash is declared in the spec; keyward stores nothing else. */
  private fromDeclaredHash(apiKey: ApiKey, status: ApiKeyStatus, now: number, pending: Pending): void {
    const hash = apiKey.spec.keyHash ?? "";
    if (activeKey(status)?.hash === hash) return;
    this.refuseTaken(apiKey, hash, pending);
    const first = !activeKey(status);
    const next: KeyVersion = { id: keyIdFromHash(hash, "key"), hash, state: "active", createdAt: iso(now) };
    status.keys = promoteKey(status.keys, next, now, this.graceMs(apiKey));
    pending.events.push({ type: "Normal", reason: first ? "KeyRegistered" : "KeyChanged", message: `key ${next.id} registered from spec.keyHash` });
  }

  /** existingSecret: hash the user's Secret; re-hash when it changes; refuse weak keys. */
  private async fromExistingSecret(apiKey: ApiKey, status: ApiKeyStatus, now: number, pending: Pending): Promise<void> {
    const ref = apiKey.spec.existingSecret ?? { name: "" };
    const field = ref.key ?? SECRET_DATA_KEY;
    const ns = apiKey.metadata.namespace;
    status.secretName = ref.name;
    const cachedHash = this.d.secrets.get(ns, ref.name)?.hashes[field];
    if (cachedHash !== undefined && cachedHash === activeKey(status)?.hash) return;
    // Something differs from status (or the cache has not seen the Secret): read it live.
    const live = await this.readSecret(ns, ref.name);
    if (!live) throw new UserActionNeeded("SecretNotFound", `Secret ${ref.name} (spec.existingSecret) does not exist in namespace ${ns}`);
    const b64 = live.data[field];
    if (b64 === undefined) {
      throw new UserActionNeeded("SecretKeyMissing", `Secret ${ref.name} has no data field "${field}" (spec.existingSecret.key)`);
    }
    const hash = hashSecretField(b64);
    if (hash === activeKey(status)?.hash) return;
    const strength = checkKeyStrength(Buffer.from(b64, "base64").toString("utf8"));
    if (strength.weak) throw new UserActionNeeded("WeakKey", `the key in Secret ${ref.name} is too weak: ${strength.reason}`);
    this.refuseTaken(apiKey, hash, pending);
    const first = !activeKey(status);
    const next: KeyVersion = { id: keyIdFromHash(hash, "ext"), hash, state: "active", createdAt: iso(now) };
    status.keys = promoteKey(status.keys, next, now, this.graceMs(apiKey));
    pending.events.push({
      type: "Normal",
      reason: first ? "KeyRegistered" : "KeyChanged",
      message: first ? `key ${next.id} registered from Secret ${ref.name}` : `Secret ${ref.name} changed: key ${next.id} is now active`,
    });
  }

  /** Issued keys: create, deliver, repair and rotate. */
  private async issue(apiKey: ApiKey, status: ApiKeyStatus, now: number, pending: Pending, paused: boolean): Promise<void> {
    const ns = apiKey.metadata.namespace;
    const secretName = secretNameOf(apiKey);
    const prefix = apiKey.spec.prefix ?? DEFAULT_PREFIX;
    status.secretName = secretName;
    const active = activeKey(status);
    const cached = this.d.secrets.get(ns, secretName);

    let createSecret = false;
    let reason: "Issued" | "Rotated" | "SecretMissing" | "SecretTampered" | "RotationIncomplete" | undefined;
    let detail = "";
    if (cached && !isOwnedBy(cached, apiKey)) {
      throw new UserActionNeeded(
        "SecretConflict",
        `Secret ${secretName} exists and is not owned by this ApiKey; keyward never overwrites it. Delete it or set spec.secretName`,
      );
    }
    if (!active) {
      // First issuance. A Secret of ours that already holds a key (status lost, say) is adopted.
      // The cache holds only keyward's labelled Secrets, so the name is read live: a Secret
      // someone else created under it is found before any key is made for it.
      const live = await this.readSecret(ns, secretName);
      if (live && !isOwnedBy(live.view, apiKey)) {
        throw new UserActionNeeded("SecretConflict", `Secret ${secretName} exists and is not owned by this ApiKey; keyward never overwrites it`);
      }
      const b64 = live?.data[SECRET_DATA_KEY];
      if (b64 !== undefined) {
        const hash = hashSecretField(b64);
        status.keys = promoteKey(status.keys, { id: keyIdFromHash(hash, prefix), hash, state: "active", createdAt: iso(now) }, now, 0);
        this.recordObserved(apiKey, status);
        return;
      }
      // Otherwise the Secret is created (never applied over): if one appeared that the
      // cache has not seen, the create fails with 409 and the retry sees it.
      createSecret = true;
      reason = "Issued";
    } else if (cached?.hashes[SECRET_DATA_KEY] !== active.hash) {
      // The cache says the Secret is missing or holds another key: confirm before replacing anything.
      const live = await this.readSecret(ns, secretName);
      const liveHash = live?.data[SECRET_DATA_KEY] !== undefined ? hashSecretField(live.data[SECRET_DATA_KEY]) : undefined;
      if (live && !isOwnedBy(live.view, apiKey)) {
        throw new UserActionNeeded("SecretConflict", `Secret ${secretName} was replaced by one this ApiKey does not own; keyward never overwrites it`);
      }
      let owed: Delivery | undefined;
      if (liveHash === active.hash) this.landed(apiKey, active.hash, pending);
      else owed = this.deliveries.pending(apiKey.metadata.uid ?? "", active.hash);
      if (owed) {
        // keyward's own write of the active key has not landed yet (or landed unseen): write the
        // same key again rather than take its absence for a loss. Nothing is rotated.
        this.d.log.debug("Secret write of the active key unresolved; writing it again", { apikey: refOf(apiKey), keyId: owed.keyId });
        pending.secret = { key: owed.key, keyId: owed.keyId, hash: active.hash, create: !live };
        pending.events.push(...owed.events);
        return;
      }
      if (!live || liveHash === undefined) {
        reason = "SecretMissing";
        detail = `Secret ${secretName} was deleted or lost its key; a new key was issued`;
      } else if (liveHash !== active.hash) {
        const inGrace = status.keys?.some((k) => k.state === "grace" && k.hash === liveHash);
        reason = inGrace ? "RotationIncomplete" : "SecretTampered";
        detail = inGrace
          ? `Secret ${secretName} still held the previous key after an interrupted rotation; a new key was issued`
          : `Secret ${secretName} was changed outside keyward; its content is not accepted and a new key was issued`;
      } else if (!hasManagedLabels(live.view, apiKey)) {
        // Intact but unlabelled: out of the label-selected watch, so put the labels back.
        await this.d.rest.request("PATCH", secretPath(ns, secretName), {
          body: { metadata: { labels: managedLabels(apiKey) } },
          contentType: "application/merge-patch+json",
          query: { fieldManager: FIELD_MANAGER },
        });
      }
    } else {
      this.landed(apiKey, active.hash, pending);
    }
    if (!reason && !paused) {
      const due = rotationDue(apiKey, status, annotationOf(apiKey), now).due;
      if (due) {
        reason = "Rotated";
        detail = `rotated (${due === "schedule" ? "schedule" : due === "trigger" ? "spec.rotation.trigger changed" : `annotation ${ROTATE_ANNOTATION} changed`})`;
      }
    }
    if (!reason) return;

    const key = this.gen(prefix);
    const hash = hashKey(key);
    const keyId = keyIdFromHash(hash, prefix);
    status.keys = promoteKey(status.keys, { id: keyId, hash, state: "active", createdAt: iso(now) }, now, this.graceMs(apiKey));
    if (reason !== "Issued") status.lastRotationAt = iso(now);
    this.recordObserved(apiKey, status);
    pending.secret = { key, keyId, hash, create: createSecret };
    const warning = reason === "SecretMissing" || reason === "SecretTampered";
    pending.events.push({
      type: warning ? "Warning" : "Normal",
      reason,
      message: reason === "Issued" ? `key ${keyId} issued into Secret ${secretName}` : `${detail}; key ${keyId} is active`,
    });
  }

  // --- one owner per hash ---------------------------------------------------

  /**
   * Refuses a hash this ApiKey is about to publish when any other ApiKey publishes it
   * already: a claim not yet made is newer than every claim made.
   */
  private refuseTaken(apiKey: ApiKey, hash: string, pending: Pending): void {
    const holder = this.d.claims?.olderThan(hash, { ...claimOf(apiKey, {}), age: Infinity });
    if (!holder) return;
    pending.refused.push({ hash, holder: holder.ref });
    throw hashConflict();
  }

  /**
   * Drops the versions whose hash another ApiKey holds by an older claim (both published
   * it before either saw the other's). Returns the failure when the active key was one.
   */
  private dropTaken(apiKey: ApiKey, status: ApiKeyStatus, pending: Pending): UserActionNeeded | undefined {
    const claims = this.d.claims;
    if (!claims || !status.keys?.length) return undefined;
    const split = withoutTaken(status.keys, (v) => {
      const holder = claims.olderThan(v.hash, claimOf(apiKey, v));
      if (holder) pending.refused.push({ hash: v.hash, holder: holder.ref });
      return holder !== undefined;
    });
    if (split.taken.length === 0) return undefined;
    status.keys = split.keys;
    return split.activeTaken ? hashConflict() : undefined;
  }

  // --- helpers -------------------------------------------------------------

  /** The Secret holds the active key: a write of it that timed out landed after all, and its Events are due. */
  private landed(apiKey: ApiKey, hash: string, pending: Pending): void {
    const uid = apiKey.metadata.uid ?? "";
    const owed = this.deliveries.pending(uid, hash);
    if (!owed) return;
    pending.events.push(...owed.events);
    this.deliveries.settle(uid, hash);
  }

  private recordObserved(apiKey: ApiKey, status: ApiKeyStatus): void {
    status.observedTrigger = apiKey.spec.rotation?.trigger;
    status.observedRotateAnnotation = annotationOf(apiKey);
  }

  private graceMs(apiKey: ApiKey): number {
    const g = apiKey.spec.rotation?.gracePeriod;
    return g === undefined ? this.d.defaultGraceMs : parseDuration(g);
  }

  private async readSecret(ns: string, name: string): Promise<{ view: SecretView; data: Record<string, string> } | undefined> {
    try {
      const s = await this.d.rest.request<SecretView & { data?: Record<string, string> }>("GET", secretPath(ns, name));
      return { view: s, data: s.data ?? {} };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  private async writeStatus(apiKey: ApiKey, status: ApiKeyStatus): Promise<void> {
    // Merge patch with the resourceVersion we read: a stale copy gets 409 and is retried.
    // Fields that are now undefined are sent as null so they are removed.
    // status.usage belongs to the data plane's usage flusher: never sent from here.
    const { usage: _usage, ...owned } = status;
    const body = { metadata: { resourceVersion: apiKey.metadata.resourceVersion }, status: withNulls(owned, apiKey.status ?? {}) };
    await this.d.rest.request("PATCH", `${apiKeyPath(apiKey.metadata.namespace, apiKey.metadata.name)}/status`, {
      body,
      contentType: "application/merge-patch+json",
      query: { fieldManager: FIELD_MANAGER },
    });
  }

  private async writeSecret(apiKey: ApiKey, status: ApiKeyStatus, s: SecretWrite): Promise<void> {
    const uid = apiKey.metadata.uid ?? "";
    const secret = buildKeySecret(apiKey, s.key, s.keyId);
    try {
      if (s.create) await this.d.rest.create(secret, { fieldManager: FIELD_MANAGER });
      else await this.d.rest.apply(secret, FIELD_MANAGER, { force: true });
    } catch (err) {
      if (s.create && isConflict(err) && (await this.adoptOnCreateConflict(apiKey, status, s))) return;
      if (!outcomeUnknown(err)) this.deliveries.settle(uid, s.hash);
      throw err;
    }
    this.deliveries.settle(uid, s.hash);
  }

  /**
   * The create found the Secret there already: most often keyward's own earlier write of
   * this key, which landed after its request timed out. Read it: a Secret this ApiKey owns,
   * labelled as keyward labels it, holding a key of status.keys is adopted. Anything else is
   * left untouched; the reconcile fails and the next one treats it as any Secret that
   * differs (SecretConflict when it is not this ApiKey's).
   */
  private async adoptOnCreateConflict(apiKey: ApiKey, status: ApiKeyStatus, s: SecretWrite): Promise<boolean> {
    const name = secretNameOf(apiKey);
    const live = await this.readSecret(apiKey.metadata.namespace, name);
    if (!live) return false; // gone again: the retry reads it afresh
    const b64 = live.data[SECRET_DATA_KEY];
    const hash = b64 === undefined ? undefined : hashSecretField(b64);
    const ours = isOwnedBy(live.view, apiKey) && hasManagedLabels(live.view, apiKey);
    if (!ours || hash === undefined || !status.keys?.some((k) => k.hash === hash)) return false;
    this.deliveries.settle(apiKey.metadata.uid ?? "", s.hash);
    this.d.log.debug("Secret already created by keyward's earlier write; adopted", { apikey: refOf(apiKey), keyId: keyIdFromHash(hash, apiKey.spec.prefix ?? DEFAULT_PREFIX) });
    return true;
  }

  /** The one failure path for unexpected errors: Ready=False, a Warning Event, a counter. */
  private async reportFailure(apiKey: ApiKey, reason: string, message: string, now: number): Promise<void> {
    this.d.onFailure?.(reason);
    this.d.events.record(apiKey, "Warning", reason, message);
    const status = structuredClone(apiKey.status ?? {});
    status.conditions = setCondition(
      status.conditions,
      { type: "Ready", status: "False", reason, message, observedGeneration: apiKey.metadata.generation },
      now,
    );
    if (jsonEqual(status, apiKey.status ?? {})) return;
    await this.writeStatus(apiKey, status).catch((err: unknown) => {
      this.d.log.debug("could not record the failure in status", { err: err instanceof KubeApiError ? err.message : err });
    });
  }
}

const refOf = (apiKey: ApiKey): string => `${apiKey.metadata.namespace}/${apiKey.metadata.name}`;

/** The Event and condition say what happened without naming the ApiKey that holds the hash. */
function hashConflict(): UserActionNeeded {
  return new UserActionNeeded(
    "HashConflict",
    "another ApiKey already registered this key's hash; a key is accepted for one ApiKey only, so this one is not. Use a key of your own",
  );
}

function annotationOf(apiKey: ApiKey): string | undefined {
  return apiKey.metadata.annotations?.[ROTATE_ANNOTATION];
}

function readyCondition(
  status: ApiKeyStatus,
  failure: UserActionNeeded | undefined,
  disabled: boolean,
  expired: boolean,
  pending: Pending,
): { type: string; status: "True" | "False"; reason: string; message: string } {
  if (disabled) return { type: "Ready", status: "False", reason: "Disabled", message: "spec.disabled is true: the key is rejected" };
  if (expired) return { type: "Ready", status: "False", reason: "Expired", message: "spec.expiresAt has passed: the key is rejected" };
  if (failure) return { type: "Ready", status: "False", reason: failure.reason, message: failure.message };
  const active = activeKey(status);
  if (!active) return { type: "Ready", status: "False", reason: "Pending", message: "no key yet" };
  const last = pending.events.at(-1);
  const prev = status.conditions?.find((c) => c.type === "Ready");
  const reason = last?.reason ?? (prev?.status === "True" ? prev.reason : "Issued");
  return { type: "Ready", status: "True", reason, message: `key ${active.id} is active` };
}

/** For a JSON merge patch: fields present before and absent now become null. */
function withNulls(next: ApiKeyStatus, prev: ApiKeyStatus): Record<string, unknown> {
  const out: Record<string, unknown> = JSON.parse(JSON.stringify(next)) as Record<string, unknown>;
  for (const k of Object.keys(prev)) if (!(k in out) && k !== "usage") out[k] = null; // usage is not ours to remove
  return out;
}
