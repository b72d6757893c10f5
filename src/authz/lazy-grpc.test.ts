// The default gRPC transport, and usage without an access log receiver, run without grpc-js:
// about 15 MiB of code that `keyward authz` would otherwise load and never use.
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";

interface Loaded {
  grpcJs: boolean;
}

/** Starts the gRPC front on `transport` in a fresh process, after loading usage's and the data plane's modules; reports what it loaded. */
function loadedWith(transport: "keyward" | "grpc-js"): Loaded {
  const at = (p: string): string => JSON.stringify(new URL(p, import.meta.url).href);
  const code = `
    import { createRequire } from "node:module";
    await import(${at("../usage/service.ts")});
    await import(${at("./service.ts")});
    const { startGrpcFront } = await import(${at("./ext-authz-grpc.ts")});
    const { Checker } = await import(${at("./check.ts")});
    const { KeyIndex } = await import(${at("../index/keys.ts")});
    const { PolicyIndex } = await import(${at("../policy/policy.ts")});
    const { Limiter } = await import(${at("../limits/limiter.ts")});
    const front = await startGrpcFront({
      address: "127.0.0.1:0",
      transport: ${JSON.stringify(transport)},
      checker: new Checker({ keys: new KeyIndex(), policies: new PolicyIndex(), limiter: new Limiter(), now: Date.now, xffTrustedHops: 0 }),
      response: { keyIdHeader: "x-keyward-key-id", ownerHeader: "x-keyward-owner", realm: "keyward" },
      ready: () => true,
      onDecision: () => {},
      onError: () => {},
    });
    await front.stop();
    const loaded = Object.keys(createRequire(import.meta.url).cache);
    process.stdout.write(JSON.stringify({ grpcJs: loaded.some((f) => f.includes("/@grpc/grpc-js/")) }));
  `;
  return JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", code], { encoding: "utf8" })) as Loaded;
}

// Each test starts a Node process that loads the data plane: seconds on a busy machine.
const CHILD_MS = 60_000;

describe("grpc-js loads only for its transport", () => {
  it("the default transport, with usage's modules loaded, does not load it", () => {
    expect(loadedWith("keyward")).toEqual({ grpcJs: false });
  }, CHILD_MS);

  it("--grpc-transport grpc-js loads it", () => {
    expect(loadedWith("grpc-js")).toEqual({ grpcJs: true });
  }, CHILD_MS);
});
