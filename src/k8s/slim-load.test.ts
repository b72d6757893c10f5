import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { slimGenModule, UNDICI_STAND_IN } from "./slim-load.ts";

const dir = mkdtempSync(join(tmpdir(), "keyward-slim-load-"));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const KUBECONFIG = `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true } }]
users: [{ name: u, user: { token: t0ken } }]
contexts: [{ name: x, context: { cluster: c, user: u } }]
current-context: x
`;

/** Loads a kubeconfig through src/k8s/client.ts in a fresh process; reports what was resolved. */
function loadInChild(withHook: boolean): { installed: boolean; server: string; auth: string; generatedModules: number; undici: boolean } {
  const file = join(dir, "kubeconfig");
  writeFileSync(file, KUBECONFIG);
  const script = `
    import { registerHooks } from "node:module";
    const seen = [];
    registerHooks({ resolve(s, c, next) { const r = next(s, c); seen.push(r.url); return r; } });
    const { loadKubeConfigWithoutGeneratedClient } = await import(${JSON.stringify(join(import.meta.dirname, "slim-load.ts"))});
    const installed = ${withHook ? "loadKubeConfigWithoutGeneratedClient()" : "false"};
    const { loadKubeConfig } = await import(${JSON.stringify(join(import.meta.dirname, "client.ts"))});
    const kc = loadKubeConfig(${JSON.stringify(file)});
    const opts = { headers: {} };
    await kc.applyToHTTPSOptions(opts);
    console.log(JSON.stringify({ installed, server: kc.getCurrentCluster().server, auth: opts.headers.Authorization ?? "", generatedModules: seen.filter((u) => /\\/gen\\/(apis|models)\\//.test(u)).length, undici: seen.some((u) => u.includes("/node_modules/undici/")) }));
  `;
  return JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" })) as ReturnType<typeof loadInChild>;
}

// Each test starts a Node process that loads client-node: seconds on a busy machine.
const CHILD_MS = 60_000;

describe("KubeConfig without the generated API client", () => {
  it("loads and applies a kubeconfig with none of the generated modules", () => {
    const r = loadInChild(true);
    expect(r).toEqual({ installed: true, server: "https://127.0.0.1:6443", auth: "Bearer t0ken", generatedModules: 0, undici: false });
  }, CHILD_MS);

  it("without the hook, the same load pulls in the generated client and undici", () => {
    const r = loadInChild(false);
    expect(r.generatedModules).toBeGreaterThan(100);
    expect(r.undici).toBe(true);
  }, CHILD_MS);

  it("the stand-in for undici exports what config.js and the fetch library import, each failing if used", async () => {
    const m = (await import(`data:text/javascript,${encodeURIComponent(UNDICI_STAND_IN)}`)) as { Agent: new () => unknown; ProxyAgent: new () => unknown; fetch: () => Promise<unknown> };
    expect(() => new m.Agent()).toThrow(/undici's Agent is not loaded in keyward/);
    expect(() => new m.ProxyAgent()).toThrow(/undici's ProxyAgent is not loaded in keyward/);
    await expect(m.fetch()).rejects.toThrow(/undici's fetch is not loaded in keyward/);
  });

  it("the stand-in module exports the two names config.js imports, from their own files", () => {
    const src = slimGenModule("file:///x/dist/config.js");
    expect(src).toBe('export { createConfiguration } from "file:///x/dist/gen/configuration.js";\nexport { ServerConfiguration } from "file:///x/dist/gen/servers.js";');
  });
});
