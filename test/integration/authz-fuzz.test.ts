// Bad input never crashes the data plane: missing attributes, huge and non-UTF-8
// headers, thousands of headers, garbage on the wire, cancelled calls, and a
// seeded randomized run of thousands of generated requests. Each gets a denial
// (or, for frames that are not a CheckRequest, a gRPC error), and only requests
// that carry the one valid key are ever allowed.
import { connect } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";
import { Registry } from "prom-client";
import { startAuthz } from "../../src/authz/service.ts";
import { defaultConfig } from "../../src/config/config.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { silentLogger } from "../../src/log.ts";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadProtos, type CheckRequestMessage, type CheckResponseMessage } from "../../src/authz/proto.ts";
import { authzClient, checkRequest, createKey, createPolicy, nginxStyleCheck, startAuthzEnv, summarize, type AuthzEnv, type TestKey } from "../conformance/harness.ts";
import { seededRandom } from "../support/random.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";

const HOST = "fuzz.example.com";
const SEED = Number(process.env.KEYWARD_FUZZ_SEED ?? 20261123);
const DENY_CODES = new Set([3, 7, 8, 16]);


describe("authz under bad input", () => {
  let env: AuthzEnv;
  let ns: string;
  let client: ReturnType<typeof authzClient>;
  let raw: grpc.Client;
  let key: TestKey;
  const checkPath = "/envoy.service.auth.v3.Authorization/Check";
  let serialize: (m: CheckRequestMessage) => Buffer;

  const rawCall = (payload: Buffer): Promise<CheckResponseMessage> =>
    new Promise((resolve, reject) => {
      raw.makeUnaryRequest(
        checkPath,
        (b: Buffer) => b,
        (b: Buffer) => b,
        payload,
        new grpc.Metadata(),
        { deadline: Date.now() + 5000 },
        (err, res) => {
          if (err) reject(err);
          else resolve(deserialize(res as Buffer));
        },
      );
    });
  let deserialize: (b: Buffer) => CheckResponseMessage;

  beforeAll(async () => {
    env = await startAuthzEnv(inject("kubeconfig"));
    ns = await createTestNamespace(env.adminKc, "fuzz");
    client = authzClient(env.authz.grpcPort);
    raw = new grpc.Client(`127.0.0.1:${env.authz.grpcPort}`, grpc.credentials.createInsecure());
    const def = loadProtos()["envoy.service.auth.v3.Authorization"] as unknown as {
      Check: { requestSerialize: (m: CheckRequestMessage) => Buffer; responseDeserialize: (b: Buffer) => CheckResponseMessage };
    };
    serialize = def.Check.requestSerialize;
    deserialize = def.Check.responseDeserialize;
    await createPolicy(env.admin, ns, "fuzz", {
      hosts: [HOST, "*.fuzz.example.com"],
      credentials: { headers: ["x-api-key", "x-other-key"], bearer: true, queryParams: ["api_key"] },
      rules: [
        { name: "any", paths: ["/**"], scopes: ["fuzz"] },
        { name: "items", paths: ["/items/*"], methods: ["GET", "POST"], scopes: ["fuzz"] },
        { name: "admin", paths: ["/admin/**"], scopes: ["admin"] },
      ],
    });
    key = await createKey(env.admin, ns, "fuzzer", { scopes: ["fuzz"], allowedSources: ["0.0.0.0/0", "::/0"] });
    await eventually(async () => (summarize(await client.check(checkRequest({ host: HOST, path: "/", headers: { "x-api-key": key.key } }))).code) === 0 ? true : undefined, 10_000, "key indexed");
  });

  afterAll(async () => {
    client.close();
    raw.close();
    await env.stop();
    await deleteNamespace(env.adminKc, ns);
  });

  const stillServing = async (): Promise<void> => {
    expect(await client.health()).toBe(1);
    expect(summarize(await client.check(checkRequest({ host: HOST, path: "/", headers: { "x-api-key": key.key } }))).code).toBe(0);
  };

  it("denies requests with missing attributes", async () => {
    const shapes: CheckRequestMessage[] = [
      {},
      { attributes: {} },
      { attributes: { request: {} } },
      { attributes: { request: { http: {} } } },
      { attributes: { request: { http: { host: HOST, headers: { "x-api-key": key.key } } } } },
      { attributes: { request: { http: { method: "GET", path: "/", headers: { "x-api-key": key.key } } } } },
      { attributes: { request: { http: { method: "GET", host: HOST, path: "", headers: { "x-api-key": key.key } } } } },
      { attributes: { request: { http: { method: "GET", host: HOST, path: "relative", headers: { "x-api-key": key.key } } } } },
    ];
    for (const s of shapes) {
      const r = summarize(await client.check(s));
      expect(DENY_CODES.has(r.code)).toBe(true);
      expect(r.metadata.reason).toBe("bad_request");
    }
  });

  it("survives huge headers, non-UTF-8 bytes and thousands of headers", async () => {
    const huge = "k".repeat(3 * 1024 * 1024);
    expect(summarize(await client.check(checkRequest({ host: HOST, path: "/", headers: { "x-api-key": huge } }))).metadata.reason).toBe("unknown_key");
    expect(summarize(await client.check(checkRequest({ host: HOST, path: "/" + "a/".repeat(100_000), headers: { authorization: `Bearer ${huge}` } }))).code).toBe(16);
    // Over the 4 MiB message limit: a gRPC error, not a crash.
    await expect(client.check(checkRequest({ host: HOST, path: "/", headers: { "x-api-key": huge, "x-more": huge } }))).rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });

    const many: Record<string, string> = {};
    for (let i = 0; i < 5000; i++) many[`x-h-${i}`] = `v${i}`;
    expect(summarize(await client.check(checkRequest({ host: HOST, path: "/", headers: many }))).metadata.reason).toBe("missing_key");
    expect(summarize(await client.check(checkRequest({ host: HOST, path: "/", headers: { ...many, "x-api-key": key.key } }))).code).toBe(0);

    // Invalid UTF-8 in the key, the host and the path: same-length byte surgery on a valid message.
    const marker = "QQQQQQQQQQQQ";
    for (const where of ["key", "host", "path"] as const) {
      const msg = checkRequest({
        host: where === "host" ? marker : HOST,
        path: where === "path" ? `/${marker}` : "/",
        headers: { "x-api-key": where === "key" ? marker : "kwt_x" },
      });
      const buf = serialize(msg);
      const at = buf.indexOf(Buffer.from(marker));
      expect(at).toBeGreaterThan(0);
      Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x28, 0x8c]).copy(buf, at);
      const r = summarize(await rawCall(buf));
      expect(DENY_CODES.has(r.code)).toBe(true);
    }
    await stillServing();
  });

  it("answers garbage frames with a gRPC error and survives garbage on the socket", async () => {
    const r = seededRandom(SEED);
    for (let i = 0; i < 50; i++) {
      const junk = Buffer.from(Array.from({ length: 1 + Math.floor(r() * 300) }, () => Math.floor(r() * 256)));
      // A frame protobuf can decode (by luck) is answered with a denial; anything else with a gRPC error.
      const out = await rawCall(junk).then(
        (res) => ({ code: summarize(res).code }),
        (err: unknown) => ({ grpcError: (err as grpc.ServiceError).code }),
      );
      if ("grpcError" in out) expect(out.grpcError).not.toBe(grpc.status.OK);
      else expect(DENY_CODES.has(out.code)).toBe(true);
    }
    for (const port of [env.authz.grpcPort, env.authz.httpPort!]) {
      for (let i = 0; i < 20; i++) {
        const junk = Buffer.from(Array.from({ length: 1 + Math.floor(r() * 2000) }, () => Math.floor(r() * 256)));
        await new Promise<void>((resolve) => {
          const s = connect(port, "127.0.0.1", () => {
            s.end(junk);
          });
          s.on("data", () => undefined);
          s.on("error", () => {
            resolve();
          });
          s.on("close", () => {
            resolve();
          });
          s.setTimeout(2000, () => s.destroy());
        });
      }
    }
    await stillServing();
    const http = await nginxStyleCheck(env.authz.httpPort!, { method: "GET", host: HOST, uri: "/" }, { "x-api-key": key.key });
    expect(http.status).toBe(200);
  });

  it("denies over HTTP for non-UTF-8 header bytes and refuses oversized header blocks", async () => {
    const port = env.authz.httpPort!;
    const rawHttp = (head: Buffer): Promise<string> =>
      new Promise((resolve) => {
        let out = "";
        const s = connect(port, "127.0.0.1", () => {
          s.end(head);
        });
        s.on("data", (d: Buffer) => (out += d.toString("latin1")));
        s.on("close", () => {
          resolve(out);
        });
        s.on("error", () => {
          resolve(out);
        });
      });
    const head = (extra: Buffer): Buffer =>
      Buffer.concat([Buffer.from(`GET /auth HTTP/1.1\r\nhost: ${HOST}\r\nx-original-method: GET\r\nx-original-uri: /\r\nx-forwarded-for: 127.0.0.1\r\nconnection: close\r\n`), extra, Buffer.from("\r\n")]);
    const latin = await rawHttp(head(Buffer.concat([Buffer.from("x-api-key: "), Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0x80]), Buffer.from("\r\n")])));
    expect(latin).toMatch(/^HTTP\/1\.1 401 /);
    const manyHeaders = Buffer.from(Array.from({ length: 3000 }, (_, i) => `x-h-${i}: v\r\n`).join(""));
    const big = await rawHttp(head(manyHeaders));
    expect(big).toMatch(/^HTTP\/1\.1 (431|400) /);
    const ok = await rawHttp(head(Buffer.from(`x-api-key: ${key.key}\r\n`)));
    expect(ok).toMatch(/^HTTP\/1\.1 200 /);
  });

  it("fails closed on cancelled calls and keeps serving", async () => {
    const calls = Array.from({ length: 200 }, () => client.check(checkRequest({ host: HOST, path: "/", headers: { "x-api-key": key.key } }), { deadlineMs: 0 }).catch((e: unknown) => e));
    for (const c of await Promise.all(calls)) expect((c as grpc.ServiceError).code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await stillServing();
  });

  it("denies everything, and reports NOT_SERVING, while it cannot reach the apiserver", async () => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "gone", server: "https://127.0.0.1:1", skipTLSVerify: true }],
      users: [{ name: "u", token: "t" }],
      contexts: [{ name: "c", cluster: "gone", user: "u" }],
      currentContext: "c",
    });
    const rest = new KubeRest(kc);
    const heard: string[] = [];
    const cut = await startAuthz({
      config: defaultConfig({ grpcAddress: "127.0.0.1:0", httpAuthAddress: "127.0.0.1:0", httpAuthProxy: "nginx", metricsAddress: "" }),
      kc,
      rest,
      log: silentLogger,
      registry: new Registry(),
      // A listener that throws changes no answer.
      onDecision: (front, d) => {
        heard.push(`${front}:${d.reason}`);
        throw new Error("listener failure");
      },
    });
    const c = authzClient(cut.grpcPort);
    try {
      expect(cut.ready()).toBe(false);
      expect(await c.health()).toBe(2);
      const r = summarize(await c.check(checkRequest({ host: HOST, path: "/", headers: { "x-api-key": key.key } })));
      expect(r).toMatchObject({ code: 14, httpStatus: 503, metadata: { reason: "not_ready" } });
      const http = await fetch(`http://127.0.0.1:${cut.httpPort!}/`, { headers: { "x-forwarded-host": HOST, "x-api-key": key.key } });
      expect(http.status).toBe(503);
      expect(heard).toEqual(["grpc:not_ready", "http:not_ready"]);
    } finally {
      c.close();
      await cut.stop();
      rest.close();
    }
  });

  it(`allows only requests that carry the valid key, over thousands of generated requests (seed ${SEED})`, async () => {
    const r = seededRandom(SEED);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const str = (n: number, alphabet: string): string => {
      const chars = [...alphabet];
      return Array.from({ length: n }, () => chars[Math.floor(r() * chars.length)]).join("");
    };
    const WEIRD = "abc/%.-_~*?#&=;:@!$'()+,\\\u0000\u00ff\u2028\ud83d\ude00 ";
    const hosts = [HOST, HOST.toUpperCase(), `${HOST}:8443`, `a.${HOST}`, `a.b.${HOST}`, "other.example.com", "", "*", "[::1]:80", str(20, WEIRD)];
    const paths = ["/", "/items/1", "/items/", "/admin/x", "/items/1/../../admin", "/%2e%2e/admin", "//items//1", "", "*", () => "/" + str(1 + Math.floor(r() * 60), WEIRD)];
    const methods = ["GET", "POST", "DELETE", "get", "", "X".repeat(1000), "BREW"];
    const sources = ["127.0.0.1", "2001:db8::1", "::ffff:10.0.0.1", "999.1.1.1", "", "not-an-ip", "[::1]"];
    const total = 3000;
    let allowed = 0;
    const batch = 100;
    for (let start = 0; start < total; start += batch) {
      const jobs = Array.from({ length: batch }, () => {
        const headers: Record<string, string> = {};
        let carriesValid = false;
        const nCred = Math.floor(r() * 3);
        let query = "";
        for (let c = 0; c < nCred; c++) {
          const v = pick([key.key, key.key, "kwt_" + str(43, "abcdefghijklmnopqrstuvwxyz0123456789_-"), "", " ", str(5000, WEIRD)]);
          const isValid = v === key.key;
          const place = pick(["x-api-key", "x-other-key", "authorization", "query", "x-unrelated"]);
          if (place === "authorization") headers.authorization = pick(["Bearer ", "bearer ", "Basic ", "Bearer"]) + v;
          else if (place === "query") query += `${query ? "&" : "?"}${pick(["api_key", "API_KEY", "api_key[]"])}=${encodeURIComponent(v)}`;
          else headers[place] = v;
          if (isValid) carriesValid = true;
        }
        for (let h = Math.floor(r() * 4); h > 0; h--) headers[str(1 + Math.floor(r() * 10), "abcdefxyz-")] = str(Math.floor(r() * 50), WEIRD);
        if (r() < 0.2) headers["x-forwarded-for"] = pick(["1.2.3.4", "1.2.3.4, 5.6.7.8", "", "garbage", "::1,,,"]);
        const p = pick(paths);
        const path = (typeof p === "function" ? p() : p) + query;
        const req = checkRequest({ host: pick(hosts), path, method: pick(methods), headers, source: pick(sources) });
        return client.check(req).then((res) => ({ res: summarize(res), carriesValid }));
      });
      for (const { res, carriesValid } of await Promise.all(jobs)) {
        if (res.code === 0) {
          allowed++;
          expect(carriesValid).toBe(true);
          expect(res.headers["x-keyward-key-id"]).toBe(key.id);
        } else {
          expect(DENY_CODES.has(res.code)).toBe(true);
          expect(typeof res.metadata.reason).toBe("string");
        }
      }
    }
    console.log(`fuzz seed ${SEED}: ${total} generated requests, ${allowed} allowed, ${total - allowed} denied`);
    expect(allowed).toBeGreaterThan(0);
    await stillServing();
  });
});
