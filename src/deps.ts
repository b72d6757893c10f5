// What main.ts hands every keyward role (operator, authz, usage).
import type { KubeConfig } from "@kubernetes/client-node";
import type { Registry } from "prom-client";
import type { Config } from "./config/config.ts";
import type { KubeRest } from "./k8s/rest.ts";
import type { Logger } from "./log.ts";

export interface RoleDeps {
  config: Config;
  kc: KubeConfig;
  /** This role's own client: its own request pacing and counters. */
  rest: KubeRest;
  log: Logger;
  registry: Registry;
  /** The clock, in milliseconds; tests move it. */
  now?: () => number;
}
