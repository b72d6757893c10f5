// keyward_h2_violations_total, and the gRPC front's HTTP/2 limits and violations wired
// through startGrpcFront as the data plane starts it.
import { connect } from "node:net";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { Checker } from "./check.ts";
import { startGrpcFront, type GrpcFront } from "./ext-authz-grpc.ts";
import { PolicyIndex } from "../policy/policy.ts";
import { KeyIndex } from "../index/keys.ts";
import { Limiter } from "../limits/limiter.ts";
import { h2ViolationCounter } from "../grpc/metrics.ts";

const fronts: GrpcFront[] = [];
afterEach(async () => {
  await Promise.all(fronts.splice(0).map((f) => f.stop()));
});

describe("keyward_h2_violations_total", () => {
  it("starts every kind at zero and counts each violation by kind", async () => {
    const registry = new Registry();
    const count = h2ViolationCounter(registry);
    count("rst_stream");
    count("rst_stream");
    count("ping");
    const text = await registry.metrics();
    expect(text).toContain('keyward_h2_violations_total{kind="rst_stream"} 2');
    expect(text).toContain('keyward_h2_violations_total{kind="ping"} 1');
    expect(text).toContain('keyward_h2_violations_total{kind="empty_frames"} 0');
  });

  it("counts the violations of the gRPC front's HTTP/2 server, under the limits it was given", async () => {
    const registry = new Registry();
    const front = await startGrpcFront({
      address: "127.0.0.1:0",
      transport: "keyward",
      h2Limits: { maxConnections: 1 },
      onViolation: h2ViolationCounter(registry),
      checker: new Checker({ keys: new KeyIndex(), policies: new PolicyIndex(), limiter: new Limiter(), now: Date.now, xffTrustedHops: 0 }),
      response: { keyIdHeader: "x-keyward-key-id", ownerHeader: "x-keyward-owner", realm: "keyward" },
      ready: () => true,
      onDecision: () => undefined,
      onError: () => undefined,
    });
    fronts.push(front);
    // Two connections, one too many: one of them is closed at once.
    const sockets = [connect(front.port, "127.0.0.1"), connect(front.port, "127.0.0.1")];
    for (const s of sockets) s.on("error", () => undefined);
    await Promise.race(sockets.map((s) => new Promise((resolve) => s.once("close", resolve))));
    for (const s of sockets) s.destroy();
    expect(await registry.metrics()).toContain('keyward_h2_violations_total{kind="connections"} 1');
  });
});
