import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ApiKey } from "../../api/types.ts";
import { isKeywardError } from "../../errors.ts";
import { revocationProgress, rotationProgress, waitUntil } from "./enforce.ts";
import { UsageError, parseCommandLine } from "./flags.ts";
import { buildApiKey, expiryOf } from "./manifest.ts";
import { runPlugin } from "./plugin.ts";
import { kubeconfigFiles, openSession } from "./session.ts";
import { renderStatus } from "./status.ts";

const NOW = Date.parse("2026-01-01T00:00:00Z");
const dir = mkdtempSync(join(tmpdir(), "kubectl-keyward-"));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const ak = (status: ApiKey["status"], generation = 1): ApiKey => ({
  apiVersion: "keyward.dev/v1alpha1",
  kind: "ApiKey",
  metadata: { namespace: "shop", name: "web", generation },
  spec: { owner: "acme", scopes: ["orders:read"] },
  status,
});
const cond = (status: "True" | "False", reason: string, message = ""): NonNullable<NonNullable<ApiKey["status"]>["conditions"]>[number] => ({
  type: "Ready",
  status,
  reason,
  message,
  lastTransitionTime: "2026-01-01T00:00:00Z",
});

async function plugin(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runPlugin(argv, { out: (t) => (out += t), err: (t) => (err += t), env: { HOME: dir, ...env }, stdoutIsTTY: false, now: () => NOW });
  return { code, out, err };
}

// The commands load @kubernetes/client-node on first use: seconds of module loading on a loaded
// machine, paid once here rather than within the first test's 5 s.
beforeAll(async () => {
  await import("@kubernetes/client-node");
}, 60_000);

describe("command line", () => {
  it("takes kubectl's global flags anywhere and one NAME", () => {
    expect(parseCommandLine(["-n", "shop", "rotate", "web", "--grace=1h", "--context", "prod"])).toMatchObject({
      command: "rotate",
      name: "web",
      flags: { namespace: "shop", grace: "1h", context: "prod" },
    });
    expect(parseCommandLine([])).toMatchObject({ command: undefined, help: true });
    expect(parseCommandLine(["help", "create"])).toMatchObject({ command: "create", help: true });
    expect(parseCommandLine(["create", "--help"])).toMatchObject({ command: "create", help: true });
  });

  it("refuses a flag of another command, a missing or extra NAME and an unknown command", () => {
    const err = (argv: string[]): string => {
      try {
        parseCommandLine(argv);
      } catch (e) {
        expect(e).toBeInstanceOf(UsageError);
        return (e as Error).message;
      }
      throw new Error("parsed");
    };
    expect(err(["reveal", "web", "--grace", "1h"])).toBe("reveal takes no --grace");
    expect(err(["status"])).toBe("status needs the ApiKey's NAME");
    expect(err(["status", "a", "b"])).toBe("status takes one NAME, got 2: a b");
    expect(err(["steal", "web"])).toContain('unknown command "steal"');
    expect(err(["status", "web", "--bogus"])).toContain("--bogus");
  });
});

describe("the ApiKey of create", () => {
  it("maps the flags onto the spec", () => {
    const obj = buildApiKey("web", "shop", { owner: "acme", scopes: "a, b,", rate: "100/1m", burst: "20", quota: "5000/month", label: ["tier=pro"], expires: "720h", description: "d", prefix: "shop" }, NOW);
    expect(obj).toEqual({
      apiVersion: "keyward.dev/v1alpha1",
      kind: "ApiKey",
      metadata: { name: "web", namespace: "shop", labels: { tier: "pro" } },
      spec: {
        owner: "acme",
        description: "d",
        scopes: ["a", "b"],
        prefix: "shop",
        expiresAt: "2026-01-31T00:00:00Z",
        limits: { rate: { requests: 100, per: "1m", burst: 20 }, quota: { requests: 5000, per: "month" } },
      },
    });
    expect(buildApiKey("web", undefined, { owner: "acme" }, NOW)).toEqual({ apiVersion: "keyward.dev/v1alpha1", kind: "ApiKey", metadata: { name: "web" }, spec: { owner: "acme" } });
  });

  it("reads --expires as a time, a date or a duration from now", () => {
    expect(expiryOf("2027-06-30", NOW)).toBe("2027-06-30T00:00:00Z");
    expect(expiryOf("2027-06-30T02:00:00+02:00", NOW)).toBe("2027-06-30T00:00:00Z");
    expect(expiryOf("1h30m", NOW)).toBe("2026-01-01T01:30:00Z");
    expect(() => expiryOf("2027-06-30T00:00:00", NOW)).toThrow(/with a zone/);
    expect(() => expiryOf("next week", NOW)).toThrow(/neither a time/);
  });

  it("refuses malformed limits and labels before anything is sent", () => {
    const bad = (f: Parameters<typeof buildApiKey>[2]): string => {
      try {
        buildApiKey("web", "shop", f, NOW);
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error("built");
    };
    expect(bad({})).toContain("create needs --owner");
    expect(bad({ owner: "a", rate: "100" })).toContain("is not REQUESTS/PER");
    expect(bad({ owner: "a", rate: "100/fortnight" })).toContain('"fortnight" is not a duration');
    expect(bad({ owner: "a", rate: "0/1s" })).toContain("is not a positive whole number");
    expect(bad({ owner: "a", burst: "5" })).toContain("--burst goes with --rate");
    expect(bad({ owner: "a", quota: "10/week" })).toContain("REQUESTS/day or REQUESTS/month");
    expect(bad({ owner: "a", label: ["tier"] })).toContain("is not KEY=VALUE");
  });
});

describe("when a change is in force", () => {
  const keys = (active: string, grace?: string): NonNullable<ApiKey["status"]>["keys"] => [
    { id: active, hash: "sha256:1", state: "active" },
    ...(grace ? [{ id: grace, hash: "sha256:2", state: "grace" as const }] : []),
  ];

  it("a rotation: the operator observed the request, a new key is active and Ready", () => {
    const ready = [cond("True", "Rotated")];
    expect(rotationProgress(ak({ observedRotateAnnotation: "7", keys: keys("kw_new", "kw_old"), conditions: ready }), "7", "kw_old")).toEqual({ done: true });
    // Not yet: the operator has not seen this request, or still shows the old key, or is not Ready.
    expect(rotationProgress(ak({ observedRotateAnnotation: "6", keys: keys("kw_new", "kw_old"), conditions: ready }), "7", "kw_old").done).toBe(false);
    expect(rotationProgress(ak({ observedRotateAnnotation: "7", keys: keys("kw_old"), conditions: ready }), "7", "kw_old").done).toBe(false);
    expect(rotationProgress(ak({ observedRotateAnnotation: "7", keys: keys("kw_new"), conditions: [cond("False", "ReconcileError")] }), "7", "kw_old")).toEqual({
      done: false,
      showing: "the ApiKey shows state none, Ready False (ReconcileError)",
    });
    // A failure the user must fix ends the wait.
    expect(rotationProgress(ak({ state: "Failed", conditions: [cond("False", "SecretConflict", "Secret web-apikey is not ours")] }), "7", "kw_old")).toMatchObject({
      failed: "SecretConflict: Secret web-apikey is not ours",
    });
  });

  it("a revocation: state Disabled for the written generation", () => {
    expect(revocationProgress(ak({ state: "Disabled", observedGeneration: 3 }, 3), 3)).toEqual({ done: true });
    expect(revocationProgress(ak({ state: "Disabled", observedGeneration: 2 }, 3), 3).done).toBe(false);
    expect(revocationProgress(ak({ state: "Active", observedGeneration: 3 }, 3), 3).done).toBe(false);
  });

  it("waits until done, fails on a reported failure, and times out saying what it saw", async () => {
    let t = 0;
    const now = (): number => t;
    const seen = [ak({ state: "Active" }), ak({ state: "Active" }), ak({ state: "Disabled", observedGeneration: 1 })];
    let reads = 0;
    const read = (): Promise<ApiKey> => {
      t += 1000;
      return Promise.resolve(seen[Math.min(reads++, seen.length - 1)] as ApiKey);
    };
    await expect(waitUntil(read, (a) => revocationProgress(a, 1), { timeoutMs: 10_000, what: "revoke", intervalMs: 0, now })).resolves.toMatchObject({ status: { state: "Disabled" } });
    expect(reads).toBe(3);

    t = 0;
    const stuck = (): Promise<ApiKey> => {
      t += 1000;
      return Promise.resolve(ak({ state: "Active" }));
    };
    const timedOut = await waitUntil(stuck, (a) => revocationProgress(a, 1), { timeoutMs: 3000, what: "revoke x", intervalMs: 0, now }).catch((e: unknown) => e);
    expect(isKeywardError(timedOut, "Timeout")).toBe(true);
    expect((timedOut as Error).message).toBe("revoke x: not done within 3s (the ApiKey shows state Active, Ready not reported); is the keyward operator running and watching this namespace?");

    const failed = await waitUntil(() => Promise.resolve(ak({ conditions: [cond("False", "WeakKey", "too short")] })), (a) => rotationProgress(a, "1", undefined), {
      timeoutMs: 3000,
      what: "rotate x",
      intervalMs: 0,
      now,
    }).catch((e: unknown) => e);
    expect(isKeywardError(failed, "ReconcileTerminal")).toBe(true);
    expect((failed as Error).message).toBe("rotate x: the operator reports WeakKey: too short");
  });
});

describe("status", () => {
  it("lists each key version with its state, grace end and last use", () => {
    const text = renderStatus(
      ak({
        state: "Rotating",
        secretName: "web-apikey",
        conditions: [cond("True", "Rotated", "key kw_new is active")],
        keys: [
          { id: "kw_new", hash: "sha256:1", state: "active", createdAt: "2026-01-02T00:00:00Z" },
          { id: "kw_old", hash: "sha256:2", state: "grace", createdAt: "2026-01-01T00:00:00Z", expiresAt: "2026-01-03T00:00:00Z" },
        ],
        usage: { lastUsedAt: "2026-01-02T10:00:00Z", requests24h: 42, keys: [{ id: "kw_old", lastUsedAt: "2026-01-02T10:00:00Z" }] },
      }),
    );
    expect(text).toContain("ApiKey:        shop/web\n");
    expect(text).toContain("Ready:         True (Rotated): key kw_new is active\n");
    expect(text).toContain("Key from:      Secret web-apikey\n");
    expect(text).toContain("Requests 24h:  42\n");
    expect(text).toContain(
      [
        "KEY ID   STATE    ISSUED                 GRACE ENDS             LAST USED",
        "kw_new   active   2026-01-02T00:00:00Z   -                      never",
        "kw_old   grace    2026-01-01T00:00:00Z   2026-01-03T00:00:00Z   2026-01-02T10:00:00Z",
      ].join("\n"),
    );
    expect(renderStatus(ak(undefined))).toContain("State:         not reported yet\n");
  });
});

describe("kubeconfig and namespace, as kubectl finds them", () => {
  const file = (name: string, namespace?: string): string => {
    const path = join(dir, name);
    writeFileSync(
      path,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "c", cluster: { server: "https://127.0.0.1:1" } }],
        users: [{ name: "u", user: { token: "t" } }],
        contexts: [
          { name: "dev", context: { cluster: "c", user: "u", ...(namespace ? { namespace } : {}) } },
          { name: "prod", context: { cluster: "c", user: "u", namespace: "prod-ns" } },
        ],
        "current-context": "dev",
      }),
    );
    return path;
  };

  it("reads --kubeconfig, else $KUBECONFIG, else ~/.kube/config", () => {
    const a = file("a", "team-a");
    expect(kubeconfigFiles({ kubeconfig: a }, { KUBECONFIG: "/nope" }, dir)).toEqual([a]);
    expect(kubeconfigFiles({}, { KUBECONFIG: `/nope:${a}` }, dir)).toEqual([a]);
    expect(kubeconfigFiles({}, {}, dir)).toEqual([]);
  });

  it("takes -n, else the context's namespace, else default; --context picks the context", async () => {
    const a = file("b", "team-a");
    expect((await openSession({}, { KUBECONFIG: a })).namespace).toBe("team-a");
    expect((await openSession({ namespace: "x" }, { KUBECONFIG: a })).namespace).toBe("x");
    expect((await openSession({ context: "prod" }, { KUBECONFIG: a })).namespace).toBe("prod-ns");
    expect((await openSession({}, { KUBECONFIG: file("c") })).namespace).toBe("default");
    await expect(openSession({ context: "staging" }, { KUBECONFIG: a })).rejects.toThrow('context "staging" is not in the kubeconfig (it has: dev, prod)');
    await expect(openSession({}, { HOME: dir })).rejects.toThrow(/no kubeconfig found/);
  });
});

describe("runPlugin", () => {
  it("prints a client dry run without any cluster", async () => {
    const r = await plugin(["create", "web", "--owner", "acme", "--dry-run=client", "-o", "json"]);
    expect(r).toMatchObject({ code: 0, err: "" });
    expect(JSON.parse(r.out)).toEqual({ apiVersion: "keyward.dev/v1alpha1", kind: "ApiKey", metadata: { name: "web" }, spec: { owner: "acme" } });
    expect(await plugin(["create", "web", "--owner", "acme", "--dry-run=client"])).toEqual({ code: 0, out: "apikey.keyward.dev/web serverside-applied (dry run)\n", err: "" });
  });

  it("exits 2 with a pointer to --help on a usage error, 1 on a failure, 0 with help", async () => {
    expect(await plugin(["rotate", "web", "--timeout", "soon"], { KUBECONFIG: "/nope" })).toMatchObject({ code: 2, err: expect.stringContaining("See 'kubectl keyward rotate --help'.") as string });
    expect(await plugin(["create", "web", "--scopes", "a"])).toMatchObject({ code: 2, err: expect.stringContaining("create needs --owner") as string });
    expect(await plugin(["create", "web", "--owner", "a", "--dry-run=yes"])).toMatchObject({ code: 2, err: expect.stringContaining("--dry-run must be none, client or server") as string });
    expect(await plugin(["status", "web"])).toMatchObject({ code: 1, out: "", err: expect.stringMatching(/^error: no kubeconfig found/) as string });
    const help = await plugin([]);
    expect(help.code).toBe(0);
    expect(help.out).toContain("Commands:");
    expect(help.out).toContain("console [--port N]");
  });

  it("runs console with its own flags: help, usage errors, and a failure without a kubeconfig", async () => {
    expect(await plugin(["console", "--help"])).toMatchObject({ code: 0, out: expect.stringContaining("Serve the web console on 127.0.0.1") as string });
    expect(await plugin(["console", "--port", "x"])).toMatchObject({ code: 2, err: expect.stringContaining("--port x") as string });
    expect(await plugin(["console", "--no-open"], { KUBECONFIG: "/nope" })).toMatchObject({ code: 1, err: expect.stringMatching(/^error: no kubeconfig found/) as string });
  });
});
