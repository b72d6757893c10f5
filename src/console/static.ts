// The console's pages (src/console/web/) and uPlot (node_modules/uplot/dist), as
// keyward serves them in hosted and local mode (docs/console.md): a fixed set of
// file types from one directory and two named uPlot files, never a directory
// listing or a path outside them; every HTML page carries the usage API's base
// URL in <meta name="keyward-api-base">; every answer the console's strict
// security headers.
import { createHash } from "node:crypto";
import { readFile, realpath, stat } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createRequire } from "node:module";
import { dirname, extname, join, sep } from "node:path";
import { fileURLToPath } from "node:url";

/** The Content-Security-Policy of every answer: only this origin's files; no inline script, no framing. */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

/** The headers every console answer carries, pages and API alike. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": CONSOLE_CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
};

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
  ".map": "application/json",
};

/** Each path segment: letters, digits, dot, dash, underscore; never starting with a dot. */
const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
/** Files in the web directory that are never served: sources and tests of the pages. */
const NEVER = /(\.test\.[a-z]+|\.ts|^tsconfig\.json)$/;

/** The usage API's base URL as the pages read it. */
export const API_BASE = "api/v1/";

/** The directory of the console's pages in this checkout. */
export function defaultWebRoot(): string {
  return join(dirname(fileURLToPath(import.meta.url)), "web");
}

/** uPlot's dist directory, as Node resolves the package. */
export function defaultUplotDir(): string {
  return dirname(createRequire(import.meta.url).resolve("uplot/dist/uPlot.esm.js"));
}

export interface StaticOptions {
  /** Directory of the pages; default src/console/web. */
  webRoot?: string;
  /** uPlot's dist directory; default from node_modules. */
  uplotDir?: string;
  /** The value of <meta name="keyward-api-base">; default `api/v1/`. */
  apiBase?: string;
}

interface File {
  body: Buffer;
  type: string;
  etag: string;
}

const escapeAttr = (s: string): string => s.replaceAll("&", "&amp;").replaceAll('"', "&quot;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");

/** The page with `<meta name="keyward-api-base">` set to `base`: an existing one replaced, else added at the end of <head>. */
export function withApiBase(html: string, base: string): string {
  const meta = `<meta name="keyward-api-base" content="${escapeAttr(base)}">`;
  const existing = /<meta\s+name=["']keyward-api-base["'][^>]*>/i;
  if (existing.test(html)) return html.replace(existing, meta);
  const head = /<\/head\s*>/i.exec(html);
  if (head) return `${html.slice(0, head.index)}${meta}\n${html.slice(head.index)}`;
  return `${meta}\n${html}`;
}

function sendStatus(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, "content-type": "text/plain; charset=utf-8", "content-length": String(Buffer.byteLength(text)), "cache-control": "no-store", ...headers });
  res.end(text);
}

/**
 * The console's static files. Files are read once and kept (the set is small and fixed for
 * a running keyward). Answers GET and HEAD; a request for anything else is a 404.
 */
export class ConsoleFiles {
  readonly #webRoot: string;
  readonly #uplotDir: string;
  readonly #apiBase: string;
  readonly #cache = new Map<string, Promise<File | undefined>>();

  constructor(options: StaticOptions = {}) {
    this.#webRoot = options.webRoot ?? defaultWebRoot();
    this.#uplotDir = options.uplotDir ?? defaultUplotDir();
    this.#apiBase = options.apiBase ?? API_BASE;
  }

  /** The file a URL path names (without its query), or undefined when it names none that may be served. */
  #locate(pathname: string): { root: string; file: string } | undefined {
    if (pathname === "/assets/uplot.esm.js") return { root: this.#uplotDir, file: "uPlot.esm.js" };
    if (pathname === "/assets/uPlot.min.css") return { root: this.#uplotDir, file: "uPlot.min.css" };
    if (pathname === "/" || pathname === "/index.html") return { root: this.#webRoot, file: "index.html" };
    if (!pathname.startsWith("/") || pathname.length > 512) return undefined;
    const segments = pathname.slice(1).split("/");
    if (!segments.every((s) => SEGMENT.test(s))) return undefined;
    const last = segments[segments.length - 1] ?? "";
    if (NEVER.test(last) || !Object.hasOwn(TYPES, extname(last))) return undefined;
    return { root: this.#webRoot, file: segments.join(sep) };
  }

  async #read(root: string, file: string): Promise<File | undefined> {
    try {
      const realRoot = await realpath(root);
      const path = await realpath(join(realRoot, file));
      // A symlink out of the directory is not followed.
      if (!path.startsWith(realRoot + sep)) return undefined;
      if (!(await stat(path)).isFile()) return undefined;
      const type = TYPES[extname(path)];
      if (type === undefined) return undefined;
      let body = await readFile(path);
      if (type.startsWith("text/html")) body = Buffer.from(withApiBase(body.toString("utf8"), this.#apiBase));
      return { body, type, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"` };
    } catch {
      return undefined;
    }
  }

  #file(root: string, file: string): Promise<File | undefined> {
    const key = `${root}\u0000${file}`;
    let found = this.#cache.get(key);
    if (!found) {
      found = this.#read(root, file);
      // Only files that exist are kept: the cache cannot be grown by asking for random names.
      void found.then((f) => {
        if (!f) this.#cache.delete(key);
      });
      this.#cache.set(key, found);
    }
    return found;
  }

  /** Answers a request for a page or an asset. */
  async serve(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> {
    if (req.method !== "GET" && req.method !== "HEAD") {
      sendStatus(res, 405, "method not allowed\n", { allow: "GET, HEAD" });
      return;
    }
    const at = this.#locate(pathname);
    const file = at ? await this.#file(at.root, at.file) : undefined;
    if (!file) {
      sendStatus(res, 404, "not found\n");
      return;
    }
    const html = file.type.startsWith("text/html");
    const headers = {
      ...SECURITY_HEADERS,
      "content-type": file.type,
      etag: file.etag,
      // Pages are checked each time (they carry the API base); scripts, styles and uPlot are kept an hour and revalidated by ETag.
      "cache-control": html ? "no-cache" : "public, max-age=3600",
    };
    if (req.headers["if-none-match"] === file.etag) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    res.writeHead(200, { ...headers, "content-length": String(file.body.length) });
    res.end(req.method === "HEAD" ? undefined : file.body);
  }
}
