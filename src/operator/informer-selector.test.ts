// The operator's Secret watch asks the apiserver for keyward's Secrets only: the
// label selector is on the list and on the watch request, so other Secrets never
// reach the process (an HTTP server stands in for the apiserver and records the URLs).
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";
import { afterEach, describe, expect, it } from "vitest";
import { MANAGED_SECRETS_SELECTOR } from "./secrets.ts";
import { CollectionWatch } from "../k8s/informer.ts";
import { KubeRest } from "../k8s/rest.ts";

let server: Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
});

async function fakeApiserver(urls: URL[]): Promise<KubeConfig> {
  server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    urls.push(url);
    res.setHeader("content-type", "application/json");
    if (url.searchParams.get("sendInitialEvents") === "true") {
      // A watch-list (the informer's list): no objects, then the bookmark that ends them.
      res.end(`${JSON.stringify({ type: "BOOKMARK", object: { metadata: { resourceVersion: "7", annotations: { "k8s.io/initial-events-end": "true" } } } })}\n`);
      return;
    }
    if (url.searchParams.get("watch") === "true") {
      res.flushHeaders(); // a watch that stays open and quiet
      return;
    }
    res.end(JSON.stringify({ kind: "SecretList", items: [], metadata: { resourceVersion: "7" } }));
  });
  await new Promise<void>((r) => server?.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "c", server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: "u" }],
    contexts: [{ name: "c", cluster: "c", user: "u" }],
    currentContext: "c",
  });
  return kc;
}

const until = async (cond: () => boolean, ms = 5000): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setImmediate(r));
  }
};

describe("CollectionWatch with a label selector", () => {
  it.each([[[] as string[]], [["team-a", "team-b"]]])("lists and watches only the selected objects (namespaces %j)", async (namespaces) => {
    const urls: URL[] = [];
    const kc = await fakeApiserver(urls);
    const rest = new KubeRest(kc, { qps: 0 });
    const w = new CollectionWatch(kc, rest, {
      apiPrefix: "/api/v1",
      plural: "secrets",
      namespaces,
      labelSelector: MANAGED_SECRETS_SELECTOR,
      staleAfterMs: 60_000,
      resyncMs: 0,
      onChange: () => undefined,
    });
    await w.start();
    const paths = namespaces.length ? namespaces.map((ns) => `/api/v1/namespaces/${ns}/secrets`) : ["/api/v1/secrets"];
    await until(() => urls.filter((u) => u.searchParams.get("watch") === "true" && !u.searchParams.has("sendInitialEvents")).length === paths.length);
    await w.stop();
    rest.close();
    expect(urls.map((u) => u.pathname).sort()).toEqual([...paths, ...paths].sort());
    for (const u of urls) expect(u.searchParams.get("labelSelector")).toBe("app.kubernetes.io/managed-by=keyward,keyward.dev/apikey");
  });
});
