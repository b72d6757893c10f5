import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import type { HttpLogEntry } from "../accesslog/proto.ts";
import type { CountryLookup } from "../analytics/geo.ts";
import { RecordingWriter } from "../analytics/fixtures.test-support.ts";
import type { KeyRecord } from "../analytics/row.ts";
import { keyRecordFrom, keyRecordOf } from "../analytics/rows.ts";
import { recordOf, ValuePool } from "../apikeys/record.ts";
import type { ApiKey } from "../api/types.ts";
import type { CheckEvent } from "../check/event.ts";
import { defaultConfig } from "../config/config.ts";
import { ManualClock } from "../k8s/clock.ts";
import { silentLogger } from "../log.ts";
import type { CpuPressure } from "../util/cpu-pressure.ts";
import { runDelay, SCHEDSTAT } from "../util/run-delay.ts";
import { rowFromAccessLog } from "./access-rows.ts";
import { KEY_RECORD_CHUNK, startIngest } from "./ingest.ts";

const geo: CountryLookup = { country: (a) => (a === "81.2.69.160" ? "GB" : a === "127.0.0.1" ? "private" : undefined) };
const RID = "6fc2013f-9593-411a-a900-34f5641d0a61";
const KEY = { namespace: "shop", name: "acme", uid: "uid-1", keyId: "kw_AbCdEfGh", owner: "acme-team" };
const meta = (more: Record<string, string> = {}) => ({
  filter_metadata: {
    "envoy.filters.http.ext_authz": {
      fields: {
        ...Object.fromEntries(Object.entries({ decision: "allowed", reason: "ok", key_id: "kw_AbCdEfGh", apikey: "shop/acme", uid: "uid-1", policy: "shop/api", rule: "write", route_pattern: "/v1/orders/*", ...more }).map(([k, v]) => [k, { stringValue: v }])),
        ext_authz_duration: { numberValue: 2 },
      },
    },
  },
});

/** An allowed request's entry as Envoy 1.40 sends it (fields as seen from a real Envoy, ADR 37). */
const allowed = (more: Partial<HttpLogEntry> = {}): HttpLogEntry => ({
  common_properties: {
    downstream_remote_address: { socket_address: { address: "81.2.69.160" } },
    start_time: { seconds: "1796126896", nanos: 908087000 },
    time_to_first_upstream_tx_byte: { nanos: 2559839 },
    time_to_last_upstream_rx_byte: { nanos: 3277665 },
    metadata: meta(),
  },
  request: { request_method: 3, authority: "api.example.com", path: "/v1/orders/7?api_key=kw_SECRETSECRETSECRET", request_id: RID, request_body_bytes: "10" },
  response: { response_code: { value: 201 }, response_body_bytes: "14" },
  ...more,
});

/** A request keyward denied: Envoy's own 429, flagged UAEX, with keyward's metadata. */
const uaex = (): HttpLogEntry => ({
  common_properties: {
    downstream_remote_address: { socket_address: { address: "127.0.0.1" } },
    start_time: { seconds: "1796126896", nanos: 912741000 },
    response_flags: { unauthorized_details: { reason: 1 } },
    metadata: meta({ decision: "limited", reason: "rate_limited" }),
  },
  request: { request_method: 3, authority: "api.example.com", path: "/v1/orders/7", request_id: "ab663977-0ca7-4e13-aeff-4029355607e1", request_body_bytes: "3" },
  response: { response_code: { value: 429 } },
});

const opts = { geo, uidOf: () => "uid-from-watch", now: () => 7 };

describe("rows from the access log", () => {
  it("makes an allowed request's row from its entry: the check's metadata and the upstream's answer", () => {
    expect(rowFromAccessLog(allowed(), opts)).toEqual({
      at: 1796126896908,
      requestId: RID,
      uid: "uid-1",
      keyId: "kw_AbCdEfGh",
      front: "grpc",
      policy: "shop/api",
      rule: "write",
      route: "POST /v1/orders/*",
      method: "POST",
      host: "api.example.com",
      path: "/v1/orders/7",
      outcome: "allowed",
      reason: "ok",
      status: 200,
      source: "81.2.69.160",
      network: "81.2.69.0/24",
      country: "GB",
      checkMicros: 2000,
      upstreamStatus: 201,
      upstreamMicros: 718,
      requestBytes: 10,
      responseBytes: 14,
    });
  });

  it("never makes a row of a request keyward denied (UAEX), or of one its decision says was not allowed", () => {
    expect(rowFromAccessLog(uaex(), opts)).toBeUndefined();
    const { response_flags: _f, ...noFlag } = uaex().common_properties ?? {};
    expect(rowFromAccessLog({ ...uaex(), common_properties: noFlag }, opts)).toBeUndefined();
  });

  it("makes no row without a key, without a usable request id, or when the request id may be the key", () => {
    expect(rowFromAccessLog({ ...allowed(), common_properties: { metadata: {} } }, opts)).toBeUndefined();
    expect(rowFromAccessLog(allowed({ request: { request_id: undefined } }), opts)).toBeUndefined();
    expect(rowFromAccessLog(allowed({ request: { request_id: "kw_SECRETSECRETSECRET" } }), opts)).toBeUndefined();
    const unusable = allowed();
    unusable.common_properties = { ...unusable.common_properties, metadata: meta({ request_id_unusable: "true" }) };
    expect(rowFromAccessLog(unusable, opts)).toBeUndefined();
  });

  it("finds the uid through the ApiKey watch when the metadata has none, and skips a key it does not know", () => {
    const old = allowed();
    const fields = { ...old.common_properties?.metadata?.filter_metadata?.["envoy.filters.http.ext_authz"]?.fields };
    delete fields.uid;
    old.common_properties = { ...old.common_properties, metadata: { filter_metadata: { "envoy.filters.http.ext_authz": { fields } } } };
    expect(rowFromAccessLog(old, opts)?.uid).toBe("uid-from-watch");
    expect(rowFromAccessLog(old, { ...opts, uidOf: () => undefined })).toBeUndefined();
  });

  it("never reads the key from the path's query string or a header", () => {
    expect(JSON.stringify(rowFromAccessLog(allowed(), opts))).not.toContain("SECRET");
  });
});

/** A writer that places the rows' countries itself, as the writer thread does. */
class PlacingWriter extends RecordingWriter {
  readonly placesGeography = true;
}

async function ingestWith(accessLog: boolean, writer = new RecordingWriter(), cpu?: CpuPressure, shed = true, runQueue?: { thread: FakeThread; clock: ManualClock; threshold: number }) {
  const registry = new Registry();
  const deferred: (() => void)[] = [];
  const ingest = await startIngest({
    writer,
    // The run queue only where a test gives it a thread: this test's own thread is no signal.
    config: defaultConfig({ accessLogAddress: accessLog ? "127.0.0.1:0" : "", analyticsShedWhenThrottled: shed, analyticsShedRunDelay: runQueue?.threshold ?? 0 }),
    ...(cpu ? { cpu } : {}),
    ...(runQueue ? { runQueue: runQueue.thread.pressure } : {}),
    clock: runQueue?.clock ?? new ManualClock(),
    log: silentLogger,
    registry,
    uidOf: () => undefined,
    openGeo: () => Promise.resolve(geo),
    defer: (fn) => deferred.push(fn),
  });
  return { writer, registry, ingest, deferred };
}

/** A thread whose wait for a CPU a test sets, read as its schedstat on the test's clock. */
class FakeThread {
  waitedMs = 0;
  thresholds: number[] = [];
  private readonly clock: ManualClock;
  constructor(clock: ManualClock) {
    this.clock = clock;
  }
  /** `ms` of wall time, `waiting` of it runnable but not running. */
  run(ms: number, waiting: number): void {
    this.waitedMs += ms * waiting;
  }
  readonly pressure = (threshold: number): CpuPressure => {
    this.thresholds.push(threshold);
    const read = (path: string): string | undefined => (path === SCHEDSTAT ? `1000 ${Math.round(this.waitedMs * 1e6)} 1\n` : undefined);
    return runDelay(threshold, { read, nowMs: () => this.clock.now(), intervalMs: 100, throttledNs: () => undefined });
  };
}

const check = (more: Partial<CheckEvent> = {}): CheckEvent => ({
  at: 1,
  key: KEY,
  outcome: "allowed",
  reason: "ok",
  status: 200,
  front: "grpc",
  source: "81.2.69.160",
  latencySeconds: 0.0001,
  requestId: RID,
  ...more,
});
const denied = check({ outcome: "limited", reason: "rate_limited", status: 429, requestId: "ab663977-0ca7-4e13-aeff-4029355607e1" });

describe("ingest", () => {
  it("while keyward's CPU limit is hit, counts a turn's checks and access log entries as made and dropped without making them; after, makes them again", async () => {
    let throttled = true;
    const { writer, ingest, registry, deferred } = await ingestWith(false, new RecordingWriter(), { intervalMs: 100, short: () => (throttled ? "throttled" : undefined) });
    ingest.check(check());
    ingest.check(denied);
    ingest.accessLogEntry(allowed());
    // keyward's own denial makes no row from the access log, so nothing is counted for it.
    ingest.accessLogEntry(uaex());
    for (const fn of deferred.splice(0)) fn();
    await ingest.flush();
    expect(writer.rows).toEqual([]);
    let text = await registry.metrics();
    expect(text).toContain('keyward_analytics_rows_total{from="check"} 2');
    expect(text).toContain('keyward_analytics_rows_total{from="access_log"} 1');
    expect(text).toContain("keyward_analytics_rows_dropped_total 3");
    throttled = false;
    ingest.check(check());
    for (const fn of deferred.splice(0)) fn();
    await ingest.flush();
    expect(writer.rows.map((r) => r.requestId)).toEqual([RID]);
    text = await registry.metrics();
    expect(text).toContain('keyward_analytics_rows_total{from="check"} 3');
    expect(text).toContain("keyward_analytics_rows_dropped_total 3");
  });

  it("while its thread waits for a CPU at two readings in a row (no CPU limit, a full node), sheds a turn's checks until two readings in a row without; after, makes them again", async () => {
    const clock = new ManualClock();
    const thread = new FakeThread(clock);
    const { writer, ingest, registry, deferred } = await ingestWith(false, new RecordingWriter(), undefined, false, { thread, clock, threshold: 0.25 });
    expect(thread.thresholds).toEqual([0.25]);
    const turn = async (waiting: number): Promise<void> => {
      thread.run(100, waiting);
      await clock.advance(100);
      ingest.check(check());
      for (const fn of deferred.splice(0)) fn();
    };
    await turn(0.5);
    // One interval alone is a burst: its row is made.
    await turn(0.5);
    expect(await registry.metrics()).toContain("keyward_analytics_rows_dropped_total 0");
    await turn(0.3);
    await turn(0.4);
    // One interval without is a gap: still shed. Two end it.
    await turn(0.1);
    await turn(0.1);
    await ingest.flush();
    const text = await registry.metrics();
    expect(text).toContain('keyward_analytics_rows_total{from="check"} 6');
    expect(text).toContain("keyward_analytics_rows_dropped_total 3");
    expect(writer.rows).toHaveLength(3);
  });

  it("with --analytics-shed-run-delay=0 never reads the run queue", async () => {
    const clock = new ManualClock();
    const thread = new FakeThread(clock);
    const { writer, ingest, deferred } = await ingestWith(false, new RecordingWriter(), undefined, false, { thread, clock, threshold: 0 });
    for (let i = 0; i < 3; i++) {
      thread.run(100, 1);
      await clock.advance(100);
      ingest.check(check());
      for (const fn of deferred.splice(0)) fn();
    }
    await ingest.flush();
    expect(writer.rows).toHaveLength(3);
    expect(thread.thresholds).toEqual([]);
  });

  it("with --analytics-shed-when-throttled=false makes and writes every row however the CPU is throttled", async () => {
    const { writer, ingest, deferred } = await ingestWith(false, new RecordingWriter(), { intervalMs: 100, short: () => "throttled" }, false);
    ingest.check(check());
    for (const fn of deferred.splice(0)) fn();
    await ingest.flush();
    expect(writer.rows).toHaveLength(1);
  });

  it("with the access log on, each request is one row: allowed from its entry, denied from its check", async () => {
    const { writer, ingest, registry } = await ingestWith(true);
    // Both halves of both requests, in either order, as if spread over replicas.
    ingest.accessLogEntry(uaex());
    ingest.check(check());
    ingest.check(denied);
    ingest.accessLogEntry(allowed());
    ingest.check(check({ key: undefined, outcome: "unauthenticated", reason: "unknown_key", status: 401 }));
    await ingest.flush();
    expect(writer.rows.map((r) => [r.requestId, r.status, r.upstreamStatus])).toEqual([
      [RID, 200, 201],
      ["ab663977-0ca7-4e13-aeff-4029355607e1", 429, undefined],
    ]);
    const text = await registry.metrics();
    expect(text).toContain('keyward_analytics_rows_total{from="check"} 1');
    expect(text).toContain('keyward_analytics_rows_total{from="access_log"} 1');
    expect(text).toContain("keyward_analytics_rows_written_total 2");
    expect(text).toContain("keyward_analytics_rows_dropped_total 0");
  });

  it("with the access log off, the decision alone is the row", async () => {
    const { writer, ingest } = await ingestWith(false);
    ingest.check(check());
    ingest.check(denied);
    await ingest.flush();
    expect(writer.rows.map((r) => [r.status, r.upstreamStatus])).toEqual([
      [200, undefined],
      [429, undefined],
    ]);
  });

  it("leaves the network and country to a writer that places them, and never opens the country database then", async () => {
    const opened: (string | undefined)[] = [];
    const writer = new PlacingWriter();
    const ingest = await startIngest({ writer, config: defaultConfig({ accessLogAddress: "127.0.0.1:0" }), clock: new ManualClock(), log: silentLogger, registry: new Registry(), uidOf: () => undefined, openGeo: (f) => { opened.push(f); return Promise.resolve(geo); } });
    ingest.check(denied);
    ingest.accessLogEntry(allowed());
    await ingest.flush();
    expect(opened).toEqual([]);
    // The access log's row (queued at once) is made as before; the check's (after the turn) carries its source only.
    expect(writer.rows.map((r) => [r.source, r.network, r.country])).toEqual([
      ["81.2.69.160", "81.2.69.0/24", undefined],
      ["81.2.69.160", undefined, undefined],
    ]);
    // Any other writer is given rows with their country.
    const { writer: plain, ingest: other } = await ingestWith(false);
    other.check(denied);
    await other.flush();
    expect(plain.rows[0]?.country).toBe("GB");
  });

  it("makes rows after the turn that answered the check", async () => {
    const { writer, ingest, deferred, registry } = await ingestWith(false);
    ingest.check(check());
    ingest.check(check());
    expect(deferred).toHaveLength(1);
    expect(await registry.metrics()).not.toContain('keyward_analytics_rows_total{from="check"}');
    deferred[0]?.();
    expect(await registry.metrics()).toContain('keyward_analytics_rows_total{from="check"} 2');
    await ingest.flush();
    expect(writer.rows).toHaveLength(2);
  });

  it("writes every listed key's record after the list, a chunk at a time, each chunk written before the next is made; reads each key as it is then", async () => {
    const calls: number[] = [];
    class ChunkWriter extends RecordingWriter {
      override async upsertKeys(keys: readonly KeyRecord[]): Promise<void> {
        calls.push(keys.length);
        await super.upsertKeys(keys);
      }
    }
    const { writer, ingest } = await ingestWith(false, new ChunkWriter());
    const n = 2 * KEY_RECORD_CHUNK + 5;
    const listed = Array.from({ length: n }, (_, i): ApiKey => ({ apiVersion: "keyward.dev/v1alpha1", kind: "ApiKey", metadata: { namespace: "shop", name: `k${i}`, uid: `uid-${i}`, labels: { team: "a" } }, spec: { owner: "o" } }));
    // k1 changed since it was listed, k2 is gone: each is read as it is when its chunk is made.
    const now = new Map(listed.map((ak) => [ak.metadata.name, ak]));
    now.set("k1", { ...listed[1]!, metadata: { ...listed[1]!.metadata, labels: { team: "b" } } });
    now.delete("k2");
    await ingest.recordKeys(listed.map((ak) => ak.metadata), (r) => { const ak = now.get(r.name); return ak && keyRecordOf(ak); });
    expect(calls).toEqual([KEY_RECORD_CHUNK - 1, KEY_RECORD_CHUNK, 5]);
    expect(writer.keys).toHaveLength(n - 1);
    expect(writer.keys.find((k) => k.name === "k1")?.labels).toEqual({ team: "b" });
    // A change after the list is written as it comes.
    ingest.keyChange("update", { ...listed[0]!, spec: { owner: "p" } }, listed[0]);
    await ingest.flush();
    expect(writer.keys.at(-1)).toMatchObject({ name: "k0", owner: "p" });
  });

  it("tells the writer how many key records come before the first (beforeKeyRecords), and once every one is written lets it shed what they grew (afterKeyRecords); not after a stop", async () => {
    const events: string[] = [];
    class SheddingWriter extends RecordingWriter {
      override async upsertKeys(keys: readonly KeyRecord[]): Promise<void> {
        events.push(`keys ${keys.length}`);
        await super.upsertKeys(keys);
      }
      beforeKeyRecords(count: number): Promise<void> {
        events.push(`before ${count}`);
        return Promise.resolve();
      }
      afterKeyRecords(count: number): Promise<void> {
        events.push(`shed ${count}`);
        return Promise.resolve();
      }
    }
    const listed = Array.from({ length: KEY_RECORD_CHUNK + 1 }, (_, i) => ({ namespace: "shop", name: `k${i}` }));
    const current = (r: { namespace: string; name: string }): KeyRecord | undefined => keyRecordOf({ apiVersion: "keyward.dev/v1alpha1", kind: "ApiKey", metadata: { ...r, uid: r.name }, spec: { owner: "o" } });
    const { ingest } = await ingestWith(false, new SheddingWriter());
    await ingest.recordKeys(listed, current);
    expect(events).toEqual([`before ${listed.length}`, `keys ${KEY_RECORD_CHUNK}`, "keys 1", `shed ${listed.length}`]);
    // A writer that cannot prepare for them or shed them is logged, and the records are written.
    class FailingWriter extends SheddingWriter {
      override beforeKeyRecords(): Promise<void> {
        return Promise.reject(new Error("the page cache could not be set"));
      }
      override afterKeyRecords(): Promise<void> {
        return Promise.reject(new Error("the old thread would not close"));
      }
    }
    const failing = await ingestWith(false, new FailingWriter());
    await expect(failing.ingest.recordKeys(listed, current)).resolves.toBeUndefined();
    expect(failing.writer.keys).toHaveLength(listed.length);
    events.length = 0;
    const stopped = await ingestWith(false, new SheddingWriter());
    const recording = stopped.ingest.recordKeys(listed, current);
    await stopped.ingest.stop();
    await recording;
    expect(events.filter((e) => e.startsWith("shed"))).toEqual([]);
  });

  it("makes a key record from the cache's compact record equal to the one made from the whole ApiKey, sharing the record's frozen labels and scopes", () => {
    const base: ApiKey = { apiVersion: "keyward.dev/v1alpha1", kind: "ApiKey", metadata: { namespace: "shop", name: "acme", uid: "uid-1", creationTimestamp: "2026-11-30T10:00:00Z" as unknown as Date }, spec: { owner: "acme-team" } };
    const variants: ApiKey[] = [
      base,
      { ...base, metadata: { ...base.metadata, labels: { team: "a", tier: "gold" } }, spec: { ...base.spec, scopes: ["orders:read", "orders:write"], expiresAt: "2027-01-01T00:00:00Z" } },
      { ...base, metadata: { ...base.metadata, creationTimestamp: new Date("2026-11-30T10:00:00.250Z") } },
      { ...base, metadata: { ...base.metadata, creationTimestamp: undefined }, spec: { ...base.spec, expiresAt: "not a time" } },
      { ...base, metadata: { ...base.metadata, uid: undefined } },
    ];
    const pool = new ValuePool();
    for (const ak of variants) {
      const cached = recordOf(ak, pool);
      expect(keyRecordFrom(cached)).toEqual(keyRecordOf(ak));
    }
    const cached = recordOf(variants[1]!, pool);
    const k = keyRecordFrom(cached)!;
    expect(k.labels).toBe(cached.labels);
    expect(k.scopes).toBe(cached.scopes);
  });

  it("queues a chunk of the start's key records the store refused, made again as the keys are then, and writes it with the queue", async () => {
    let refuse = true;
    const owner = new Map<string, string>();
    class RefusingOnce extends RecordingWriter {
      override upsertKeys(keys: readonly KeyRecord[]): Promise<void> {
        if (refuse) {
          refuse = false;
          // k0 changes while its chunk's write is in flight.
          owner.set("k0", "p");
          return Promise.reject(new Error("store down"));
        }
        return super.upsertKeys(keys);
      }
    }
    const { writer, ingest } = await ingestWith(false, new RefusingOnce());
    const listed = Array.from({ length: KEY_RECORD_CHUNK + 2 }, (_, i) => ({ namespace: "shop", name: `k${i}` }));
    const current = (r: { namespace: string; name: string }): KeyRecord | undefined => keyRecordOf({ apiVersion: "keyward.dev/v1alpha1", kind: "ApiKey", metadata: { ...r, uid: r.name }, spec: { owner: owner.get(r.name) ?? "o" } });
    await ingest.recordKeys(listed, current);
    await ingest.flush();
    expect(new Set(writer.keys.map((k) => k.name)).size).toBe(listed.length);
    expect(writer.keys.find((k) => k.name === "k0")?.owner).toBe("p");
  });

  it("stops making key records at stop", async () => {
    const { writer, ingest } = await ingestWith(false);
    const listed = Array.from({ length: 3 * KEY_RECORD_CHUNK }, (_, i) => ({ namespace: "shop", name: `k${i}` }));
    const recorded = ingest.recordKeys(listed, (r) => keyRecordOf({ apiVersion: "keyward.dev/v1alpha1", kind: "ApiKey", metadata: { ...r, uid: r.name }, spec: { owner: "o" } }));
    await ingest.stop();
    await recorded;
    expect(writer.keys.length).toBeLessThan(listed.length);
  });

  it("writes a key record when the ApiKey changes what the store keeps, and once more when it is deleted", async () => {
    const { writer, ingest } = await ingestWith(false);
    const ak: ApiKey = { apiVersion: "keyward.dev/v1alpha1", kind: "ApiKey", metadata: { namespace: "shop", name: "acme", uid: "uid-1", labels: { team: "a" } }, spec: { owner: "acme-team" } };
    ingest.keyChange("add", ak);
    await ingest.flush();
    // A status write (every usage flush) changes nothing the store keeps.
    ingest.keyChange("update", { ...ak, status: { usage: { requests24h: 5 } } }, ak);
    await ingest.flush();
    const b: ApiKey = { ...ak, metadata: { ...ak.metadata, labels: { team: "b" } } };
    ingest.keyChange("update", b, ak);
    ingest.keyChange("update", { ...ak, metadata: { ...ak.metadata, labels: { team: "c" } } }, b);
    await ingest.flush();
    ingest.keyChange("delete", ak);
    await ingest.flush();
    expect(writer.keys.map((k) => [k.labels.team, k.deletedAt])).toEqual([
      ["a", undefined],
      ["c", undefined],
      ["a", Date.UTC(2026, 0, 1)],
    ]);
  });
});
