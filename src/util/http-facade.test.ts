// node:http imported as an ES module without the WebSocket classes, so neither Node's undici
// nor node:http2 loads (http-facade.ts), and main.ts installing that before any such import.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const dir = mkdtempSync(join(tmpdir(), "keyward-http-facade-"));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const here = (p: string): string => JSON.stringify(new URL(p, import.meta.url).href);

/** Imports node:http as an ES module in a fresh process, with the hook or without; reports what loaded and what it got. */
function importHttp(withHook: boolean): { undici: boolean; http2: boolean; sameRequest: boolean; sameDefault: boolean } {
  const code = `
    ${withHook ? `(await import(${here("./http-facade.ts")})).loadHttpWithoutWebSocket();` : ""}
    const http = await import("node:http");
    const builtin = process.getBuiltinModule("node:http");
    const loaded = process.moduleLoadList;
    process.stdout.write(JSON.stringify({ undici: loaded.some((m) => m.includes("undici")), http2: loaded.some((m) => /\\bhttp2\\b/.test(m)), sameRequest: http.request === builtin.request && http.Agent === builtin.Agent, sameDefault: http.default === builtin }));
  `;
  return JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", code], { encoding: "utf8" })) as ReturnType<typeof importHttp>;
}

// Each test starts a Node process: seconds on a busy machine.
const CHILD_MS = 60_000;

describe("node:http as an ES module", () => {
  it("with the hook, loads neither undici nor node:http2, and exports the builtin's functions", () => {
    expect(importHttp(true)).toEqual({ undici: false, http2: false, sameRequest: true, sameDefault: true });
  }, CHILD_MS);

  it("without it, loads both", () => {
    expect(importHttp(false)).toMatchObject({ undici: true, http2: true });
  }, CHILD_MS);

  it("main.ts imports nothing statically that imports node:http as an ES module, so its hook comes first", () => {
    const tracer = join(dir, "trace.mjs");
    writeFileSync(
      tracer,
      `import { registerHooks } from "node:module";
       registerHooks({ resolve(s, c, next) { if ((s === "node:http" || s === "http") && !c.conditions.includes("require")) process.stderr.write("ESM node:http from " + c.parentURL + "\\n"); return next(s, c); } });`,
    );
    const r = spawnSync(process.execPath, ["--import", tracer, new URL("../main.ts", import.meta.url).pathname, "version"], { encoding: "utf8" });
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect(r.stderr).not.toContain("ESM node:http");
  }, CHILD_MS);
});
