import { describe, expect, it } from "vitest";
import { seededRandom } from "../../test/support/random.ts";
import { silentLogger } from "../log.ts";
import { ManualClock, type Clock } from "./clock.ts";
import { LeaderElector, microTime, type Lease, type LeaderElectorOptions } from "./leader.ts";
import { KubeApiError, type KubeRest } from "./rest.ts";

const NS = "keyward-system";
const NAME = "keyward-operator";
const LEASES = `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`;
const LEASE_MS = 15_000;
const RENEW_MS = 10_000;
const RETRY_MS = 2_000;

/** How one replica's requests fare. `slow`: the apiserver applies the write, the answer arrives `slowMs` later. */
type Mode = "ok" | "fail" | "hang" | "slow";
/** A replica's connection: its mode, and the mode it switches to after one request (if `then`). */
interface Link {
  mode: Mode;
  slowMs?: number;
  then?: Mode;
}

/** An in-memory apiserver for one Lease, with resourceVersion checks like the real one. */
class FakeApiserver {
  lease: Lease | undefined;
  private rv = 1;
  readonly requests: { who: string; method: string }[] = [];
  private readonly clock: ManualClock;
  constructor(clock: ManualClock) {
    this.clock = clock;
  }

  client(who: string, state: Link = { mode: "ok" }): Pick<KubeRest, "request"> & { state: Link } {
    const request = <T>(method: string, path: string, opts: { body?: unknown } = {}): Promise<T> => {
      this.requests.push({ who, method });
      const mode = state.mode;
      if (state.then) {
        state.mode = state.then;
        state.then = undefined;
      }
      if (mode === "hang") return new Promise<T>(() => undefined);
      if (mode === "fail") return Promise.reject(new KubeApiError(0, "", "connect ECONNREFUSED"));
      let result: T;
      try {
        result = this.handle(method, path, opts.body as Lease | undefined) as T;
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      if (mode === "slow") {
        return new Promise<T>((resolve) => {
          this.clock.setTimer(() => {
            resolve(result);
          }, state.slowMs ?? 0);
        });
      }
      return Promise.resolve(result);
    };
    return { request, state };
  }

  deleteLease(): void {
    this.lease = undefined;
  }

  /** Changes the stored Lease as another client would (a new resourceVersion). */
  editLease(spec: Partial<NonNullable<Lease["spec"]>>): void {
    if (!this.lease) throw new Error("no Lease to edit");
    this.lease = { ...this.lease, spec: { ...this.lease.spec, ...spec }, metadata: { ...this.lease.metadata, resourceVersion: String(++this.rv) } };
  }

  private handle(method: string, path: string, body: Lease | undefined): Lease {
    const copy = (l: Lease): Lease => structuredClone(l);
    if (method === "GET" && path === `${LEASES}/${NAME}`) {
      if (!this.lease) throw new KubeApiError(404, "NotFound", `leases "${NAME}" not found`);
      return copy(this.lease);
    }
    if (method === "POST" && path === LEASES && body) {
      if (this.lease) throw new KubeApiError(409, "AlreadyExists", `leases "${NAME}" already exists`);
      this.lease = { ...copy(body), metadata: { ...body.metadata, resourceVersion: String(++this.rv) } };
      return copy(this.lease);
    }
    if (method === "PUT" && path === `${LEASES}/${NAME}` && body) {
      if (!this.lease) throw new KubeApiError(404, "NotFound", `leases "${NAME}" not found`);
      if (body.metadata.resourceVersion !== this.lease.metadata.resourceVersion) {
        throw new KubeApiError(409, "Conflict", "the object has been modified; please apply your changes to the latest version");
      }
      this.lease = { ...copy(body), metadata: { ...body.metadata, resourceVersion: String(++this.rv) } };
      return copy(this.lease);
    }
    throw new KubeApiError(400, "BadRequest", `unexpected ${method} ${path}`);
  }
}

interface Replica {
  elector: LeaderElector;
  state: Link;
  events: { what: "started" | "stopped" | "new-leader"; at: number; id?: string }[];
  signals: AbortSignal[];
  /** When set, onStoppedLeading returns a promise that stays pending until finishStop() (work winding down). */
  holdStops: boolean;
  finishStop: () => void;
}

function replica(
  clock: ManualClock,
  api: FakeApiserver,
  identity: string,
  overrides: Partial<LeaderElectorOptions> = {},
): Replica {
  const rest = api.client(identity);
  const r: Replica = {
    elector: undefined as unknown as LeaderElector,
    state: rest.state,
    events: [],
    signals: [],
    holdStops: false,
    finishStop: () => undefined,
  };
  r.elector = new LeaderElector({
    rest,
    name: NAME,
    namespace: NS,
    identity,
    leaseDurationMs: LEASE_MS,
    renewDeadlineMs: RENEW_MS,
    retryPeriodMs: RETRY_MS,
    log: silentLogger,
    clock,
    onStartedLeading: (signal) => {
      r.signals.push(signal);
      r.events.push({ what: "started", at: clock.now() });
    },
    onStoppedLeading: () => {
      r.events.push({ what: "stopped", at: clock.now() });
      if (!r.holdStops) return;
      return new Promise<void>((resolve) => {
        r.finishStop = resolve;
      });
    },
    onNewLeader: (id) => {
      r.events.push({ what: "new-leader", at: clock.now(), id });
    },
    ...overrides,
  });
  return r;
}

/** Advances in small steps, failing if two replicas ever lead at once; returns when `until` holds. */
async function advanceWatching(clock: ManualClock, replicas: Replica[], ms: number, until?: () => boolean): Promise<void> {
  const end = clock.now() + ms;
  while (clock.now() < end) {
    await clock.advance(Math.min(50, end - clock.now()));
    const leaders = replicas.filter((r) => r.elector.isLeader()).length;
    expect(leaders, `${leaders} replicas lead at ${clock.now()}`).toBeLessThanOrEqual(1);
    if (until?.()) return;
  }
}

/**
 * The test's time as seen by a replica whose wall clock is `skewMs` off and whose
 * monotonic clock counts from an origin of its own; timers run on the shared clock.
 */
function skewed(clock: ManualClock, skewMs: number): Clock {
  const origin = clock.now() - 123_456;
  return {
    now: () => clock.now() + skewMs,
    monotonic: () => clock.now() - origin,
    setTimer: (fn, ms) => clock.setTimer(fn, ms),
  };
}

const startedAt = (r: Replica): number | undefined => r.events.find((e) => e.what === "started")?.at;

const renewTimeOf = (api: FakeApiserver): number => Date.parse(api.lease?.spec?.renewTime ?? "");

interface Scenario {
  clock: ManualClock;
  api: FakeApiserver;
  a: Replica;
  b: Replica;
  t0: number;
}

/** A fresh apiserver and clock, replica a started and leading, and replica b started after it (unless `startB` is false). */
async function scenario(aOptions: Partial<LeaderElectorOptions> = {}, startB = true): Promise<Scenario> {
  const clock = new ManualClock();
  const api = new FakeApiserver(clock);
  const a = replica(clock, api, "a", aOptions);
  const b = replica(clock, api, "b");
  const t0 = clock.now();
  void a.elector.run();
  await ManualClock.settle();
  expect(a.elector.isLeader()).toBe(true);
  if (startB) void b.elector.run();
  return { clock, api, a, b, t0 };
}

describe("leader election", () => {
  it("creates a missing Lease and leads", async () => {
    const { clock, api, a } = await scenario({}, false);
    expect(a.elector.isLeader()).toBe(true);
    expect(api.lease?.spec).toMatchObject({ holderIdentity: "a", leaseDurationSeconds: 15, leaseTransitions: 0 });
    expect(api.lease?.spec?.renewTime).toBe(microTime(clock.now()));
    expect(a.events.map((e) => e.what)).toEqual(["new-leader", "started"]);
    expect(a.events[0]?.id).toBe("a");
    await a.elector.stop();
  });

  it("writes renewTime as a MicroTime with six fractional digits", () => {
    expect(microTime(Date.UTC(2026, 10, 23, 13, 5, 7, 42))).toBe("2026-11-23T13:05:07.042000Z");
  });

  it("renews the Lease every retry period with one request per renewal", async () => {
    const { clock, api, a } = await scenario({}, false);
    const first = renewTimeOf(api);
    api.requests.length = 0;
    await clock.advance(5 * RETRY_MS);
    expect(renewTimeOf(api) - first).toBe(5 * RETRY_MS);
    expect(api.requests.map((r) => r.method)).toEqual(["PUT", "PUT", "PUT", "PUT", "PUT"]);
    expect(a.elector.isLeader()).toBe(true);
    await a.elector.stop();
  });

  it("keeps a second replica waiting while the leader renews", async () => {
    const { clock, a, b } = await scenario();
    await advanceWatching(clock, [a, b], 10 * LEASE_MS);
    expect(a.elector.isLeader()).toBe(true);
    expect(b.elector.isLeader()).toBe(false);
    expect(b.elector.leader()).toBe("a");
    expect(b.events).toEqual([{ what: "new-leader", at: expect.any(Number) as number, id: "a" }]);
    await b.elector.stop();
    await a.elector.stop();
  });

  it("lets exactly one of two replicas that start together lead (a 409 loses the race)", async () => {
    const clock = new ManualClock();
    const api = new FakeApiserver(clock);
    const a = replica(clock, api, "a");
    const b = replica(clock, api, "b");
    void a.elector.run();
    void b.elector.run();
    await advanceWatching(clock, [a, b], 3 * LEASE_MS);
    expect([a, b].filter((r) => r.elector.isLeader())).toHaveLength(1);
    expect(api.requests.filter((r) => r.method === "POST")).toHaveLength(2);
    await a.elector.stop();
    await b.elector.stop();
  });

  it("takes over a Lease whose holder stopped renewing once leaseDuration has passed, counting a transition", async () => {
    const { clock, api, a, b } = await scenario();
    await clock.advance(3 * RETRY_MS + 700);
    await a.elector.stop({ release: false }); // as if the process died
    const lastRenew = renewTimeOf(api);
    expect(api.lease?.spec?.holderIdentity).toBe("a");
    await advanceWatching(clock, [a, b], 2 * LEASE_MS, () => b.elector.isLeader());
    expect(b.elector.isLeader()).toBe(true);
    const tookOverAt = b.events.find((e) => e.what === "started")!.at;
    expect(tookOverAt - lastRenew).toBeGreaterThan(LEASE_MS);
    expect(tookOverAt - lastRenew).toBeLessThanOrEqual(LEASE_MS + RETRY_MS);
    expect(api.lease?.spec).toMatchObject({ holderIdentity: "b", leaseTransitions: 1, acquireTime: microTime(tookOverAt) });
    await b.elector.stop();
  });

  it.each<Mode>(["hang", "fail"])(
    "steps down within renewDeadline when its requests %s, before another replica can take the Lease",
    async (mode) => {
      const { clock, api, a, b } = await scenario();
      await clock.advance(2 * RETRY_MS + 300);
      const lastRenew = renewTimeOf(api);
      a.state.mode = mode;
      await advanceWatching(clock, [a, b], 3 * LEASE_MS, () => b.elector.isLeader());
      const stoppedAt = a.events.find((e) => e.what === "stopped")!.at;
      const startedAt = b.events.find((e) => e.what === "started")!.at;
      expect(stoppedAt).toBeLessThanOrEqual(lastRenew + RENEW_MS);
      expect(startedAt).toBeGreaterThan(lastRenew + LEASE_MS);
      expect(a.signals[0]?.aborted).toBe(true);
      expect(a.signals[0]?.reason).toMatchObject({ code: "LeadershipLost" });
      a.state.mode = "ok";
      await a.elector.stop();
      await b.elector.stop();
    },
  );

  it("counts renewDeadline from when a renewal was sent, not from when its answer came", async () => {
    const { clock, api, a, b, t0 } = await scenario();
    // The renewal sent at t0+2s is stored at once but answered at t0+9s; then a is cut off.
    a.state.mode = "slow";
    a.state.slowMs = 7000;
    a.state.then = "hang";
    await clock.advance(9001);
    expect(renewTimeOf(api)).toBe(t0 + 2000);
    expect(a.elector.isLeader()).toBe(true);
    await advanceWatching(clock, [a, b], 3 * LEASE_MS, () => b.elector.isLeader());
    expect(a.events.find((e) => e.what === "stopped")!.at).toBe(t0 + 2000 + RENEW_MS);
    expect(b.events.find((e) => e.what === "started")!.at).toBeGreaterThan(t0 + 2000 + LEASE_MS);
    a.state.mode = "ok";
    await a.elector.stop();
    await b.elector.stop();
  });

  it("does not count a renewal whose answer came back after renewDeadline", async () => {
    const { clock, a } = await scenario({}, false);
    a.state.mode = "slow";
    a.state.slowMs = RENEW_MS + 1;
    await advanceWatching(clock, [a], RENEW_MS + 100);
    expect(a.elector.isLeader()).toBe(false);
    expect(a.events.map((e) => e.what)).toContain("stopped");
    a.state.mode = "ok";
    await a.elector.stop();
  });

  it("releases the Lease on stop so a waiting replica takes over at its next retry", async () => {
    const { clock, api, a, b } = await scenario();
    await clock.advance(RETRY_MS * 3);
    const stoppedAt = clock.now();
    await a.elector.stop();
    expect(a.elector.isLeader()).toBe(false);
    expect(api.lease?.spec?.holderIdentity).toBe("");
    await advanceWatching(clock, [a, b], LEASE_MS, () => b.elector.isLeader());
    expect(clock.now() - stoppedAt).toBeLessThanOrEqual(RETRY_MS);
    expect(api.lease?.spec).toMatchObject({ holderIdentity: "b", leaseTransitions: 1 });
    await b.elector.stop();
  });

  it("waits for the leader's work to wind down before releasing the Lease", async () => {
    const { api, a } = await scenario({}, false);
    a.holdStops = true;
    let stopped = false;
    const stopping = a.elector.stop().then(() => {
      stopped = true;
    });
    await ManualClock.settle();
    expect(a.elector.isLeader()).toBe(false);
    expect(stopped).toBe(false);
    expect(api.lease?.spec?.holderIdentity).toBe("a");
    a.finishStop();
    await stopping;
    expect(api.lease?.spec?.holderIdentity).toBe("");
  });

  it("leaves the Lease held on stop({ release: false })", async () => {
    const { clock, api, a } = await scenario({}, false);
    await a.elector.stop({ release: false });
    expect(a.elector.isLeader()).toBe(false);
    expect(a.events.map((e) => e.what)).toEqual(["new-leader", "started", "stopped"]);
    expect(api.lease?.spec?.holderIdentity).toBe("a");
    expect(clock.pendingTimers).toBe(0);
  });

  it("leads again once it reaches the apiserver after losing the lead, only after the old work wound down", async () => {
    const { clock, api, a } = await scenario({}, false);
    a.holdStops = true;
    const starts = (): number => a.events.filter((e) => e.what === "started").length;
    a.state.mode = "fail";
    await clock.advance(RENEW_MS);
    expect(a.elector.isLeader()).toBe(false);
    a.state.mode = "ok";
    await clock.advance(5 * RETRY_MS);
    expect(starts()).toBe(1);
    a.finishStop();
    await clock.advance(RETRY_MS);
    expect(a.elector.isLeader()).toBe(true);
    expect(starts()).toBe(2);
    expect(api.lease?.spec?.leaseTransitions).toBe(0);
    await a.elector.stop({ release: false });
  });

  it("does not lead again on a late answer while the work of its lost leadership winds down", async () => {
    const { clock, a, t0 } = await scenario({}, false);
    a.holdStops = true;
    // The renewal sent at t0+2s is answered at t0+11s, after the deadline (t0+10s) but within its own.
    a.state.mode = "slow";
    a.state.slowMs = 9000;
    a.state.then = "ok";
    await clock.advance(RENEW_MS + 1);
    expect(a.elector.isLeader()).toBe(false);
    await clock.advance(t0 + 11_001 - clock.now());
    expect(a.elector.isLeader()).toBe(false);
    a.finishStop();
    await clock.advance(RETRY_MS);
    expect(a.elector.isLeader()).toBe(true);
    expect(a.events.filter((e) => e.what === "started")).toHaveLength(2);
    await a.elector.stop({ release: false });
  });

  it("recreates the Lease and keeps leading when someone deletes it", async () => {
    const { clock, api, a } = await scenario({}, false);
    api.deleteLease();
    await clock.advance(RETRY_MS);
    expect(a.elector.isLeader()).toBe(true);
    expect(a.events.filter((e) => e.what === "started")).toHaveLength(1);
    expect(api.lease?.spec?.holderIdentity).toBe("a");
    await a.elector.stop({ release: false });
  });

  it("never lets two replicas lead while their requests fail, hang and slow down at random", async () => {
    const clock = new ManualClock();
    const api = new FakeApiserver(clock);
    const replicas = ["a", "b", "c"].map((id) => replica(clock, api, id));
    for (const r of replicas) void r.elector.run();
    const random = seededRandom(20261123); // so a failure reproduces
    const modes: Mode[] = ["ok", "ok", "ok", "fail", "hang", "slow"];
    let leaderships = 0;
    for (let round = 0; round < 200; round++) {
      for (const r of replicas) {
        if (random() < 0.2) {
          r.state.mode = modes[Math.floor(random() * modes.length)]!;
          r.state.slowMs = Math.floor(random() * 2 * RENEW_MS);
        }
      }
      await advanceWatching(clock, replicas, 1000);
      leaderships = replicas.reduce((n, r) => n + r.events.filter((e) => e.what === "started").length, 0);
    }
    expect(leaderships).toBeGreaterThan(3);
    for (const r of replicas) r.state.mode = "ok";
    await Promise.all(replicas.map((r) => r.elector.stop({ release: false })));
  });

  it.each([
    ["ahead of", 2 * LEASE_MS],
    ["behind", -2 * LEASE_MS],
  ])("judges a lapse on its own clock: a candidate whose wall clock is twice the lease duration %s the leader's", async (_, skewMs) => {
    const clock = new ManualClock();
    const api = new FakeApiserver(clock);
    const a = replica(clock, api, "a");
    const b = replica(clock, api, "b", { clock: skewed(clock, skewMs) });
    void a.elector.run();
    await ManualClock.settle();
    void b.elector.run();
    // While a renews, b never takes over (advanceWatching fails on two leaders).
    await advanceWatching(clock, [a, b], 5 * LEASE_MS);
    expect(a.elector.isLeader()).toBe(true);
    expect(startedAt(b)).toBeUndefined();
    await a.elector.stop({ release: false }); // a dies
    const lastRenew = renewTimeOf(api); // a's wall clock is the test's
    await advanceWatching(clock, [a, b], 5 * LEASE_MS, () => b.elector.isLeader());
    const tookOver = startedAt(b)! - lastRenew;
    expect(tookOver).toBeGreaterThan(LEASE_MS);
    expect(tookOver).toBeLessThanOrEqual(LEASE_MS + RETRY_MS + 1);
    // b stamps the Lease with its own wall clock.
    expect(api.lease?.spec).toMatchObject({ holderIdentity: "b", acquireTime: microTime(startedAt(b)! + skewMs), leaseTransitions: 1 });
    await b.elector.stop();
  });

  it("waits a full lease duration from its first read before taking over a Lease that looks long expired", async () => {
    const { clock, api, a, b } = await scenario({}, false);
    await a.elector.stop({ release: false });
    await clock.advance(10 * LEASE_MS); // renewTime is now far in the past
    const startB = clock.now();
    void b.elector.run();
    await advanceWatching(clock, [b], 3 * LEASE_MS, () => b.elector.isLeader());
    expect(startedAt(b)! - startB).toBeGreaterThan(LEASE_MS);
    expect(startedAt(b)! - startB).toBeLessThanOrEqual(LEASE_MS + 1);
    expect(api.lease?.spec?.holderIdentity).toBe("b");
    await b.elector.stop();
  });

  it("starts its wait again when the Lease changes, honouring a longer leaseDurationSeconds", async () => {
    const { clock, api, a, b } = await scenario();
    await clock.advance(RETRY_MS);
    await a.elector.stop({ release: false });
    await clock.advance(LEASE_MS / 2);
    api.editLease({ leaseDurationSeconds: 60 }); // still held by a, nobody renews it
    const editedAt = clock.now();
    await advanceWatching(clock, [a, b], 90_000, () => b.elector.isLeader());
    expect(startedAt(b)! - editedAt).toBeGreaterThan(60_000);
    expect(startedAt(b)! - editedAt).toBeLessThanOrEqual(60_000 + RETRY_MS + 1);
    await b.elector.stop();
  });

  it("takes over a Lease nobody holds at once", async () => {
    const { clock, api, a, b } = await scenario({}, false);
    await a.elector.stop({ release: false });
    api.editLease({ holderIdentity: "" });
    void b.elector.run();
    await clock.advance(0);
    expect(b.elector.isLeader()).toBe(true);
    await b.elector.stop();
  });

  it("rejects timings where the leader could outlive its Lease", () => {
    const clock = new ManualClock();
    const api = new FakeApiserver(clock);
    expect(() => replica(clock, api, "a", { renewDeadlineMs: LEASE_MS })).toThrow(/renewDeadline/);
    expect(() => replica(clock, api, "a", { retryPeriodMs: RENEW_MS })).toThrow(/retryPeriod/);
    expect(() => replica(clock, api, "")).toThrow(/identity/);
  });
});
