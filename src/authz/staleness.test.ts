import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import type { KubernetesObject } from "@kubernetes/client-node";
import { loadConfig } from "../config/config.ts";
import { Informer, type WatchFn } from "../k8s/informer.ts";
import { deny, type Decision } from "../check/decision.ts";
import { decide, type Decided, type FrontOptions } from "./front.ts";
import { checkInput } from "./fixtures.test-support.ts";
import { IndexStaleness, type StalenessSource } from "./staleness.ts";

/** decide() with a memory limits store: answered at once. */
const decideNow = (...args: Parameters<typeof decide<unknown>>): Decided => decide(...args) as Decided;

class FakeSource implements StalenessSource {
  synced = true;
  heardMs = 0;
  private readonly now: () => number;
  constructor(now: () => number) {
    this.now = now;
  }
  idleMs(): number {
    return this.now() - this.heardMs;
  }
}

function setup(maxMs: number) {
  let now = 1_000_000;
  const clock = (): number => now;
  const keysA = new FakeSource(clock);
  const keysB = new FakeSource(clock);
  const policies = new FakeSource(clock);
  for (const s of [keysA, keysB, policies]) s.heardMs = now;
  const st = new IndexStaleness({
    resources: [
      { resource: "apikeys", sources: [keysA, keysB] },
      { resource: "apikeypolicies", sources: [policies] },
    ],
    maxMs,
    now: clock,
  });
  return { st, keysA, keysB, policies, advance: (ms: number) => (now += ms), now: clock };
}

describe("index staleness", () => {
  it("is the time since the least recently heard collection of each resource", async () => {
    const { st, keysA, keysB, advance, now } = setup(0);
    const registry = new Registry();
    st.register(registry);
    advance(30_000);
    keysA.heardMs = now();
    advance(5_000);
    const text = await registry.metrics();
    expect(text).toContain('keyward_authz_index_staleness_seconds{resource="apikeys"} 35');
    expect(text).toContain('keyward_authz_index_staleness_seconds{resource="apikeypolicies"} 35');
    keysB.heardMs = now();
    expect(await registry.metrics()).toContain('keyward_authz_index_staleness_seconds{resource="apikeys"} 5');
  });

  it("counts a collection that has not listed yet from the start", async () => {
    const { st, keysA, advance } = setup(0);
    keysA.synced = false;
    keysA.heardMs = 0;
    advance(7_000);
    const registry = new Registry();
    st.register(registry);
    expect(await registry.metrics()).toContain('keyward_authz_index_staleness_seconds{resource="apikeys"} 7');
  });

  it("turns stale past maxMs on either resource, and fresh again when the apiserver is heard", () => {
    const { st, keysA, keysB, policies, advance, now } = setup(300_000);
    advance(300_000);
    st.update();
    expect(st.stale).toBe(false);
    advance(1);
    st.update();
    expect(st.stale).toBe(true);
    for (const s of [keysA, keysB]) s.heardMs = now();
    st.update();
    expect(st.stale).toBe(true);
    policies.heardMs = now();
    st.update();
    expect(st.stale).toBe(false);
  });

  it("never turns stale with maxMs 0", () => {
    const { st, advance } = setup(0);
    advance(1e9);
    st.update();
    expect(st.stale).toBe(false);
  });

  it("re-evaluates on its own timer once started", async () => {
    const { st, advance } = setup(50);
    st.start();
    try {
      advance(51);
      const deadline = Date.now() + 2000;
      while (!st.stale && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      expect(st.stale).toBe(true);
    } finally {
      st.stop();
    }
  });

  it("a bookmark is hearing from the apiserver", async () => {
    let now = 1_000_000;
    let send: ((type: string, obj: unknown) => void) | undefined;
    const watch: WatchFn = (_q, onEvent) => {
      send = onEvent;
      return Promise.resolve(() => undefined);
    };
    const inf = new Informer<KubernetesObject>({
      name: "apikeys",
      list: () => Promise.resolve({ items: [], resourceVersion: "1" }),
      watch,
      onChange: () => undefined,
      now: () => now,
    });
    await inf.start();
    try {
      const st = new IndexStaleness({ resources: [{ resource: "apikeys", sources: [inf] }], maxMs: 60_000, now: () => now });
      const deadline = Date.now() + 2000;
      while (!send && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
      now += 60_001;
      st.update();
      expect(st.stale).toBe(true);
      send?.("BOOKMARK", { metadata: { resourceVersion: "2" } });
      st.update();
      expect(st.stale).toBe(false);
    } finally {
      await inf.stop();
    }
  });
});

describe("checks on a stale index", () => {
  const front = (over: Partial<FrontOptions>): FrontOptions => ({
    address: "",
    checker: { check: (): Decision => deny("no_policy") } as unknown as FrontOptions["checker"],
    response: { keyIdHeader: "k", ownerHeader: "o", realm: "r" },
    ready: () => true,
    onDecision: () => undefined,
    onError: () => undefined,
    ...over,
  });

  it("fail closed with 503 index_stale, after not_ready", () => {
    let stale = true;
    const o = front({ indexStale: () => stale });
    expect(decideNow(o, {}, () => checkInput({})).decision).toMatchObject({ reason: "index_stale", status: 503 });
    expect(decideNow({ ...o, ready: () => false }, {}, () => checkInput({})).decision.reason).toBe("not_ready");
    stale = false;
    expect(decideNow(o, {}, () => checkInput({})).decision.reason).toBe("no_policy");
  });
});

describe("--max-index-staleness", () => {
  it("is off by default and must exceed --watch-stale-after, so a quiet but healthy watch never trips it", () => {
    expect(loadConfig([], {}).config.maxIndexStaleness).toBe(0);
    expect(() => loadConfig(["--max-index-staleness=3m"], {})).toThrow(/--watch-stale-after/);
    expect(loadConfig(["--max-index-staleness=5m"], {}).config.maxIndexStaleness).toBe(300_000);
    expect(loadConfig(["--max-index-staleness=90s", "--watch-stale-after=60s"], {}).config.maxIndexStaleness).toBe(90_000);
  });
});
