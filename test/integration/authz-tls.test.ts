// TLS on the check ports, with clients keyward did not write: grpcurl, the Go
// client on go-control-plane's Envoy types, node:https and node:http2. Client
// certificates required (both gRPC transports) and optional; certificates
// rotated the way kubelet updates a mounted Secret (a `..data` symlink swap),
// served to new connections while open ones carry on; a bad new pair logged
// and the previous one kept; every --authz-workers process reloads it.
// Certificates come from a throwaway CA made with the openssl CLI.
import { spawn, type ChildProcess } from "node:child_process";
import { connect as h2connect, type ClientHttp2Session } from "node:http2";
import { request as httpsRequest } from "node:https";
import { mkdir, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import type { Checker } from "../../src/authz/check.ts";
import { GRPC_TRANSPORTS, startGrpcFront } from "../../src/authz/ext-authz-grpc.ts";
import { AUTHZ_PROTO, HEALTH_PROTO } from "../../src/authz/proto.ts";
import { isKeywardError } from "../../src/errors.ts";
import { GrpcServer } from "../../src/grpc/over-h2.ts";
import { startH2Server } from "../../src/h2/server.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { createLogger } from "../../src/log.ts";
import { TlsSource } from "../../src/tls/source.ts";
import { authzClient, createKey, createPolicy, startAuthzEnv, type AuthzEnv, type TestKey } from "../conformance/harness.ts";
import { buildTools, grpcurlProtoArgs, run } from "../conformance/tools.ts";
import { freePort } from "../e2e/nginx.ts";
import { certDir, type CertDir, type Pair, type TestCa } from "../support/certs.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { dataPlaneKubeconfig, type DataPlaneKubeconfig } from "../support/keyward.ts";

const repoRoot = resolve(import.meta.dirname, "..", "..");
let certs: CertDir;
let ca: TestCa;
let server: Pair & { serial: string };
let client: Pair;
/** A client certificate from a CA keyward does not trust. */
let stranger: Pair;
let bin: string;

beforeAll(async () => {
  bin = await buildTools();
  certs = await certDir();
  ca = await certs.ca("test-ca");
  server = await ca.server("keyward-authz");
  client = await ca.client("envoy");
  stranger = await (await certs.ca("other-ca")).client("stranger");
});
afterAll(async () => {
  await certs.remove();
});

/** What a TLS client sees of keyward's port: the served certificate's serial, or the failure. */
function handshake(port: number, o: ConnectionOptions): Promise<{ serial: string; alpn: string | false } | { error: string }> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: "127.0.0.1", port, servername: "localhost", ...o }, () => {
      const serial = s.getPeerX509Certificate()?.serialNumber ?? "";
      const alpn = s.alpnProtocol ?? false;
      // Under TLS 1.3 a refused client certificate is reported after the client's handshake ends.
      s.once("data", () => undefined);
      setImmediate(() => {
        s.end();
        resolve({ serial, alpn });
      });
    });
    s.on("error", (err: Error) => {
      resolve({ error: err.message });
    });
  });
}

/** One request to the HTTPS auth port; rejects when the connection is refused. */
function httpsCheck(port: number, headers: Record<string, string>, tls: { ca: Buffer; cert?: Buffer; key?: Buffer }): Promise<number> {
  return new Promise((resolve, reject) => {
    // The harness names nginx as the HTTP port's proxy: the original request comes in its headers.
    const asNginx = { "x-original-method": "GET", "x-original-uri": "/items/1", ...headers };
    const req = httpsRequest({ host: "127.0.0.1", port, path: "/auth", servername: "localhost", agent: false, headers: asNginx, ...tls }, (res) => {
      res.resume();
      res.on("end", () => {
        resolve(res.statusCode ?? 0);
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/** Connects and sends nothing: ms until keyward closes the connection, or -1 if not within `limitMs`. */
function silentClientClosedAfter(port: number, limitMs: number): Promise<number> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const silent = netConnect({ host: "127.0.0.1", port });
    const timer = setTimeout(() => {
      silent.destroy();
      resolve(-1);
    }, limitMs);
    silent.on("error", () => undefined);
    silent.on("close", () => {
      clearTimeout(timer);
      resolve(Date.now() - t0);
    });
  });
}

const files = async (p: Pair): Promise<{ cert: Buffer; key: Buffer }> => ({ cert: await readFile(p.cert), key: await readFile(p.key) });

interface GoOut {
  name: string;
  grpcError?: string;
  code: number;
  httpStatus?: number;
}

async function goClient(target: string, flags: string[], cases: object[]): Promise<GoOut[]> {
  const out = await run(join(bin, "keyward-conformance-go"), ["-addr", target, ...flags], cases.map((c) => JSON.stringify(c)).join("\n") + "\n");
  return out
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as GoOut);
}

/** A gRPC health check on an open HTTP/2 session: grpc-status of the answer. */
function healthOn(session: ClientHttp2Session): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/grpc", te: "trailers" });
    req.on("trailers", (t: Record<string, string | undefined>) => {
      resolve(String(t["grpc-status"]));
    });
    req.on("error", reject);
    req.on("close", () => {
      reject(new Error("the stream closed without trailers"));
    });
    req.resume();
    req.end(Buffer.from([0, 0, 0, 0, 0]));
  });
}

/** A health check on a new HTTP/2 connection with these TLS options; rejects if refused. */
async function healthOver(port: number, tls: { ca: Buffer; cert?: Buffer; key?: Buffer }): Promise<string> {
  const session = h2connect(`https://localhost:${port}`, tls);
  session.on("error", () => undefined);
  try {
    return await healthOn(session);
  } finally {
    session.destroy();
  }
}

/** A policy, a key, and the key indexed (seen allowed through the HTTPS port). */
async function keyFor(env: AuthzEnv, ns: string, host: string, tls: { ca: Buffer; cert?: Buffer; key?: Buffer }): Promise<TestKey> {
  await createPolicy(env.admin, ns, "api", { hosts: [host], rules: [{ name: "read", paths: ["/items/**"], methods: ["GET"] }] });
  const k = await createKey(env.admin, ns, "reader", { owner: "tls-team" });
  await eventually(async () => ((await httpsCheck(env.authz.httpPort ?? 0, { host, "x-api-key": k.key }, tls)) === 200 ? true : undefined), 10_000, "key indexed");
  return k;
}

describe.each(GRPC_TRANSPORTS)("mTLS on the check ports, client certificates required, %s transport", (transport) => {
  const HOST = `mtls-${transport}.example.com`;
  let env: AuthzEnv;
  let ns: string;
  let k: TestKey;
  let grpcTarget: string;
  let caPem: Buffer;
  let clientFiles: { cert: Buffer; key: Buffer };

  beforeAll(async () => {
    env = await startAuthzEnv(inject("kubeconfig"), { grpcTransport: transport, tlsCertFile: server.cert, tlsKeyFile: server.key, tlsClientCaFile: ca.cert });
    grpcTarget = `127.0.0.1:${env.authz.grpcPort}`;
    ns = await createTestNamespace(env.adminKc, `mtls-${transport}`);
    caPem = await readFile(ca.cert);
    clientFiles = await files(client);
    k = await keyFor(env, ns, HOST, { ca: caPem, ...clientFiles });
  });
  afterAll(async () => {
    await env.stop();
    await deleteNamespace(env.adminKc, ns);
  });

  const mtls = (): string[] => ["-cacert", ca.cert, "-cert", client.cert, "-key", client.key];
  const checkJson = (headers: Record<string, string>): string =>
    JSON.stringify({ attributes: { request: { http: { method: "GET", host: HOST, path: "/items/1", headers } } } });

  it("grpcurl with a client certificate: health SERVING, a key allowed, none 401", async () => {
    const health = await run(join(bin, "grpcurl"), [...grpcurlProtoArgs(HEALTH_PROTO, mtls()), "-d", "{}", grpcTarget, "grpc.health.v1.Health/Check"], "");
    expect(JSON.parse(health)).toEqual({ status: "SERVING" });
    const check = (headers: Record<string, string>) =>
      run(join(bin, "grpcurl"), [...grpcurlProtoArgs(AUTHZ_PROTO, mtls()), "-d", "@", grpcTarget, "envoy.service.auth.v3.Authorization/Check"], checkJson(headers));
    const ok = JSON.parse(await check({ "x-api-key": k.key })) as { status?: { code?: number }; okResponse?: unknown };
    expect(ok.status?.code ?? 0).toBe(0);
    expect(ok.okResponse).toBeDefined();
    const none = JSON.parse(await check({})) as { status?: { code?: number } };
    expect(none.status?.code).toBe(16);
  });

  it("grpcurl without a client certificate, with one from another CA, or in cleartext is refused", async () => {
    const health = (transportFlags: string[]) =>
      run(join(bin, "grpcurl"), [...grpcurlProtoArgs(HEALTH_PROTO, [...transportFlags, "-connect-timeout", "3"]), "-d", "{}", grpcTarget, "grpc.health.v1.Health/Check"], "");
    await expect(health(["-cacert", ca.cert])).rejects.toThrow(/exited [1-9]/);
    await expect(health(["-cacert", ca.cert, "-cert", stranger.cert, "-key", stranger.key])).rejects.toThrow(/exited [1-9]/);
    await expect(health(["-plaintext"])).rejects.toThrow(/exited [1-9]/);
  });

  it("the Go client on Envoy's types: allowed and 401 with its certificate; refused without one or with a stranger's", async () => {
    const cases = [
      { name: "ok", method: "GET", host: HOST, path: "/items/1", headers: { "x-api-key": k.key }, source: "192.0.2.10" },
      { name: "missing", method: "GET", host: HOST, path: "/items/1", headers: {}, source: "192.0.2.10" },
    ];
    const [ok, missing] = await goClient(grpcTarget, ["-cacert", ca.cert, "-cert", client.cert, "-key", client.key], cases);
    expect(ok).toMatchObject({ name: "ok", code: 0 });
    expect(ok?.grpcError).toBeUndefined();
    expect(missing).toMatchObject({ name: "missing", code: 16, httpStatus: 401 });
    for (const flags of [["-cacert", ca.cert], ["-cacert", ca.cert, "-cert", stranger.cert, "-key", stranger.key]]) {
      const [refused] = await goClient(grpcTarget, flags, cases.slice(0, 1));
      expect(refused?.grpcError, flags.join(" ")).toMatch(/Unavailable|certificate|tls/i);
      expect(refused?.code).toBe(0);
    }
  });

  it("the HTTPS auth port: answers a client with a certificate, refuses one without or with a stranger's", async () => {
    const port = env.authz.httpPort ?? 0;
    expect(await httpsCheck(port, { host: HOST, "x-api-key": k.key }, { ca: caPem, ...clientFiles })).toBe(200);
    expect(await httpsCheck(port, { host: HOST }, { ca: caPem, ...clientFiles })).toBe(401);
    await expect(httpsCheck(port, { host: HOST, "x-api-key": k.key }, { ca: caPem })).rejects.toThrow();
    await expect(httpsCheck(port, { host: HOST, "x-api-key": k.key }, { ca: caPem, ...(await files(stranger)) })).rejects.toThrow();
  });
});

describe("TLS on the gRPC port, keyward transport", () => {
  it("offers ALPN h2 and refuses a client that offers only http/1.1", async () => {
    const tls = await TlsSource.open({ certFile: server.cert, keyFile: server.key, clientCaFile: "", requireClientCert: true, reloadIntervalMs: 0 });
    const h2 = await startH2Server({ address: "127.0.0.1:0", handler: new GrpcServer({ methods: new Map(), onError: () => undefined }), tls });
    try {
      const caPem = await readFile(ca.cert);
      expect(await handshake(h2.port, { ca: caPem, ALPNProtocols: ["h2"] })).toMatchObject({ alpn: "h2", serial: server.serial });
      expect(await handshake(h2.port, { ca: caPem, ALPNProtocols: ["http/1.1"] })).toMatchObject({ error: expect.stringMatching(/alpn|application protocol/i) as unknown });
    } finally {
      await h2.close(100);
      tls.close();
    }
  });

  it("closes a connection that never completes the TLS handshake after the preface timeout", async () => {
    const tls = await TlsSource.open({ certFile: server.cert, keyFile: server.key, clientCaFile: "", requireClientCert: true, reloadIntervalMs: 0 });
    const h2 = await startH2Server({ address: "127.0.0.1:0", handler: new GrpcServer({ methods: new Map(), onError: () => undefined }), tls, limits: { prefaceTimeoutMs: 300 } });
    try {
      const ms = await silentClientClosedAfter(h2.port, 10_000);
      expect(ms).toBeGreaterThan(0);
      expect(ms).toBeLessThan(5_000);
    } finally {
      await h2.close(100);
      tls.close();
    }
  });

  it("the grpc-js transport refuses optional client certificates at start-up", async () => {
    const tls = await TlsSource.open({ certFile: server.cert, keyFile: server.key, clientCaFile: ca.cert, requireClientCert: false, reloadIntervalMs: 0 });
    try {
      const started = startGrpcFront({
        address: "127.0.0.1:0",
        transport: "grpc-js",
        tls,
        checker: {} as Checker,
        response: { keyIdHeader: "x-k", ownerHeader: "x-o", realm: "r" },
        ready: () => true,
        onDecision: () => undefined,
        onError: () => undefined,
      });
      await expect(started).rejects.toSatisfy((err: unknown) => isKeywardError(err, "ConfigInvalid"));
    } finally {
      tls.close();
    }
  });
});

describe("TLS with optional client certificates (keyward transport)", () => {
  const HOST = "mtls-optional.example.com";
  let env: AuthzEnv;
  let ns: string;
  let k: TestKey;
  let caPem: Buffer;

  beforeAll(async () => {
    env = await startAuthzEnv(inject("kubeconfig"), { tlsCertFile: server.cert, tlsKeyFile: server.key, tlsClientCaFile: ca.cert, tlsRequireClientCert: false });
    ns = await createTestNamespace(env.adminKc, "mtls-optional");
    caPem = await readFile(ca.cert);
    k = await keyFor(env, ns, HOST, { ca: caPem });
  });
  afterAll(async () => {
    await env.stop();
    await deleteNamespace(env.adminKc, ns);
  });

  it("serves clients without a certificate and with a valid one; refuses a certificate the CA does not verify", async () => {
    const target = `127.0.0.1:${env.authz.grpcPort}`;
    const cases = [{ name: "ok", method: "GET", host: HOST, path: "/items/1", headers: { "x-api-key": k.key }, source: "192.0.2.10" }];
    expect((await goClient(target, ["-cacert", ca.cert], cases))[0]).toMatchObject({ code: 0 });
    expect((await goClient(target, ["-cacert", ca.cert, "-cert", client.cert, "-key", client.key], cases))[0]).toMatchObject({ code: 0 });
    // Go's TLS client sends no certificate the server's CA list does not name: node:http2 sends it.
    expect(await healthOver(env.authz.grpcPort, { ca: caPem, ...(await files(client)) })).toBe("0");
    await expect(healthOver(env.authz.grpcPort, { ca: caPem, ...(await files(stranger)) })).rejects.toThrow();
    const port = env.authz.httpPort ?? 0;
    expect(await httpsCheck(port, { host: HOST, "x-api-key": k.key }, { ca: caPem })).toBe(200);
    expect(await httpsCheck(port, { host: HOST, "x-api-key": k.key }, { ca: caPem, ...(await files(client)) })).toBe(200);
    await expect(httpsCheck(port, { host: HOST, "x-api-key": k.key }, { ca: caPem, ...(await files(stranger)) })).rejects.toThrow();
  });
});

/**
 * A directory laid out as kubelet mounts a Secret: the files are symlinks through `..data` to a
 * timestamped directory, and an update swaps `..data` in one rename.
 */
async function secretVolume(dir: string): Promise<{ certFile: string; keyFile: string; update(p: Pair | { cert: Buffer; key: Buffer }): Promise<void> }> {
  await mkdir(dir, { recursive: true });
  let n = 0;
  let previous: string | undefined;
  const update = async (p: Pair | { cert: Buffer; key: Buffer }): Promise<void> => {
    const version = `..2026_12_01_00_00_00.${++n}`;
    await mkdir(join(dir, version));
    const body = (x: string | Buffer): Promise<Buffer> => (typeof x === "string" ? readFile(x) : Promise.resolve(x));
    await writeFile(join(dir, version, "tls.crt"), await body(p.cert));
    await writeFile(join(dir, version, "tls.key"), await body(p.key));
    await symlink(version, join(dir, "..data_tmp"));
    await rename(join(dir, "..data_tmp"), join(dir, "..data"));
    if (previous) await rm(join(dir, previous), { recursive: true });
    previous = version;
  };
  return { certFile: join(dir, "tls.crt"), keyFile: join(dir, "tls.key"), update };
}

describe.each(GRPC_TRANSPORTS)("certificate rotation through a Secret volume, %s transport", (transport) => {
  let env: AuthzEnv;
  const logs: string[] = [];
  let volume: Awaited<ReturnType<typeof secretVolume>>;
  let caPem: Buffer;

  beforeAll(async () => {
    volume = await secretVolume(join(certs.dir, `secret-${transport}`));
    await volume.update(server);
    await symlink("..data/tls.crt", volume.certFile);
    await symlink("..data/tls.key", volume.keyFile);
    caPem = await readFile(ca.cert);
    env = await startAuthzEnv(
      inject("kubeconfig"),
      { grpcTransport: transport, tlsCertFile: volume.certFile, tlsKeyFile: volume.keyFile, tlsReloadInterval: 100 },
      createLogger({ level: "info", sink: (l) => logs.push(l) }),
    );
  });
  afterAll(async () => {
    await env.stop();
  });

  /** The serial of the certificate a new connection gets (ALPN h2 unless told otherwise). */
  const served = async (port: number, alpn = ["h2"]): Promise<string> => {
    const r = await handshake(port, { ca: caPem, ALPNProtocols: alpn });
    if ("error" in r) throw new Error(r.error);
    return r.serial;
  };

  it("serves a rotated certificate on both ports; open connections carry on; a bad pair is logged and the previous kept", async () => {
    const grpcPort = env.authz.grpcPort;
    const httpPort = env.authz.httpPort ?? 0;
    expect(await served(grpcPort)).toBe(server.serial);
    const session = h2connect(`https://localhost:${grpcPort}`, { ca: caPem });
    try {
      expect(await healthOn(session)).toBe("0");

      const next = await ca.server(`keyward-authz-next-${transport}`);
      await volume.update(next);
      await eventually(async () => ((await served(grpcPort)) === next.serial ? true : undefined), 10_000, "the gRPC port to serve the rotated certificate");
      await eventually(async () => ((await served(httpPort, [])) === next.serial ? true : undefined), 10_000, "the HTTP port to serve the rotated certificate");
      expect(logs.some((l) => l.includes("TLS certificate reloaded") && l.includes(next.serial))).toBe(true);
      // The connection opened before the rotation is still served, on its certificate.
      expect(session.closed).toBe(false);
      expect(await healthOn(session)).toBe("0");
      expect((session.socket as unknown as { getPeerX509Certificate(): { serialNumber: string } }).getPeerX509Certificate().serialNumber).toBe(server.serial);

      // A certificate with another certificate's key: reported once, the previous pair kept.
      const third = await ca.server(`keyward-authz-third-${transport}`);
      await volume.update({ cert: await readFile(third.cert), key: await readFile(next.key) });
      await eventually(() => (logs.some((l) => l.includes("do not load")) ? true : undefined), 10_000, "the bad pair to be reported");
      expect(await served(grpcPort)).toBe(next.serial);
      expect(await served(httpPort, [])).toBe(next.serial);
      const bad = logs.filter((l) => l.includes("do not load"));
      expect(bad).toHaveLength(1);
      expect(bad[0]).not.toContain("PRIVATE KEY");

      await volume.update(third);
      await eventually(async () => ((await served(grpcPort)) === third.serial ? true : undefined), 10_000, "the fixed pair to be served");
      expect(await healthOn(session)).toBe("0");
    } finally {
      session.close();
    }
  });

  it("closes an HTTPS connection that never completes the handshake after 10 s", async () => {
    const ms = await silentClientClosedAfter(env.authz.httpPort ?? 0, 20_000);
    expect(ms).toBeGreaterThan(9_000);
    expect(ms).toBeLessThan(15_000);
  });

  it("grpc-js clients verify the served certificate", async () => {
    const c = authzClient(env.authz.grpcPort, { ownConnection: true, credentials: grpc.credentials.createSsl(caPem) });
    try {
      expect(await c.health()).toBe(1);
    } finally {
      c.close();
    }
  });
});

describe("keyward authz --authz-workers 2 with TLS", () => {
  let child: ChildProcess;
  let output = "";
  let exited: Promise<unknown>;
  let volume: Awaited<ReturnType<typeof secretVolume>>;
  let caPem: Buffer;
  let grpcPort: number;
  let httpPort: number;
  let admin: KubeRest;
  let dp: DataPlaneKubeconfig;

  beforeAll(async () => {
    const adminKc = loadKubeConfig(inject("kubeconfig"));
    admin = new KubeRest(adminKc, { qps: 0 });
    dp = await dataPlaneKubeconfig(adminKc, admin, "authz-tls-workers");
    volume = await secretVolume(join(certs.dir, "secret-workers"));
    await volume.update(server);
    await symlink("..data/tls.crt", volume.certFile);
    await symlink("..data/tls.key", volume.keyFile);
    caPem = await readFile(ca.cert);
    const metricsPort = await freePort();
    [grpcPort, httpPort] = [await freePort(), await freePort()];
    child = spawn(
      process.execPath,
      [
        join(repoRoot, "src", "main.ts"),
        "authz",
        "--authz-workers=2",
        `--kubeconfig=${dp.kubeconfig}`,
        `--grpc-address=127.0.0.1:${grpcPort}`,
        `--http-auth-address=127.0.0.1:${httpPort}`,
        "--http-auth-proxy=nginx",
        `--metrics-address=127.0.0.1:${metricsPort}`,
        "--no-usage-status",
        "--no-usage-alerts",
        `--tls-cert-file=${volume.certFile}`,
        `--tls-key-file=${volume.keyFile}`,
        "--tls-reload-interval=100ms",
      ],
      { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] },
    );
    child.stdout?.on("data", (b: Buffer) => (output += b.toString()));
    child.stderr?.on("data", (b: Buffer) => (output += b.toString()));
    exited = new Promise((r) => child.once("exit", r));
    await eventually(async () => ((await fetch(`http://127.0.0.1:${metricsPort}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined), 30_000, "/readyz");
  });
  afterAll(async () => {
    child.kill("SIGTERM");
    await exited;
    admin.close();
    dp.remove();
  });

  /** The serials that `n` new connections get: the primary hands connections to the workers in turn. */
  const servedBy = async (port: number, n: number): Promise<Set<string>> => {
    const serials = new Set<string>();
    for (let i = 0; i < n; i++) {
      const r = await handshake(port, { ca: caPem, ...(port === grpcPort ? { ALPNProtocols: ["h2"] } : {}) });
      serials.add("error" in r ? r.error : r.serial);
    }
    return serials;
  };

  it("every worker serves the certificate, and each reloads a rotated one", async () => {
    expect(await healthOver(grpcPort, { ca: caPem })).toBe("0");
    expect(await servedBy(grpcPort, 6)).toEqual(new Set([server.serial]));
    const next = await ca.server("keyward-authz-workers-next");
    await volume.update(next);
    for (const port of [grpcPort, httpPort]) {
      await eventually(
        async () => {
          const serials = await servedBy(port, 6);
          return serials.size === 1 && serials.has(next.serial) ? true : undefined;
        },
        10_000,
        `port ${port} to serve the rotated certificate on every worker`,
      );
    }
    // Each worker logged its own reload.
    expect(output.split("\n").filter((l) => l.includes("TLS certificate reloaded") && l.includes(next.serial))).toHaveLength(2);
    expect(output).not.toContain("PRIVATE KEY");
  });
});
