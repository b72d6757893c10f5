// Kubernetes Events (core/v1) about keyward's objects, as `kubectl describe` shows them.
// Recording is best effort: a failed Event is logged, never fails a reconcile.
// Messages must never contain a plaintext key.
import { randomBytes } from "node:crypto";
import type { KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "../log.ts";
import type { KubeRest } from "./rest.ts";

export type EventType = "Normal" | "Warning";

export interface EventRecorder {
  record(obj: KubernetesObject, type: EventType, reason: string, message: string): void;
}

export class KubeEventRecorder implements EventRecorder {
  private readonly rest: KubeRest;
  private readonly component: string;
  private readonly instance: string;
  private readonly log: Logger;
  private readonly now: () => number;
  private inflight = new Set<Promise<void>>();

  constructor(opts: { rest: KubeRest; component: string; instance: string; log: Logger; now?: () => number }) {
    this.rest = opts.rest;
    this.component = opts.component;
    this.instance = opts.instance;
    this.log = opts.log;
    this.now = opts.now ?? Date.now;
  }

  record(obj: KubernetesObject, type: EventType, reason: string, message: string): void {
    const ns = obj.metadata?.namespace ?? "default";
    const name = obj.metadata?.name ?? "unknown";
    const ts = new Date(this.now()).toISOString();
    const body = {
      apiVersion: "v1",
      kind: "Event",
      metadata: { name: `${name}.${randomBytes(8).toString("hex")}`, namespace: ns },
      involvedObject: {
        apiVersion: obj.apiVersion,
        kind: obj.kind,
        name,
        namespace: ns,
        uid: obj.metadata?.uid,
        resourceVersion: obj.metadata?.resourceVersion,
      },
      type,
      reason,
      message,
      source: { component: this.component },
      reportingComponent: this.component,
      reportingInstance: this.instance,
      firstTimestamp: ts,
      lastTimestamp: ts,
      count: 1,
    };
    const p = this.rest
      .request("POST", `/api/v1/namespaces/${encodeURIComponent(ns)}/events`, { body })
      .then(
        () => undefined,
        (err: unknown) => {
          this.log.warn("could not record event", { reason, object: `${ns}/${name}`, err });
        },
      )
      .finally(() => this.inflight.delete(p));
    this.inflight.add(p);
  }

  /** Waits for Events still being sent (on shutdown). */
  async flush(): Promise<void> {
    await Promise.all([...this.inflight]);
  }
}
