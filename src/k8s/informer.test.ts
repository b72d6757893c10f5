import { describe, expect, it } from "vitest";
import type { KubernetesObject } from "@kubernetes/client-node";
import { Informer, sameForm, type ChangeType, type LifecycleEvent, type ListEnd, type ListSink, type WatchFn } from "./informer.ts";

interface Obj extends KubernetesObject {
  metadata: { name: string; namespace: string; resourceVersion: string };
}
const obj = (name: string, rv: number): Obj => ({ metadata: { name, namespace: "ns", resourceVersion: String(rv) } });

/** A scripted apiserver: lists return `items`; each watch call is handed to the test. */
class FakeServer {
  items: Obj[] = [];
  rv = 1;
  listCalls = 0;
  failLists = 0;
  watches: { query: Record<string, string>; send: (t: string, o: unknown) => void; done: (err: unknown) => void; aborted: boolean }[] = [];
  failWatches = 0;

  list = (sink: ListSink<Obj>): Promise<ListEnd> => {
    this.listCalls++;
    if (this.failLists > 0) {
      this.failLists--;
      return Promise.reject(new Error("connection refused"));
    }
    for (const item of this.items) sink.item(item);
    return Promise.resolve({ resourceVersion: String(this.rv) });
  };

  watch: WatchFn = (query, onEvent, onDone) => {
    if (this.failWatches > 0) {
      this.failWatches--;
      return Promise.reject(new Error("connection refused"));
    }
    const w = { query, send: onEvent, done: onDone, aborted: false };
    this.watches.push(w);
    return Promise.resolve(() => {
      w.aborted = true;
    });
  };

  get current() {
    const w = this.watches.at(-1);
    if (!w) throw new Error("no watch");
    return w;
  }
}

async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

function setup(server: FakeServer, extra: Partial<ConstructorParameters<typeof Informer<Obj>>[0]> = {}) {
  const changes: [ChangeType, string][] = [];
  const lifecycle: LifecycleEvent[] = [];
  const inf = new Informer<Obj>({
    name: "test",
    list: server.list,
    watch: server.watch,
    onChange: (t, o) => changes.push([t, o.metadata.name]),
    onLifecycle: (e) => lifecycle.push(e),
    backoffInitialMs: 5,
    backoffMaxMs: 20,
    random: () => 0.5,
    ...extra,
  });
  return { inf, changes, lifecycle };
}

describe("Informer", () => {
  it("lists, then watches from the list's resourceVersion with bookmarks", async () => {
    const server = new FakeServer();
    server.items = [obj("a", 1)];
    server.rv = 7;
    const { inf, changes } = setup(server);
    await inf.start();
    await until(() => server.watches.length === 1, "watch");
    expect(changes).toEqual([["add", "a"]]);
    expect(server.current.query).toMatchObject({ resourceVersion: "7", allowWatchBookmarks: "true" });
    server.current.send("MODIFIED", obj("a", 8));
    server.current.send("ADDED", obj("b", 9));
    server.current.send("DELETED", obj("a", 10));
    expect(changes).toEqual([
      ["add", "a"],
      ["update", "a"],
      ["add", "b"],
      ["delete", "a"],
    ]);
    expect(inf.list().map((o) => o.metadata.name)).toEqual(["b"]);
    await inf.stop();
  });

  it("resumes from the last resourceVersion after a timeout, without relisting", async () => {
    const server = new FakeServer();
    const { inf, lifecycle } = setup(server);
    await inf.start();
    await until(() => server.watches.length === 1, "watch");
    server.current.send("ADDED", obj("a", 42));
    server.current.done(Object.assign(new Error("timeout"), { name: "TimeoutError" }));
    await until(() => server.watches.length === 2, "second watch");
    expect(server.current.query.resourceVersion).toBe("42");
    expect(server.listCalls).toBe(1);
    expect(lifecycle).toContain("timeout");
    await inf.stop();
  });

  it("relists on 410 Gone and reports objects deleted meanwhile", async () => {
    const server = new FakeServer();
    server.items = [obj("a", 1), obj("b", 1)];
    const { inf, changes, lifecycle } = setup(server);
    await inf.start();
    await until(() => server.watches.length === 1, "watch");
    server.items = [obj("b", 5), obj("c", 6)];
    server.rv = 6;
    server.current.send("ERROR", { kind: "Status", code: 410 });
    await until(() => server.watches.length === 2, "watch after relist");
    expect(lifecycle).toEqual(expect.arrayContaining(["list", "gone", "relist"]));
    expect(changes).toEqual([
      ["add", "a"],
      ["add", "b"],
      ["update", "b"],
      ["add", "c"],
      ["delete", "a"],
    ]);
    expect(server.current.query.resourceVersion).toBe("6");
    await inf.stop();
  });

  it("keeps retrying with backoff after errors instead of stopping", async () => {
    const server = new FakeServer();
    server.failLists = 3;
    const { inf, lifecycle } = setup(server);
    await inf.start();
    expect(lifecycle.filter((e) => e === "error")).toHaveLength(3);
    await until(() => server.watches.length === 1, "watch");
    server.failWatches = 4;
    server.current.done(new Error("socket hang up"));
    await until(() => server.watches.length === 2, "watch after repeated failures");
    expect(lifecycle.filter((e) => e === "error").length).toBeGreaterThanOrEqual(7);
    // After several failed watches the resourceVersion may be gone: it relisted.
    expect(lifecycle).toContain("relist");
    await inf.stop();
  });

  it("restarts a watch that went silent (staleness watchdog)", async () => {
    const server = new FakeServer();
    let t = 0;
    const { inf, lifecycle } = setup(server, { staleAfterMs: 200, now: () => t });
    await inf.start();
    await until(() => server.watches.length === 1, "watch");
    t += 1000; // nothing arrives for longer than staleAfterMs
    await until(() => server.watches.length === 2, "a new watch after the watchdog fired");
    expect(lifecycle).toContain("stale");
    expect(server.watches[0]?.aborted).toBe(true);
    expect(server.listCalls).toBe(2);
    await inf.stop();
  });

  it("relists periodically (resync)", async () => {
    const server = new FakeServer();
    let t = 0;
    const { inf, lifecycle } = setup(server, { resyncMs: 100, staleAfterMs: 1_000_000, now: () => t });
    await inf.start();
    await until(() => server.watches.length === 1, "watch");
    t += 500;
    await until(() => lifecycle.includes("resync"), "resync");
    await until(() => server.listCalls === 2, "the second list");
    await inf.stop();
  });

  it("delivers what transform returns, caches what keep returns, and hands the kept object back as old", async () => {
    const server = new FakeServer();
    type Full = Obj & { data?: string };
    server.items = [Object.assign(obj("a", 1), { data: "big" }), Object.assign(obj("b", 1), { data: "big" })];
    const seen: [ChangeType, string, string | undefined, string | undefined][] = [];
    const inf = new Informer<Full>({
      name: "t",
      list: server.list,
      watch: server.watch,
      transform: (o) => ({ metadata: o.metadata, data: o.data === undefined ? undefined : "viewed" }),
      form: sameForm((o: Full) => ({ metadata: o.metadata })),
      onChange: (t, o, old) => seen.push([t, o.metadata.name, o.data, old === undefined ? undefined : ("data" in old ? "whole" : "kept")]),
    });
    await inf.start();
    await until(() => server.watches.length === 1, "watch");
    expect(seen).toEqual([
      ["add", "a", "viewed", undefined],
      ["add", "b", "viewed", undefined],
    ]);
    expect(inf.list().every((o) => !("data" in o))).toBe(true);
    server.current.send("MODIFIED", Object.assign(obj("a", 2), { data: "bigger" }));
    expect(seen.at(-1)).toEqual(["update", "a", "viewed", "kept"]);
    server.current.send("ADDED", Object.assign(obj("c", 3), { data: "big" }));
    expect(inf.list().every((o) => !("data" in o))).toBe(true);
    // A delete found by a relist delivers the kept object, as the object and as `old`.
    server.items = [Object.assign(obj("a", 2), { data: "bigger" }), Object.assign(obj("c", 3), { data: "big" })];
    server.rv = 5;
    server.current.send("ERROR", { kind: "Status", code: 410 });
    await until(() => seen.some(([t]) => t === "delete"), "the delete of b");
    expect(seen.find(([t]) => t === "delete")).toEqual(["delete", "b", undefined, "kept"]);
    await inf.stop();
  });

  it("hands keep and each change the namespace/name it caches the object under, and keeps later versions under the key the kept object holds", async () => {
    const server = new FakeServer();
    type Rec = { key: string; rv: string | undefined };
    server.items = [obj("a", 1), obj("b", 1)];
    const kept: string[] = [];
    const seen: [ChangeType, string, string][] = [];
    const inf = new Informer<Obj, Rec>({
      name: "t",
      list: server.list,
      watch: server.watch,
      form: {
        keep: (o, key) => {
          kept.push(key);
          return { key, rv: o.metadata.resourceVersion };
        },
        resourceVersion: (r) => r.rv,
        expand: (r) => obj(r.key.slice(3), Number(r.rv)),
        keyOf: (r) => r.key,
      },
      onChange: (t, o, _old, key) => seen.push([t, o.metadata.name, key]),
    });
    await inf.start();
    await until(() => server.watches.length === 1, "watch");
    server.current.send("MODIFIED", obj("a", 2));
    server.current.send("DELETED", obj("a", 2));
    server.items = [];
    server.current.send("ERROR", { kind: "Status", code: 410 });
    await until(() => seen.length === 5, "the relist's delete of b");
    expect(kept).toEqual(["ns/a", "ns/b", "ns/a"]);
    expect(seen).toEqual([
      ["add", "a", "ns/a"],
      ["add", "b", "ns/b"],
      ["update", "a", "ns/a"],
      ["delete", "a", "ns/a"],
      ["delete", "b", "ns/b"],
    ]);
    await inf.stop();
  });

  it("keeps another type than it delivers when given a form: get and list return it, a relist's delete is expanded from it", async () => {
    const server = new FakeServer();
    type Rec = { name: string; rv: string | undefined };
    server.items = [obj("a", 1), obj("b", 1)];
    const seen: [ChangeType, string, string | undefined][] = [];
    const inf = new Informer<Obj, Rec>({
      name: "t",
      list: server.list,
      watch: server.watch,
      form: {
        keep: (o) => ({ name: o.metadata.name, rv: o.metadata.resourceVersion }),
        resourceVersion: (r) => r.rv,
        expand: (r) => ({ metadata: { name: r.name, namespace: "ns", resourceVersion: r.rv } }) as Obj,
      },
      onChange: (t, o, old) => seen.push([t, o.metadata.name, old?.rv]),
    });
    await inf.start();
    await until(() => server.watches.length === 1, "watch");
    expect(inf.get("ns", "a")).toEqual({ name: "a", rv: "1" });
    server.current.send("MODIFIED", obj("a", 2));
    expect(seen.at(-1)).toEqual(["update", "a", "1"]);
    expect(inf.list()).toEqual([{ name: "a", rv: "2" }, { name: "b", rv: "1" }]);
    // A relist: a unchanged (by the kept resourceVersion, so no update), b gone.
    server.items = [obj("a", 2)];
    server.rv = 5;
    server.current.send("ERROR", { kind: "Status", code: 410 });
    await until(() => seen.some(([t]) => t === "delete"), "the delete of b");
    expect(seen.slice(3)).toEqual([["delete", "b", "1"]]);
    await inf.stop();
  });

  it("transforms, caches and delivers each listed object as it arrives, holding none until the list ends", async () => {
    const transform = (o: Obj): Obj => ({ metadata: { ...o.metadata, name: `${o.metadata.name}!` } });
    const delivered: Obj[] = [];
    const duringList: string[] = [];
    const listed = obj("a", 1);
    const inf = new Informer<Obj, { rv: string | undefined }>({
      name: "t",
      list: (sink) => {
        sink.item(listed);
        // Before the list ends: delivered as transformed, and cached as kept.
        duringList.push(`${delivered.map((o) => o.metadata.name).join()} ${JSON.stringify(inf.get("ns", "a!"))}`);
        sink.item(obj("b", 1));
        sink.gone(obj("b", 2));
        duringList.push(`${inf.get("ns", "b!") === undefined ? "none" : "kept"} ${delivered.length}`);
        return Promise.resolve({ resourceVersion: "1" });
      },
      watch: () => Promise.resolve(() => undefined),
      transform,
      form: { keep: (o) => ({ rv: o.metadata.resourceVersion }), resourceVersion: (k) => k.rv, expand: () => obj("x", 0) },
      onChange: (_t, o) => delivered.push(o),
    });
    await inf.start();
    expect(duringList).toEqual(['a! {"rv":"1"}', "none 3"]);
    expect(delivered.map((o) => o.metadata.name)).toEqual(["a!", "b!", "b!"]);
    expect(delivered[0]).not.toBe(listed);
    expect(inf.list()).toEqual([{ rv: "1" }]);
    await inf.stop();
  });

  it("stops during a paged list after the page in flight, not after the whole list", async () => {
    let pagesServed = 0;
    let releasePage: (() => void) | undefined;
    const lifecycle: LifecycleEvent[] = [];
    const inf = new Informer<Obj>({
      name: "t",
      // 100 pages of one object each; every page waits until the test lets it arrive.
      list: async (sink) => {
        for (let p = 0; p < 100; p++) {
          await new Promise<void>((r) => (releasePage = r));
          pagesServed++;
          sink.item(obj(`o${p}`, 1));
        }
        return { resourceVersion: "1" };
      },
      watch: () => Promise.resolve(() => undefined),
      onChange: () => undefined,
      onLifecycle: (e) => lifecycle.push(e),
    });
    void inf.start();
    await until(() => releasePage !== undefined, "the first page requested");
    releasePage?.();
    await until(() => pagesServed === 1, "the first page");
    const stopped = inf.stop();
    await until(() => releasePage !== undefined, "the second page requested");
    releasePage?.();
    await stopped;
    expect(pagesServed).toBe(2);
    expect(inf.synced).toBe(false);
    expect(lifecycle).not.toContain("error");
  });

  it("counts a throwing handler and goes on", async () => {
    const server = new FakeServer();
    server.items = [obj("a", 1)];
    const lifecycle: LifecycleEvent[] = [];
    const inf = new Informer<Obj>({
      name: "t",
      list: server.list,
      watch: server.watch,
      onChange: () => {
        throw new Error("boom");
      },
      onLifecycle: (e) => lifecycle.push(e),
    });
    await inf.start();
    expect(lifecycle).toContain("handler_error");
    expect(inf.get("ns", "a")).toBeDefined();
    await inf.stop();
  });
});
