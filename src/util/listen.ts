// An HTTP(S) server put on a listen address, and stopped with its open connections.
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { splitHostPort } from "./hostport.ts";

export interface Listening {
  /** The port bound (the one asked for, or the one given for port 0). */
  readonly port: number;
  /** Stops accepting, closes open connections, and resolves once the server has closed. */
  stop(): Promise<void>;
}

/** Listens on `address` (host:port); rejects with the server's error when it cannot bind. */
export async function listen(server: Server, address: string): Promise<Listening> {
  const [host, port] = splitHostPort(address);
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
