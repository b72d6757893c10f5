import { describe, expect, it } from "vitest";
import { KubeApiError } from "../k8s/rest.ts";
import { createLogger } from "../log.ts";
import { METADATA_ONLY, ReferencedSecrets } from "./referenced.ts";
import { hashSecretField } from "./secrets.ts";

const b64 = (s: string): string => Buffer.from(s).toString("base64");

/** A scripted apiserver holding Secrets; records every GET and its Accept header. */
class FakeApi {
  secrets = new Map<string, { rv: number; data: Record<string, string> }>();
  calls: { path: string; accept: string }[] = [];
  failing = false;

  put(name: string, data: Record<string, string>): void {
    const prev = this.secrets.get(name);
    this.secrets.set(name, { rv: (prev?.rv ?? 0) + 1, data });
  }

  request = <T,>(method: string, path: string, opts: { accept?: string } = {}): Promise<T> => {
    expect(method).toBe("GET");
    this.calls.push({ path, accept: opts.accept ?? "application/json" });
    if (this.failing) return Promise.reject(new KubeApiError(503, "ServiceUnavailable", "unavailable"));
    const name = path.split("/").pop() ?? "";
    const s = this.secrets.get(name);
    if (!s) return Promise.reject(new KubeApiError(404, "NotFound", `secrets "${name}" not found`));
    const metadata = { name, namespace: "ns", resourceVersion: String(s.rv), uid: "u" };
    return Promise.resolve((opts.accept === METADATA_ONLY ? { kind: "PartialObjectMetadata", metadata } : { kind: "Secret", metadata, data: s.data }) as T);
  };

  get fullReads(): number {
    return this.calls.filter((c) => c.accept !== METADATA_ONLY).length;
  }
}

function setup(): { api: FakeApi; refs: ReferencedSecrets; requeued: string[][] } {
  const api = new FakeApi();
  const requeued: string[][] = [];
  const refs = new ReferencedSecrets({
    rest: api,
    log: createLogger({ level: "error", sink: () => undefined }),
    intervalMs: 0,
    onChange: (keys) => requeued.push([...keys]),
  });
  return { api, refs, requeued };
}

describe("ReferencedSecrets", () => {
  it("reads a referenced Secret once in full and keeps only hashes of its fields", async () => {
    const { api, refs, requeued } = setup();
    api.put("vault", { token: b64("first-key-value") });
    refs.track("ns/byok", "ns/vault");
    await refs.refresh();
    const view = refs.get("ns", "vault");
    expect(view?.hashes).toEqual({ token: hashSecretField(b64("first-key-value")) });
    expect(JSON.stringify(view)).not.toContain(b64("first-key-value"));
    expect(JSON.stringify(view)).not.toContain("first-key-value");
    expect(requeued).toEqual([["ns/byok"]]);
    expect(api.calls.map((c) => c.accept)).toEqual([METADATA_ONLY, "application/json"]);
  });

  it("re-reads unchanged Secrets with metadata-only GETs: no data crosses the wire", async () => {
    const { api, refs, requeued } = setup();
    api.put("vault", { token: b64("first-key-value") });
    refs.track("ns/byok", "ns/vault");
    await refs.refresh();
    for (let i = 0; i < 5; i++) await refs.refresh();
    expect(api.fullReads).toBe(1);
    expect(api.calls).toHaveLength(7);
    expect(requeued).toHaveLength(1);
  });

  it("requeues every ApiKey that references a Secret when its data changes", async () => {
    const { api, refs, requeued } = setup();
    api.put("vault", { token: b64("first-key-value") });
    refs.track("ns/a", "ns/vault");
    refs.track("ns/b", "ns/vault");
    await refs.refresh();
    api.put("vault", { token: b64("second-key-value") });
    await refs.refresh();
    expect(requeued.at(-1)?.sort()).toEqual(["ns/a", "ns/b"]);
    expect(refs.get("ns", "vault")?.hashes.token).toBe(hashSecretField(b64("second-key-value")));
  });

  it("does not requeue when only metadata changed", async () => {
    const { api, refs, requeued } = setup();
    api.put("vault", { token: b64("first-key-value") });
    refs.track("ns/a", "ns/vault");
    await refs.refresh();
    api.put("vault", { token: b64("first-key-value") });
    await refs.refresh();
    expect(api.fullReads).toBe(2);
    expect(requeued).toHaveLength(1);
  });

  it("forgets a deleted Secret and requeues its ApiKeys; notices when it comes back", async () => {
    const { api, refs, requeued } = setup();
    api.put("vault", { token: b64("first-key-value") });
    refs.track("ns/a", "ns/vault");
    await refs.refresh();
    api.secrets.delete("vault");
    await refs.refresh();
    expect(refs.get("ns", "vault")).toBeUndefined();
    expect(requeued).toHaveLength(2);
    await refs.refresh();
    expect(requeued).toHaveLength(2);
    api.put("vault", { token: b64("third-key-value") });
    await refs.refresh();
    expect(requeued).toHaveLength(3);
  });

  it("keeps the last hashes when the apiserver fails", async () => {
    const { api, refs, requeued } = setup();
    api.put("vault", { token: b64("first-key-value") });
    refs.track("ns/a", "ns/vault");
    await refs.refresh();
    api.failing = true;
    await refs.refresh();
    expect(refs.get("ns", "vault")?.hashes.token).toBe(hashSecretField(b64("first-key-value")));
    expect(requeued).toHaveLength(1);
  });

  it("drops a Secret's hashes and stops reading it when no ApiKey references it", async () => {
    const { api, refs } = setup();
    api.put("vault", { token: b64("first-key-value") });
    refs.track("ns/a", "ns/vault");
    refs.track("ns/b", "ns/vault");
    await refs.refresh();
    refs.track("ns/a", undefined);
    expect(refs.size).toBe(1);
    refs.track("ns/b", "ns/other");
    expect(refs.get("ns", "vault")).toBeUndefined();
    expect(refs.referenced).toBe(1);
    api.calls = [];
    await refs.refresh();
    expect(api.calls.every((c) => c.path.endsWith("/other"))).toBe(true);
  });

  it("re-reads on its interval while started, and drops the hashes when stopped", async () => {
    const api = new FakeApi();
    const refs = new ReferencedSecrets({ rest: api, log: createLogger({ level: "error", sink: () => undefined }), intervalMs: 5, onChange: () => undefined });
    api.put("vault", { token: b64("first-key-value") });
    refs.track("ns/a", "ns/vault");
    refs.start();
    const deadline = Date.now() + 5000;
    while (api.calls.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    await refs.stop();
    expect(api.calls.length).toBeGreaterThanOrEqual(4);
    expect(api.fullReads).toBe(1);
    expect(refs.get("ns", "vault")).toBeUndefined();
  });
});
