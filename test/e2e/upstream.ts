// The small servers the proxy suites put behind (and beside) a real proxy: an
// application that echoes what reached it, and an ext_authz server that never answers.
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { createServer as createH2Server, type Http2Server, type Http2Session } from "node:http2";
import type { AddressInfo } from "node:net";

/** One request as the application received it. */
export interface Received {
  method: string;
  /** The request-target as sent: path and query. */
  url: string;
  headers: IncomingHttpHeaders;
}

export interface EchoUpstream {
  port: number;
  /** Every request that reached the application, oldest first. */
  seen: Received[];
  close(): Promise<void>;
}

/**
 * An application that answers every request with 200 and a JSON body of what it received
 * (method, url, headers); a path starting with /fail/ is answered 503 instead.
 */
export async function startEchoUpstream(): Promise<EchoUpstream> {
  const seen: Received[] = [];
  const server: Server = createServer((req, res) => {
    const got: Received = { method: req.method ?? "", url: req.url ?? "", headers: req.headers };
    seen.push(got);
    const body = JSON.stringify(got);
    res.writeHead(got.url.startsWith("/fail/") ? 503 : 200, { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => { r(); }));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => { r(); });
    }),
  };
}

export interface SilentServer {
  port: number;
  /** Calls received (and never answered). */
  calls(): number;
  close(): Promise<void>;
}

/** An HTTP/2 server that accepts every gRPC call and never answers it: a hung ext_authz server. */
export async function startSilentGrpcServer(): Promise<SilentServer> {
  let calls = 0;
  const sessions = new Set<Http2Session>();
  const server: Http2Server = createH2Server();
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
    session.on("error", () => undefined);
  });
  server.on("stream", (stream) => {
    calls++;
    stream.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => { r(); }));
  return {
    port: (server.address() as AddressInfo).port,
    calls: () => calls,
    close: () => new Promise<void>((r) => {
      for (const s of sessions) s.destroy();
      server.close(() => { r(); });
    }),
  };
}
