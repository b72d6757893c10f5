// The /metrics, /healthz and /readyz endpoint every keyward process serves.
import { createServer, type Server } from "node:http";
import { splitHostPort } from "../util/hostport.ts";

export interface HealthSource {
  /** Live: the process works. Ready: it can serve (caches synced). */
  ready(): boolean;
}

/** What /metrics serves: a prom-client Registry, or the metrics of a worker pool (src/cluster/pool.ts). */
export interface MetricsSource {
  metrics(): Promise<string>;
  readonly contentType: string;
}

export async function startMetricsServer(address: string, registry: MetricsSource, health: HealthSource): Promise<Server> {
  const [host, portText] = splitHostPort(address);
  const server = createServer((req, res) => {
    const url = req.url ?? "/";
    if (url === "/metrics") {
      registry
        .metrics()
        .then((text) => {
          res.writeHead(200, { "content-type": registry.contentType });
          res.end(text);
        })
        .catch((err: unknown) => {
          res.writeHead(500);
          res.end(String(err));
        });
      return;
    }
    if (url === "/healthz" || url === "/livez") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("ok\n");
      return;
    }
    if (url === "/readyz") {
      const ok = health.ready();
      res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" });
      res.end(ok ? "ok\n" : "not ready\n");
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(portText), host, () => {
      resolve();
    });
  });
  return server;
}
