// Runs the operator in-process against a real apiserver, capturing its logs.
import { Registry } from "prom-client";
import type { KubeConfig } from "@kubernetes/client-node";
import type { ApiKey } from "../../src/api/types.ts";
import { defaultConfig, type Config } from "../../src/config/config.ts";
import { KubeRest, isNotFound } from "../../src/k8s/rest.ts";
import { createLogger } from "../../src/log.ts";
import { startOperator, type OperatorHandle } from "../../src/operator/operator.ts";

export interface TestOperator {
  handle: OperatorHandle;
  logs: string[];
  registry: Registry;
  rest: KubeRest;
  stop(opts?: { releaseLease?: boolean }): Promise<void>;
}

export async function startTestOperator(kc: KubeConfig, overrides: Partial<Config> = {}, now?: () => number): Promise<TestOperator> {
  const config = defaultConfig({ leaderElect: false, metricsAddress: "", kubeQps: 0, ...overrides });
  const logs: string[] = [];
  const log = createLogger({ level: "debug", sink: (l) => logs.push(l) });
  const rest = new KubeRest(kc, { qps: config.kubeQps, burst: config.kubeBurst });
  const registry = new Registry();
  const handle = await startOperator({ config, kc, rest, log, registry, ...(now ? { now } : {}) });
  return {
    handle,
    logs,
    registry,
    rest,
    stop: async (opts = {}) => {
      await handle.stop(opts);
      rest.close();
    },
  };
}

export const apiKeyPath = (ns: string, name = ""): string =>
  `/apis/keyward.dev/v1alpha1/namespaces/${ns}/apikeys${name ? `/${name}` : ""}`;

export async function getApiKey(rest: KubeRest, ns: string, name: string): Promise<ApiKey | undefined> {
  try {
    return await rest.request<ApiKey>("GET", apiKeyPath(ns, name));
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

export async function createApiKey(rest: KubeRest, ns: string, name: string, spec: ApiKey["spec"], metadata: Partial<ApiKey["metadata"]> = {}): Promise<ApiKey> {
  return rest.request<ApiKey>("POST", apiKeyPath(ns), {
    body: { apiVersion: "keyward.dev/v1alpha1", kind: "ApiKey", metadata: { ...metadata, name, namespace: ns }, spec },
  });
}

export async function patchApiKey(rest: KubeRest, ns: string, name: string, patch: unknown): Promise<ApiKey> {
  return rest.request<ApiKey>("PATCH", apiKeyPath(ns, name), { body: patch, contentType: "application/merge-patch+json" });
}

export interface SecretBody {
  metadata: { name: string; uid?: string; labels?: Record<string, string>; ownerReferences?: { kind: string; uid: string; controller?: boolean }[] };
  data?: Record<string, string>;
}

export async function getSecret(rest: KubeRest, ns: string, name: string): Promise<SecretBody | undefined> {
  try {
    return await rest.request<SecretBody>("GET", `/api/v1/namespaces/${ns}/secrets/${name}`);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

export interface EventBody {
  type: string;
  reason: string;
  message: string;
  involvedObject: { name: string };
}

export async function eventsFor(rest: KubeRest, ns: string, name: string): Promise<EventBody[]> {
  const list = await rest.request<{ items: EventBody[] }>("GET", `/api/v1/namespaces/${ns}/events`, {
    query: { fieldSelector: `involvedObject.name=${name}` },
  });
  return list.items;
}

export const ready = (ak: ApiKey | undefined): string | undefined => ak?.status?.conditions?.find((c) => c.type === "Ready")?.status;
export const readyReason = (ak: ApiKey | undefined): string | undefined => ak?.status?.conditions?.find((c) => c.type === "Ready")?.reason;
