import { credentials, loadPackageDefinition, type ClientWritableStream, type GrpcObject, type ServiceClientConstructor } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../log.ts";
import { loadAccessLogProtos, type StreamAccessLogsMessage } from "./proto.ts";
import { startAccessLogServer, type AccessLogServer } from "./server.ts";

function client(port: number): { stream(done: (err: Error | null) => void): ClientWritableStream<StreamAccessLogsMessage>; close(): void } {
  const pkg = loadPackageDefinition(loadAccessLogProtos());
  const v3 = (((pkg.envoy as GrpcObject).service as GrpcObject).accesslog as GrpcObject).v3 as GrpcObject;
  const Ctor = v3.AccessLogService as ServiceClientConstructor;
  const c = new Ctor(`127.0.0.1:${port}`, credentials.createInsecure()) as unknown as {
    StreamAccessLogs(cb: (err: Error | null) => void): ClientWritableStream<StreamAccessLogsMessage>;
    close(): void;
  };
  return { stream: (done) => c.StreamAccessLogs(done), close: () => { c.close(); } };
}

const authzMeta = (keyId: string) => ({
  filter_metadata: { "envoy.filters.http.ext_authz": { fields: { key_id: { stringValue: keyId }, apikey: { stringValue: "shop/acme" } } } },
});

describe("access log service", () => {
  let server: AccessLogServer | undefined;
  afterEach(async () => {
    await server?.stop();
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
    await new Promise<void>((resolve, reject) => {
      const s = c.stream((err) => {
        if (err) reject(err);
        else resolve();
      });
      s.write({ identifier: { node: { id: "envoy-1" }, log_name: "keyward" }, http_logs: { log_entry: [{ common_properties: { metadata: authzMeta("kw_A") }, response: { response_code: { value: 200 } } }] } });
      s.write({
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
      });
      s.end();
    });
    c.close();
    expect(got).toEqual([
      { apikey: "shop/acme", keyId: "kw_A", code: 200 },
      { apikey: "shop/acme", keyId: "kw_A", code: 502 },
      { apikey: "shop/acme", keyId: "kw_A", code: 504 },
    ]);
    expect(results).toEqual(["joined", "joined", "unattributed", "denied", "joined"]);
  });
});
