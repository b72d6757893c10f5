// The operator's three watches: ApiKeys, the Secrets keyward labels (only
// those: memory does not grow with the cluster's Secrets), and ApiKeyPolicies.
import type { KubeConfig } from "@kubernetes/client-node";
import { APIKEY_PLURAL, APIKEYPOLICY_PLURAL, API_VERSION, type ApiKey, type ApiKeyPolicy } from "../api/types.ts";
import type { Config } from "../config/config.ts";
import { CollectionWatch, type ChangeType, type LifecycleEvent } from "../k8s/informer.ts";
import type { KubeRest } from "../k8s/rest.ts";
import { operatorView } from "./view.ts";
import { MANAGED_SECRETS_SELECTOR, toSecretView, type SecretView } from "./secrets.ts";

export interface OperatorWatches {
  apiKeys: CollectionWatch<ApiKey>;
  secrets: CollectionWatch<SecretView>;
  policies: CollectionWatch<ApiKeyPolicy>;
  /** Resolves once all three have synced. */
  start(): Promise<void>;
  stop(): Promise<void>;
  synced(): boolean;
}

export interface WatchHandlers {
  lifecycle: (resource: string) => (event: LifecycleEvent, err?: unknown) => void;
  apiKey: (type: ChangeType, ak: ApiKey, old?: ApiKey) => void;
  secret: (type: ChangeType, s: SecretView) => void;
  policy: (type: ChangeType, p: ApiKeyPolicy, old?: ApiKeyPolicy) => void;
}

export function operatorWatches(deps: { config: Config; kc: KubeConfig; rest: KubeRest }, on: WatchHandlers): OperatorWatches {
  const { config, kc, rest } = deps;
  const watched = { namespaces: config.namespaces, staleAfterMs: config.watchStaleAfter, resyncMs: config.watchResync };
  const crd = { ...watched, apiPrefix: `/apis/${API_VERSION}` };
  const apiKeys = new CollectionWatch<ApiKey>(kc, rest, { ...crd, plural: APIKEY_PLURAL, transform: operatorView, onLifecycle: on.lifecycle("apikeys"), onChange: on.apiKey });
  const secrets = new CollectionWatch<SecretView>(kc, rest, {
    ...watched,
    apiPrefix: "/api/v1",
    plural: "secrets",
    labelSelector: MANAGED_SECRETS_SELECTOR,
    transform: toSecretView,
    onLifecycle: on.lifecycle("secrets"),
    onChange: on.secret,
  });
  const policies = new CollectionWatch<ApiKeyPolicy>(kc, rest, { ...crd, plural: APIKEYPOLICY_PLURAL, onLifecycle: on.lifecycle("apikeypolicies"), onChange: on.policy });
  const all = [apiKeys, secrets, policies] as const;
  return {
    apiKeys,
    secrets,
    policies,
    start: async () => {
      await Promise.all(all.map((w) => w.start()));
    },
    stop: async () => {
      await Promise.all(all.map((w) => w.stop()));
    },
    synced: () => all.every((w) => w.synced),
  };
}
