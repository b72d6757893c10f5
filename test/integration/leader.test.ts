// Leader election against a real kube-apiserver: two electors on one Lease with
// short timings. A sampler checks, every few milliseconds through every test,
// that the two never both believe they lead. Some candidates have their wall
// clock set seconds off, as on a node whose clock is wrong.
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { systemClock } from "../../src/k8s/clock.ts";
import { LeaderElector, type Lease } from "../../src/k8s/leader.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { silentLogger } from "../../src/log.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";

const LEASE_MS = 3000;
const RENEW_MS = 2000;
const RETRY_MS = 500;
/** Timer and event-loop delays on a busy 2-core machine; the ordering assertions carry the safety property. */
const SLACK_MS = 750;

let kc: KubeConfig;
let rest: KubeRest;
let ns: string;

beforeAll(async () => {
  kc = loadKubeConfig(inject("kubeconfig"));
  rest = new KubeRest(kc);
  ns = await createTestNamespace(kc, "leader");
});
afterAll(async () => {
  await deleteNamespace(kc, ns);
  rest.close();
});

interface Candidate {
  id: string;
  elector: LeaderElector;
  startedAt: number[];
  stoppedAt: number[];
  /** While true, this candidate's requests never get an answer (a network partition). */
  cut: boolean;
}

let running: Candidate[] = [];
let overlaps = 0;
let sampler: ReturnType<typeof setInterval> | undefined;

/** `skewMs`: how far this candidate's wall clock is off; its monotonic clock and timers are the system's. */
function candidate(id: string, lease: string, skewMs = 0): Candidate {
  const c: Candidate = { id, elector: undefined as unknown as LeaderElector, startedAt: [], stoppedAt: [], cut: false };
  const link: Pick<KubeRest, "request"> = {
    request: <T>(method: string, path: string, opts?: Parameters<KubeRest["request"]>[2]): Promise<T> =>
      c.cut ? new Promise<T>(() => undefined) : rest.request<T>(method, path, opts),
  };
  c.elector = new LeaderElector({
    rest: link,
    name: lease,
    namespace: ns,
    identity: id,
    leaseDurationMs: LEASE_MS,
    renewDeadlineMs: RENEW_MS,
    retryPeriodMs: RETRY_MS,
    log: silentLogger,
    clock: { ...systemClock, now: () => Date.now() + skewMs },
    onStartedLeading: () => {
      c.startedAt.push(Date.now());
    },
    onStoppedLeading: () => {
      c.stoppedAt.push(Date.now());
    },
  });
  running.push(c);
  return c;
}

function watch(a: Candidate, b: Candidate): void {
  sampler = setInterval(() => {
    if (a.elector.isLeader() && b.elector.isLeader()) overlaps++;
  }, 2);
}

/** Starts two candidates on a fresh Lease and the sampler that watches them. */
async function pair(lease: string): Promise<{ leader: Candidate; follower: Candidate }> {
  const a = candidate("replica-a", lease);
  const b = candidate("replica-b", lease);
  watch(a, b);
  void a.elector.run();
  void b.elector.run();
  const leader = await eventually(async () => Promise.resolve([a, b].find((c) => c.elector.isLeader())), 10_000, "a leader");
  return { leader, follower: leader === a ? b : a };
}

const getLease = (name: string): Promise<Lease> =>
  rest.request<Lease>("GET", `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/${name}`);

afterEach(async () => {
  for (const c of running) c.cut = false;
  await Promise.all(running.map((c) => c.elector.stop({ release: false })));
  running = [];
  clearInterval(sampler);
  const seen = overlaps;
  overlaps = 0;
  expect(seen, "samples in which both candidates led").toBe(0);
});

describe("leader election on a real Lease", () => {
  it("lets exactly one of two candidates lead, and the Lease names it", async () => {
    const { leader, follower } = await pair("one-leader");
    const first = await getLease("one-leader");
    expect(first.spec?.holderIdentity).toBe(leader.id);
    // Wait for three renewals, then check that nothing changed hands.
    const renewed = Date.parse(first.spec?.renewTime ?? "");
    await eventually(
      async () => {
        const l = await getLease("one-leader");
        return Date.parse(l.spec?.renewTime ?? "") >= renewed + 3 * RETRY_MS ? l : undefined;
      },
      10_000,
      "three renewals",
    );
    expect(leader.elector.isLeader()).toBe(true);
    expect(follower.elector.isLeader()).toBe(false);
    expect(follower.elector.leader()).toBe(leader.id);
    expect(follower.startedAt).toEqual([]);
    expect((await getLease("one-leader")).spec).toMatchObject({ holderIdentity: leader.id, leaseTransitions: 0, leaseDurationSeconds: 3 });
  });

  it("hands over within the lease duration plus one retry period after the leader crashes", async () => {
    const { leader, follower } = await pair("crash");
    const before = await getLease("crash");
    const killedAt = Date.now();
    await leader.elector.stop({ release: false });
    const lastRenew = Date.parse((await getLease("crash")).spec?.renewTime ?? "");
    await eventually(async () => Promise.resolve(follower.elector.isLeader() || undefined), LEASE_MS + RETRY_MS + 2 * SLACK_MS, "the follower to lead");
    const takeoverMs = follower.startedAt[0]! - killedAt;
    process.stderr.write(`[leader] takeover after a crash: ${takeoverMs} ms (lease ${LEASE_MS} ms, retry ${RETRY_MS} ms)\n`);
    expect(takeoverMs).toBeLessThanOrEqual(LEASE_MS + RETRY_MS + SLACK_MS);
    const after = await getLease("crash");
    expect(after.spec?.holderIdentity).toBe(follower.id);
    expect(after.spec?.leaseTransitions).toBe((before.spec?.leaseTransitions ?? 0) + 1);
    // The follower waited for the dead leader's Lease to expire.
    expect(Date.parse(after.spec?.acquireTime ?? "")).toBeGreaterThan(lastRenew + LEASE_MS);
  });

  it("hands over at once after the leader stops cleanly", async () => {
    const { leader, follower } = await pair("clean");
    const stoppedAt = Date.now();
    await leader.elector.stop();
    expect((await getLease("clean")).spec?.holderIdentity).toBe("");
    await eventually(async () => Promise.resolve(follower.elector.isLeader() || undefined), RETRY_MS + 2 * SLACK_MS, "the follower to lead");
    const takeoverMs = follower.startedAt[0]! - stoppedAt;
    process.stderr.write(`[leader] takeover after a clean stop: ${takeoverMs} ms\n`);
    expect(takeoverMs).toBeLessThanOrEqual(RETRY_MS + SLACK_MS);
    expect((await getLease("clean")).spec?.holderIdentity).toBe(follower.id);
  });

  it("a leader cut off from the apiserver steps down before the other candidate takes over", async () => {
    const { leader, follower } = await pair("partition");
    const cutAt = Date.now();
    leader.cut = true;
    await eventually(async () => Promise.resolve(follower.elector.isLeader() || undefined), LEASE_MS + RETRY_MS + 2 * SLACK_MS, "the follower to lead");
    expect(leader.elector.isLeader()).toBe(false);
    const steppedDown = leader.stoppedAt[0]!;
    expect(steppedDown - cutAt).toBeLessThanOrEqual(RENEW_MS + SLACK_MS);
    expect(follower.startedAt[0]!).toBeGreaterThan(steppedDown);
    process.stderr.write(
      `[leader] partition: old leader stepped down after ${steppedDown - cutAt} ms, new leader after ${follower.startedAt[0]! - cutAt} ms\n`,
    );
  });

  it.each([
    ["ahead of", 2 * LEASE_MS],
    ["behind", -2 * LEASE_MS],
  ])("a candidate whose wall clock is twice the lease duration %s the leader's waits while it renews, then takes over", async (_, skewMs) => {
    const name = `skew-${skewMs > 0 ? "ahead" : "behind"}`;
    const leader = candidate("replica-a", name);
    const follower = candidate("replica-b", name, skewMs);
    watch(leader, follower);
    void leader.elector.run();
    await eventually(async () => Promise.resolve(leader.elector.isLeader() || undefined), 10_000, "the first candidate to lead");
    void follower.elector.run();
    // Three lease durations of renewals, in which the follower must not take over.
    const renewed = Date.parse((await getLease(name)).spec?.renewTime ?? "");
    await eventually(
      async () => {
        const l = await getLease(name);
        return Date.parse(l.spec?.renewTime ?? "") >= renewed + 3 * LEASE_MS ? l : undefined;
      },
      6 * LEASE_MS,
      "three lease durations of renewals",
    );
    expect(follower.startedAt).toEqual([]);
    expect(leader.elector.isLeader()).toBe(true);
    const killedAt = Date.now();
    await leader.elector.stop({ release: false });
    await eventually(async () => Promise.resolve(follower.elector.isLeader() || undefined), LEASE_MS + RETRY_MS + 2 * SLACK_MS, "the follower to lead");
    const takeoverMs = follower.startedAt[0]! - killedAt;
    process.stderr.write(`[leader] takeover with a wall clock ${skewMs} ms off: ${takeoverMs} ms\n`);
    expect(takeoverMs).toBeLessThanOrEqual(LEASE_MS + RETRY_MS + SLACK_MS);
    expect((await getLease(name)).spec?.holderIdentity).toBe(follower.id);
  });
});
