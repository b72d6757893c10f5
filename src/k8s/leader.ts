// Leader election on a coordination.k8s.io/v1 Lease, like client-go's
// leaderelection package: of several replicas, one holds the Lease and works;
// the others wait and take over when it lapses.
//
//  - Every retryPeriod a replica tries to acquire or renew: it creates the Lease
//    if it is missing, renews it when it holds it, and takes it over (counting a
//    leaseTransition) when nobody holds it or the holder has let it lapse. Writes
//    carry the Lease's resourceVersion, so of two replicas racing for the same
//    Lease the apiserver lets one win and answers the other 409 Conflict.
//  - Lapsed is judged on the candidate's own monotonic clock, never by comparing
//    the holder's renewTime with the local wall clock: a candidate notes when it
//    first saw the Lease as it now is (its resourceVersion and spec), and the
//    Lease has lapsed once the lease duration has passed since then with no
//    change. Every renewal changes the Lease, so a holder that keeps renewing
//    never lapses, however far apart the replicas' wall clocks are; a candidate
//    that has just started waits a full lease duration from its first read.
//    renewTime and acquireTime are written for people and other tools only.
//  - Safety: the leader stops leading (aborts the signal it gave onStartedLeading)
//    as soon as renewDeadline has passed since the start of its last successful
//    write, by a timer of its own, not when a hung request finally fails. Any
//    other replica saw that write no earlier than its start, so it cannot take
//    the Lease before `start + leaseDuration`, later than the step-down because
//    renewDeadline < leaseDuration. Only the rates of the clocks matter here, not
//    their settings.
//  - stop() releases the Lease (empty holderIdentity), so a successor takes over
//    at its next retry instead of waiting for the Lease to expire.
//  - A replica that lost the lead stays a candidate and may lead again later.
import { KeywardError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { systemClock, type Clock } from "./clock.ts";
import { isConflict, isNotFound, type KubeRest } from "./rest.ts";

/** The fields of a coordination.k8s.io/v1 Lease that leader election uses. */
export interface Lease {
  apiVersion: "coordination.k8s.io/v1";
  kind: "Lease";
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    /** MicroTime, RFC 3339 with microseconds. */
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

export interface LeaderElectorOptions {
  /** The REST client (only `request` is used). */
  rest: Pick<KubeRest, "request">;
  /** Lease name and namespace; the namespace must exist. */
  name: string;
  namespace: string;
  /** This replica's identity, unique among the candidates (hostname_pid, say). */
  identity: string;
  /** How long a Lease is valid after its last renewal. */
  leaseDurationMs: number;
  /** The leader steps down when it could not renew for this long; must be below leaseDurationMs. */
  renewDeadlineMs: number;
  /** How often to try to acquire or renew; must be below renewDeadlineMs. */
  retryPeriodMs: number;
  log: Logger;
  /**
   * Timers, intervals (its monotonic time) and the wall time written into the Lease.
   * Default: the system clock.
   */
  clock?: Clock;
  /**
   * Called when this replica starts leading. `signal` aborts when it stops
   * leading; the work must stop writing then. It may return a promise that
   * settles when the work has ended (see onStoppedLeading).
   */
  onStartedLeading: (signal: AbortSignal) => void | Promise<void>;
  /**
   * Called once each time this replica stops leading (it lost the Lease, or
   * stop()). It may return a promise that settles when the work has wound down:
   * the elector waits for that and for onStartedLeading's promise before it
   * campaigns again, and (for at most leaseDurationMs) before a clean stop()
   * releases the Lease, so a successor never overlaps with work still writing.
   */
  onStoppedLeading: () => void | Promise<void>;
  /** Called when the Lease's holder is seen to change, with the new holder's identity. */
  onNewLeader?: (identity: string) => void;
}

export interface StopOptions {
  /**
   * Release the Lease so a successor takes over at once. Default true; false
   * leaves it held until it expires, as a crashed process would.
   */
  release?: boolean;
}

const LEASE_API = "/apis/coordination.k8s.io/v1";

/** Formats a time as a Kubernetes MicroTime (RFC 3339, six fractional digits). */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

type Attempt = "leading" | "held" | "lost" | "failed";

/** A Lease as this replica last saw it change, and when (on its monotonic clock). */
interface Observation {
  /** resourceVersion and spec: any write changes it. */
  version: string;
  at: number;
}

const versionOf = (lease: Lease): string => `${lease.metadata.resourceVersion ?? ""} ${JSON.stringify(lease.spec ?? {})}`;

export class LeaderElector {
  private readonly opts: LeaderElectorOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly path: string;
  /** The Lease as last read or written by this replica. */
  private lease: Lease | undefined;
  private observed: Observation | undefined;
  /** When the Lease as last observed lapses, on the monotonic clock (undefined: not held by another). */
  private lapsesAt: number | undefined;
  private lastHolder = "";
  private leading = false;
  private leadingSince = 0;
  private cancelDeadline: (() => void) | undefined;
  private leadAbort: AbortController | undefined;
  private leadWork: Promise<void> | undefined;
  /** Settles when the work of the last leadership has ended. */
  private windingDown: Promise<void> | undefined;
  private stopping = false;
  private release = true;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;

  constructor(opts: LeaderElectorOptions) {
    const { leaseDurationMs: lease, renewDeadlineMs: renew, retryPeriodMs: retry } = opts;
    if (!opts.identity) throw new KeywardError("ConfigInvalid", "leader election needs an identity");
    if (!(retry > 0 && retry < renew && renew < lease)) {
      throw new KeywardError(
        "ConfigInvalid",
        `leader election needs 0 < retryPeriod (${retry} ms) < renewDeadline (${renew} ms) < leaseDuration (${lease} ms)`,
      );
    }
    this.opts = opts;
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log.child({ lease: `${opts.namespace}/${opts.name}`, identity: opts.identity });
    this.path = `${LEASE_API}/namespaces/${encodeURIComponent(opts.namespace)}/leases`;
  }

  /** True while this replica leads (between onStartedLeading and onStoppedLeading). */
  isLeader(): boolean {
    return this.leading;
  }

  /** The holder of the Lease as last seen ("" when nobody holds it). */
  leader(): string {
    return this.lastHolder;
  }

  /** Campaigns until stop(); resolves once stopped (and the Lease released). Never rejects. */
  run(): Promise<void> {
    this.loop ??= this.campaign();
    return this.loop;
  }

  /** Stops campaigning, steps down if leading and, unless told not to, releases the Lease. */
  async stop(opts: StopOptions = {}): Promise<void> {
    this.release = opts.release ?? true;
    this.stopping = true;
    this.wake?.();
    await this.loop;
  }

  private isStopping(): boolean {
    return this.stopping;
  }

  private async campaign(): Promise<void> {
    this.log.info("campaigning for leadership");
    while (!this.isStopping()) {
      if (this.windingDown) {
        // Never lead again while the previous leadership's work may still write.
        await this.interruptible(this.windingDown, Number.POSITIVE_INFINITY);
        if (this.isStopping()) break;
        this.windingDown = undefined;
      }
      const at = this.monotonic();
      const result = await this.interruptible(this.tryAcquireOrRenew(), this.opts.renewDeadlineMs);
      if (this.isStopping()) break;
      if (result === "leading") this.renewed(at);
      else if (result === "lost") this.stepDown("another replica holds the lease");
      // Try again after retryPeriod, or just after a held Lease lapses if that comes sooner.
      let next = at + this.opts.retryPeriodMs;
      if (result !== "leading" && this.lapsesAt !== undefined && this.lapsesAt >= at) next = Math.min(next, this.lapsesAt + 1);
      await this.interruptible(Promise.resolve(), Math.max(0, next - this.monotonic()), true);
    }
    this.stepDown("stopping");
    if (this.release) {
      if (this.windingDown) await this.interruptible(this.windingDown, this.opts.leaseDurationMs, false, true);
      await this.releaseLease();
    }
    this.log.info("stopped campaigning");
  }

  /**
   * Waits for `work`, for at most `ms` (may be infinite); returns undefined on timeout. With
   * `sleep`, waits the full `ms`. Unless `ignoreStop`, stop() ends the wait early.
   */
  private interruptible<T>(work: Promise<T>, ms: number, sleep = false, ignoreStop = false): Promise<T | undefined> {
    return new Promise<T | undefined>((resolve) => {
      let done = false;
      const finish = (v: T | undefined): void => {
        if (done) return;
        done = true;
        cancel();
        if (this.wake === wake) this.wake = undefined;
        resolve(v);
      };
      const cancel = Number.isFinite(ms)
        ? this.clock.setTimer(() => {
            finish(undefined);
          }, ms)
        : () => undefined;
      const wake = (): void => {
        finish(undefined);
      };
      if (!ignoreStop) this.wake = wake;
      if (!sleep) {
        work.then(finish, () => {
          finish(undefined);
        });
      }
    });
  }

  private monotonic(): number {
    return this.clock.monotonic?.() ?? this.clock.now();
  }

  /** One round: read the Lease, then create, renew or take it over if allowed. */
  private async tryAcquireOrRenew(): Promise<Attempt> {
    this.lapsesAt = undefined;
    try {
      // The leader renews from the Lease it wrote last, saving a GET per round.
      if (this.leading && this.lease?.spec?.holderIdentity === this.opts.identity) {
        try {
          await this.write(this.renewal(this.lease));
          return "leading";
        } catch (err) {
          if (!isConflict(err) && !isNotFound(err)) throw err;
          this.log.warn("the lease was changed or deleted under the leader; rereading it", { err });
        }
      }
      let current: Lease;
      try {
        current = await this.opts.rest.request<Lease>("GET", `${this.path}/${encodeURIComponent(this.opts.name)}`);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        await this.create();
        return "leading";
      }
      this.observe(current);
      const holder = current.spec?.holderIdentity ?? "";
      if (holder === this.opts.identity) {
        await this.write(this.renewal(current));
        return "leading";
      }
      if (holder !== "" && !this.lapsed(current)) return this.leading ? "lost" : "held";
      await this.write(this.takeover(current));
      this.log.info("took over the lease", { previous: holder || undefined, transitions: current.spec?.leaseTransitions ?? 0 });
      return "leading";
    } catch (err) {
      if (isConflict(err)) {
        this.log.debug("another replica wrote the lease first");
        return this.leading ? "failed" : "held";
      }
      this.log.warn("could not acquire or renew the lease", { err });
      return "failed";
    }
  }

  /**
   * Whether the holder of `lease` (just observed) has let it lapse: it has not changed
   * for the longer of its leaseDurationSeconds and this replica's lease duration,
   * counted on this replica's monotonic clock from when it first saw it so.
   */
  private lapsed(lease: Lease): boolean {
    const observedAt = this.observed?.at ?? this.monotonic();
    const durationMs = Math.max((lease.spec?.leaseDurationSeconds ?? 0) * 1000, this.opts.leaseDurationMs);
    this.lapsesAt = observedAt + durationMs;
    return this.monotonic() > this.lapsesAt;
  }

  /** This replica as the holder, renewed now by its wall clock. */
  private spec(): NonNullable<Lease["spec"]> {
    return {
      holderIdentity: this.opts.identity,
      leaseDurationSeconds: Math.ceil(this.opts.leaseDurationMs / 1000),
      renewTime: microTime(this.clock.now()),
    };
  }

  private renewal(lease: Lease): Lease {
    return { ...lease, spec: { ...lease.spec, ...this.spec() } };
  }

  private takeover(lease: Lease): Lease {
    const transitions = (lease.spec?.leaseTransitions ?? 0) + 1;
    const spec = this.spec();
    return { ...lease, spec: { ...lease.spec, ...spec, acquireTime: spec.renewTime, leaseTransitions: transitions } };
  }

  private async create(): Promise<void> {
    const spec = this.spec();
    const lease: Lease = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: this.opts.name, namespace: this.opts.namespace },
      spec: { ...spec, acquireTime: spec.renewTime, leaseTransitions: 0 },
    };
    this.observe(await this.opts.rest.request<Lease>("POST", this.path, { body: lease }));
    this.log.info("created the lease");
  }

  /** PUT with the Lease's resourceVersion: a 409 means another replica wrote it first. */
  private async write(lease: Lease): Promise<void> {
    const url = `${this.path}/${encodeURIComponent(this.opts.name)}`;
    this.observe(await this.opts.rest.request<Lease>("PUT", url, { body: lease }));
  }

  /** Remembers the Lease as read or written, and when it was first seen as it is now. */
  private observe(lease: Lease): void {
    this.lease = lease;
    const version = versionOf(lease);
    if (this.observed?.version !== version) this.observed = { version, at: this.monotonic() };
    const holder = lease.spec?.holderIdentity ?? "";
    if (holder !== this.lastHolder) {
      this.lastHolder = holder;
      if (holder !== "") {
        try {
          this.opts.onNewLeader?.(holder);
        } catch (err) {
          this.log.error("onNewLeader failed", { err });
        }
      }
    }
  }

  /** A write that started at `at` succeeded: lead (again) until at + renewDeadline. */
  private renewed(at: number): void {
    const left = at + this.opts.renewDeadlineMs - this.monotonic();
    if (left <= 0) return; // Too late to count on it; the next round will tell.
    if (!this.leading && this.windingDown) return; // The campaign loop waits for the old work first.
    this.cancelDeadline?.();
    this.cancelDeadline = this.clock.setTimer(() => {
      this.cancelDeadline = undefined;
      this.stepDown(`could not renew the lease within ${this.opts.renewDeadlineMs} ms`);
    }, left);
    if (this.leading) return;
    this.leading = true;
    this.leadingSince = at;
    const abort = new AbortController();
    this.leadAbort = abort;
    this.log.info("started leading");
    const onStarted = this.opts.onStartedLeading;
    this.leadWork = (async () => {
      await onStarted(abort.signal);
    })().catch((err: unknown) => {
      this.log.error("the leader's work failed", { err });
    });
  }

  private stepDown(reason: string): void {
    this.cancelDeadline?.();
    this.cancelDeadline = undefined;
    if (!this.leading) return;
    this.leading = false;
    const level = reason === "stopping" ? "info" : "warn";
    this.log[level]("stopped leading", { reason, ledForMs: this.monotonic() - this.leadingSince });
    this.leadAbort?.abort(new KeywardError("LeadershipLost", `stopped leading: ${reason}`));
    const onStopped = this.opts.onStoppedLeading;
    const logged = (async () => {
      await onStopped();
    })().catch((err: unknown) => {
      this.log.error("onStoppedLeading failed", { err });
    });
    this.windingDown = Promise.all([this.leadWork, logged]).then(() => undefined);
    this.leadWork = undefined;
  }

  /** Gives the Lease up if this replica still holds it, so a successor need not wait for it to expire. */
  private async releaseLease(): Promise<void> {
    const lease = this.lease;
    if (lease?.spec?.holderIdentity !== this.opts.identity) return;
    const now = this.clock.now();
    const released: Lease = {
      ...lease,
      spec: { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1, renewTime: microTime(now), acquireTime: microTime(now) },
    };
    try {
      await this.write(released);
      this.log.info("released the lease");
    } catch (err) {
      this.log.warn("could not release the lease; it expires on its own", { err });
    }
  }
}
