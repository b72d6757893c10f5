import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { send } from "../console/http.test-support.ts";
import type { LocalConsole } from "../console/local.ts";
import { consoleCommand, openBrowser } from "./console.ts";

let dir: string;
let upstream: Server;
let upstreamPort: number;
const seen: { url: string; headers: IncomingHttpHeaders }[] = [];

function kubeconfig(name: string, server: string, user: Record<string, string>): string {
  const file = join(dir, name);
  writeFileSync(
    file,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      // client-node sends to an http:// server only when told to skip TLS verification.
      clusters: [{ name: "c", cluster: { server, ...(server.startsWith("http:") ? { "insecure-skip-tls-verify": true } : {}) } }],
      users: [{ name: "u", user }],
      contexts: [{ name: "tenant", context: { cluster: "c", user: "u" } }],
      "current-context": "tenant",
    }),
  );
  return file;
}

/** Runs the console with `argv` until the test is done with it. */
async function withConsole(argv: string[], fn: (c: LocalConsole, out: string) => Promise<void>, opened: string[] = []): Promise<void> {
  const ac = new AbortController();
  let out = "";
  let started: LocalConsole | undefined;
  const done = consoleCommand(argv, {
    out: (t) => (out += t),
    err: () => {},
    env: {},
    signal: ac.signal,
    openBrowser: (u) => opened.push(u),
    onStarted: (c) => (started = c),
  });
  await vi.waitFor(() => {
    expect(started).toBeDefined();
  });
  try {
    await fn(started as LocalConsole, out);
  } finally {
    ac.abort();
    expect(await done).toBe(0);
  }
}

async function viaConsole(c: LocalConsole, path: string): Promise<{ status: number; body: string }> {
  const cookie = `keyward-console-${c.port}=${new URL(c.url).searchParams.get("token") ?? ""}`;
  return send(c.port, path, { cookie });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "keyward-console-cli-"));
  upstream = createServer((req, res) => {
    seen.push({ url: req.url ?? "", headers: req.headers });
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ view: "inventory", items: [] }));
  });
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  upstreamPort = (upstream.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise((r) => upstream.close(r));
  rmSync(dir, { recursive: true, force: true });
});

// The commands load @kubernetes/client-node on first use: seconds of module loading on a loaded
// machine, paid once here rather than within the first test's 5 s.
beforeAll(async () => {
  await import("@kubernetes/client-node");
}, 60_000);

describe("keyward console", () => {
  it("forwards views to the apiserver's aggregated usage API with the kubeconfig's token, and opens the browser on the printed URL", async () => {
    const kc = kubeconfig("token.json", `http://127.0.0.1:${upstreamPort}`, { token: "tenant-token" });
    const opened: string[] = [];
    await withConsole(
      ["--kubeconfig", kc, "--port", "0"],
      async (c, out) => {
        expect(out).toContain(`Open ${c.url}`);
        expect(opened).toEqual([c.url]);
        seen.length = 0;
        const r = await viaConsole(c, "/api/v1/inventory?namespace=team-a");
        expect(r.status).toBe(200);
        expect(seen).toMatchObject([{ url: "/apis/usage.keyward.dev/v1alpha1/views/inventory?namespace=team-a", headers: { authorization: "Bearer tenant-token" } }]);
      },
      opened,
    );
  });

  it("with --usage-url, forwards to the usage API with the bearer token, and does not open the browser with --no-open", async () => {
    const kc = kubeconfig("token2.json", "https://apiserver.invalid:6443", { token: "tenant-token" });
    const opened: string[] = [];
    await withConsole(
      ["--kubeconfig", kc, "--no-open", "--usage-url", `http://127.0.0.1:${upstreamPort}/usage/`],
      async (c) => {
        seen.length = 0;
        expect((await viaConsole(c, "/api/v1/denials?limit=5")).status).toBe(200);
        expect(seen).toMatchObject([{ url: "/usage/api/v1/denials?limit=5", headers: { authorization: "Bearer tenant-token" } }]);
      },
      opened,
    );
    expect(opened).toEqual([]);
  });

  it("refuses --usage-url for a kubeconfig user without a bearer token, and bad flags", async () => {
    const kc = kubeconfig("cert.json", "https://apiserver.invalid:6443", { username: "u", password: "p" });
    await expect(consoleCommand(["--kubeconfig", kc, "--usage-url", "http://127.0.0.1:1"], { out: () => {}, err: () => {}, env: {} })).rejects.toThrow(/bearer token/);
    for (const argv of [["--port", "70000"], ["--port", "x"], ["--bogus"], ["--usage-ca-file", "ca.crt"], ["positional"]]) {
      let err = "";
      expect(await consoleCommand(argv, { out: () => {}, err: (t) => (err += t), env: {} }), argv.join(" ")).toBe(2);
      expect(err).toMatch(/^error: console: /);
    }
  });
});

describe("openBrowser", () => {
  it("runs $BROWSER with the URL, or returns false without an opener, and never throws", async () => {
    const script = join(dir, "browser.sh");
    const record = join(dir, "opened.txt");
    writeFileSync(script, `#!/bin/sh\necho "$@" > ${record}\n`);
    chmodSync(script, 0o755);
    expect(openBrowser("http://127.0.0.1:1/?token=x", { BROWSER: script })).toBe(true);
    await vi.waitFor(() => {
      expect(existsSync(record) && readFileSync(record, "utf8")).toBe("http://127.0.0.1:1/?token=x\n");
    });
    expect(openBrowser("http://x/", { BROWSER: join(dir, "no-such-browser") })).toBe(true);
    expect(openBrowser("http://x/", {}, "win32")).toBe(false);
  });
});
