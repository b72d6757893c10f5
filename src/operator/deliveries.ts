// Keys the operator has put in an ApiKey's status but whose Secret write it has not
// seen succeed: the status write or the Secret create failed in a way that leaves the
// outcome unknown (timed out, connection lost, 5xx), so the write may still land.
//
// While a key is held here, a Secret found missing is the operator's own write in
// flight, not a Secret someone deleted: the reconciler creates it again with the same
// key (the two creates are the same object, so whichever lands second gets
// AlreadyExists and adopts the first) instead of issuing a new key. A key is held
// until its Secret is seen holding it, or for `ttlMs` at most: long after any request
// the apiserver could still be working on has ended.
import type { EventType } from "../k8s/events.ts";
import { KubeApiError } from "../k8s/rest.ts";

export interface Delivery {
  key: string;
  keyId: string;
  /** The Events of the reconcile that made the key, recorded once the Secret is written. */
  events: readonly { type: EventType; reason: string; message: string }[];
}

interface Held extends Delivery {
  since: number;
}

/** True when a failed write may have been stored all the same. */
export function outcomeUnknown(err: unknown): boolean {
  return !(err instanceof KubeApiError) || err.status === 0 || err.status >= 500;
}

export class InFlightDeliveries {
  private readonly held = new Map<string, Held>();
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(opts: { now: () => number; ttlMs?: number }) {
    this.now = opts.now;
    this.ttlMs = opts.ttlMs ?? 10 * 60_000;
  }

  /** Holds a key about to be written for the ApiKey `uid` (whose active hash will be `hash`). */
  hold(uid: string, hash: string, d: Delivery): void {
    const now = this.now();
    for (const [k, v] of this.held) if (now - v.since >= this.ttlMs) this.held.delete(k);
    this.held.set(`${uid}/${hash}`, { ...d, since: now });
  }

  /** The key still to deliver for this ApiKey and hash, if its Secret write is unresolved. */
  pending(uid: string, hash: string): Delivery | undefined {
    const h = this.held.get(`${uid}/${hash}`);
    if (!h || this.now() - h.since >= this.ttlMs) return undefined;
    return { key: h.key, keyId: h.keyId, events: h.events };
  }

  /** The write is settled: its Secret holds the key, or it certainly failed. */
  settle(uid: string, hash: string): void {
    this.held.delete(`${uid}/${hash}`);
  }

  get size(): number {
    return this.held.size;
  }
}
