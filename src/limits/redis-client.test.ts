// How the limits script is called: EVALSHA, and EVAL once a server lacks it.
import { describe, expect, it } from "vitest";
import { LIMITS_SCRIPT_SHA, redact, scriptRunner } from "./redis-client.ts";
import { LIMITS_SCRIPT } from "./redis-script.ts";

type Call = [string, ...(string | number)[]];

function fakeClient(has: () => boolean, fail?: Error): { client: Parameters<typeof scriptRunner>[0]; calls: Call[] } {
  const calls: Call[] = [];
  const client = {
    evalsha: (sha: string, ...args: (string | number)[]) => {
      calls.push(["evalsha", sha, ...args]);
      if (fail) return Promise.reject(fail);
      return has() ? Promise.resolve([1, 0]) : Promise.reject(new Error("NOSCRIPT No matching script. Please use EVAL."));
    },
    eval: (script: string, ...args: (string | number)[]) => {
      calls.push(["eval", script === LIMITS_SCRIPT ? "LIMITS_SCRIPT" : script, ...args]);
      return Promise.resolve([1, 0]);
    },
  } as unknown as Parameters<typeof scriptRunner>[0];
  return { client, calls };
}

describe("scriptRunner", () => {
  it("runs the script by its SHA-1, with the key count, KEYS and ARGV in order", async () => {
    const { client, calls } = fakeClient(() => true);
    expect(await scriptRunner(client)([1, "kw:{a}:b:r", 1, 1000, "r", 0.5, 10])).toEqual([1, 0]);
    expect(calls).toEqual([["evalsha", LIMITS_SCRIPT_SHA, 1, "kw:{a}:b:r", 1, 1000, "r", 0.5, 10]]);
    expect(LIMITS_SCRIPT_SHA).toMatch(/^[0-9a-f]{40}$/);
  });

  it("sends the script itself when the server does not have it (a restarted or promoted server), then its SHA again", async () => {
    let loaded = false;
    const { client, calls } = fakeClient(() => loaded);
    const run = scriptRunner(client);
    expect(await run([0, 5])).toEqual([1, 0]);
    loaded = true;
    await run([0, 6]);
    expect(calls).toEqual([
      ["evalsha", LIMITS_SCRIPT_SHA, 0, 5],
      ["eval", "LIMITS_SCRIPT", 0, 5],
      ["evalsha", LIMITS_SCRIPT_SHA, 0, 6],
    ]);
  });

  it("passes any other error on, without a second call", async () => {
    const { client, calls } = fakeClient(() => true, new Error("READONLY You can't write against a read only replica."));
    await expect(scriptRunner(client)([0, 5])).rejects.toThrow(/READONLY/);
    expect(calls).toHaveLength(1);
  });

  it("redacts user info from URLs", () => {
    expect(redact("redis://user:pw@host:6379")).toBe("redis://host:6379");
  });
});
