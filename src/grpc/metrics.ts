// The metric of keyward's HTTP/2 server: connections closed for overstepping a
// limit (src/h2/limits.ts), by kind.
import { Counter, type Registry } from "prom-client";
import { H2_VIOLATIONS, type H2Violation } from "../h2/limits.ts";

/** Registers keyward_h2_violations_total and returns what counts one violation. */
export function h2ViolationCounter(registry: Registry): (kind: H2Violation) => void {
  const counter = new Counter({
    name: "keyward_h2_violations_total",
    help: "gRPC (HTTP/2) connections closed with GOAWAY ENHANCE_YOUR_CALM for a flood, by kind; kind=connections counts sockets refused past grpc-max-connections.",
    labelNames: ["kind"] as const,
    registers: [registry],
  });
  // Every kind from zero, so that rate() and alerts see the first one.
  for (const kind of H2_VIOLATIONS) counter.inc({ kind }, 0);
  return (kind) => {
    counter.inc({ kind });
  };
}
