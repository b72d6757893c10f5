// The HTTP front end for proxies that ask over plain HTTP: nginx auth_request,
// Traefik forwardAuth, Envoy's HTTP ext_authz. Same checks and decisions as gRPC.
//
// The original request is read only from what the configured proxy itself sets
// (--http-auth-proxy); every other forwarding header is ignored, because a proxy
// passes on the client's own headers and a client can send any of them:
//   nginx:   X-Original-Method, X-Original-URI (the recipe's proxy_set_header) and Host;
//   traefik: X-Forwarded-Method, X-Forwarded-Host, X-Forwarded-Uri (forwardAuth sets them);
//   envoy:   the check request's own method, path (without http_service.path_prefix) and Host.
// Each must be there exactly once; a missing or repeated one is a bad request.
// The proxy appends the address of its own peer to X-Forwarded-For; that last
// entry is the peer, and trusted hops count from there.
// 2xx allows (with key id and owner headers, and the URI to send upstream without
// the query parameters the key was in; for Envoy, the headers the key was in, which
// Envoy removes), anything else denies.
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { listen } from "../util/listen.ts";
import { followTls, tlsServerOptions, type TlsSource } from "../tls/source.ts";
import type { CheckInput, Decision } from "../check/decision.ts";
import { queryParamName } from "./credentials.ts";
import { decide, type Decided, type FrontOptions } from "./front.ts";
import { denialBody, denialHeaders, okHeaders, okResponseHeaders, type ResponseOptions } from "./response.ts";

export interface HttpFront {
  port: number;
  stop(): Promise<void>;
}

/** The proxies the HTTP front can sit behind (--http-auth-proxy). */
export const HTTP_PROXIES = ["nginx", "traefik", "envoy"] as const;
export type HttpProxy = (typeof HTTP_PROXIES)[number];

export interface HttpFrontOptions extends FrontOptions {
  /** The proxy that calls this endpoint: only its headers say what the original request was. */
  proxy: HttpProxy;
  /** With envoy: http_service.path_prefix, removed from the check request's path. */
  pathPrefix?: string;
}

/** All values of a header, joined with "," as repeated headers are. */
function joinedValues(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(",") : v;
}

/** The value of header `name` (lowercase) if the request has it exactly once. */
function single(req: IncomingMessage, name: string): string | undefined {
  const raw = req.rawHeaders;
  let value: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i];
    if (n?.length !== name.length || n.toLowerCase() !== name) continue;
    if (value !== undefined) return undefined;
    value = raw[i + 1];
  }
  return value;
}

/** The check request's path without `prefix`, or undefined when it does not start with it. */
function withoutPrefix(url: string | undefined, prefix: string): string | undefined {
  if (url === undefined || !url.startsWith(prefix)) return undefined;
  return url.slice(prefix.length);
}

/** What the original request was, as the configured proxy tells it. */
function originalRequest(req: IncomingMessage, proxy: HttpProxy, pathPrefix: string): Pick<CheckInput, "method" | "host" | "path"> {
  switch (proxy) {
    case "nginx":
      return { method: single(req, "x-original-method"), host: single(req, "host"), path: single(req, "x-original-uri") };
    case "traefik":
      return { method: single(req, "x-forwarded-method"), host: single(req, "x-forwarded-host"), path: single(req, "x-forwarded-uri") };
    case "envoy":
      return { method: req.method, host: single(req, "host"), path: withoutPrefix(req.url, pathPrefix) };
  }
}

/** Reads a check request sent by `proxy` into the Checker's input. */
export function httpCheckInput(proxy: HttpProxy, pathPrefix = ""): (req: IncomingMessage) => CheckInput {
  return (req) => {
    const h = req.headers;
    const header = (n: string): string | undefined => (Object.hasOwn(h, n) ? joinedValues(h[n]) : undefined);
    const xff = header("x-forwarded-for");
    let peerAddress: string | undefined;
    let forwardedFor: string | undefined;
    if (xff !== undefined) {
      const comma = xff.lastIndexOf(",");
      peerAddress = xff.slice(comma + 1).trim() || undefined;
      forwardedFor = comma === -1 ? undefined : xff.slice(0, comma);
    }
    return { ...originalRequest(req, proxy, pathPrefix), header, peerAddress, forwardedFor };
  };
}

/** Response header of an allowed check: the URI to send upstream, without the query parameters the key was in. */
export const UPSTREAM_URI_HEADER = "x-keyward-upstream-uri";

/**
 * `uri` without the query parameters named in `names` (as findKey reads names: decoded);
 * everything else, the path and the order of the other parameters, unchanged.
 */
export function withoutQueryParams(uri: string, names: readonly string[]): string {
  const q = uri.indexOf("?");
  if (names.length === 0 || q === -1) return uri;
  const hash = uri.indexOf("#", q);
  const end = hash === -1 ? uri.length : hash;
  const kept = uri
    .slice(q + 1, end)
    .split("&")
    .filter((part) => {
      const name = queryParamName(part);
      return name === undefined || !names.includes(name);
    });
  return `${uri.slice(0, q)}${kept.length > 0 ? `?${kept.join("&")}` : ""}${uri.slice(end)}`;
}

/**
 * Response header of an allowed check that Envoy's HTTP ext_authz reads: the request headers it
 * removes before the request goes upstream. keyward names the headers the key was found in.
 */
export const ENVOY_HEADERS_TO_REMOVE = "x-envoy-auth-headers-to-remove";

export function writeDecision(res: ServerResponse, d: Decision, responseOptions: ResponseOptions, input?: CheckInput, proxy?: HttpProxy): void {
  if (d.status === 200) {
    for (const [k, v] of okHeaders(d, responseOptions)) res.setHeader(k, v);
    for (const [k, v] of okResponseHeaders(d)) res.setHeader(k, v);
    if (input?.path !== undefined) res.setHeader(UPSTREAM_URI_HEADER, withoutQueryParams(input.path, d.removeQueryParams));
    if (proxy === "envoy" && d.removeHeaders.length > 0) res.setHeader(ENVOY_HEADERS_TO_REMOVE, d.removeHeaders.join(","));
    res.writeHead(200, { "content-length": "0" });
    res.end();
    return;
  }
  const body = denialBody(d.status);
  for (const [k, v] of denialHeaders(d, responseOptions)) res.setHeader(k, v);
  res.writeHead(d.status, { "content-length": String(Buffer.byteLength(body)) });
  res.end(body);
}

/** How long a client has to complete the TLS handshake on the HTTP port. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** An HTTP/1.1 server, over TLS when given a TlsSource (reloaded as its files change). */
function listenerServer(tls: TlsSource | undefined, listener: RequestListener): Server {
  if (!tls) return createServer(listener);
  const server = createHttpsServer(tlsServerOptions(tls, HANDSHAKE_TIMEOUT_MS), listener);
  followTls(server, tls);
  return server;
}

export async function startHttpFront(front: HttpFrontOptions): Promise<HttpFront> {
  const toInput = httpCheckInput(front.proxy, front.pathPrefix);
  const server = listenerServer(front.tls, (req, res) => {
    const t0 = performance.now();
    const answer = ({ decision: d, input }: Decided): void => {
      const cancelled = res.destroyed;
      try {
        if (!cancelled) writeDecision(res, d, front.response, input, front.proxy);
      } catch (err) {
        front.onError(err);
        res.destroy();
      }
      front.onDecision(d, (performance.now() - t0) / 1000, input, cancelled);
    };
    const done = decide(front, req, toInput);
    // The body of an auth request is never read; drain it so the socket can be reused.
    req.resume();
    if (done instanceof Promise) void done.then(answer);
    else answer(done);
  });
  server.on("clientError", (_err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
    else socket.destroy();
  });
  return listen(server, front.address);
}
