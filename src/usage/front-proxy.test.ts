import { readFile, writeFile } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { Agent, request } from "node:https";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { openAnalyticsStore, type AnalyticsStore } from "../analytics/store.ts";
import { defaultConfig, loadConfig } from "../config/config.ts";
import type { KubeRest } from "../k8s/rest.ts";
import { createLogger } from "../log.ts";
import { certDir, type CertDir, type Pair } from "../../test/support/certs.ts";

/** A client certificate and key, read at once: certDir names files by common name, so a later one of the same name replaces them. */
interface Creds {
  cert: Buffer;
  key: Buffer;
}
const creds = async (p: Promise<Pair>): Promise<Creds> => {
  const pair = await p;
  return { cert: await readFile(pair.cert), key: await readFile(pair.key) };
};
import { DAY, KEYS, NOW, seedRows } from "../../test/support/analytics-seed.ts";
import { FakeReviewer } from "./api-fixtures.test-support.ts";
import { startUsageApi, type UsageApi } from "./api.ts";
import { settingsFromConfigMap, userFromHeaders, type RequestHeaderSettings } from "./front-proxy.ts";

interface Reply {
  status: number;
  body: { error?: string; namespaces?: string[] | "all"; items?: unknown[] };
  socket: unknown;
}

const HEADERS: Omit<RequestHeaderSettings, "clientCa"> = {
  allowedNames: ["front-proxy-client"],
  usernameHeaders: ["X-Remote-User"],
  uidHeaders: ["X-Remote-Uid"],
  groupHeaders: ["X-Remote-Group"],
  extraPrefixes: ["X-Remote-Extra-"],
};

const logLines: string[] = [];
let store: AnalyticsStore;
let certs: CertDir;
let reviewer: FakeReviewer;
let api: UsageApi;
let serverCa: Buffer;
let caFile: string;
let proxyCaPem: string;
let proxy: Creds;
let otherCaProxy: Creds;
let notAllowed: Creds;
let serverOnly: Creds;
let rotatedProxy: Creds;
let rotatedCaPem: string;

function get(path: string, headers: Record<string, string>, client?: Creds, agent?: Agent): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: api.port, path, ca: serverCa, headers, ...client, ...(agent ? { agent } : { agent: false }) }, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Reply["body"]) : {}, socket: res.socket });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

const range = `since=${new Date(NOW - 45 * DAY).toISOString()}&until=${new Date(NOW).toISOString()}`;
const KEYS_PATH = `/apis/usage.keyward.dev/v1alpha1/views/keys?${range}`;
const asTenantA = { "x-remote-user": "tenant-a", "x-remote-group": "system:authenticated" };

beforeAll(async () => {
  const log = createLogger({ level: "debug", sink: (l) => logLines.push(l) });
  store = await openAnalyticsStore({ store: "sqlite", sqlitePath: ":memory:", postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => NOW }, log);
  await store.upsertKeys(KEYS);
  await store.writeRequests(seedRows());
  certs = await certDir();
  const serving = await certs.ca("serving-ca");
  serverCa = await readFile(serving.cert);
  const server = await serving.server("usage-api");
  const proxyCa = await certs.ca("front-proxy-ca");
  proxy = await creds(proxyCa.client("front-proxy-client"));
  notAllowed = await creds(proxyCa.client("someone-else"));
  serverOnly = await creds(proxyCa.server("front-proxy-client"));
  otherCaProxy = await creds((await certs.ca("other-ca")).client("front-proxy-client"));
  const rotated = await certs.ca("rotated-front-proxy-ca");
  rotatedProxy = await creds(rotated.client("front-proxy-client"));
  proxyCaPem = await readFile(proxyCa.cert, "utf8");
  rotatedCaPem = await readFile(rotated.cert, "utf8");
  caFile = `${certs.dir}/requestheader-ca.crt`;
  await writeFile(caFile, proxyCaPem);
  reviewer = new FakeReviewer({ "tok-b": { username: "tenant-b" } }, { "tenant-a": ["team-a"], "tenant-b": ["team-b"], admin: [""] });
  const config = defaultConfig({
    usageApiAddress: "127.0.0.1:0",
    usageApiCacheTtl: 0,
    tlsCertFile: server.cert,
    tlsKeyFile: server.key,
    usageApiFrontProxy: "files",
    usageApiRequestheaderClientCaFile: caFile,
    usageApiRequestheaderAllowedNames: ["front-proxy-client"],
    usageApiRequestheaderUidHeaders: ["X-Remote-Uid"],
    usageApiRequestheaderRefresh: 0,
  });
  api = await startUsageApi({ config, rest: {} as KubeRest, queries: store.queries, log, reviewer, now: () => NOW });
});

afterAll(async () => {
  await api.stop();
  await store.close();
  await certs.remove();
});

beforeEach(() => {
  reviewer.tokenReviews = 0;
  reviewer.reviewedUsers = [];
});

describe("the apiserver's front proxy", () => {
  it("names the caller with X-Remote-User, X-Remote-Group and X-Remote-Extra-* on a connection with its certificate, without a TokenReview", async () => {
    const r = await get(KEYS_PATH, { ...asTenantA, "x-remote-uid": "u-1", "x-remote-extra-scopes": "a", "x-remote-extra-acme.com%2fteam": "payments" }, proxy);
    expect(r.status).toBe(200);
    expect(r.body.namespaces).toEqual(["team-a"]);
    expect(reviewer.tokenReviews).toBe(0);
    // The SubjectAccessReview is for the user the proxy named, with their groups and extra.
    expect(reviewer.reviewedUsers[0]).toEqual({ username: "tenant-a", uid: "u-1", groups: ["system:authenticated"], extra: { scopes: ["a"], "acme.com/team": ["payments"] } });
    // A cluster-wide reader sees every namespace.
    expect((await get(KEYS_PATH, { "x-remote-user": "admin" }, proxy)).body.namespaces).toBe("all");
  });

  it("ignores forged X-Remote-* headers without a client certificate: 401, or the bearer token's caller", async () => {
    const forged = { "x-remote-user": "admin", "x-remote-group": "system:masters" };
    expect((await get(KEYS_PATH, forged)).status).toBe(401);
    const withToken = await get(KEYS_PATH, { ...forged, authorization: "Bearer tok-b" });
    expect(withToken.status).toBe(200);
    expect(withToken.body.namespaces).toEqual(["team-b"]);
    expect(reviewer.reviewedUsers.every((u) => u.username === "tenant-b")).toBe(true);
  });

  it("ignores them with a client certificate from another CA, even one with an allowed common name", async () => {
    expect((await get(KEYS_PATH, { "x-remote-user": "admin" }, otherCaProxy)).status).toBe(401);
    const withToken = await get(KEYS_PATH, { "x-remote-user": "admin", authorization: "Bearer tok-b" }, otherCaProxy);
    expect(withToken.body.namespaces).toEqual(["team-b"]);
  });

  it("ignores them with a certificate of the requestheader CA whose common name is not allowed", async () => {
    expect((await get(KEYS_PATH, { "x-remote-user": "admin" }, notAllowed)).status).toBe(401);
    expect(reviewer.reviewedUsers).toEqual([]);
  });

  it("ignores them with a certificate of the requestheader CA and an allowed name that is not for client authentication", async () => {
    expect((await get(KEYS_PATH, { "x-remote-user": "admin" }, serverOnly)).status).toBe(401);
  });

  it("takes the bearer-token path when the proxy's request names no user: groups alone authenticate nobody", async () => {
    expect((await get(KEYS_PATH, {}, proxy)).status).toBe(401);
    expect((await get(KEYS_PATH, { "x-remote-group": "system:masters", "x-remote-user": "" }, proxy)).status).toBe(401);
    expect((await get(KEYS_PATH, { "x-remote-group": "system:masters", authorization: "Bearer tok-b" }, proxy)).body.namespaces).toEqual(["team-b"]);
  });

  it("follows a rotated requestheader CA: the old certificate stops counting, on a new connection and on one already open", async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: serverCa, ...proxy });
    try {
      const before = await get(KEYS_PATH, asTenantA, undefined, agent);
      expect(before.status).toBe(200);
      await writeFile(caFile, rotatedCaPem);
      await api.frontProxy?.refresh();
      const sameConnection = await get(KEYS_PATH, asTenantA, undefined, agent);
      expect(sameConnection.socket).toBe(before.socket);
      expect(sameConnection.status).toBe(401);
      expect((await get(KEYS_PATH, asTenantA, proxy)).status).toBe(401);
      expect((await get(KEYS_PATH, asTenantA, rotatedProxy)).status).toBe(200);
    } finally {
      agent.destroy();
      await writeFile(caFile, proxyCaPem);
      await api.frontProxy?.refresh();
    }
    expect((await get(KEYS_PATH, asTenantA, proxy)).status).toBe(200);
  });

  it("keeps the CA in force when the file turns unreadable, and says so once", async () => {
    await writeFile(caFile, "not a certificate");
    await api.frontProxy?.refresh();
    await api.frontProxy?.refresh();
    expect(logLines.filter((l) => l.includes("cannot read the front proxy's settings"))).toHaveLength(1);
    expect((await get(KEYS_PATH, asTenantA, proxy)).status).toBe(200);
    await writeFile(caFile, proxyCaPem);
    await api.frontProxy?.refresh();
  });
});

describe("front proxy settings", () => {
  it("are read from extension-apiserver-authentication's data, as the apiserver writes it", () => {
    const data = {
      "client-ca-file": "ignored",
      "requestheader-client-ca-file": "-----BEGIN CERTIFICATE-----\n...",
      "requestheader-allowed-names": '["front-proxy-client"]',
      "requestheader-username-headers": '["X-Remote-User"]',
      "requestheader-group-headers": '["X-Remote-Group"]',
      "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
    };
    expect(settingsFromConfigMap(data)).toEqual({ clientCa: data["requestheader-client-ca-file"], ...HEADERS, uidHeaders: [] });
    expect(settingsFromConfigMap({ "client-ca-file": "x" })).toBeUndefined();
    expect(() => settingsFromConfigMap({ ...data, "requestheader-allowed-names": "front-proxy-client" })).toThrow(/JSON list/);
  });

  it("read one group per header line, the first user header set, and %-decoded extra keys", () => {
    const req = {
      headersDistinct: { "x-remote-user": ["", "alice"], "x-remote-group": ["a,b", "c"], "x-remote-extra-acme.com%2fteam": ["x", "y"], "x-remote-extra-bad%zz": ["z"] },
    } as unknown as IncomingMessage;
    const s = { ...HEADERS, usernameHeaders: ["X-Remote-User"], clientCa: "" };
    expect(userFromHeaders(req, s)).toEqual({ username: "alice", groups: ["a,b", "c"], extra: { "acme.com/team": ["x", "y"], "bad%zz": ["z"] } });
  });

  it("need TLS and the usage API, and a CA file with files", () => {
    expect(() => loadConfig(["--usage-api-front-proxy=cluster", "--usage-api-address=:9004"], {})).toThrow(/needs --usage-api-address and TLS/);
    expect(() => loadConfig(["--usage-api-front-proxy=files", "--usage-api-address=:9004", "--tls-cert-file=a", "--tls-key-file=b"], {})).toThrow(/needs --usage-api-requestheader-client-ca-file/);
    expect(loadConfig(["--usage-api-front-proxy=cluster", "--usage-api-address=:9004", "--tls-cert-file=a", "--tls-key-file=b"], {}).config.usageApiFrontProxy).toBe("cluster");
  });
});
