// The data plane: watches ApiKeys and ApiKeyPolicies into the key index and the
// policy table, and serves Check over gRPC and HTTP. main.ts wires it for
// `keyward authz` and `keyward run`.
import { APIKEY_PLURAL, APIKEYPOLICY_PLURAL, API_VERSION, type ApiKey, type ApiKeyPolicy } from "../api/types.ts";
import { KeyIndex } from "../index/keys.ts";
import { CollectionWatch, type ChangeType } from "../k8s/informer.ts";
import type { RoleDeps } from "../deps.ts";
import { Limiter } from "../limits/limiter.ts";
import { Checker, type CheckInput, type Decision } from "./check.ts";
import { startGrpcFront, type GrpcFront } from "./grpc.ts";
import { startHttpFront, type HttpFront } from "./http.ts";
import { createAuthzMetrics } from "./metrics.ts";
import { PolicyIndex } from "./policy.ts";
import { REASONS } from "./reasons.ts";
import { decisionMetadata, type ResponseOptions } from "./response.ts";

export interface AuthzDeps extends RoleDeps {
  /**
   * Called after each check is answered (or found cancelled), for usage accounting.
   * It runs off the answer's path; what it throws is logged, never turned into a decision.
   */
  onDecision?: (front: "grpc" | "http", d: Decision, seconds: number, input: CheckInput | undefined, cancelled: boolean) => void;
  /**
   * Bind the ports only once both watches have listed (startAuthz resolves then). For a
   * cluster worker (src/authz/workers.ts): the shared socket hands connections only to
   * workers that listen, so a replacement worker gets none before it can decide.
   */
  listenWhenSynced?: boolean;
}

export interface AuthzHandle {
  grpcPort: number;
  httpPort: number | undefined;
  ready(): boolean;
  stop(): Promise<void>;
}

/** Request fields are the caller's to choose: logged at most 256 characters long. */
function clip(v: string | undefined): string | undefined {
  return v !== undefined && v.length > 256 ? `${v.slice(0, 256)}...` : v;
}

function slim<T extends ApiKey | ApiKeyPolicy>(obj: T): T {
  const { name, namespace, uid, resourceVersion, generation, labels } = obj.metadata;
  return { ...obj, metadata: { name, namespace, uid, resourceVersion, generation, labels } };
}


export async function startAuthz(deps: AuthzDeps): Promise<AuthzHandle> {
  const { config, kc, rest, registry } = deps;
  const log = deps.log;
  const now = deps.now ?? Date.now;
  const keys = new KeyIndex({
    onInvalid: (ref, what) => {
      log.warn("ApiKey partly ignored", { apikey: ref, problem: what });
    },
  });
  const policies = new PolicyIndex();
  const limiter = new Limiter();
  const metrics = createAuthzMetrics(registry, {
    keys: () => keys.size,
    apiKeys: () => keys.apiKeyCount,
    policies: () => policies.table.policyCount,
  });
  const checker = new Checker({ keys, policies, limiter, now, xffTrustedHops: config.xffTrustedHops });
  const response: ResponseOptions = { keyIdHeader: config.keyIdHeader.toLowerCase(), ownerHeader: config.ownerHeader.toLowerCase(), realm: config.authRealm };

  let grpcFront: GrpcFront | undefined;
  const notify = (): void => {
    grpcFront?.notifyHealth();
  };
  /** A watched collection whose every event goes to `apply` at once. */
  const watch = <T extends ApiKey | ApiKeyPolicy>(plural: string, apply: (type: ChangeType, obj: T) => void): CollectionWatch<T> =>
    new CollectionWatch<T>(kc, rest, {
      apiPrefix: `/apis/${API_VERSION}`,
      plural,
      namespaces: config.namespaces,
      staleAfterMs: config.watchStaleAfter,
      resyncMs: config.watchResync,
      onLifecycle: (event, err) => {
        metrics.watchEvents.inc({ resource: plural, event });
        if (event === "error" || event === "handler_error") log.warn("watch problem", { resource: plural, event, err });
        notify();
      },
      onChange: apply,
      // The cache keeps what the index reads: no managed fields or annotations.
      transform: slim,
    });
  const informers = [
    watch<ApiKey>(APIKEY_PLURAL, (type, obj) => {
      keys.apply(type, obj);
      if (type === "delete") limiter.forget(`${obj.metadata.uid ?? `${obj.metadata.namespace}/${obj.metadata.name}`}|`);
    }),
    watch<ApiKeyPolicy>(APIKEYPOLICY_PLURAL, (type, obj) => {
      policies.apply(type, obj);
    }),
  ];
  const ready = (): boolean => informers.every((i) => i.synced);

  const listener = deps.onDecision;
  const onDecision = (front: "grpc" | "http") => {
    // Label children resolved once per reason, not per request.
    const counters = new Map<string, { inc(): void }>();
    const timer = metrics.checkSeconds.labels({ front });
    const counter = (reason: string, outcome: string): { inc(): void } => {
      let c = counters.get(reason);
      if (!c) {
        c = metrics.decisions.labels({ outcome, reason, front });
        counters.set(reason, c);
      }
      return c;
    };
    return (d: Decision, seconds: number, input: CheckInput | undefined, cancelled: boolean): void => {
      const reason = cancelled ? "cancelled" : d.reason;
      counter(reason, cancelled ? "error" : REASONS[d.reason].outcome).inc();
      timer.observe(seconds);
      logDecision(front, d, input, cancelled);
      if (listener) {
        try {
          listener(front, d, seconds, input, cancelled);
        } catch (err) {
          log.warn("decision listener failed", { err });
        }
      }
    };
  };
  const logDecision = (front: string, d: Decision, input: CheckInput | undefined, cancelled: boolean): void => {
    const level = d.status === 200 && !cancelled ? "debug" : "info";
    if (!log.enabled(level)) return;
    const path = input?.path;
    const q = path?.indexOf("?") ?? -1;
    log[level]("check", {
      front,
      status: d.status,
      ...decisionMetadata(d),
      ...(cancelled ? { reason: "cancelled" } : {}),
      method: clip(input?.method),
      host: clip(input?.host),
      // The query string can carry the key: never logged.
      path: clip(q === -1 ? path : path?.slice(0, q)),
    });
  };
  const onError = (err: unknown): void => {
    log.error("check failed; denied", { err });
  };

  if (deps.listenWhenSynced) await Promise.all(informers.map((i) => i.start()));
  let httpFront: HttpFront | undefined;
  try {
    grpcFront = await startGrpcFront({ address: config.grpcAddress, checker, response, ready, onDecision: onDecision("grpc"), onError });
    if (config.httpAuthAddress) {
      httpFront = await startHttpFront({ address: config.httpAuthAddress, checker, response, ready, onDecision: onDecision("http"), onError });
    }
  } catch (err) {
    await Promise.all([grpcFront?.stop(), ...(deps.listenWhenSynced ? informers.map((i) => i.stop()) : [])]);
    throw err;
  }
  for (const inf of informers) {
    inf.start().then(notify, (err: unknown) => {
      log.error("watch did not start", { err });
    });
  }
  const g = grpcFront;
  return {
    grpcPort: g.port,
    httpPort: httpFront?.port,
    ready,
    stop: async () => {
      await Promise.all([g.stop(), httpFront?.stop(), ...informers.map((i) => i.stop())]);
    },
  };
}
