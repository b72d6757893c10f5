// The data plane: watches ApiKeys and ApiKeyPolicies into the key index and the
// policy table, and serves Check over gRPC and HTTP. main.ts wires it for
// `keyward authz` and `keyward run`.
import { APIKEY_PLURAL, APIKEYPOLICY_PLURAL, API_VERSION, type ApiKey, type ApiKeyPolicy } from "../api/types.ts";
import type { KeyIndex } from "../index/keys.ts";
import { CollectionWatch, sameForm, type ChangeType, type LifecycleEvent } from "../k8s/informer.ts";
import { dataPlaneKeyIndex, type SharedKeyIndex } from "./shared-index.ts";
import { apiKeyRef, indexView } from "../apikeys/views.ts";
import type { RoleDeps } from "../deps.ts";
import type { Config } from "../config/config.ts";
import type { Logger } from "../log.ts";
import { TlsSource } from "../tls/source.ts";
import { openLimitStore, type LimitStore } from "../limits/store.ts";
import { registerUnknownKeyMetrics, UnknownKeyGuard } from "./bruteforce.ts";
import { Checker } from "./check.ts";
import { decisionRecorder, type DecisionListener, type Front } from "./decisions.ts";
import { h2ViolationCounter } from "../grpc/metrics.ts";
import type { H2Limits } from "../h2/limits.ts";
import { startGrpcFront, type GrpcFront, type GrpcTransport } from "./ext-authz-grpc.ts";
import { HTTP_PROXIES, startHttpFront, type HttpFront, type HttpProxy } from "./http.ts";
import { createAuthzMetrics, type AuthzMetrics } from "./metrics.ts";
import { parseHostAssignments } from "../policy/hosts.ts";
import { PolicyIndex } from "../policy/policy.ts";
import type { FrontOptions } from "./front.ts";
import { IndexStaleness, type StalenessSource } from "./staleness.ts";
import { checkProof } from "./check-proof.ts";
import { loadProofKeys } from "../accesslog/proof.ts";
import { policyView } from "./views.ts";
import { compactWhenIdle, type IdleCompaction } from "./idle-heap.ts";

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
   * The key index joined to an ApiKey watch shared with usage in this process (one list and one
   * watch for both, ADR 0034; shared-index.ts), before that watch started. Default: an index of
   * its own, fed by the data plane's own watch, caching references only.
   */
  apiKeys?: SharedKeyIndex;
  /**
   * Run once both watches have listed, before the data plane says it is ready: the start-up's
   * garbage collected and the heap compacted (ADR 0067, src/util/heap.ts), so that a process at
   * rest holds what it keeps and not what listing took; and again once idle after each busy
   * spell, `--compact-heap-after-idle` without a check (ADR 0072, idle-heap.ts). Default: nothing.
   */
  settleHeap?: () => Promise<unknown>;
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

/** The check path's parts: the key index, the policy table, the limits store, the metrics, and the Checker over them with the unknown-key guard. */
interface CheckPath {
  keys: KeyIndex;
  policies: PolicyIndex;
  limits: LimitStore;
  metrics: AuthzMetrics;
  checker: Checker;
}

/** The unknown-key guard (bruteforce.ts) as configured, its metrics registered. */
function unknownKeyGuard(deps: AuthzDeps, now: () => number): UnknownKeyGuard {
  const { config } = deps;
  const guard = new UnknownKeyGuard({
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
  registerUnknownKeyMetrics(deps.registry, guard);
  return guard;
}

/** The check path, empty: the watches fill its index and policy table. */
async function openCheckPath(deps: AuthzDeps, now: () => number): Promise<CheckPath> {
  const { config, log, registry } = deps;
  const keys = deps.apiKeys?.keys ?? dataPlaneKeyIndex(log);
  const policies = new PolicyIndex(parseHostAssignments(config.hostOwners));
  const limits = await openLimitStore(config, log, registry, now);
  const metrics = createAuthzMetrics(registry, {
    keys: () => keys.size,
    apiKeys: () => keys.apiKeyCount,
    policies: () => policies.table.policyCount,
  });
  const checker = new Checker({ keys, policies, limiter: limits.limiter, now, xffTrustedHops: config.xffTrustedHops, unknownKeys: unknownKeyGuard(deps, now) });
  return { keys, policies, limits, metrics, checker };
}

/** A watch that fills the check path: whether it has listed, its informers (staleness), start and stop. */
interface IndexWatch {
  readonly synced: boolean;
  readonly informers: readonly StalenessSource[];
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The ApiKey watch (usage's shared one, or the data plane's own, caching references only) and
 * the ApiKeyPolicy watch, each change applied to the index or the policy table at once, each
 * cut on arrival to what they read (views); every lifecycle event counted and told to `notify`.
 */
function indexWatches(deps: AuthzDeps, path: CheckPath, notify: () => void): readonly [IndexWatch, IndexWatch] {
  const { config, kc, rest, log } = deps;
  const lifecycle = (plural: string) => (event: LifecycleEvent, err?: unknown): void => {
    path.metrics.watchEvents.inc({ resource: plural, event });
    if (event === "error" || event === "handler_error") log.warn("watch problem", { resource: plural, event, err });
    notify();
  };
  const watch = <T extends ApiKey | ApiKeyPolicy>(plural: string, apply: (type: ChangeType, obj: T, old: T | undefined, ref: string) => void, view: { transform: (obj: T) => T; keep?: (obj: T) => T }): CollectionWatch<T> =>
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
  const forget = (obj: ApiKey): void => {
    path.limits.limiter.forget(`${obj.metadata.uid ?? `${obj.metadata.namespace}/${obj.metadata.name}`}|`);
  };
  const applyKey = (type: ChangeType, obj: ApiKey, _old: ApiKey | undefined, ref: string): void => {
    path.keys.apply(type, obj, ref);
    if (type === "delete") forget(obj);
  };
  deps.apiKeys?.attach({ onDelete: forget, onLifecycle: lifecycle(APIKEY_PLURAL) });
  const applyPolicy = (type: ChangeType, obj: ApiKeyPolicy): void => {
    path.policies.apply(type, obj);
  };
  return [deps.apiKeys?.watch ?? watch<ApiKey>(APIKEY_PLURAL, applyKey, { transform: indexView, keep: apiKeyRef }), watch<ApiKeyPolicy>(APIKEYPOLICY_PLURAL, applyPolicy, { transform: policyView })];
}

/** How old the index is (--max-index-staleness), registered as a metric; `indexStale` only when checks fail closed on it. */
function indexStaleness(deps: AuthzDeps, [apiKeys, policies]: readonly [IndexWatch, IndexWatch]): { staleness: IndexStaleness; indexStale: (() => boolean) | undefined } {
  const staleness = new IndexStaleness({
    resources: [
      { resource: APIKEY_PLURAL, sources: apiKeys.informers },
      { resource: APIKEYPOLICY_PLURAL, sources: policies.informers },
    ],
    maxMs: deps.config.maxIndexStaleness,
  });
  staleness.register(deps.registry);
  return { staleness, indexStale: deps.config.maxIndexStaleness > 0 ? (): boolean => staleness.stale : undefined };
}

/** The gRPC front, and the HTTP front when --http-auth-address and its proxy are set; on a failure, what started is stopped. */
async function startFronts(deps: AuthzDeps, path: CheckPath, shared: Pick<FrontOptions, "ready" | "indexStale" | "tls">, now: () => number): Promise<{ grpc: GrpcFront; http: HttpFront | undefined }> {
  const { config, log } = deps;
  const proofKeys = config.accessLogProofKeyFile ? await loadProofKeys(config.accessLogProofKeyFile) : undefined;
  const onDecision = (front: Front) => decisionRecorder({ front, metrics: path.metrics, log, listener: deps.onDecision });
  const common = {
    ...shared,
    checker: path.checker,
    response: { keyIdHeader: config.keyIdHeader.toLowerCase(), ownerHeader: config.ownerHeader.toLowerCase(), realm: config.authRealm },
    onError: (err: unknown): void => {
      log.error("check failed; denied", { err });
    },
  };
  const grpc = await startGrpcFront({
    ...common,
    address: config.grpcAddress,
    transport: config.grpcTransport as GrpcTransport,
    h2Limits: h2LimitsOf(config),
    onViolation: h2ViolationCounter(deps.registry),
    onDecision: onDecision("grpc"),
    ...(proofKeys ? { proof: checkProof(proofKeys[0] as Buffer, now) } : {}),
  });
  try {
    const proxy = httpProxy(config.httpAuthProxy);
    if (config.httpAuthAddress && proxy) {
      return { grpc, http: await startHttpFront({ ...common, address: config.httpAuthAddress, proxy, pathPrefix: config.httpAuthPathPrefix, onDecision: onDecision("http") }) };
    }
    if (config.httpAuthAddress) log.error("HTTP auth endpoint not started: name the proxy that calls it with --http-auth-proxy (nginx, traefik or envoy)", { address: config.httpAuthAddress });
    return { grpc, http: undefined };
  } catch (err) {
    await grpc.stop();
    throw err;
  }
}

/**
 * Waits for `synced` (every watch's first list), then runs deps.settleHeap, if any; a settling
 * that fails is logged, never thrown: the data plane is ready all the same.
 */
async function settleAfterSync(deps: AuthzDeps, synced: Promise<unknown>): Promise<void> {
  await synced;
  try {
    await deps.settleHeap?.();
  } catch (err) {
    deps.log.warn("heap not compacted after the first list", { err });
  }
}

/** With deps.settleHeap and --compact-heap-after-idle, the heap compacted once after each busy spell (ADR 0072); the checks answered are the decisions counted. */
function compactIdleHeap(deps: AuthzDeps, path: CheckPath): IdleCompaction | undefined {
  const { settleHeap, config, log } = deps;
  if (!settleHeap || config.compactHeapAfterIdle <= 0) return undefined;
  return compactWhenIdle({
    idleMs: config.compactHeapAfterIdle,
    activity: () => path.metrics.decisions.total(),
    compact: settleHeap,
    registry: deps.registry,
    onError: (err) => {
      log.warn("heap not compacted when idle", { err });
    },
  });
}

/**
 * The data plane: the check path, the watches that fill it, and the fronts that serve it.
 * With listenWhenSynced the fronts listen once the watches have listed; otherwise at once,
 * answering not_ready until then.
 */
export async function startAuthz(deps: AuthzDeps): Promise<AuthzHandle> {
  const now = deps.now ?? Date.now;
  const path = await openCheckPath(deps, now);
  let fronts: { grpc: GrpcFront; http: HttpFront | undefined } | undefined;
  const notify = (): void => {
    fronts?.grpc.notifyHealth();
  };
  const watches = indexWatches(deps, path, notify);
  // Until the watches have listed and the heap has settled after them, not ready.
  let settled = false;
  const ready = (): boolean => settled && watches.every((w) => w.synced);
  const { staleness, indexStale } = indexStaleness(deps, watches);
  const tls = await openTls(deps.config, deps.log);
  if (deps.listenWhenSynced) await Promise.all(watches.map((w) => w.start()));
  try {
    fronts = await startFronts(deps, path, { ready, indexStale, tls }, now);
  } catch (err) {
    tls?.close();
    await Promise.all([path.limits.close(), ...(deps.listenWhenSynced ? watches.map((w) => w.stop()) : [])]);
    throw err;
  }
  staleness.start();
  const started = watches.map((w) =>
    w.start().then(notify, (err: unknown) => {
      deps.log.error("watch did not start", { err });
    }),
  );
  void settleAfterSync(deps, Promise.all(started)).then(() => {
    settled = true;
    notify();
  });
  const idle = compactIdleHeap(deps, path);
  const { grpc, http } = fronts;
  return {
    grpcPort: grpc.port,
    httpPort: http?.port,
    ready,
    stop: async () => {
      idle?.stop();
      staleness.stop();
      tls?.close();
      await Promise.all([grpc.stop(), http?.stop(), ...watches.map((w) => w.stop())]);
      await path.limits.close();
    },
  };
}
