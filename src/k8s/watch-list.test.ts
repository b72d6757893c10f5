// Lists by watch-list, and one watch shared by several readers: an HTTP server stands in
// for the apiserver, answering watch-lists (one JSON event a line, written in pieces that
// split lines), paged lists, and watches that stay open.
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { KubeConfig, type KubernetesObject } from "@kubernetes/client-node";
import { afterEach, describe, expect, it } from "vitest";
import { CollectionWatch, kubeListWatch, kubeWatch, watchList, type ChangeType, type ListSink } from "./informer.ts";
import { KubeApiError, KubeRest } from "./rest.ts";

interface Obj extends KubernetesObject {
  metadata: { name: string; namespace: string; resourceVersion: string; annotations?: Record<string, string> };
  spec?: { big?: string; small?: string };
}

const obj = (name: string, rv: number): Obj => ({ metadata: { name, namespace: "ns", resourceVersion: String(rv) }, spec: { big: "x".repeat(100), small: name } });
const event = (type: string, object: unknown): string => `${JSON.stringify({ type, object })}\n`;
const endOfInitialEvents = (rv: number): string => event("BOOKMARK", { metadata: { resourceVersion: String(rv), annotations: { "k8s.io/initial-events-end": "true" } } });

/** How the fake answers a watch-list request: the lines to write, or an error status. */
type WatchListAnswer = { lines: string[]; end?: boolean } | { status: number; body: unknown };

let server: Server | undefined;
const clients: KubeRest[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  server = undefined;
});

/** Writes `text` in pieces of 7 bytes, so that lines and UTF-8 sequences split across chunks. */
async function writeInPieces(res: ServerResponse, text: string): Promise<void> {
  const bytes = Buffer.from(text, "utf8");
  for (let i = 0; i < bytes.length; i += 7) {
    res.write(bytes.subarray(i, i + 7));
    await new Promise((r) => setImmediate(r));
  }
}

/** A kubeconfig for the fake at `server` (plain HTTP, which client-node's Watch allows only with skipTLSVerify). */
function kubeconfigFor(server: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "c", server, skipTLSVerify: true }],
    users: [{ name: "u" }],
    contexts: [{ name: "c", cluster: "c", user: "u" }],
    currentContext: "c",
  });
  return kc;
}

async function fakeApiserver(o: { watchList: () => WatchListAnswer; page?: () => unknown; watches?: ServerResponse[]; urls?: URL[]; watchStatus?: number; timeoutMs?: number }): Promise<KubeRest> {
  server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    o.urls?.push(url);
    res.setHeader("content-type", "application/json");
    if (url.searchParams.get("sendInitialEvents") === "true") {
      const a = o.watchList();
      if ("status" in a) {
        res.statusCode = a.status;
        res.end(JSON.stringify(a.body));
        return;
      }
      void writeInPieces(res, a.lines.join("")).then(() => {
        if (a.end) res.end();
      });
      return;
    }
    if (url.searchParams.get("watch") === "true") {
      if (o.watchStatus) {
        res.statusCode = o.watchStatus;
        res.end(JSON.stringify({ kind: "Status", code: o.watchStatus, reason: "Expired", message: "too old" }));
        return;
      }
      res.flushHeaders();
      o.watches?.push(res);
      return;
    }
    res.end(JSON.stringify(o.page?.() ?? { items: [], metadata: { resourceVersion: "1" } }));
  });
  await new Promise<void>((r) => server?.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  const rest = new KubeRest(kubeconfigFor(`http://127.0.0.1:${port}`), { qps: 0, ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}) });
  clients.push(rest);
  return rest;
}

const PATH = "/apis/x.dev/v1/namespaces/ns/things";
const small = (o: Obj): Obj => ({ metadata: o.metadata, spec: { small: o.spec?.small } });

/** A sink that records what a list hands it, in order. */
function recorder(): { sink: ListSink<Obj>; got: string[] } {
  const got: string[] = [];
  return { got, sink: { item: (o) => got.push(`item ${o.metadata.name}@${o.metadata.resourceVersion}`), gone: (o) => got.push(`gone ${o.metadata.name}`) } };
}
const ignore: ListSink<Obj> = { item: () => undefined, gone: () => undefined };

describe("watchList", () => {
  it("hands each object to the sink as it arrives, and deletions too, until the bookmark that ends the initial events", async () => {
    const rest = await fakeApiserver({
      watchList: () => ({
        lines: [
          event("ADDED", obj("a", 3)),
          event("BOOKMARK", { metadata: { resourceVersion: "4" } }), // a progress bookmark, not the end
          event("ADDED", { ...obj("ü-b", 5), spec: { big: "ä".repeat(50), small: "ö" } }),
          event("ADDED", obj("c", 6)),
          event("DELETED", obj("c", 7)),
          endOfInitialEvents(9),
          event("ADDED", obj("after", 10)), // after the end: the informer's watch hears it
        ],
      }),
    });
    const { sink, got } = recorder();
    const r = await watchList<Obj>(rest, PATH, {}, sink);
    expect(r).toEqual({ resourceVersion: "9" });
    expect(got).toEqual(["item a@3", "item ü-b@5", "item c@6", "gone c"]);
  });

  it("fails, and so never syncs, when the stream ends before the initial events do", async () => {
    const rest = await fakeApiserver({ watchList: () => ({ lines: [event("ADDED", obj("a", 3))], end: true }) });
    await expect(watchList<Obj>(rest, PATH, {}, ignore)).rejects.toThrow(/ended before its initial events did/);
  });

  it("fails with the apiserver's status on an ERROR event", async () => {
    const rest = await fakeApiserver({ watchList: () => ({ lines: [event("ERROR", { kind: "Status", code: 410, reason: "Expired", message: "too old" })] }) });
    const err = await watchList<Obj>(rest, PATH, {}, ignore).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeApiError);
    expect((err as KubeApiError).status).toBe(410);
  });

  it("fails with what the sink throws, and ends the request", async () => {
    const rest = await fakeApiserver({ watchList: () => ({ lines: [event("ADDED", obj("a", 3))] }) });
    await expect(
      watchList<Obj>(rest, PATH, {}, {
        item: () => {
          throw new Error("stopped");
        },
        gone: () => undefined,
      }),
    ).rejects.toThrow("stopped");
  });
});

describe("kubeListWatch", () => {
  it("lists by pages from then on where the apiserver refuses watch-lists", async () => {
    const urls: URL[] = [];
    let watchLists = 0;
    const rest = await fakeApiserver({
      urls,
      watchList: () => {
        watchLists++;
        return { status: 422, body: { kind: "Status", code: 422, reason: "Invalid", message: "sendInitialEvents is forbidden" } };
      },
      page: () => ({ items: [obj("a", 3)], metadata: { resourceVersion: "8" } }),
    });
    const kc = kubeconfigFor(rest.server.origin);
    const lw = kubeListWatch<Obj>(kc, rest, PATH);
    for (let i = 0; i < 2; i++) {
      const { sink, got } = recorder();
      expect(await lw.list(sink)).toEqual({ resourceVersion: "8" });
      expect(got).toEqual(["item a@3"]);
    }
    expect(watchLists).toBe(1);
    expect(urls.filter((u) => u.searchParams.get("limit") === "500")).toHaveLength(2);
  });

  it("does not fall back on other errors: the list fails and the informer retries it", async () => {
    const rest = await fakeApiserver({ watchList: () => ({ status: 403, body: { kind: "Status", code: 403, reason: "Forbidden", message: "no" } }) });
    const kc = kubeconfigFor(rest.server.origin);
    await expect(kubeListWatch<Obj>(kc, rest, PATH).list(ignore)).rejects.toMatchObject({ status: 403 });
  });
});

describe("kubeWatch", () => {
  /** Opens a watch on the fake; resolves with what it delivered and how it ended. */
  async function watchUntilDone(rest: KubeRest, watches?: ServerResponse[]): Promise<{ events: string[]; done: unknown }> {
    const events: string[] = [];
    let done: unknown = "pending";
    await kubeWatch(rest, PATH, { resourceVersion: "5" }, (type, o) => events.push(`${type} ${(o as Obj).metadata.name}`), (err) => {
      done = err;
    });
    if (watches) {
      const deadline = Date.now() + 4000;
      while (watches.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      watches[0]?.write(event("ADDED", obj("a", 6)) + "not json\n" + event("DELETED", obj("a", 7)));
      watches[0]?.end();
    }
    const deadline = Date.now() + 4000;
    while (done === "pending" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    return { events, done };
  }

  it("hands each event line to the reader, skips one that does not parse, and ends with null when the server closes the stream", async () => {
    const watches: ServerResponse[] = [];
    const rest = await fakeApiserver({ watches, watchList: () => ({ lines: [] }) });
    expect(await watchUntilDone(rest, watches)).toEqual({ events: ["ADDED a", "DELETED a"], done: null });
  });

  it("ends with the status of a refused watch, so the informer sees 410 as Gone", async () => {
    const rest = await fakeApiserver({ watchStatus: 410, watchList: () => ({ lines: [] }) });
    const { done } = await watchUntilDone(rest);
    expect(done).toBeInstanceOf(KubeApiError);
    expect((done as KubeApiError).status).toBe(410);
  });

  it("ends with a TimeoutError when nothing arrives for the client's timeout, so the informer watches again at once", async () => {
    const rest = await fakeApiserver({ watches: [], watchList: () => ({ lines: [] }), timeoutMs: 100 });
    const { done } = await watchUntilDone(rest);
    expect((done as Error).name).toBe("TimeoutError");
  });
});

describe("CollectionWatch shared by readers", () => {
  it("hands every reader that joined before the start each listed object whole, then every change; a reader joining later is refused", async () => {
    const watches: ServerResponse[] = [];
    const rest = await fakeApiserver({ watches, watchList: () => ({ lines: [event("ADDED", obj("a", 3)), event("ADDED", obj("b", 4)), endOfInitialEvents(5)] }) });
    const kc = kubeconfigFor(rest.server.origin);
    const first: [ChangeType, string][] = [];
    const second: [ChangeType, string, string | undefined][] = [];
    const lifecycle: string[] = [];
    const w = new CollectionWatch<Obj, string>(kc, rest, {
      apiPrefix: "/apis/x.dev/v1",
      plural: "things",
      namespaces: ["ns"],
      staleAfterMs: 60_000,
      resyncMs: 0,
      transform: small,
      // The cache keeps the name alone: what the readers read comes with each change.
      form: { keep: (o) => o.metadata.name, resourceVersion: () => undefined, expand: (name) => ({ metadata: { name, namespace: "ns", resourceVersion: "" } }) },
      onChange: (t, o) => {
        first.push([t, o.metadata.name]);
        if (o.metadata.name === "c") throw new Error("the first reader fails on c");
      },
      onLifecycle: (e) => lifecycle.push(e),
    });
    w.listen({ onChange: (t, o) => second.push([t, o.metadata.name, o.spec?.small]) });
    await w.start();
    expect(second).toEqual([
      ["add", "a", "a"],
      ["add", "b", "b"],
    ]);
    expect(() => {
      w.listen({ onChange: () => undefined });
    }).toThrow(expect.objectContaining({ code: "WatchStarted" }) as Error);
    const deadline = Date.now() + 4000;
    while (watches.length === 0) {
      if (Date.now() > deadline) throw new Error("no watch");
      await new Promise((r) => setTimeout(r, 5));
    }
    watches[0]!.write(event("ADDED", obj("c", 6)) + event("DELETED", obj("a", 7)));
    while (second.length < 4) {
      if (Date.now() > deadline) throw new Error("changes not delivered");
      await new Promise((r) => setTimeout(r, 5));
    }
    await w.stop();
    expect(first).toEqual([
      ["add", "a"],
      ["add", "b"],
      ["add", "c"],
      ["delete", "a"],
    ]);
    expect(second.slice(2)).toEqual([
      ["add", "c", "c"],
      ["delete", "a", "a"],
    ]);
    expect(lifecycle).toContain("handler_error");
  });
});
