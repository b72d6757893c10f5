import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { send, type Reply } from "./http.test-support.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { consoleRoutes } from "./server.ts";
import { ConsoleFiles, CONSOLE_CSP, withApiBase } from "./static.ts";

let dir: string;
let server: Server;
let port: number;
let apiCalls: string[] = [];

function get(path: string, headers: Record<string, string> = {}, method = "GET"): Promise<Reply> {
  return send(port, path, headers, method);
}

/** Sends a request line as written, without the URL normalisation of node's client. */
function raw(target: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = connect(port, "127.0.0.1", () => s.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    let text = "";
    s.on("data", (c: Buffer) => (text += c.toString("latin1")));
    s.on("end", () => { resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0)); });
    s.on("error", reject);
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "keyward-console-"));
  const web = join(dir, "web");
  mkdirSync(join(web, "js"), { recursive: true });
  writeFileSync(join(web, "index.html"), '<!doctype html><html><head><meta name="keyward-api-base" content="x/"><title>t</title></head><body>hi</body></html>');
  writeFileSync(join(web, "other.html"), "<html><head></head><body>other</body></html>");
  writeFileSync(join(web, "js", "app.js"), "export const app = 1;\n");
  writeFileSync(join(web, "console.css"), "body{}\n");
  writeFileSync(join(web, "js", "logic.test.ts"), "secret test source\n");
  writeFileSync(join(web, "tsconfig.json"), "{}\n");
  writeFileSync(join(web, ".env"), "SECRET=1\n");
  writeFileSync(join(web, "notes.md"), "# notes\n");
  writeFileSync(join(dir, "outside.js"), "outside\n");
  writeFileSync(join(dir, "passwd.js"), "root:x:0:0\n");
  symlinkSync(join(dir, "outside.js"), join(web, "js", "link.js"));
  const uplot = join(dir, "uplot");
  mkdirSync(uplot);
  writeFileSync(join(uplot, "uPlot.esm.js"), "export default function uPlot() {}\n");
  writeFileSync(join(uplot, "uPlot.min.css"), ".uplot{}\n");
  writeFileSync(join(uplot, "uPlot.cjs.js"), "module.exports = 1;\n");
  const files = new ConsoleFiles({ webRoot: web, uplotDir: uplot });
  server = createServer(
    consoleRoutes(files, (req, res) => {
      apiCalls.push(req.url ?? "");
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    }),
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

describe("console pages", () => {
  it("serves index.html at / with the API base, the security headers, and revalidation", async () => {
    const r = await get("/");
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(r.body).toContain('<meta name="keyward-api-base" content="api/v1/">');
    expect(r.body).not.toContain('content="x/"');
    expect(r.headers["content-security-policy"]).toBe(CONSOLE_CSP);
    expect(CONSOLE_CSP).toMatch(/default-src 'self'/);
    expect(CONSOLE_CSP).toMatch(/script-src 'self'(;|$)/);
    expect(CONSOLE_CSP).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(CONSOLE_CSP).toMatch(/frame-ancestors 'none'/);
    expect(r.headers["x-content-type-options"]).toBe("nosniff");
    expect(r.headers["referrer-policy"]).toBe("no-referrer");
    expect(r.headers["x-frame-options"]).toBe("DENY");
    expect(r.headers["cache-control"]).toBe("no-cache");
    expect(r.headers["access-control-allow-origin"]).toBeUndefined();
    const again = await get("/", { "if-none-match": String(r.headers.etag) });
    expect(again.status).toBe(304);
    expect(again.body).toBe("");
  });

  it("adds the API base to a page without one", async () => {
    expect((await get("/other.html")).body).toBe('<html><head><meta name="keyward-api-base" content="api/v1/">\n</head><body>other</body></html>');
    expect(withApiBase("<p>x</p>", 'a"b')).toBe('<meta name="keyward-api-base" content="a&quot;b">\n<p>x</p>');
  });

  it("serves scripts, styles and uPlot with their types, cached an hour", async () => {
    for (const [path, type, text] of [
      ["/js/app.js", "text/javascript; charset=utf-8", "export const app"],
      ["/console.css", "text/css; charset=utf-8", "body{}"],
      ["/assets/uplot.esm.js", "text/javascript; charset=utf-8", "export default function uPlot"],
      ["/assets/uPlot.min.css", "text/css; charset=utf-8", ".uplot{}"],
    ] as const) {
      const r = await get(path);
      expect(r.status, path).toBe(200);
      expect(r.headers["content-type"], path).toBe(type);
      expect(r.headers["cache-control"], path).toBe("public, max-age=3600");
      expect(r.headers["content-security-policy"], path).toBe(CONSOLE_CSP);
      expect(r.body, path).toContain(text);
    }
    const head = await get("/js/app.js", {}, "HEAD");
    expect(head.status).toBe(200);
    expect(head.body).toBe("");
  });

  it("never serves a path outside its directory, a dotfile, a source or test file, an unknown type, a directory or another uPlot file", async () => {
    for (const path of [
      "/../outside.js",
      "/js/../../outside.js",
      "/%2e%2e/outside.js",
      "/js/%2e%2e%2f..%2foutside.js",
      "/..%5coutside.js",
      "/js/link.js",
      "/.env",
      "/js/logic.test.ts",
      "/tsconfig.json",
      "/notes.md",
      "/js",
      "/js/",
      "/assets/",
      "/assets/uPlot.cjs.js",
      "/assets/../uplot/uPlot.cjs.js",
      "/index.html%00.js",
      "/nope.js",
      "//etc/passwd",
    ]) {
      const r = await get(path);
      expect(r.status, path).toBe(404);
      expect(r.body, path).not.toMatch(/outside|SECRET|secret test|notes|module\.exports|root:x/);
      expect(r.headers["content-security-policy"], path).toBe(CONSOLE_CSP);
    }
    for (const target of ["/../passwd.js", "/js/../../passwd.js", "/..\\passwd.js"]) expect(await raw(target), target).toBe(404);
    expect(await raw("*")).toBe(400);
  });

  it("answers only GET and HEAD for pages", async () => {
    for (const method of ["POST", "PUT", "DELETE", "OPTIONS"]) {
      const r = await get("/", { "content-length": "0" }, method);
      expect(r.status, method).toBe(405);
      expect(r.headers.allow).toBe("GET, HEAD");
      expect(r.headers["access-control-allow-origin"]).toBeUndefined();
    }
  });

  it("hands /api/v1/ to the API with the security headers set, and refuses an over-long target", async () => {
    apiCalls = [];
    const r = await get("/api/v1/inventory?namespace=a");
    expect(apiCalls).toEqual(["/api/v1/inventory?namespace=a"]);
    expect(r.headers["content-security-policy"]).toBe(CONSOLE_CSP);
    expect(r.headers["x-content-type-options"]).toBe("nosniff");
    expect((await get(`/api/v1/keys?owner=${"x".repeat(5000)}`)).status).toBe(414);
  });
});
