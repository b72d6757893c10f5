import { describe, expect, it } from "vitest";
import type { ApiKey } from "../api/types.ts";
import { ManualClock } from "../k8s/clock.ts";
import { KubeApiError } from "../k8s/rest.ts";
import { silentLogger } from "../log.ts";
import { checkEvent as check } from "./fixtures.test-support.ts";
import { UsageFlusher, type ApiKeyStore } from "./flusher.ts";
import { recordOf, type ApiKeyRecord } from "../apikeys/record.ts";

const T0 = Date.UTC(2026, 10, 23, 10, 15);

/** An apiserver of one ApiKey: merge-patches status.usage, checks resourceVersion. */
class FakeApi implements ApiKeyStore {
  ak: ApiKey = {
    apiVersion: "keyward.dev/v1alpha1",
    kind: "ApiKey",
    metadata: { name: "acme", namespace: "shop", uid: "u1", resourceVersion: "1" },
    spec: { owner: "acme" },
    status: { keys: [{ id: "kw_AAAAAAAA", hash: `sha256:${"a".repeat(64)}`, state: "active" }] },
  };
  /** The watch cache: lags behind until `sync`. */
  cached: ApiKey = structuredClone(this.ak);
  /** Whether the watch's first list is in. */
  synced = true;
  patches: unknown[] = [];
  failNext: KubeApiError | undefined;

  /** How often the flusher read the watch cache's record: once for each key a flush looks at. */
  gets = 0;

  get(ns: string, name: string): ApiKeyRecord | undefined {
    this.gets++;
    return ns === "shop" && name === "acme" ? recordOf(this.cached) : undefined;
  }
  list(): ApiKeyRecord[] {
    return [recordOf(this.cached)];
  }
  sync(): void {
    this.cached = structuredClone(this.ak);
  }
  /** Someone else (the operator, another replica) writes. */
  bump(): void {
    this.ak.metadata.resourceVersion = String(Number(this.ak.metadata.resourceVersion) + 1);
  }
  request = <T,>(method: string, path: string, opts: { body?: unknown } = {}): Promise<T> => {
    expect(path.startsWith("/apis/keyward.dev/v1alpha1/namespaces/shop/apikeys/acme")).toBe(true);
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = undefined;
      return Promise.reject(e);
    }
    if (method === "GET") return Promise.resolve(structuredClone(this.ak) as T);
    expect(method).toBe("PATCH");
    expect(path.endsWith("/status")).toBe(true);
    const body = opts.body as { metadata: { resourceVersion: string }; status: { usage: Record<string, unknown> } };
    expect(Object.keys(body.status)).toEqual(["usage"]);
    if (body.metadata.resourceVersion !== this.ak.metadata.resourceVersion) return Promise.reject(new KubeApiError(409, "Conflict", "the object has been modified"));
    this.patches.push(body);
    const usage = new Map<string, unknown>(Object.entries(this.ak.status?.usage ?? {}));
    for (const [k, v] of Object.entries(body.status.usage)) {
      if (v === null) usage.delete(k);
      else usage.set(k, v);
    }
    this.ak.status = { ...this.ak.status, usage: Object.fromEntries(usage) };
    this.bump();
    return Promise.resolve(structuredClone(this.ak) as T);
  };
}

const setup = () => {
  const clock = new ManualClock(T0);
  const api = new FakeApi();
  const results: string[] = [];
  const flusher = new UsageFlusher({ rest: api, store: api, clock, intervalMs: 30_000, topRoutes: 10, log: silentLogger, onResult: (r) => results.push(r) });
  return { clock, api, flusher, results };
};

describe("usage flusher", () => {
  it("writes once per interval, only usage, only when it changed", async () => {
    const { clock, api, flusher } = setup();
    flusher.start();
    for (let i = 0; i < 100; i++) flusher.recordCheck(check(clock.now() + i));
    await clock.advance(29_999);
    expect(api.patches).toHaveLength(0);
    await clock.advance(1);
    expect(api.patches).toHaveLength(1);
    expect(api.ak.status?.usage?.requests24h).toBe(100);
    expect(api.ak.status?.keys).toHaveLength(1); // the rest of status untouched
    api.sync();
    await clock.advance(30_000); // nothing new, no window rolled over
    expect(api.patches).toHaveLength(1);
    flusher.recordCheck(check(clock.now()));
    await clock.advance(30_000);
    expect(api.patches).toHaveLength(2);
    expect(api.ak.status?.usage?.daily).toEqual([{ date: "2026-11-23", allowed: 101 }]);
    await flusher.stop();
  });

  it("writes nothing before the ApiKey watch has listed, and keeps what is pending until it has", async () => {
    const { clock, api, flusher, results } = setup();
    api.synced = false;
    flusher.recordCheck(check(clock.now()));
    expect(await flusher.flush()).toEqual({ written: 0, failed: 0 });
    expect(api.patches).toHaveLength(0);
    expect(results).toEqual([]);
    api.synced = true;
    expect(await flusher.flush()).toEqual({ written: 1, failed: 0 });
    expect(api.ak.status?.usage?.requests24h).toBe(1);
  });

  it("re-reads on a conflict and adds to what is stored, never counting twice", async () => {
    const { clock, api, flusher, results } = setup();
    flusher.recordCheck(check(clock.now()));
    await flusher.flush();
    // The cache has not seen that write; the operator writes meanwhile too.
    api.bump();
    flusher.recordCheck(check(clock.now()));
    await flusher.flush();
    expect(results).toEqual(["written", "written"]);
    expect(api.ak.status?.usage?.daily).toEqual([{ date: "2026-11-23", allowed: 2 }]);
  });

  it("keeps the delta when the apiserver fails and writes it next time", async () => {
    const { clock, api, flusher, results } = setup();
    flusher.recordCheck(check(clock.now()));
    api.failNext = new KubeApiError(0, "", "connection refused");
    await flusher.flush();
    expect(results).toEqual(["error"]);
    expect(flusher.pendingKeys).toBe(1);
    flusher.recordCheck(check(clock.now()));
    await flusher.flush();
    expect(api.ak.status?.usage?.daily).toEqual([{ date: "2026-11-23", allowed: 2 }]);
    expect(flusher.pendingKeys).toBe(0);
  });

  it("drops the delta of a deleted ApiKey", async () => {
    const { clock, api, flusher, results } = setup();
    flusher.recordCheck(check(clock.now()));
    api.failNext = new KubeApiError(404, "NotFound", "gone");
    await flusher.flush();
    expect(results).toEqual(["gone"]);
    expect(flusher.pendingKeys).toBe(0);
  });

  it("decays an idle key's 24 h count when hours roll out, then stops writing", async () => {
    const { clock, api, flusher } = setup();
    flusher.recordCheck(check(clock.now()));
    await flusher.flush();
    api.sync();
    await clock.advance(23 * 3_600_000);
    await flusher.flush();
    expect(api.patches).toHaveLength(1);
    await clock.advance(3_600_000);
    await flusher.flush();
    expect(api.patches).toHaveLength(2);
    expect(api.ak.status?.usage?.requests24h).toBe(0);
    expect(api.ak.status?.usage?.hourly).toBeUndefined();
    api.sync();
    await flusher.flush();
    expect(api.patches).toHaveLength(2);
  });

  it("looks at keys without traffic in the first flush of each hour, and in between only at those whose record changed", async () => {
    const { clock, api, flusher } = setup();
    flusher.recordCheck(check(clock.now()));
    await flusher.flush();
    api.sync();
    const looked = api.gets;
    await clock.advance(30_000);
    await flusher.flush();
    await flusher.flush();
    expect(api.gets).toBe(looked);
    flusher.keyChanged("shop", "acme");
    await flusher.flush();
    expect(api.gets).toBe(looked + 1);
    // 10:15 + 45 min: the next hour's first flush looks at every key with stored usage.
    await clock.advance(45 * 60_000);
    await flusher.flush();
    expect(api.gets).toBe(looked + 2);
    await flusher.flush();
    expect(api.gets).toBe(looked + 2);
    expect(api.patches).toHaveLength(1);
  });

  it("drops a key version gone from the ApiKey from its usage at the next flush after the change, within the hour", async () => {
    const { clock, api, flusher } = setup();
    flusher.recordCheck(check(clock.now()));
    await flusher.flush();
    expect(api.ak.status?.usage?.keys?.map((k) => k.id)).toEqual(["kw_AAAAAAAA"]);
    api.ak.status = { ...api.ak.status, keys: [{ id: "kw_BBBBBBBB", hash: `sha256:${"b".repeat(64)}`, state: "active" }] };
    api.bump();
    api.sync();
    flusher.keyChanged("shop", "acme");
    await clock.advance(30_000);
    await flusher.flush();
    expect(api.patches).toHaveLength(2);
    expect(api.ak.status.usage?.keys).toBeUndefined();
  });

  it("tries a key without traffic again at the next flush when its write failed, within the hour", async () => {
    const { clock, api, flusher } = setup();
    flusher.recordCheck(check(clock.now()));
    await flusher.flush();
    api.sync();
    // 10:15 + 23 h 45 min: the check's hour leaves the 24 h window; the decayed usage's write fails.
    await clock.advance(23 * 3_600_000 + 45 * 60_000);
    api.failNext = new KubeApiError(500, "InternalError", "etcd is away");
    await flusher.flush();
    expect(api.patches).toHaveLength(1);
    await clock.advance(30_000);
    await flusher.flush();
    expect(api.patches).toHaveLength(2);
    expect(api.ak.status?.usage?.requests24h).toBe(0);
  });
});
