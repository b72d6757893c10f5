// The HTTP front end for proxies that ask over plain HTTP: nginx auth_request,
// Traefik forwardAuth, Envoy's HTTP ext_authz. Same checks and decisions as gRPC.
//
// The original request is read from the headers these proxies send:
//   method: X-Forwarded-Method (Traefik), X-Original-Method (nginx recipe), else the request's own;
//   host:   X-Forwarded-Host, else Host;
//   path:   X-Forwarded-Uri (Traefik), X-Original-URI (nginx recipe), else the request's own path.
// The proxy appends the address of its own peer to X-Forwarded-For; that last
// entry is the peer, and trusted hops count from there.
// 2xx allows (with key id and owner headers), anything else denies.
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { splitHostPort } from "../metrics/server.ts";
import { followTls, tlsServerOptions, type TlsSource } from "../tls/source.ts";
import type { CheckInput, Decision } from "./check.ts";
import { decide, type FrontOptions } from "./front.ts";
import { denialBody, denialHeaders, okHeaders, okResponseHeaders, type ResponseOptions } from "./response.ts";

export interface HttpFront {
  port: number;
  stop(): Promise<void>;
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(",") : v;
}

export function httpCheckInput(req: IncomingMessage): CheckInput {
  const h = req.headers;
  const header = (n: string): string | undefined => (Object.hasOwn(h, n) ? first(h[n]) : undefined);
  const xff = header("x-forwarded-for");
  let peerAddress: string | undefined;
  let forwardedFor: string | undefined;
  if (xff !== undefined) {
    const comma = xff.lastIndexOf(",");
    peerAddress = xff.slice(comma + 1).trim() || undefined;
    forwardedFor = comma === -1 ? undefined : xff.slice(0, comma);
  }
  return {
    method: header("x-forwarded-method") ?? header("x-original-method") ?? req.method,
    host: header("x-forwarded-host") ?? header("host"),
    path: header("x-forwarded-uri") ?? header("x-original-uri") ?? req.url,
    header,
    peerAddress,
    forwardedFor,
  };
}

export function writeDecision(res: ServerResponse, d: Decision, o: ResponseOptions): void {
  if (d.status === 200) {
    for (const [k, v] of okHeaders(d, o)) res.setHeader(k, v);
    for (const [k, v] of okResponseHeaders(d)) res.setHeader(k, v);
    res.writeHead(200, { "content-length": "0" });
    res.end();
    return;
  }
  const body = denialBody(d.status);
  for (const [k, v] of denialHeaders(d, o)) res.setHeader(k, v);
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

export async function startHttpFront(o: FrontOptions): Promise<HttpFront> {
  const server = listenerServer(o.tls, (req, res) => {
    const t0 = performance.now();
    const { decision: d, input } = decide(o, req, httpCheckInput);
    // The body of an auth request is never read; drain it so the socket can be reused.
    req.resume();
    const cancelled = res.destroyed;
    try {
      if (!cancelled) writeDecision(res, d, o.response);
    } catch (err) {
      o.onError(err);
      res.destroy();
    }
    o.onDecision(d, (performance.now() - t0) / 1000, input, cancelled);
  });
  server.on("clientError", (_err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
    else socket.destroy();
  });
  const [host, port] = splitHostPort(o.address);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(port), host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}
