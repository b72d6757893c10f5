// An HTTP/2 listener: cleartext with prior knowledge (as Envoy's and Istio's gRPC
// clients speak to an ext_authz cluster), or TLS with ALPN h2 when given a
// TlsSource. Accepts connections and runs an H2Connection on each. Works in
// node:cluster workers like any net.Server.
import { createServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import { KeywardError } from "../errors.ts";
import { followTls, tlsServerOptions, type TlsSource } from "../tls/source.ts";
import { H2Connection, type H2Handler } from "./connection.ts";
import { DEFAULT_LIMITS, type H2Limits, type H2Violation } from "./limits.ts";

export interface H2ServerOptions {
  /** host:port; an IPv6 host in brackets ([::]:9001). Port 0 picks a free one. */
  address: string;
  handler: H2Handler;
  limits?: Partial<H2Limits>;
  /** A connection failed on something other than a protocol error (a bug); it was closed. */
  onInternalError?: (err: unknown) => void;
  /** Serve TLS (ALPN h2) with this certificate, reloaded as it changes; cleartext without it. */
  tls?: TlsSource;
  /** A peer overstepped a limit (limits.ts); its connection was closed (or, for "connections", refused). */
  onViolation?: (kind: H2Violation) => void;
}

export interface H2Server {
  port: number;
  /** Open connections. */
  connections(): number;
  /**
   * Stops listening, sends GOAWAY on every connection and waits for their open streams to end;
   * after graceMs what is left is closed.
   */
  close(graceMs: number): Promise<void>;
}

/** Splits "host:port" (or "[v6]:port"). */
export function parseHostPort(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(address);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new KeywardError("ConfigInvalid", `listen address ${JSON.stringify(address)} is not host:port`);
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

export async function startH2Server(options: H2ServerOptions): Promise<H2Server> {
  const { host, port } = parseHostPort(options.address);
  const limits: H2Limits = { ...DEFAULT_LIMITS, ...options.limits };
  const open = new Set<H2Connection>();
  const onViolation = options.onViolation ?? (() => undefined);
  const serve = (socket: Socket): void => {
    // A TLS client refused before this listener ran (followTls) is already gone.
    if (socket.destroyed) return;
    if (open.size >= limits.maxConnections) {
      onViolation("connections");
      socket.destroy();
      return;
    }
    const c = new H2Connection(socket, options.handler, limits, options.onInternalError, onViolation);
    open.add(c);
    // Counted until the socket itself closed: a connection that failed may still hold it for a while.
    socket.once("close", () => open.delete(c));
  };
  let server: Server;
  if (options.tls) {
    // The handshake gets the same time as the client preface that follows it. A client that offers
    // ALPN without h2 is refused in the handshake; one that offers none speaks prior knowledge.
    const tlsServer = createTlsServer({ ...tlsServerOptions(options.tls, limits.prefaceTimeoutMs), ALPNProtocols: ["h2"], noDelay: true }, serve);
    followTls(tlsServer, options.tls);
    server = tlsServer;
  } else {
    server = createServer({ noDelay: true }, serve);
  }
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) => {
      reject(new KeywardError("ListenFailed", `cannot listen on ${options.address}`, { cause: err }));
    });
    server.listen(port, host, () => {
      resolve();
    });
  });
  const addr = server.address();
  return {
    port: typeof addr === "object" && addr ? addr.port : port,
    connections: () => open.size,
    close: async (graceMs) => {
      const stopped = new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
      for (const c of open) c.drain();
      const all = Promise.all([...open].map((c) => c.closed()));
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          for (const c of open) c.destroy();
          resolve();
        }, graceMs);
      });
      await Promise.race([all, late]);
      clearTimeout(timer);
      // destroy() closes a socket asynchronously: wait for it, so that the handlers have seen
      // every onAbort by the time close() resolves.
      await all;
      await stopped;
    },
  };
}
