import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { isKeywardError } from "../errors.ts";
import { FORCED_EXIT_CODE, Lifecycle } from "./lifecycle.ts";

/** A lifecycle on a fake signal source, recording its log and exits. */
function harness(signals?: NodeJS.Signals[]) {
  const source = new EventEmitter();
  const steps: string[] = [];
  const exits: number[] = [];
  const part = (f?: Record<string, unknown>): string => (typeof f?.part === "string" ? ` ${f.part}` : "");
  const log = {
    info: (msg: string, f?: Record<string, unknown>) => steps.push(`${msg}${part(f)}`),
    warn: (msg: string, f?: Record<string, unknown>) => steps.push(`warn ${msg}${part(f)}`),
  };
  const lc = new Lifecycle({ log, source, signals, exit: (code) => exits.push(code) });
  const fake = (name: string, more: { ready?: () => boolean; stop?: () => Promise<void> } = {}) => ({
    stop: more.stop ?? (() => { steps.push(`${name} stopped`); return Promise.resolve(); }),
    ready: more.ready,
  });
  const signal = (s: NodeJS.Signals): void => { source.emit(s); };
  const exited = async (): Promise<void> => {
    for (let i = 0; i < 1000 && exits.length === 0; i++) await Promise.resolve();
  };
  return { lc, steps, exits, part: fake, signal, source, exited };
}

function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => { resolve = r; });
  return { promise, resolve };
}

describe("Lifecycle", () => {
  it("stops the parts in reverse order of their start on SIGTERM, each after the one before has finished, then exits 0", async () => {
    const h = harness();
    const slow = deferred<undefined>();
    await h.lc.start("a", () => Promise.resolve(h.part("a")));
    h.lc.add("b", h.part("b", { stop: async () => { await slow.promise; h.steps.push("b stopped"); } }));
    await h.lc.start("c", () => Promise.resolve(h.part("c")));
    h.signal("SIGTERM");
    for (let i = 0; i < 20; i++) await Promise.resolve();
    expect(h.steps.slice(-4)).toEqual(["shutting down", "stopping c", "c stopped", "stopping b"]);
    expect(h.exits).toEqual([]);
    slow.resolve(undefined);
    await h.exited();
    expect(h.steps.filter((s) => s.endsWith(" stopped"))).toEqual(["c stopped", "b stopped", "a stopped"]);
    expect(h.steps.at(-1)).toBe("stopped");
    expect(h.exits).toEqual([0]);
  });

  it("SIGINT stops as well; signals not asked for are left alone", async () => {
    const h = harness(["SIGTERM"]);
    h.lc.add("a", h.part("a"));
    h.signal("SIGINT");
    await Promise.resolve();
    expect(h.lc.isStopping).toBe(false);
    const g = harness();
    g.lc.add("a", g.part("a"));
    g.signal("SIGINT");
    await g.exited();
    expect(g.steps).toContain("a stopped");
    expect(g.exits).toEqual([0]);
  });

  it("is ready when every part is, and not once it stops", async () => {
    const h = harness();
    let bReady = false;
    expect(h.lc.ready()).toBe(true);
    h.lc.add("a", h.part("a"));
    await h.lc.start("b", () => Promise.resolve(h.part("b", { ready: () => bReady })));
    expect(h.lc.ready()).toBe(false);
    bReady = true;
    expect(h.lc.ready()).toBe(true);
    void h.lc.shutdown("test");
    expect(h.lc.ready()).toBe(false);
  });

  it("a signal during a start stops what has started without waiting for the start, and stops the late part if it finishes", async () => {
    const h = harness();
    h.lc.add("client", h.part("client"));
    const sync = deferred<undefined>();
    const starting = h.lc.start("operator", async () => {
      await sync.promise;
      return h.part("operator");
    });
    h.signal("SIGTERM");
    await h.exited();
    expect(h.exits).toEqual([0]);
    expect(h.steps).toEqual(["starting operator", "shutting down", "stopping client", "client stopped", "stopped"]);
    // The start finishes after all (in a process, exit came first): the part is stopped at once.
    sync.resolve(undefined);
    const err: unknown = await starting.catch((e: unknown) => e);
    expect(isKeywardError(err, "Stopping")).toBe(true);
    expect(h.steps.slice(-2)).toEqual(["stopping operator", "operator stopped"]);
    // Nothing starts or registers any more.
    await expect(h.lc.start("late", () => Promise.resolve(h.part("late")))).rejects.toMatchObject({ code: "Stopping" });
    expect(() => { h.lc.add("late", h.part("late")); }).toThrow(/stopping/);
  });

  it("a start that fails registers nothing and leaves the lifecycle running", async () => {
    const h = harness();
    await expect(h.lc.start("bad", () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    await h.lc.shutdown("test");
    expect(h.steps).not.toContain("stopping bad");
    expect(h.exits).toEqual([0]);
  });

  it("a second signal during the stop sequence exits at once with 130", async () => {
    const h = harness();
    const stuck = deferred<undefined>();
    h.lc.add("a", h.part("a"));
    h.lc.add("stuck", h.part("stuck", { stop: () => stuck.promise }));
    h.signal("SIGTERM");
    await Promise.resolve();
    expect(h.exits).toEqual([]);
    h.signal("SIGINT");
    expect(h.exits).toEqual([FORCED_EXIT_CODE]);
    expect(h.steps).toContain("warn second signal: exiting before every part has stopped");
    expect(h.steps).not.toContain("a stopped");
  });

  it("a stop that throws is logged and the next part still stops; shutdown's code is kept", async () => {
    const h = harness();
    h.lc.add("a", h.part("a"));
    h.lc.add("bad", h.part("bad", { stop: () => Promise.reject(new Error("cannot")) }));
    h.lc.add("c", h.part("c"));
    const first = h.lc.shutdown("workers failed", 1);
    // A second shutdown joins the first.
    expect(h.lc.shutdown("again", 0)).toBe(first);
    await first;
    expect(h.steps.filter((s) => s.includes("stopped") || s.startsWith("warn"))).toEqual(["c stopped", "warn error while stopping bad", "a stopped", "stopped"]);
    expect(h.exits).toEqual([1]);
  });
});
