// The data plane: watches ApiKeys and ApiKeyPolicies into the key index and the
// policy table, and serves Check over gRPC and HTTP. main.ts wires it for
// `keyward authz` and `keyward run`.
import { APIKEY_PLURAL, APIKEYPOLICY_PLURAL, API_VERSION, type ApiKey, type ApiKeyPolicy } from "../api/types.ts";
import { KeyIndex } from "../index/keys.ts";
import { CollectionWatch, sameForm, type ChangeType, type LifecycleEvent } from "../k8s/informer.ts";
import type { ApiKeyWatch } from "../apikeys/watch.ts";
import { apiKeyRef, indexView } from "../apikeys/views.ts";
import type { RoleDeps } from "../deps.ts";
import type { Config } from "../config/config.ts";
import type { Logger } from "../log.ts";
import { TlsSource } from "../tls/source.ts";
import { openLimitStore } from "../limits/store.ts";
import { registerUnknownKeyMetrics, UnknownKeyGuard } from "./bruteforce.ts";
import { Checker } from "./check.ts";
import { decisionRecorder, type DecisionListener, type Front } from "./decisions.ts";
import { h2ViolationCounter } from "../grpc/metrics.ts";
import type { H2Limits } from "../h2/limits.ts";
import { startGrpcFront, type GrpcFront, type GrpcTransport } from "./ext-authz-grpc.ts";
import { HTTP_PROXIES, startHttpFront, type HttpFront, type HttpProxy } from "./http.ts";
import { createAuthzMetrics } from "./metrics.ts";
import { parseHostAssignments } from "../policy/hosts.ts";
import { PolicyIndex } from "../policy/policy.ts";
import type { ResponseOptions } from "./response.ts";
import { IndexStaleness } from "./staleness.ts";
import { checkProof } from "./check-proof.ts";
import { loadProofKeys } from "../accesslog/proof.ts";
import { policyView } from "./views.ts";

export interface AuthzDeps extends RoleDeps {
  /**
   * Called after each check is answered (or found cancelled), for usage accounting.
   * It runs off the answer's path; what it throws is logged, never turned into a decision.
   */
  onDecision?: DecisionListener;
  /**
   * Bind the ports only once both watches have listed (startAuthz resolves then). For a
   * cluster worker (src/authz/authz-workers.ts): the shared socket hands connections only to
   * workers that listen, so a replacement worker gets none before it can decide.
   */
  listenWhenSynced?: boolean;
  /**
   * An ApiKey watch shared with usage in this process (one list and one watch for both, ADR
   * 0034; src/apikeys/watch.ts): its records hold what the index reads, as the index hears
   * every cached key as an "add" when it joins. Default: the data plane's own, caching
   * references only.
   */
  apiKeys?: ApiKeyWatch;
}

export interface AuthzHandle {
  grpcPort: number;
  httpPort: number | undefined;
  ready(): boolean;
  stop(): Promise<void>;
}

/** The configured proxy of the HTTP front, or undefined when none is named. */
function httpProxy(name: string): HttpProxy | undefined {
  return HTTP_PROXIES.find((p) => p === name);
}

/** The TLS of both check ports, when --tls-cert-file is set; reload outcomes are logged. */
async function openTls(config: Config, log: Logger): Promise<TlsSource | undefined> {
  if (!config.tlsCertFile) return undefined;
  const tls = await TlsSource.open(
    {
      certFile: config.tlsCertFile,
      keyFile: config.tlsKeyFile,
      clientCaFile: config.tlsClientCaFile,
      requireClientCert: config.tlsRequireClientCert,
      reloadIntervalMs: config.tlsReloadInterval,
    },
    {
      onReload: (cert) => {
        log.info("TLS certificate reloaded", { cert });
      },
      onReloadFailed: (err) => {
        log.warn("TLS files changed but do not load; serving the previous certificate", { err });
      },
    },
  );
  log.info("TLS on the check ports", { cert: tls.current().info, clientCerts: tls.requestCert ? (config.tlsRequireClientCert ? "required" : "optional") : "not requested" });
  return tls;
}

/** The HTTP/2 limits of the gRPC port that configuration sets (ADR 0028). */
function h2LimitsOf(config: AuthzDeps["config"]): Partial<H2Limits> {
  return {
    maxConnections: config.grpcMaxConnections,
    idleTimeoutMs: config.grpcIdleTimeout,
    maxConcurrentStreams: config.grpcMaxConcurrentStreams,
    resetRate: { burst: config.grpcStreamResetBurst, perSecond: config.grpcStreamResetRate },
  };
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
  const policies = new PolicyIndex(parseHostAssignments(config.hostOwners));
  const limits = await openLimitStore(config, log, registry, now);
  const { limiter } = limits;
  const metrics = createAuthzMetrics(registry, {
    keys: () => keys.size,
    apiKeys: () => keys.apiKeyCount,
    policies: () => policies.table.policyCount,
  });
  const unknownKeys = new UnknownKeyGuard({
    threshold: config.unknownKeyThreshold,
    windowMs: config.unknownKeyWindow,
    cooldownMs: config.unknownKeyCooldown,
    ipv4Prefix: config.unknownKeyIpv4Prefix,
    ipv6Prefix: config.unknownKeyIpv6Prefix,
    maxNetworks: config.unknownKeyMaxNetworks,
    blockAll: config.unknownKeyBlockAll,
    xffTrustedHops: config.xffTrustedHops,
    now,
  });
  registerUnknownKeyMetrics(registry, unknownKeys);
  const checker = new Checker({ keys, policies, limiter, now, xffTrustedHops: config.xffTrustedHops, unknownKeys });
  const proofKeys = config.accessLogProofKeyFile ? await loadProofKeys(config.accessLogProofKeyFile) : undefined;
  const response: ResponseOptions = { keyIdHeader: config.keyIdHeader.toLowerCase(), ownerHeader: config.ownerHeader.toLowerCase(), realm: config.authRealm };

  let grpcFront: GrpcFront | undefined;
  const notify = (): void => {
    grpcFront?.notifyHealth();
  };
  const lifecycle = (plural: string) => (event: LifecycleEvent, err?: unknown): void => {
    metrics.watchEvents.inc({ resource: plural, event });
    if (event === "error" || event === "handler_error") log.warn("watch problem", { resource: plural, event, err });
    notify();
  };
  /**
   * A watched collection whose every event goes to `apply` at once; each object cut to what
   * `apply` reads on arrival, and the cache keeping only what `keep` returns (views.ts).
   */
  const watch = <T extends ApiKey | ApiKeyPolicy>(plural: string, apply: (type: ChangeType, obj: T) => void, view: { transform: (obj: T) => T; keep?: (obj: T) => T }): CollectionWatch<T> =>
    new CollectionWatch<T>(kc, rest, {
      apiPrefix: `/apis/${API_VERSION}`,
      plural,
      namespaces: config.namespaces,
      staleAfterMs: config.watchStaleAfter,
      resyncMs: config.watchResync,
      onLifecycle: lifecycle(plural),
      onChange: apply,
      transform: view.transform,
      form: sameForm(view.keep),
    });
  const applyKey = (type: ChangeType, obj: ApiKey): void => {
    keys.apply(type, obj);
    if (type === "delete") limiter.forget(`${obj.metadata.uid ?? `${obj.metadata.namespace}/${obj.metadata.name}`}|`);
  };
  deps.apiKeys?.listen({ onChange: applyKey, onLifecycle: lifecycle(APIKEY_PLURAL) });
  const informers = [
    deps.apiKeys ?? watch<ApiKey>(APIKEY_PLURAL, applyKey, { transform: indexView, keep: apiKeyRef }),
    watch<ApiKeyPolicy>(APIKEYPOLICY_PLURAL, (type, obj) => {
      policies.apply(type, obj);
    }, { transform: policyView }),
  ] as const;
  const ready = (): boolean => informers.every((i) => i.synced);
  const staleness = new IndexStaleness({
    resources: [
      { resource: APIKEY_PLURAL, sources: informers[0].informers },
      { resource: APIKEYPOLICY_PLURAL, sources: informers[1].informers },
    ],
    maxMs: config.maxIndexStaleness,
  });
  staleness.register(registry);
  const indexStale = config.maxIndexStaleness > 0 ? (): boolean => staleness.stale : undefined;

  const onDecision = (front: Front) => decisionRecorder({ front, metrics, log, listener: deps.onDecision });
  const onError = (err: unknown): void => {
    log.error("check failed; denied", { err });
  };

  const tls = await openTls(config, log);
  if (deps.listenWhenSynced) await Promise.all(informers.map((i) => i.start()));
  let httpFront: HttpFront | undefined;
  try {
    grpcFront = await startGrpcFront({
      address: config.grpcAddress,
      transport: config.grpcTransport as GrpcTransport,
      h2Limits: h2LimitsOf(config),
      onViolation: h2ViolationCounter(registry),
      checker,
      response,
      ready,
      indexStale,
      onDecision: onDecision("grpc"),
      onError,
      tls,
      ...(proofKeys ? { proof: checkProof(proofKeys[0] as Buffer, now) } : {}),
    });
    const proxy = httpProxy(config.httpAuthProxy);
    if (config.httpAuthAddress && proxy) {
      httpFront = await startHttpFront({ address: config.httpAuthAddress, proxy, pathPrefix: config.httpAuthPathPrefix, checker, response, ready, indexStale, onDecision: onDecision("http"), onError, tls });
    } else if (config.httpAuthAddress) {
      log.error("HTTP auth endpoint not started: name the proxy that calls it with --http-auth-proxy (nginx, traefik or envoy)", { address: config.httpAuthAddress });
    }
  } catch (err) {
    tls?.close();
    await Promise.all([grpcFront?.stop(), limits.close(), ...(deps.listenWhenSynced ? informers.map((i) => i.stop()) : [])]);
    throw err;
  }
  staleness.start();
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
      staleness.stop();
      tls?.close();
      await Promise.all([g.stop(), httpFront?.stop(), ...informers.map((i) => i.stop())]);
      await limits.close();
    },
  };
}
