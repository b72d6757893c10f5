// The local console server of `keyward console` and `kubectl keyward console`
// (docs/console.md, Local mode): on 127.0.0.1, it serves the pages and forwards
// GET /api/v1/<view>?<query> with the user's own credentials, and nothing else.
// It holds those credentials on a local port, so every request must: name this
// server in its Host header (DNS rebinding), come from no other origin, carry
// this session's secret (given once in the printed URL, then kept in an
// HttpOnly SameSite=Strict cookie), and be a GET (or HEAD of a page).
import { randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { KeywardError } from "../errors.ts";
import { listen } from "../util/listen.ts";
import { consoleRoutes, sendError, type Listener } from "./server.ts";
import { SECURITY_HEADERS, type ConsoleFiles } from "./static.ts";
import { API_PREFIX, isView, type View } from "./views.ts";

/** What the usage API (or the apiserver in front of it) answered a forwarded view. */
export interface UpstreamAnswer {
  status: number;
  /** JSON text; empty for a 304. */
  body: string;
  /** The answer's ETag, relayed to the page so that it can ask again with If-None-Match. */
  etag?: string;
}

/** An entity tag as RFC 9110 writes it (`"..."` or `W/"..."`), and lists of them: all the local console relays. */
const ETAG_LIST = /^(\*|(W\/)?"[\x21\x23-\x7e]*"(\s*,\s*(W\/)?"[\x21\x23-\x7e]*")*)$/;
const MAX_ETAG_BYTES = 1024;

/** The If-None-Match the page sent, when it is well formed and short, to forward. */
function ifNoneMatch(req: IncomingMessage): string | undefined {
  const v = req.headers["if-none-match"];
  return v !== undefined && v.length <= MAX_ETAG_BYTES && ETAG_LIST.test(v) ? v : undefined;
}

/** Where views are forwarded to, with the user's credentials. */
export interface Upstream {
  /**
   * Asks for `view` with `search` (the query string, with its "?" or empty), and the page's
   * If-None-Match when it sent one. Rejects when the upstream cannot be reached.
   */
  get(view: View, search: string, ifNoneMatch?: string): Promise<UpstreamAnswer>;
  /** Where it forwards to, for messages. */
  readonly where: string;
}

export interface LocalConsoleOptions {
  /** Port on 127.0.0.1; 0 picks a free one. */
  port: number;
  files: ConsoleFiles;
  upstream: Upstream;
  /** The session's secret; default 32 random bytes. */
  secret?: string;
  /** Called once per forwarded view that failed to reach the upstream. */
  onUpstreamError?: (err: unknown) => void;
}

export interface LocalConsole {
  readonly port: number;
  /** The URL to open: it carries the session's secret. */
  readonly url: string;
  stop(): Promise<void>;
}

const TOKEN_PARAM = "token";

function sameSecret(given: string | undefined, secret: Buffer): boolean {
  if (given === undefined) return false;
  const b = Buffer.from(given);
  return b.length === secret.length && timingSafeEqual(b, secret);
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** The guard in front of every request; undefined when the request may go on, else the refusal sent. */
function guard(req: IncomingMessage, res: ServerResponse, port: number, secret: Buffer, cookieName: string): "refused" | "redirected" | undefined {
  const hosts = [`127.0.0.1:${port}`, `localhost:${port}`];
  const host = (req.headers.host ?? "").toLowerCase();
  // A page of another site whose name resolves to 127.0.0.1 sends its own name here.
  if (!hosts.includes(host)) {
    sendError(res, 421, "this console answers only at the address it printed");
    return "refused";
  }
  const origin = req.headers.origin;
  if (origin !== undefined && !hosts.some((h) => origin === `http://${h}`)) {
    sendError(res, 403, "requests from other origins are refused");
    return "refused";
  }
  if (req.headers["sec-fetch-site"] === "cross-site") {
    sendError(res, 403, "requests from other sites are refused");
    return "refused";
  }
  if (sameSecret(cookie(req, cookieName), secret)) return undefined;
  const url = new URL(req.url ?? "/", `http://${host}`);
  const given = url.searchParams.getAll(TOKEN_PARAM);
  if (given.length === 1 && sameSecret(given[0], secret)) {
    // The secret leaves the URL (history, screen) at once; the cookie carries it from now on.
    url.searchParams.delete(TOKEN_PARAM);
    res.writeHead(303, {
      ...SECURITY_HEADERS,
      location: `${url.pathname}${url.search}`,
      "set-cookie": `${cookieName}=${secret.toString()}; HttpOnly; SameSite=Strict; Path=/`,
      "cache-control": "no-store",
      "content-length": "0",
    });
    res.end();
    return "redirected";
  }
  sendError(res, 401, "open the URL `keyward console` printed: it carries this session's secret");
  return "refused";
}

/** The answer of the upstream as the console's API gives it: JSON, errors as {"error": "..."}. */
function relay(res: ServerResponse, a: UpstreamAnswer): void {
  const etag = a.etag !== undefined && a.etag.length <= MAX_ETAG_BYTES && ETAG_LIST.test(a.etag) && a.etag !== "*" ? { etag: a.etag } : {};
  if (a.status === 304) {
    res.writeHead(304, { ...SECURITY_HEADERS, "cache-control": "no-store", ...etag });
    res.end();
    return;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(a.body);
  } catch {
    sendError(res, 502, "the usage API did not answer JSON");
    return;
  }
  if (a.status >= 400) {
    // The apiserver's own refusals are Status objects: their message is the error.
    const o = (parsed ?? {}) as { error?: unknown; message?: unknown };
    const message = typeof o.error === "string" ? o.error : typeof o.message === "string" ? o.message : `the usage API answered ${a.status}`;
    sendError(res, a.status, message);
    return;
  }
  res.writeHead(a.status, { ...SECURITY_HEADERS, "content-type": "application/json", "content-length": String(Buffer.byteLength(a.body)), "cache-control": "no-store", ...etag });
  res.end(a.body);
}

function forwarder(options: LocalConsoleOptions): Listener {
  return (req, res) => {
    if (req.method !== "GET") {
      sendError(res, 405, "the console's API answers GET only", { allow: "GET" });
      return;
    }
    const url = new URL(req.url ?? "/", "http://console");
    const view = url.pathname.slice(API_PREFIX.length);
    if (!isView(view)) {
      sendError(res, 404, "no such view");
      return;
    }
    url.searchParams.delete(TOKEN_PARAM);
    options.upstream.get(view, url.search, ifNoneMatch(req)).then(
      (a) => {
        relay(res, a);
      },
      (err: unknown) => {
        options.onUpstreamError?.(err);
        sendError(res, 502, `the usage API at ${options.upstream.where} could not be reached`);
      },
    );
  };
}

/** Starts the local console on 127.0.0.1 and returns the URL to open. */
export async function startLocalConsole(options: LocalConsoleOptions): Promise<LocalConsole> {
  const secretText = options.secret ?? randomBytes(32).toString("base64url");
  const secret = Buffer.from(secretText);
  let port = 0;
  let cookieName = "";
  const routes = consoleRoutes(options.files, forwarder(options));
  const server = createServer({ maxHeaderSize: 16_384, headersTimeout: 10_000, requestTimeout: 60_000 }, (req, res) => {
    if (guard(req, res, port, secret, cookieName) !== undefined) return;
    routes(req, res);
  });
  const listening = await listen(server, `127.0.0.1:${options.port}`).catch((err: unknown) => {
    throw new KeywardError("ListenFailed", `console: cannot listen on 127.0.0.1:${options.port}`, { cause: err });
  });
  port = listening.port;
  // One cookie per port: two consoles on one machine (one per cluster) keep their own.
  cookieName = `keyward-console-${port}`;
  return { port, url: `http://127.0.0.1:${port}/?${TOKEN_PARAM}=${secretText}`, stop: () => listening.stop() };
}
