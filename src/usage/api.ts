// The usage API: the analytics store's views over HTTP, on a port of its own
// (--usage-api-address), for whoever Kubernetes says the bearer token is, and
// limited to the namespaces where they may `get apikeys` (ADR 0044,
// docs/usage.md "Usage API"). Only the Authorization header identifies a
// caller: no other header (X-Remote-User and the like) is ever read.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AnalyticsQueries, UsageFilter } from "../analytics/queries.ts";
import { APIKEYPOLICY_PLURAL, API_VERSION, type ApiKey, type ApiKeyPolicy } from "../api/types.ts";
import { DAY_MS } from "../analytics/schema.ts";
import type { Config } from "../config/config.ts";
import { KeywardError } from "../errors.ts";
import type { KubeRest } from "../k8s/rest.ts";
import type { Logger } from "../log.ts";
import { followTls, tlsServerOptions, TlsSource } from "../tls/source.ts";
import { listen } from "../util/listen.ts";
import { consoleRoutes } from "../console/server.ts";
import { ConsoleFiles } from "../console/static.ts";
import { ApiAuth, KubeReviewer, type ApiAuthOptions, type Caller, type Reviewer } from "./api-auth.ts";
import { BadRequest, parseApiRequest, type ApiRequest } from "./api-request.ts";
import { inventory, keyDetail, liveKeys, reviewView, type ConsoleQueries, type ConsoleSources } from "./console-views.ts";

/** Longest bearer token reviewed; a longer one is refused without asking the apiserver. */
export const MAX_TOKEN_BYTES = 8192;
/** Requests served at once, by default. */
export const MAX_IN_FLIGHT = 64;
/** Longest request target (path and query). */
export const MAX_URL_BYTES = 4096;
/** Largest request head; a larger one is refused by the HTTP parser (431). */
const MAX_HEADER_BYTES = 16_384;
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 30_000;
const HANDSHAKE_TIMEOUT_MS = 10_000;

type Views = Pick<AnalyticsQueries, "topKeys" | "timeline" | "statusCodes" | "endpoints" | "countries" | "networks" | "keyNamespaces" | "denials"> & ConsoleQueries;

export interface UsageApiHandlerOptions {
  queries: Views;
  /** The live ApiKeys and policies the console views join with the store; without them those views answer from the store alone. */
  console?: ConsoleSources;
  auth: ApiAuth;
  log: Logger;
  now?: () => number;
  /** Requests served at once at most; more are refused with 503 at once (default 64). */
  maxInFlight?: number;
}

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

const FORBIDDEN = "forbidden: you may not get apikeys where this request reads";

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(text)),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    ...headers,
  });
  res.end(text);
}

/** The bearer token of the Authorization header; a 401 when there is none, or it is malformed or too long. */
function bearerToken(req: IncomingMessage): string {
  const header = req.headers.authorization;
  if (header === undefined) throw new HttpError(401, "unauthorized: send a Kubernetes bearer token (Authorization: Bearer ...)");
  const m = /^Bearer +(\S+) *$/i.exec(header);
  if (!m?.[1]) throw new HttpError(401, "unauthorized: the Authorization header is not a bearer token");
  if (Buffer.byteLength(m[1]) > MAX_TOKEN_BYTES) throw new HttpError(401, `unauthorized: bearer tokens are at most ${MAX_TOKEN_BYTES} bytes`);
  return m[1];
}

/** One day past `now`'s UTC day: a whole-day range that covers every rollup. */
function allTime(now: number): { since: number; until: number } {
  return { since: 0, until: (Math.floor(now / DAY_MS) + 1) * DAY_MS };
}

/**
 * The namespaces the answer may read: `undefined` for every namespace (a caller who may get
 * apikeys cluster-wide), otherwise an allow-list. A request naming a namespace, or a key, the
 * caller may not see is a 403 whether or not it exists.
 */
async function scope(options: UsageApiHandlerOptions, caller: Caller, r: ApiRequest, now: number): Promise<readonly string[] | undefined> {
  const named = r.namespace ?? (r.key?.includes("/") ? r.key.slice(0, r.key.indexOf("/")) : undefined);
  let namespaces: readonly string[] | undefined;
  if (named !== undefined) {
    if (!(await options.auth.may(caller, named))) throw new HttpError(403, FORBIDDEN);
    namespaces = [named];
  } else if (!(await options.auth.may(caller, ""))) {
    namespaces = await options.auth.allowedAmong(caller, await options.queries.keyNamespaces());
  }
  if (r.key !== undefined && !r.key.includes("/")) {
    // A key id must name a key the caller may see, in the store or live: one they may not and one that never existed look the same.
    const live = liveKeys(options.console ?? NO_SOURCES, { key: r.key, ...(namespaces ? { namespaces } : {}) }) ?? [];
    if (live.length === 0) {
      const found = await options.queries.topKeys({ ...allTime(now), key: r.key, ...(namespaces ? { namespaces } : {}) }, 1);
      if (found.length === 0) throw new HttpError(403, FORBIDDEN);
    }
  }
  return namespaces;
}

const NO_SOURCES: ConsoleSources = { retentionMs: 0 };

/** The view's answer: its rows (`items`), with `total` for the inventory, or its one object (`item`). */
async function answer(options: UsageApiHandlerOptions, r: ApiRequest, f: UsageFilter, now: number): Promise<{ items: unknown[]; total?: number } | { item: unknown }> {
  const q = options.queries;
  const sources = options.console ?? NO_SOURCES;
  switch (r.view) {
    case "inventory":
      return inventory(q, sources, f, r, now);
    case "key": {
      const item = await keyDetail(q, sources, f);
      if (!item) throw new HttpError(404, "no such key");
      return { item };
    }
    case "review":
      return { item: await reviewView(q, sources, f, now) };
    case "alerts":
      return { items: await q.alertRecords(f, r.state === "firing") };
    default:
      return { items: await rows(q, r, f) };
  }
}

async function rows(q: Views, r: ApiRequest, f: UsageFilter): Promise<unknown[]> {
  switch (r.view) {
    case "keys":
      return q.topKeys(f, r.limit);
    case "timeline":
    case "latency":
      return q.timeline(f, r.step);
    case "denials":
      return q.denials(f, r.limit);
    case "status-codes":
      return q.statusCodes(f);
    case "endpoints":
      return q.endpoints(f, r.by, r.limit);
    case "countries":
      return q.countries(f, r.limit);
    case "networks":
      return q.networks(f, r.limit);
    default:
      throw new HttpError(404, "no such view");
  }
}

async function serve(options: UsageApiHandlerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== "GET") throw new HttpError(405, "method not allowed: the usage API answers GET");
  const target = req.url ?? "/";
  if (Buffer.byteLength(target) > MAX_URL_BYTES) throw new HttpError(414, `the request target is longer than ${MAX_URL_BYTES} bytes`);
  const token = bearerToken(req);
  const caller = await options.auth.authenticate(token);
  if (!caller) throw new HttpError(401, "unauthorized: the apiserver does not accept this bearer token");
  const now = (options.now ?? Date.now)();
  let r: ApiRequest;
  try {
    r = parseApiRequest(new URL(target, "http://usage-api"), now);
  } catch (err) {
    if (err instanceof BadRequest) throw new HttpError(err.status, err.message);
    throw new HttpError(400, "the request target is not a valid URL");
  }
  const namespaces = await scope(options, caller, r, now);
  const f: UsageFilter = {
    since: r.since,
    until: r.until,
    ...(namespaces ? { namespaces } : {}),
    ...(r.owner !== undefined ? { owner: r.owner } : {}),
    ...(r.selector !== undefined ? { selector: r.selector } : {}),
    ...(r.key !== undefined ? { key: r.key } : {}),
  };
  const body = await answer(options, r, f, now);
  options.log.debug("usage API answered", { user: caller.user.username, view: r.view, items: "items" in body ? body.items.length : 1 });
  send(res, 200, {
    view: r.view,
    since: new Date(r.since).toISOString(),
    until: new Date(r.until).toISOString(),
    namespaces: namespaces ? [...namespaces] : "all",
    ...body,
  });
}

/** The answer to a request that failed: its HttpError, 503 when a review failed, 500 otherwise. */
function refuse(options: UsageApiHandlerOptions, res: ServerResponse, err: unknown): void {
  if (err instanceof HttpError) {
    send(res, err.status, { error: err.message }, err.status === 401 ? { "www-authenticate": 'Bearer realm="keyward usage"' } : err.status === 405 ? { allow: "GET" } : {});
    return;
  }
  if (err instanceof KeywardError && err.code === "KubernetesRequestFailed") {
    // Fail closed: without an answer from the apiserver nobody is served.
    options.log.warn("usage API could not review a caller; refused", { err });
    send(res, 503, { error: "the caller could not be reviewed with the apiserver; try again" });
    return;
  }
  options.log.error("usage API query failed", { err });
  send(res, 500, { error: "the analytics store did not answer" });
}

/** The request listener of the usage API. */
export function usageApiHandler(options: UsageApiHandlerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const max = options.maxInFlight ?? MAX_IN_FLIGHT;
  let inFlight = 0;
  return (req, res) => {
    // Each unknown token costs a TokenReview: a flood of them is refused, not queued.
    if (inFlight >= max) {
      send(res, 503, { error: "the usage API is busy; try again" }, { "retry-after": "1" });
      return;
    }
    inFlight++;
    serve(options, req, res)
      .catch((err: unknown) => {
        refuse(options, res, err);
      })
      .finally(() => {
        inFlight--;
      });
  };
}

export interface UsageApiOptions extends UsageApiHandlerOptions {
  /** host:port to listen on. */
  address: string;
  /** Serves TLS with these files when given (no client certificates asked). */
  tls?: TlsSource;
}

export interface UsageApi {
  /** The usage API's port (the console's when only it is served). */
  readonly port: number;
  /** The hosted console's port, when --console-address is set. */
  readonly consolePort?: number;
  stop(): Promise<void>;
}

/** Listens on `address` with `listener`, over TLS when given, with the usage API's bounds on request heads and times. */
async function serveOn(what: string, address: string, listener: (req: IncomingMessage, res: ServerResponse) => void, tls: TlsSource | undefined): Promise<UsageApi> {
  const limits = { maxHeaderSize: MAX_HEADER_BYTES, headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS };
  let server: Server;
  if (tls) {
    const https = createHttpsServer({ ...tlsServerOptions(tls, HANDSHAKE_TIMEOUT_MS), ...limits }, listener);
    followTls(https, tls);
    server = https;
  } else server = createServer(limits, listener);
  const listening = await listen(server, address).catch((err: unknown) => {
    throw new KeywardError("ListenFailed", `${what}: cannot listen on ${address}`, { cause: err });
  });
  return { port: listening.port, stop: () => listening.stop() };
}

/** Listens on `address` and serves the usage API until stopped. */
export async function listenUsageApi(options: UsageApiOptions): Promise<UsageApi> {
  const api = await serveOn("usage API", options.address, usageApiHandler(options), options.tls);
  return {
    port: api.port,
    stop: async () => {
      await api.stop();
      options.tls?.close();
    },
  };
}

/** Listens on `address` and serves the console's pages and, under /api/v1/, the usage API (hosted mode, docs/console.md). */
export async function listenConsole(options: UsageApiOptions & { files?: ConsoleFiles }): Promise<UsageApi> {
  return serveOn("console", options.address, consoleRoutes(options.files ?? new ConsoleFiles(), usageApiHandler(options)), options.tls);
}

export interface StartUsageApiOptions {
  config: Config;
  /** The client the reviews are sent with. */
  rest: KubeRest;
  queries: Views;
  /** The data plane's live ApiKeys, for the console views (docs/console.md). */
  live?: () => readonly ApiKey[] | undefined;
  log: Logger;
  /** Replaces the apiserver's reviews (tests). */
  reviewer?: Reviewer;
}

/** How long the review view reuses the ApiKeyPolicies it listed. */
const POLICIES_TTL_MS = 30_000;

/** The console views' sources: the live ApiKeys, and the ApiKeyPolicies listed with keyward's own client (kept for 30 s). */
export function consoleSources(rest: Pick<KubeRest, "request">, live: (() => readonly ApiKey[] | undefined) | undefined, retentionMs: number, now: () => number = Date.now): ConsoleSources {
  let cached: { at: number; policies: Promise<readonly ApiKeyPolicy[]> } | undefined;
  const policies = (): Promise<readonly ApiKeyPolicy[]> => {
    if (!cached || now() - cached.at >= POLICIES_TTL_MS) {
      const listed = rest.request<{ items: ApiKeyPolicy[] }>("GET", `/apis/${API_VERSION}/${APIKEYPOLICY_PLURAL}`).then((l) => l.items);
      const entry = { at: now(), policies: listed };
      // A failed list is asked again by the next review, not remembered.
      listed.catch(() => {
        if (cached === entry) cached = undefined;
      });
      cached = entry;
    }
    return cached.policies;
  };
  return { ...(live ? { live } : {}), policies, retentionMs };
}

/** The usage API (--usage-api-address) and the hosted console (--console-address) as keyward's configuration describes them: TokenReview and SubjectAccessReview on the apiserver, TLS with --tls-cert-file. */
export async function startUsageApi(options: StartUsageApiOptions): Promise<UsageApi> {
  const c = options.config;
  const authOptions: ApiAuthOptions = { audiences: c.usageApiAudiences, cacheTtlMs: c.usageApiCacheTtl };
  const tls = c.tlsCertFile
    ? await TlsSource.open(
        { certFile: c.tlsCertFile, keyFile: c.tlsKeyFile, clientCaFile: "", requireClientCert: false, reloadIntervalMs: c.tlsReloadInterval },
        {
          onReloadFailed: (err) => {
            options.log.warn("TLS files changed but do not load; the usage API serves the previous certificate", { err });
          },
        },
      )
    : undefined;
  const handler: UsageApiHandlerOptions = {
    queries: options.queries,
    console: consoleSources(options.rest, options.live, c.analyticsRetention),
    // One cache of reviews for both ports.
    auth: new ApiAuth(options.reviewer ?? new KubeReviewer(options.rest), authOptions),
    log: options.log,
  };
  const started: UsageApi[] = [];
  try {
    if (c.usageApiAddress) {
      const api = await serveOn("usage API", c.usageApiAddress, usageApiHandler(handler), tls);
      started.push(api);
      options.log.info("usage API serving", { address: c.usageApiAddress, port: api.port, tls: Boolean(tls) });
    }
    if (c.consoleAddress) {
      const web = await listenConsole({ ...handler, address: c.consoleAddress, ...(tls ? { tls } : {}) });
      started.push(web);
      options.log.info("console serving", { address: c.consoleAddress, port: web.port, tls: Boolean(tls) });
    }
  } catch (err) {
    for (const s of started) await s.stop();
    tls?.close();
    throw err;
  }
  return {
    port: started[0]?.port ?? 0,
    ...(c.consoleAddress ? { consolePort: started[started.length - 1]?.port ?? 0 } : {}),
    stop: async () => {
      for (const s of started) await s.stop();
      tls?.close();
    },
  };
}
