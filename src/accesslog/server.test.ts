import { credentials, loadPackageDefinition, type ChannelCredentials, type ClientWritableStream, type GrpcObject, type ServiceClientConstructor } from "@grpc/grpc-js";
import { readFile } from "node:fs/promises";
import { connect } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { certDir, type CertDir, type Pair, type TestCa } from "../../test/support/certs.ts";
import { silentLogger } from "../log.ts";
import { TlsSource } from "../tls/source.ts";
import { proofOf } from "./proof.ts";
import { loadAccessLogProtos, type StreamAccessLogsMessage } from "./proto.ts";
import { startAccessLogServer, type AccessLogDrop, type AccessLogServer, type AccessLogServerOptions } from "./server.ts";

interface TestClient {
  stream(done: (err: (Error & { code?: number }) | null) => void): ClientWritableStream<StreamAccessLogsMessage>;
  close(): void;
}

function client(port: number, creds: ChannelCredentials = credentials.createInsecure()): TestClient {
  const pkg = loadPackageDefinition(loadAccessLogProtos());
  const v3 = (((pkg.envoy as GrpcObject).service as GrpcObject).accesslog as GrpcObject).v3 as GrpcObject;
  const Ctor = v3.AccessLogService as ServiceClientConstructor;
  const c = new Ctor(`127.0.0.1:${port}`, creds, { "grpc.ssl_target_name_override": "localhost", "grpc.max_send_message_length": -1 }) as unknown as {
    StreamAccessLogs(cb: (err: Error | null) => void): ClientWritableStream<StreamAccessLogsMessage>;
    close(): void;
  };
  return { stream: (done) => c.StreamAccessLogs(done), close: () => { c.close(); } };
}

/** Writes `messages` on one stream and ends it; resolves with the stream's error, if any. */
function send(c: TestClient, messages: StreamAccessLogsMessage[]): Promise<(Error & { code?: number }) | null> {
  return new Promise((resolve) => {
    const s = c.stream((err) => {
      resolve(err);
    });
    for (const m of messages) s.write(m);
    s.end();
  });
}

const authzMeta = (keyId: string) => ({
  filter_metadata: { "envoy.filters.http.ext_authz": { fields: { key_id: { stringValue: keyId }, apikey: { stringValue: "shop/acme" } } } },
});

const entry = (keyId: string, code = 200, startMs?: number) => ({
  common_properties: { metadata: authzMeta(keyId), ...(startMs !== undefined ? { start_time: { seconds: String(Math.floor(startMs / 1000)), nanos: 0 } } : {}) },
  response: { response_code: { value: code } },
});

/** A server recording what it delivered and what it dropped. */
async function recording(extra: Partial<AccessLogServerOptions> = {}) {
  const got: string[] = [];
  const drops: Partial<Record<AccessLogDrop, number>> = {};
  const server = await startAccessLogServer({
    address: "127.0.0.1:0",
    log: silentLogger,
    onUpstream: (_apikey, keyId, e) => got.push(`${keyId} ${e.responseCode}`),
    onDrop: (reason, n) => {
      drops[reason] = (drops[reason] ?? 0) + n;
    },
    ...extra,
  });
  return { server, got, drops };
}

describe("access log service", () => {
  let server: AccessLogServer | undefined;
  afterEach(async () => {
    await server?.stop();
    server = undefined;
  });

  it("receives a stream of HTTP entries and hands over those joined to a key", async () => {
    const got: { apikey: string; keyId: string; code: number }[] = [];
    const results: string[] = [];
    server = await startAccessLogServer({
      address: "127.0.0.1:0",
      log: silentLogger,
      onUpstream: (apikey, keyId, e) => got.push({ apikey, keyId, code: e.responseCode }),
      onEntry: (r) => results.push(r),
    });
    const c = client(server.port);
    const err = await send(c, [
      { identifier: { node: { id: "envoy-1" }, log_name: "keyward" }, http_logs: { log_entry: [{ common_properties: { metadata: authzMeta("kw_A") }, response: { response_code: { value: 200 } } }] } },
      {
        http_logs: {
          log_entry: [
            { common_properties: { metadata: authzMeta("kw_A") }, response: { response_code: { value: 502 } } },
            { common_properties: {}, response: { response_code: { value: 401 } } },
            // Envoy's own 429 for a request keyward denied (UAEX): not an upstream answer.
            { common_properties: { metadata: authzMeta("kw_A"), response_flags: { unauthorized_details: { reason: 1 } } }, response: { response_code: { value: 429 } } },
            // Other flags set, the request went upstream.
            { common_properties: { metadata: authzMeta("kw_A"), response_flags: { upstream_request_timeout: true } }, response: { response_code: { value: 504 } } },
          ],
        },
      },
    ]);
    c.close();
    expect(err).toBeNull();
    expect(got).toEqual([
      { apikey: "shop/acme", keyId: "kw_A", code: 200 },
      { apikey: "shop/acme", keyId: "kw_A", code: 502 },
      { apikey: "shop/acme", keyId: "kw_A", code: 504 },
    ]);
    expect(results).toEqual(["joined", "joined", "unattributed", "denied", "joined"]);
  });

  describe("limits", () => {
    it("ends a stream whose message is over the size limit, and counts it", async () => {
      const r = await recording({ limits: { maxMessageBytes: 2048 } });
      server = r.server;
      const c = client(server.port);
      const big = { ...entry("kw_A"), request: { path: `/${"a".repeat(4096)}` } };
      const err = await send(c, [{ http_logs: { log_entry: [big] } }]);
      c.close();
      expect(err?.code).toBe(8); // RESOURCE_EXHAUSTED
      expect(r.got).toEqual([]);
      expect(r.drops.message_size).toBe(1);
    });

    it("reads at most the per-message limit of entries and counts the rest", async () => {
      const r = await recording({ limits: { maxEntriesPerMessage: 3 } });
      server = r.server;
      const c = client(server.port);
      await send(c, [{ http_logs: { log_entry: Array.from({ length: 10 }, (_, i) => entry(`kw_${i}`)) } }]);
      c.close();
      expect(r.got).toEqual(["kw_0 200", "kw_1 200", "kw_2 200"]);
      expect(r.drops.entries).toBe(7);
    });

    it("refuses streams over the per-connection limit (a flood of streams) and counts them", async () => {
      const r = await recording({ limits: { maxStreamsPerConnection: 2 } });
      server = r.server;
      const c = client(server.port);
      // Five streams held open on one connection: two are served, three refused.
      const ends: Promise<(Error & { code?: number }) | null>[] = [];
      const open: ClientWritableStream<StreamAccessLogsMessage>[] = [];
      for (let i = 0; i < 5; i++) {
        ends.push(
          new Promise((resolve) => {
            open.push(c.stream(resolve));
          }),
        );
        open.at(-1)?.write({ http_logs: { log_entry: [entry(`kw_${i}`)] } });
      }
      const refused = await Promise.all(ends.slice(2));
      for (const s of open) s.end();
      const served = await Promise.all(ends.slice(0, 2));
      c.close();
      expect(refused.map((e) => e?.code)).toEqual([8, 8, 8]);
      expect(served).toEqual([null, null]);
      expect(r.got.sort()).toEqual(["kw_0 200", "kw_1 200"]);
      expect(r.drops.streams).toBe(3);
    });

    it("closes connections over the limit (a flood of connections) and counts them", async () => {
      const r = await recording({ limits: { maxConnections: 2 } });
      server = r.server;
      const port = server.port;
      const sockets = Array.from({ length: 5 }, () => connect(port, "127.0.0.1"));
      let closed = 0;
      for (const s of sockets) {
        s.on("error", () => undefined);
        s.once("close", () => {
          closed++;
        });
      }
      // The three over the limit are closed as soon as they are accepted, however loaded the machine.
      const deadline = Date.now() + 4000;
      while (closed < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(closed).toBe(3);
      // And no more: the two within the limit stay open (a window of a few turns of the server's loop).
      await new Promise((resolve) => setTimeout(resolve, 200));
      for (const s of sockets) s.destroy();
      expect(closed).toBe(3);
      expect(r.drops.connections).toBe(3);
    });

    it("drops entries whose request ended too long ago or in the future, and counts them", async () => {
      const now = 1_800_000_000_000;
      const r = await recording({ now: () => now, limits: { maxEntryAgeMs: 3_600_000 } });
      server = r.server;
      const c = client(server.port);
      await send(c, [{ http_logs: { log_entry: [entry("kw_old", 200, now - 2 * 3_600_000), entry("kw_now", 200, now - 1000), entry("kw_ahead", 200, now + 600_000)] } }]);
      c.close();
      expect(r.got).toEqual(["kw_now 200"]);
      expect(r.drops.age).toBe(2);
    });
  });

  describe("proofs (--access-log-proof-key-file)", () => {
    const key = Buffer.from("k".repeat(32));
    const now = 1_800_000_000_000;
    const proven = (keyId: string, requestId: string, proof: string | undefined, code = 200) => ({
      common_properties: {
        metadata: {
          filter_metadata: {
            "envoy.filters.http.ext_authz": {
              fields: { key_id: { stringValue: keyId }, apikey: { stringValue: "shop/acme" }, uid: { stringValue: "uid-1" }, ...(proof !== undefined ? { proof: { stringValue: proof } } : {}) },
            },
          },
        },
      },
      request: { request_id: requestId },
      response: { response_code: { value: code } },
    });

    it("counts an upstream answer only for a request keyward checked, and drops forged ones", async () => {
      const rows: string[] = [];
      const r = await recording({ now: () => now, proofKeys: [key], onHttpEntry: (e) => rows.push(e.request?.request_id ?? "") });
      server = r.server;
      const c = client(server.port);
      const real = proofOf(key, { requestId: "req-1", keyId: "kw_A", uid: "uid-1" }, now - 1000);
      await send(c, [
        {
          http_logs: {
            log_entry: [
              proven("kw_A", "req-1", real),
              // A request keyward never checked: no proof, one made up, or a real one moved to another request or key.
              proven("kw_A", "req-forged", undefined, 500),
              proven("kw_A", "req-forged", `${now / 1000}.${"A".repeat(22)}`, 500),
              proven("kw_A", "req-2", real, 500),
              proven("kw_B", "req-1", real, 500),
              proven("kw_A", "req-old", proofOf(key, { requestId: "req-old", keyId: "kw_A", uid: "uid-1" }, now - 2 * 3_600_000), 500),
            ],
          },
        },
      ]);
      c.close();
      expect(r.got).toEqual(["kw_A 200"]);
      expect(rows).toEqual(["req-1"]);
      expect(r.drops.unproven).toBe(5);
    });
  });

  describe("mTLS", () => {
    let certs: CertDir;
    let ca: TestCa;
    let other: TestCa;
    let tls: TlsSource;
    let envoyCert: Pair;
    const spiffe = "spiffe://cluster.local/ns/ingress/sa/envoy";

    beforeAll(async () => {
      certs = await certDir();
      ca = await certs.ca("als-ca");
      other = await certs.ca("other-ca");
      const serverPair = await ca.server("keyward-als");
      envoyCert = await ca.client("envoy", `URI:${spiffe}`);
      tls = await TlsSource.open({ certFile: serverPair.cert, keyFile: serverPair.key, clientCaFile: ca.cert, requireClientCert: true, reloadIntervalMs: 0 });
    });
    afterAll(async () => {
      tls.close();
      await certs.remove();
    });

    const creds = async (client?: Pair): Promise<ChannelCredentials> =>
      credentials.createSsl(await readFile(ca.cert), client ? await readFile(client.key) : null, client ? await readFile(client.cert) : null);

    it("serves a sender whose certificate the client CA verifies and that names an allowed identity", async () => {
      const r = await recording({ tls, allowedPeers: ["spiffe://cluster.local/ns/ingress/*"] });
      server = r.server;
      const c = client(server.port, await creds(envoyCert));
      const err = await send(c, [{ http_logs: { log_entry: [entry("kw_A")] } }]);
      c.close();
      expect(err).toBeNull();
      expect(r.got).toEqual(["kw_A 200"]);
      expect(r.drops).toEqual({});
    });

    it("refuses a sender without a client certificate", async () => {
      const r = await recording({ tls });
      server = r.server;
      const c = client(server.port, await creds());
      const err = await send(c, [{ http_logs: { log_entry: [entry("kw_forged")] } }]);
      c.close();
      expect(err?.code).toBe(14); // UNAVAILABLE: never connected
      expect(r.got).toEqual([]);
      expect(r.drops.handshake).toBeGreaterThanOrEqual(1);
    });

    it("refuses a sender whose certificate comes from another CA", async () => {
      const r = await recording({ tls });
      server = r.server;
      const c = client(server.port, await creds(await other.client("stranger", `URI:${spiffe}`)));
      const err = await send(c, [{ http_logs: { log_entry: [entry("kw_forged")] } }]);
      c.close();
      expect(err?.code).toBe(14);
      expect(r.got).toEqual([]);
      expect(r.drops.handshake).toBeGreaterThanOrEqual(1);
    });

    it("refuses a sender whose certificate names no allowed identity", async () => {
      const r = await recording({ tls, allowedPeers: [spiffe] });
      server = r.server;
      const c = client(server.port, await creds(await ca.client("batch-job", "URI:spiffe://cluster.local/ns/batch/sa/job,DNS:envoy.ingress.svc")));
      const err = await send(c, [{ http_logs: { log_entry: [entry("kw_forged")] } }]);
      c.close();
      expect(err?.code).toBe(14);
      expect(r.got).toEqual([]);
      expect(r.drops.peer).toBeGreaterThanOrEqual(1);
    });

    it("refuses a cleartext sender on the TLS port", async () => {
      const r = await recording({ tls });
      server = r.server;
      const c = client(server.port);
      const err = await send(c, [{ http_logs: { log_entry: [entry("kw_forged")] } }]);
      c.close();
      expect(err?.code).toBe(14);
      expect(r.got).toEqual([]);
    });
  });
});
