// The usage API: the analytics store's views over HTTP, on a port of its own
// (--usage-api-address), for whoever Kubernetes says the bearer token is, and
// limited to the namespaces where they may `get apikeys` (ADR 0044,
// docs/usage.md "Usage API"). The Authorization header identifies a caller;
// X-Remote-User and the like are read only from the apiserver's front proxy, on
// a connection whose client certificate proves it (src/usage/front-proxy.ts,
// ADR 0046). The same views are served as the aggregated API
// usage.keyward.dev/v1alpha1 (src/usage/aggregated.ts).
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AnalyticsQueries, UsageFilter } from "../analytics/queries.ts";
import { APIKEYPOLICY_PLURAL, API_VERSION, type ApiKey, type ApiKeyPolicy } from "../api/types.ts";
import { DAY_MS } from "../analytics/days.ts";
import type { Config } from "../config/config.ts";
import { KeywardError } from "../errors.ts";
import type { KubeRest } from "../k8s/rest.ts";
import type { Logger } from "../log.ts";
import { followTls, tlsServerOptions, TlsSource } from "../tls/source.ts";
import { listen } from "../util/listen.ts";
import { aggregatedRoute } from "./aggregated.ts";
import { consoleRoutes } from "../console/server.ts";
import { ConsoleFiles } from "../console/static.ts";
import { ApiAuth, KubeReviewer, type ApiAuthOptions, type Caller, type Reviewer } from "./api-auth.ts";
import { BadRequest, parseApiRequest, type ApiRequest } from "./api-request.ts";
import { inventory, keyDetail, liveKeys, reviewView, type ConsoleQueries, type ConsoleSources } from "./console-views.ts";
import { FrontProxyTrust, configMapLoader, fileLoader, AUTHENTICATION_CONFIGMAP } from "./front-proxy.ts";

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
  /** The apiserver's front proxy, whose X-Remote-* headers name the caller on its verified connections (ADR 0046). */
  frontProxy?: Pick<FrontProxyTrust, "user" | "clientCa" | "onCaChange">;
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

/** A strong ETag of an answer: the SHA-256 of its exact bytes. */
export function answerEtag(text: string): string {
  return `"${createHash("sha256").update(text).digest("base64url")}"`;
}

/** Whether the request's If-None-Match names `etag` (or is `*`): its copy is current (RFC 9110, 13.1.2). */
function notModified(req: IncomingMessage, etag: string): boolean {
  const header = req.headers["if-none-match"];
  if (header === undefined) return false;
  return header.split(",").some((t) => {
    const tag = t.trim();
    return tag === "*" || tag === etag || tag === `W/${etag}`;
  });
}

/**
 * A view's answer with its ETag, or 304 and no body when the caller already holds it: a console
 * polling an unchanged inventory fetches a few hundred bytes instead of megabytes. The answer is
 * computed either way (it is what the tag is taken from); only its transfer is saved.
 */
export function sendView(req: IncomingMessage, res: ServerResponse, body: unknown): void {
  const text = JSON.stringify(body);
  const etag = answerEtag(text);
  if (notModified(req, etag)) {
    res.writeHead(304, { etag, "cache-control": "no-store", "x-content-type-options": "nosniff" });
    res.end();
    return;
  }
  res.writeHead(200, {
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(text)),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    etag,
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

/** The caller: the user a verified front proxy names, else the bearer token's (a 401 when neither). */
async function identify(options: UsageApiHandlerOptions, req: IncomingMessage): Promise<Caller> {
  const proxied = options.frontProxy?.user(req);
  if (proxied) return options.auth.proxied(proxied);
  const caller = await options.auth.authenticate(bearerToken(req));
  if (!caller) throw new HttpError(401, "unauthorized: the apiserver does not accept this bearer token");
  return caller;
}

async function serve(options: UsageApiHandlerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== "GET") throw new HttpError(405, "method not allowed: the usage API answers GET");
  const target = req.url ?? "/";
  if (Buffer.byteLength(target) > MAX_URL_BYTES) throw new HttpError(414, `the request target is longer than ${MAX_URL_BYTES} bytes`);
  const caller = await identify(options, req);
  const now = (options.now ?? Date.now)();
  let r: ApiRequest;
  try {
    const url = new URL(target, "http://usage-api");
    const route = aggregatedRoute(url.pathname);
    if (route && "discovery" in route) {
      send(res, 200, route.discovery);
      return;
    }
    if (route) url.pathname = route.pathname;
    r = parseApiRequest(url, now);
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
  // An inventory asked without a range reads none but the last 24 h of its requests24h column:
  // its answer names no range, so that it stays the same, tag included, while the keys do.
  const range = r.view === "inventory" && !r.ranged ? {} : { since: new Date(r.since).toISOString(), until: new Date(r.until).toISOString() };
  sendView(req, res, { view: r.view, ...range, namespaces: namespaces ? [...namespaces] : "all", ...body });
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
  /** Serves TLS with these files when given; client certificates are asked for (and optional) only with a front proxy. */
  tls?: TlsSource;
}

export interface UsageApi {
  /** The usage API's port (the console's when only it is served). */
  readonly port: number;
  /** The front proxy trusted, with --usage-api-front-proxy (tests refresh it). */
  readonly frontProxy?: FrontProxyTrust;
  /** The hosted console's port, when --console-address is set. */
  readonly consolePort?: number;
  stop(): Promise<void>;
}

/** Listens on `address` with `listener`, over TLS when given, with the usage API's bounds on request heads and times. */
async function serveOn(what: string, address: string, listener: (req: IncomingMessage, res: ServerResponse) => void, tls: TlsSource | undefined, proxy?: UsageApiHandlerOptions["frontProxy"]): Promise<UsageApi> {
  const limits = { maxHeaderSize: MAX_HEADER_BYTES, headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS };
  let server: Server;
  if (tls) {
    // With a front proxy, a client certificate is asked for but optional: one the requestheader CA
    // does not verify only means the connection is no front proxy (its X-Remote-* headers go unread).
    const ca = proxy?.clientCa;
    const clientCerts = proxy ? { requestCert: true, rejectUnauthorized: false, ...(ca ? { ca } : {}) } : {};
    const https = createHttpsServer({ ...tlsServerOptions(tls, HANDSHAKE_TIMEOUT_MS), ...clientCerts, ...limits }, listener);
    const apply = followTls(https, tls, proxy ? () => proxy.clientCa : undefined);
    proxy?.onCaChange(apply);
    server = https;
  } else server = createServer(limits, listener);
  const listening = await listen(server, address).catch((err: unknown) => {
    throw new KeywardError("ListenFailed", `${what}: cannot listen on ${address}`, { cause: err });
  });
  return { port: listening.port, stop: () => listening.stop() };
}

/** Listens on `address` and serves the usage API until stopped. */
export async function listenUsageApi(options: UsageApiOptions): Promise<UsageApi> {
  const api = await serveOn("usage API", options.address, usageApiHandler(options), options.tls, options.frontProxy);
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
  now?: () => number;
}

/** The front proxy --usage-api-front-proxy names: the apiserver's ConfigMap, files, or none. */
async function startFrontProxy(c: Config, rest: KubeRest, log: Logger): Promise<FrontProxyTrust | undefined> {
  if (c.usageApiFrontProxy === "off") return undefined;
  const { namespace, name } = AUTHENTICATION_CONFIGMAP;
  const fromCluster = c.usageApiFrontProxy === "cluster";
  return FrontProxyTrust.start({
    load: fromCluster
      ? configMapLoader(rest)
      : fileLoader(c.usageApiRequestheaderClientCaFile, {
          allowedNames: c.usageApiRequestheaderAllowedNames,
          usernameHeaders: c.usageApiRequestheaderUsernameHeaders,
          uidHeaders: c.usageApiRequestheaderUidHeaders,
          groupHeaders: c.usageApiRequestheaderGroupHeaders,
          extraPrefixes: c.usageApiRequestheaderExtraHeadersPrefix,
        }),
    source: fromCluster ? `ConfigMap ${namespace}/${name}` : c.usageApiRequestheaderClientCaFile,
    refreshMs: c.usageApiRequestheaderRefresh,
    log,
  });
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
  const frontProxy = await startFrontProxy(c, options.rest, options.log);
  const handler: UsageApiHandlerOptions = {
    queries: options.queries,
    console: consoleSources(options.rest, options.live, c.analyticsRetention),
    // One cache of reviews for both ports.
    auth: new ApiAuth(options.reviewer ?? new KubeReviewer(options.rest), authOptions),
    log: options.log,
    ...(options.now ? { now: options.now } : {}),
  };
  const started: UsageApi[] = [];
  try {
    if (c.usageApiAddress) {
      const api = await serveOn("usage API", c.usageApiAddress, usageApiHandler({ ...handler, ...(frontProxy ? { frontProxy } : {}) }), tls, frontProxy);
      started.push(api);
      options.log.info("usage API serving", { address: c.usageApiAddress, port: api.port, tls: Boolean(tls), frontProxy: c.usageApiFrontProxy });
    }
    if (c.consoleAddress) {
      const web = await listenConsole({ ...handler, address: c.consoleAddress, ...(tls ? { tls } : {}) });
      started.push(web);
      options.log.info("console serving", { address: c.consoleAddress, port: web.port, tls: Boolean(tls) });
    }
  } catch (err) {
    for (const s of started) await s.stop();
    frontProxy?.stop();
    tls?.close();
    throw err;
  }
  return {
    port: started[0]?.port ?? 0,
    ...(frontProxy ? { frontProxy } : {}),
    ...(c.consoleAddress ? { consolePort: started[started.length - 1]?.port ?? 0 } : {}),
    stop: async () => {
      frontProxy?.stop();
      for (const s of started) await s.stop();
      tls?.close();
    },
  };
}
