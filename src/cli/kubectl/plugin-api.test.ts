// runPlugin against a scripted apiserver (node:http in this process): what rotate
// waits for, and the messages for the apiserver's refusals.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { ApiKey } from "../../api/types.ts";
import { runPlugin } from "./plugin.ts";

const AK_PATH = "/apis/keyward.dev/v1alpha1/namespaces/shop/apikeys/web";
const SECRET_PATH = "/api/v1/namespaces/shop/secrets/web-apikey";

/** What the scripted apiserver answers; `onGet` runs before each answer. */
interface Script {
  ak: ApiKey;
  secretKeyId: string | undefined;
  secretStatus: number;
  apiKeyStatus: number;
  onGet: (path: string, gets: number) => void;
  gets: Record<string, number>;
  accepts: string[];
}
let script: Script;
let server: Server;
let dir: string;
let kubeconfig: string;

const status = (code: number, reason: string, message: string) => ({ kind: "Status", apiVersion: "v1", status: "Failure", code, reason, message });

function handle(req: IncomingMessage, res: ServerResponse): void {
  let body = "";
  req.on("data", (c: Buffer) => (body += c.toString()));
  req.on("end", () => {
    const path = (req.url ?? "").split("?")[0] ?? "";
    const send = (code: number, obj: unknown): void => {
      res.writeHead(code, { "content-type": "application/json" }).end(JSON.stringify(obj));
    };
    if (req.method === "GET") {
      script.gets[path] = (script.gets[path] ?? 0) + 1;
      script.onGet(path, script.gets[path]);
    }
    const forbidden = (resource: string, named: string): unknown => status(403, "Forbidden", `${named} is forbidden: User "alice" cannot get resource "${resource}"`);
    if (path === AK_PATH && script.apiKeyStatus !== 200) {
      send(script.apiKeyStatus, forbidden("apikeys", 'apikeys.keyward.dev "web"'));
    } else if (path === AK_PATH) {
      if (req.method === "PATCH") {
        const patch = JSON.parse(body) as { metadata?: { annotations?: Record<string, string> } };
        script.ak.metadata.annotations = { ...script.ak.metadata.annotations, ...patch.metadata?.annotations };
        script.ak.metadata.generation = (script.ak.metadata.generation ?? 1) + 1;
      }
      send(200, script.ak);
    } else if (path === SECRET_PATH) {
      script.accepts.push(req.headers.accept ?? "");
      if (script.secretStatus !== 200) send(script.secretStatus, forbidden("secrets", 'secrets "web-apikey"'));
      else send(200, { kind: "PartialObjectMetadata", metadata: { name: "web-apikey", annotations: script.secretKeyId ? { "keyward.dev/key-id": script.secretKeyId } : {} } });
    } else {
      send(404, status(404, "NotFound", "not found"));
    }
  });
}

beforeAll(async () => {
  server = createServer(handle);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  dir = mkdtempSync(join(tmpdir(), "kubectl-keyward-api-"));
  kubeconfig = join(dir, "config");
  writeFileSync(
    kubeconfig,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "c", cluster: { server: `http://127.0.0.1:${port}`, "insecure-skip-tls-verify": true } }],
      users: [{ name: "alice", user: { token: "t" } }],
      contexts: [{ name: "dev", context: { cluster: "c", user: "alice", namespace: "shop" } }],
      "current-context": "dev",
    }),
  );
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

const ready = { type: "Ready", status: "True" as const, reason: "Issued", message: "", lastTransitionTime: "2026-01-01T00:00:00Z" };

beforeEach(() => {
  script = {
    ak: {
      apiVersion: "keyward.dev/v1alpha1",
      kind: "ApiKey",
      metadata: { namespace: "shop", name: "web", generation: 1 },
      spec: { owner: "acme" },
      status: { state: "Active", secretName: "web-apikey", keys: [{ id: "kw_old", hash: "sha256:1", state: "active" }], conditions: [ready] },
    },
    secretKeyId: "kw_old",
    secretStatus: 200,
    apiKeyStatus: 200,
    onGet: () => undefined,
    gets: {},
    accepts: [],
  };
});

async function plugin(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runPlugin(argv, { out: (t) => (out += t), err: (t) => (err += t), env: { KUBECONFIG: kubeconfig }, stdoutIsTTY: false, pollMs: 1 });
  return { code, out, err };
}

/** The operator's part: two reads after the request, status shows the new key; the Secret follows `secretLag` reads of it later. */
function operatorRotates(secretLag: number): void {
  script.onGet = (path, n) => {
    const asked = script.ak.metadata.annotations?.["keyward.dev/rotate"];
    if (path === AK_PATH && asked && n >= 3 && script.ak.status?.observedRotateAnnotation !== asked) {
      script.ak.status = { ...script.ak.status, observedRotateAnnotation: asked, keys: [{ id: "kw_new", hash: "sha256:2", state: "active" }, { id: "kw_old", hash: "sha256:1", state: "grace", expiresAt: "2026-01-02T00:00:00Z" }] };
    }
    if (path === SECRET_PATH && n > secretLag) script.secretKeyId = script.ak.status?.keys?.[0]?.id;
  };
}

// The commands load @kubernetes/client-node on first use: seconds of module loading on a loaded
// machine, paid once here rather than within the first test's 5 s.
beforeAll(async () => {
  await import("@kubernetes/client-node");
}, 60_000);

describe("rotate", () => {
  it("returns only once the status shows the new key and the Secret holds it, reading the Secret's metadata only", async () => {
    operatorRotates(4);
    const r = await plugin("rotate", "web");
    expect(r).toEqual({ code: 0, out: "apikey.keyward.dev/web rotated: key kw_new is active; kw_old is accepted until 2026-01-02T00:00:00Z\n", err: "" });
    expect(script.gets[SECRET_PATH]).toBe(5);
    expect(new Set(script.accepts)).toEqual(new Set(["application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"]));
  });

  it("skips the Secret when the caller may not read it, and says so", async () => {
    operatorRotates(0);
    script.secretStatus = 403;
    const r = await plugin("rotate", "web");
    expect(r.code).toBe(0);
    expect(r.err).toBe("note: your credentials may not read Secret web-apikey, so the delivery of kw_new into it was not awaited (the operator writes it right after the status)\n");
  });

  it("times out when the Secret never gets the new key", async () => {
    operatorRotates(1_000_000);
    const r = await plugin("rotate", "web", "--timeout", "200ms");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^error: deliver key kw_new into Secret web-apikey: not done within \d+ms \(Secret web-apikey does not hold key kw_new yet\)/);
  });
});

describe("the apiserver's refusals", () => {
  it("says what was refused, to whom, and where to look", async () => {
    script.apiKeyStatus = 403;
    const r = await plugin("status", "web");
    expect(r.code).toBe(1);
    expect(r.err).toBe(
      'error: get apikey "web" in namespace "shop": forbidden: apikeys.keyward.dev "web" is forbidden: User "alice" cannot get resource "apikeys". kubectl keyward acts with your own credentials; ask for a Role that grants this (docs/kubectl-plugin.md, RBAC)\n',
    );
    expect((await plugin("status", "nope")).err).toBe('error: get apikey "nope" in namespace "shop": apikey "nope" in namespace "shop" not found\n');
  });

  it("names an apiserver it cannot reach", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const addr = closed.address();
    const port = typeof addr === "object" && addr ? addr.port : 0;
    await new Promise((r) => closed.close(r));
    const cfg = join(dir, "unreachable");
    writeFileSync(cfg, JSON.stringify({ apiVersion: "v1", kind: "Config", clusters: [{ name: "c", cluster: { server: `http://127.0.0.1:${port}`, "insecure-skip-tls-verify": true } }], users: [{ name: "u", user: {} }], contexts: [{ name: "x", context: { cluster: "c", user: "u" } }], "current-context": "x" }));
    const r = await plugin("status", "web", "--kubeconfig", cfg);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`error: get apikey "web" in namespace "default": cannot reach the apiserver at http://127.0.0.1:${port}: `);
    expect(r.err).toContain("ECONNREFUSED");
  });
});
