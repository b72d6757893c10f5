// keyward's one configuration module. Every knob has a flag, an environment
// variable, a default and a line of documentation, in one table. Nothing reads
// process.env at import time: loadConfig(argv, env) is called by main.ts.
// docs/configuration.md is generated from this table (`keyward config --markdown`)
// and a unit test keeps the two equal.
import { availableParallelism } from "node:os";
import { KeywardError } from "../errors.ts";
import { formatDuration, parseDuration } from "../util/duration.ts";

type Kind = "string" | "int" | "number" | "bool" | "duration" | "list" | "processes";

interface Setting<K extends Kind> {
  kind: K;
  flag: string;
  env: string;
  default: ValueOf<K>;
  doc: string;
  /** Smallest accepted value, for int, number, duration (ms) and processes. */
  min?: number;
  /** Allowed values, for string settings. */
  oneOf?: readonly string[];
}

type ValueOf<K extends Kind> = K extends "string"
  ? string
  : K extends "int" | "number" | "duration" | "processes"
    ? number
    : K extends "bool"
      ? boolean
      : string[];

const s = (flag: string, env: string, def: string, doc: string, oneOf?: readonly string[]): Setting<"string"> => ({
  kind: "string",
  flag,
  env,
  default: def,
  doc,
  ...(oneOf ? { oneOf } : {}),
});
const int = (flag: string, env: string, def: number, doc: string, min = 0): Setting<"int"> => ({
  kind: "int",
  flag,
  env,
  default: def,
  doc,
  min,
});
const num = (flag: string, env: string, def: number, doc: string, min = 0): Setting<"number"> => ({
  kind: "number",
  flag,
  env,
  default: def,
  doc,
  min,
});
const bool = (flag: string, env: string, def: boolean, doc: string): Setting<"bool"> => ({ kind: "bool", flag, env, default: def, doc });
/** A duration, written as a Go duration (500ms, 15s, 1m30s); the value is in milliseconds. */
const dur = (flag: string, env: string, def: number, doc: string, min = 0): Setting<"duration"> => ({
  kind: "duration",
  flag,
  env,
  default: def,
  doc,
  min,
});
/** A process count: a whole number from 1, or `auto` for the cores this process may use (os.availableParallelism()). */
const procs = (flag: string, env: string, def: number, doc: string): Setting<"processes"> => ({ kind: "processes", flag, env, default: def, doc, min: 1 });
const list = (flag: string, env: string, def: string[], doc: string): Setting<"list"> => ({ kind: "list", flag, env, default: def, doc });

/** The table of every setting. Add new knobs here, then run `keyward config --markdown > docs/configuration.md`. */
export const SETTINGS = {
  // --- common -------------------------------------------------------------
  kubeconfig: s("kubeconfig", "KUBECONFIG", "", "kubeconfig file; empty means $KUBECONFIG, ~/.kube/config, then the in-cluster service account"),
  namespaces: list("namespaces", "KEYWARD_NAMESPACES", [], "namespaces to watch, comma-separated; empty means all namespaces"),
  logLevel: s("log-level", "KEYWARD_LOG_LEVEL", "info", "least severe log level written", ["debug", "info", "warn", "error"]),
  metricsAddress: s("metrics-address", "KEYWARD_METRICS_ADDRESS", "0.0.0.0:9090", "host:port of the /metrics and /healthz endpoint; empty disables it"),
  kubeQps: num("kube-qps", "KEYWARD_KUBE_QPS", 50, "sustained requests per second keyward sends to the kube-apiserver (0 = unlimited)"),
  kubeBurst: int("kube-burst", "KEYWARD_KUBE_BURST", 100, "requests keyward may send at once above kube-qps", 1),
  watchStaleAfter: dur("watch-stale-after", "KEYWARD_WATCH_STALE_AFTER", 180_000, "restart a watch that delivered nothing, not even a bookmark, for this long", 1000),
  hostOwners: list("host-owners", "KEYWARD_HOST_OWNERS", [], "hosts an administrator assigns, comma-separated <host>=<namespace> entries (a host listed several times is shared; * names who may claim any host); unlisted hosts belong to their oldest ApiKeyPolicy claim. Give the operator and the data plane the same value"),
  watchResync: dur("watch-resync", "KEYWARD_WATCH_RESYNC", 600_000, "relist every watched resource about this often (jittered +-10%); 0 disables", 0),
  // --- operator -----------------------------------------------------------
  workers: int("workers", "KEYWARD_WORKERS", 4, "ApiKeys reconciled at once (each key is always handled by one worker at a time)", 1),
  retryBase: dur("retry-base", "KEYWARD_RETRY_BASE", 500, "first retry delay after a failed reconcile; doubles per failure", 1),
  retryMax: dur("retry-max", "KEYWARD_RETRY_MAX", 300_000, "longest retry delay after repeated failures", 1),
  leaderElect: bool("leader-elect", "KEYWARD_LEADER_ELECT", true, "elect one active operator through a coordination.k8s.io Lease"),
  leaseName: s("lease-name", "KEYWARD_LEASE_NAME", "keyward-operator", "name of the leader-election Lease"),
  leaseNamespace: s("lease-namespace", "KEYWARD_LEASE_NAMESPACE", "keyward-system", "namespace of the leader-election Lease"),
  leaseDuration: dur("lease-duration", "KEYWARD_LEASE_DURATION", 15_000, "how long a candidate waits, on its own clock, after it last saw the Lease change before it may take it over", 1000),
  leaseRenewDeadline: dur("lease-renew-deadline", "KEYWARD_LEASE_RENEW_DEADLINE", 10_000, "a leader that cannot renew for this long steps down", 500),
  leaseRetryPeriod: dur("lease-retry-period", "KEYWARD_LEASE_RETRY_PERIOD", 2_000, "how often candidates try to acquire or renew the Lease", 100),
  identity: s("identity", "KEYWARD_IDENTITY", "", "this process's leader-election identity; empty means hostname_pid"),
  existingSecretResync: dur("existing-secret-resync", "KEYWARD_EXISTING_SECRET_RESYNC", 60_000, "re-read each Secret named by spec.existingSecret this often (a metadata-only GET; the data only when it changed) to notice a changed key; 0 disables", 0),
  defaultGracePeriod: dur("default-grace-period", "KEYWARD_DEFAULT_GRACE_PERIOD", 86_400_000, "grace period of a rotated key when rotation.gracePeriod is unset", 0),
  // --- authz --------------------------------------------------------------
  grpcAddress: s("grpc-address", "KEYWARD_GRPC_ADDRESS", "0.0.0.0:9001", "host:port of the Envoy ext_authz gRPC server"),
  grpcTransport: s("grpc-transport", "KEYWARD_GRPC_TRANSPORT", "keyward", "the gRPC server under Check: keyward's own HTTP/2 server (prior knowledge; TLS with --tls-cert-file), or grpc-js on node:http2 (ADR 0023)", ["keyward", "grpc-js"]),
  grpcMaxConnections: int("grpc-max-connections", "KEYWARD_GRPC_MAX_CONNECTIONS", 10_000, "keyward transport: connections each process keeps open on the gRPC port; more are closed at once (ADR 0028)", 1),
  grpcIdleTimeout: dur("grpc-idle-timeout", "KEYWARD_GRPC_IDLE_TIMEOUT", 300_000, "keyward transport: close a gRPC connection that had no request for this long (GOAWAY), or whose client has not read keyward's answers for this long; 0 disables", 0),
  grpcMaxConcurrentStreams: int("grpc-max-concurrent-streams", "KEYWARD_GRPC_MAX_CONCURRENT_STREAMS", 1024, "keyward transport: SETTINGS_MAX_CONCURRENT_STREAMS, the checks one gRPC connection may have open at once; more are refused", 1),
  grpcStreamResetRate: int("grpc-stream-reset-rate", "KEYWARD_GRPC_STREAM_RESET_RATE", 100, "keyward transport: checks per second a gRPC connection may cancel (or have refused) before keyward answers them, after grpc-stream-reset-burst; past it the connection is closed with ENHANCE_YOUR_CALM (Rapid Reset)", 1),
  grpcStreamResetBurst: int("grpc-stream-reset-burst", "KEYWARD_GRPC_STREAM_RESET_BURST", 1000, "keyward transport: checks a gRPC connection may cancel at once before grpc-stream-reset-rate applies", 1),
  httpAuthAddress: s("http-auth-address", "KEYWARD_HTTP_AUTH_ADDRESS", "0.0.0.0:9002", "host:port of the HTTP auth endpoint (nginx auth_request, Traefik forwardAuth); empty disables it"),
  httpAuthProxy: s("http-auth-proxy", "KEYWARD_HTTP_AUTH_PROXY", "", "the proxy that calls the HTTP auth endpoint; only its own headers say the original method, host and URI: nginx (X-Original-Method, X-Original-URI, Host), traefik (X-Forwarded-Method, -Host, -Uri) or envoy (the check request's own method, path and Host); while unset, the HTTP endpoint is not started; one of", ["nginx", "traefik", "envoy"]),
  httpAuthPathPrefix: s("http-auth-path-prefix", "KEYWARD_HTTP_AUTH_PATH_PREFIX", "", "with --http-auth-proxy=envoy: Envoy's http_service.path_prefix, removed from the check request's path before it is judged; a check request whose path does not start with it is refused (400)"),
  keyIdHeader: s("key-id-header", "KEYWARD_KEY_ID_HEADER", "x-keyward-key-id", "request header that carries the key id upstream on an allowed request (replaces any sent by the client)"),
  ownerHeader: s("owner-header", "KEYWARD_OWNER_HEADER", "x-keyward-owner", "request header that carries the key's owner upstream on an allowed request (replaces any sent by the client)"),
  xffTrustedHops: int("xff-trusted-hops", "KEYWARD_XFF_TRUSTED_HOPS", 0, "proxies in front of the one that calls keyward whose X-Forwarded-For entries are trusted when checking allowedSources; 0 uses the calling proxy's peer address"),
  authRealm: s("auth-realm", "KEYWARD_AUTH_REALM", "keyward", "realm named in the WWW-Authenticate header of a 401"),
  unknownKeyThreshold: int("unknown-key-threshold", "KEYWARD_UNKNOWN_KEY_THRESHOLD", 100, "unknown keys a source network may present within --unknown-key-window; the next ones get 429 unknown_key_throttled for --unknown-key-cooldown; 0 turns the brute-force defence off"),
  unknownKeyWindow: dur("unknown-key-window", "KEYWARD_UNKNOWN_KEY_WINDOW", 60_000, "the window in which --unknown-key-threshold unknown keys are counted, from a network's first one", 1000),
  unknownKeyCooldown: dur("unknown-key-cooldown", "KEYWARD_UNKNOWN_KEY_COOLDOWN", 300_000, "how long a network that presented too many unknown keys gets 429 for them (Retry-After)", 1000),
  unknownKeyIpv4Prefix: int("unknown-key-ipv4-prefix", "KEYWARD_UNKNOWN_KEY_IPV4_PREFIX", 24, "prefix length of the IPv4 networks unknown keys are counted per, 0 to 32"),
  unknownKeyIpv6Prefix: int("unknown-key-ipv6-prefix", "KEYWARD_UNKNOWN_KEY_IPV6_PREFIX", 64, "prefix length of the IPv6 networks unknown keys are counted per, 0 to 128"),
  unknownKeyMaxNetworks: int("unknown-key-max-networks", "KEYWARD_UNKNOWN_KEY_MAX_NETWORKS", 65_536, "source networks counted, and networks blocked, at most per process (each table drops its older half when full)", 1),
  unknownKeyBlockAll: bool("unknown-key-block-all", "KEYWARD_UNKNOWN_KEY_BLOCK_ALL", false, "while a network is blocked for unknown keys, refuse every key it presents (valid ones too) with 429 before looking it up: hides which guessed keys are valid, at the cost of valid clients in that network"),
  maxIndexStaleness: dur("max-index-staleness", "KEYWARD_MAX_INDEX_STALENESS", 0, "answer checks 503 index_stale while the ApiKey or ApiKeyPolicy watch has heard nothing from the apiserver (event, bookmark or list) for this long; must exceed --watch-stale-after; 0 disables (docs/authz.md, Index staleness)", 0),
  tlsCertFile: s("tls-cert-file", "KEYWARD_TLS_CERT_FILE", "", "PEM certificate (with its chain) that the gRPC and HTTP auth ports serve over TLS; empty serves both in cleartext; needs --tls-key-file"),
  tlsKeyFile: s("tls-key-file", "KEYWARD_TLS_KEY_FILE", "", "PEM private key of --tls-cert-file"),
  tlsClientCaFile: s("tls-client-ca-file", "KEYWARD_TLS_CLIENT_CA_FILE", "", "PEM bundle of the CAs that sign client certificates (mTLS); empty: clients are not asked for a certificate"),
  tlsRequireClientCert: bool("tls-require-client-cert", "KEYWARD_TLS_REQUIRE_CLIENT_CERT", true, "with --tls-client-ca-file: refuse clients that present no certificate (false: serve them; a certificate the CA does not verify is refused either way)"),
  tlsReloadInterval: dur("tls-reload-interval", "KEYWARD_TLS_RELOAD_INTERVAL", 10_000, "how often the TLS files are read again; a changed certificate is served to new connections, one that does not load is logged and the previous kept", 100),
  authzWorkers: procs("authz-workers", "KEYWARD_AUTHZ_WORKERS", 1, "keyward authz: processes serving checks on the shared ports, each with its own watches and index, and its own limit counters unless --limits-store=redis (node:cluster); a number, or auto for one per available core; keyward run takes only 1"),
  compactHeapAfterIdle: dur("compact-heap-after-idle", "KEYWARD_COMPACT_HEAP_AFTER_IDLE", 60_000, "keyward authz / run: after this long without a check (and some since the last time), the data plane's heap is collected and compacted once, returning what a busy spell left (ADR 72), as V8 does not in a process at rest; a check arriving meanwhile waits for it (about 0.1 s at 100,000 keys); 0 never"),
  limitsStore: s("limits-store", "KEYWARD_LIMITS_STORE", "memory", "where rate limits and quotas are counted: memory (each process on its own, forgotten on restart) or redis (shared by every process and replica, durable; docs/authz.md, Limits); one of", ["memory", "redis"]),
  limitsRedisMode: s("limits-redis-mode", "KEYWARD_LIMITS_REDIS_MODE", "standalone", "with --limits-store=redis: how --limits-redis-url names Redis: one server (standalone), its Sentinels (sentinel) or some Cluster nodes (cluster); one of", ["standalone", "sentinel", "cluster"]),
  limitsRedisUrl: list("limits-redis-url", "KEYWARD_LIMITS_REDIS_URL", [], "with --limits-store=redis: redis://host:port or rediss://host:port (TLS) URLs, comma-separated: the server, the Sentinels or some Cluster nodes; user and password may be given as redis://user:password@host but belong in --limits-redis-password-file"),
  limitsRedisSentinelMaster: s("limits-redis-sentinel-master", "KEYWARD_LIMITS_REDIS_SENTINEL_MASTER", "", "with --limits-redis-mode=sentinel: the name of the master the Sentinels watch"),
  limitsRedisPasswordFile: s("limits-redis-password-file", "KEYWARD_LIMITS_REDIS_PASSWORD_FILE", "", "file holding the Redis password (a mounted Secret), also given to Sentinels; empty: the URL's password, if any"),
  limitsRedisCaFile: s("limits-redis-ca-file", "KEYWARD_LIMITS_REDIS_CA_FILE", "", "PEM CAs that verify the certificate of a rediss:// Redis; empty: the system's CAs"),
  limitsRedisKeyPrefix: s("limits-redis-key-prefix", "KEYWARD_LIMITS_REDIS_KEY_PREFIX", "keyward:", "prefix of every Redis key keyward writes"),
  limitsRedisTimeout: dur("limits-redis-timeout", "KEYWARD_LIMITS_REDIS_TIMEOUT", 10, "deadline of one Redis call (the checks of one event-loop turn on one server, one check on a Cluster); past it its checks are answered by --limits-redis-failure", 1),
  limitsRedisConnectTimeout: dur("limits-redis-connect-timeout", "KEYWARD_LIMITS_REDIS_CONNECT_TIMEOUT", 5000, "how long start-up waits for Redis before failing", 100),
  limitsRedisFailure: s("limits-redis-failure", "KEYWARD_LIMITS_REDIS_FAILURE", "local", "how a check is limited while Redis fails, is slow or the breaker is open: local (this process's own counters), allow (no limits) or deny (429); one of", ["local", "allow", "deny"]),
  limitsRedisBreakerFailures: int("limits-redis-breaker-failures", "KEYWARD_LIMITS_REDIS_BREAKER_FAILURES", 5, "failed or late Redis calls in a row that open the circuit breaker (no calls, every check answered by --limits-redis-failure)", 1),
  limitsRedisBreakerCooldown: dur("limits-redis-breaker-cooldown", "KEYWARD_LIMITS_REDIS_BREAKER_COOLDOWN", 1000, "how long the breaker stays open before one check probes Redis again; its success closes the breaker", 10),
  limitsRedisMaxInFlight: int("limits-redis-max-in-flight", "KEYWARD_LIMITS_REDIS_MAX_IN_FLIGHT", 1000, "checks each process has waiting for Redis at most; checks beyond are answered by --limits-redis-failure", 1),
  limitsRedisDenyCache: bool("limits-redis-deny-cache", "KEYWARD_LIMITS_REDIS_DENY_CACHE", true, "refuse a limit Redis refused, without asking Redis again, until it could admit again (its next token or its period's end)"),
  // --- usage --------------------------------------------------------------
  usageStatus: bool("usage-status", "KEYWARD_USAGE_STATUS", true, "write per-key usage (last used, requests, daily counts, top routes) to ApiKey status.usage; needs RBAC patch on apikeys/status"),
  usageFlushInterval: dur("usage-flush-interval", "KEYWARD_USAGE_FLUSH_INTERVAL", 30_000, "how often usage is written to ApiKey status: at most one write per key per interval, and only when it changed", 1000),
  usageTopRoutes: int("usage-top-routes", "KEYWARD_USAGE_TOP_ROUTES", 10, "routes kept in status.usage.topRoutes per key", 1),
  usagePerKeyMetrics: bool("usage-per-key-metrics", "KEYWARD_USAGE_PER_KEY_METRICS", false, "export keyward_key_* metrics labelled by key id (opt-in: one series per key and outcome)"),
  usagePerKeyMetricsMax: int("usage-per-key-metrics-max", "KEYWARD_USAGE_PER_KEY_METRICS_MAX", 500, "key ids with their own keyward_key_* series; later keys are counted under key_id=\"_other\"", 1),
  decisionLog: s("decision-log", "KEYWARD_DECISION_LOG", "off", "where the decision log (one JSON line per check, never the key) goes", ["off", "stdout", "stderr"]),
  decisionLogSampleAllowed: num("decision-log-sample-allowed", "KEYWARD_DECISION_LOG_SAMPLE_ALLOWED", 1, "fraction of allowed checks written to the decision log, 0 to 1"),
  decisionLogSampleDenied: num("decision-log-sample-denied", "KEYWARD_DECISION_LOG_SAMPLE_DENIED", 1, "fraction of denied checks written to the decision log, 0 to 1"),
  usageAlerts: bool("usage-alerts", "KEYWARD_USAGE_ALERTS", true, "evaluate usage alerts from the analytics store on one elected data-plane replica (docs/usage.md, Alerts): Warning Events on the ApiKey, keyward_alerts_firing, and Alertmanager with --alertmanager-url; needs the store, and RBAC create on events and get/create/update on leases"),
  usageAlertInterval: dur("usage-alert-interval", "KEYWARD_USAGE_ALERT_INTERVAL", 60_000, "how often the elected alert evaluator queries the analytics store and re-sends firing alerts to Alertmanager", 1000),
  usageAlertLeaseName: s("usage-alert-lease-name", "KEYWARD_USAGE_ALERT_LEASE_NAME", "keyward-alerts", "name of the Lease (in --lease-namespace) that elects the one data-plane replica evaluating alerts; --lease-duration, --lease-renew-deadline and --lease-retry-period apply"),
  usageAlertCooldown: dur("usage-alert-cooldown", "KEYWARD_USAGE_ALERT_COOLDOWN", 21_600_000, "an alert that fired on a key does not fire again on that key within this long, across restarts and leader changes (held in the store)", 0),
  usageAlertSilence: dur("usage-alert-silence", "KEYWARD_USAGE_ALERT_SILENCE", 7_200_000, "a key with at least --usage-alert-min-requests requests in the last day and none for this long fires KeySilent", 60_000),
  usageAlertWindow: dur("usage-alert-window", "KEYWARD_USAGE_ALERT_WINDOW", 1_800_000, "the window the 429 and upstream 5xx ratios are taken over", 60_000),
  usageAlertRateLimitedRatio: num("usage-alert-rate-limited-ratio", "KEYWARD_USAGE_ALERT_RATE_LIMITED_RATIO", 0.05, "share of a key's requests answered 429 over --usage-alert-window above which RateLimitedHigh fires"),
  usageAlertUpstream5xxRatio: num("usage-alert-upstream-5xx-ratio", "KEYWARD_USAGE_ALERT_UPSTREAM_5XX_RATIO", 0.01, "share of a key's upstream answers that are 5xx over --usage-alert-window above which UpstreamErrorsHigh fires"),
  usageAlertMinRequests: int("usage-alert-min-requests", "KEYWARD_USAGE_ALERT_MIN_REQUESTS", 100, "the 429 and 5xx ratios need at least this many requests in their window; a key needs this many in the last day to be reported silent", 1),
  usageAlertForbiddenWindow: dur("usage-alert-forbidden-window", "KEYWARD_USAGE_ALERT_FORBIDDEN_WINDOW", 300_000, "ForbiddenSpike: the window the 403s are counted over", 60_000),
  usageAlertForbiddenMin: int("usage-alert-forbidden-min", "KEYWARD_USAGE_ALERT_FORBIDDEN_MIN", 10, "ForbiddenSpike: this many 403s in --usage-alert-forbidden-window on a key that was clean before", 1),
  usageAlertForbiddenClean: dur("usage-alert-forbidden-clean", "KEYWARD_USAGE_ALERT_FORBIDDEN_CLEAN", 86_400_000, "ForbiddenSpike: a key is clean when it had no 403 for this long before the window", 60_000),
  usageAlertSourceWindow: dur("usage-alert-source-window", "KEYWARD_USAGE_ALERT_SOURCE_WINDOW", 3_600_000, "NewSourceNetwork and NewSourceCountry: a network or country first seen on the key this recently is new (the alert resolves after)", 60_000),
  usageAlertSourceHistory: dur("usage-alert-source-history", "KEYWARD_USAGE_ALERT_SOURCE_HISTORY", 30 * 86_400_000, "the key's own history new networks and countries are judged against (within --analytics-retention)", 3_600_000),
  usageAlertDormant: dur("usage-alert-dormant", "KEYWARD_USAGE_ALERT_DORMANT", 30 * 86_400_000, "a live key with no request for this long (or never used, created that long ago) fires KeyDormant", 86_400_000),
  usageAlertDormantLong: dur("usage-alert-dormant-long", "KEYWARD_USAGE_ALERT_DORMANT_LONG", 90 * 86_400_000, "the same, this long, fires KeyDormantLong", 86_400_000),
  usageAlertExpiryWindow: dur("usage-alert-expiry-window", "KEYWARD_USAGE_ALERT_EXPIRY_WINDOW", 604_800_000, "keys whose spec.expiresAt is this close fire KeyExpiringSoon (default 7 days)", 0),
  usageAlertQuotaRatio: num("usage-alert-quota-ratio", "KEYWARD_USAGE_ALERT_QUOTA_RATIO", 0.8, "share of a key's quota used in the current period above which QuotaNearlyUsed fires"),
  alertmanagerUrl: s("alertmanager-url", "KEYWARD_ALERTMANAGER_URL", "", "Alertmanager base URL (http://alertmanager:9093); set, the alert evaluator pushes firing and resolved alerts to its v2 API, labelled namespace, apikey, owner and alert"),
  alertmanagerTimeout: dur("alertmanager-timeout", "KEYWARD_ALERTMANAGER_TIMEOUT", 5000, "how long one push to Alertmanager may take", 100),
  // --- analytics store ------------------------------------------------------
  analyticsStore: s("analytics-store", "KEYWARD_ANALYTICS_STORE", "sqlite", "where per-request usage rows and daily rollups are kept (docs/usage.md, Store): off, sqlite (one file, --analytics-sqlite-path; one replica) or postgres (shared by every replica, --analytics-postgres-url); one of", ["off", "sqlite", "postgres"]),
  analyticsSqlitePath: s("analytics-sqlite-path", "KEYWARD_ANALYTICS_SQLITE_PATH", "keyward-analytics.sqlite", "with --analytics-store=sqlite: the database file, created with its directory when missing; relative to the working directory (the chart sets one on its volume); start-up fails when it cannot be written"),
  analyticsPostgresUrl: s("analytics-postgres-url", "KEYWARD_ANALYTICS_POSTGRES_URL", "", "with --analytics-store=postgres: postgres://user:password@host:5432/database (sslmode and other libpq parameters allowed); give it through the environment from a Secret: the password is never logged"),
  analyticsPostgresPoolSize: int("analytics-postgres-pool-size", "KEYWARD_ANALYTICS_POSTGRES_POOL_SIZE", 4, "with --analytics-store=postgres: connections each of a process's two pools opens at most (the writer thread's, and the queries' and alert state's)", 1),
  analyticsConnectTimeout: dur("analytics-connect-timeout", "KEYWARD_ANALYTICS_CONNECT_TIMEOUT", 10_000, "with --analytics-store=postgres: how long opening a connection may take; at start-up, a store not reached by then stops keyward", 100),
  analyticsRetention: dur("analytics-retention", "KEYWARD_ANALYTICS_RETENTION", 30 * 86_400_000, "how long per-request rows are kept, in whole UTC days (the day the window starts in is kept whole); 90 days (2160h) or more is fine", 86_400_000),
  analyticsRollupRetention: dur("analytics-rollup-retention", "KEYWARD_ANALYTICS_ROLLUP_RETENTION", 0, "how long daily rollups (requests per day, key, route, status, country and outcome) are kept; 0 keeps them for good", 0),
  accessLogAddress: s("access-log-address", "KEYWARD_ACCESS_LOG_ADDRESS", "", "host:port of the Envoy gRPC access log service (envoy.service.accesslog.v3) receiver that joins upstream answers to keys; empty disables it"),
  accessLogTlsCertFile: s("access-log-tls-cert-file", "KEYWARD_ACCESS_LOG_TLS_CERT_FILE", "", "PEM certificate (with its chain) the access log service serves over TLS; needs --access-log-tls-key-file and --access-log-client-ca-file; empty: cleartext, and any peer that reaches the port can write analytics rows (a warning at start-up)"),
  accessLogTlsKeyFile: s("access-log-tls-key-file", "KEYWARD_ACCESS_LOG_TLS_KEY_FILE", "", "PEM private key of --access-log-tls-cert-file"),
  accessLogClientCaFile: s("access-log-client-ca-file", "KEYWARD_ACCESS_LOG_CLIENT_CA_FILE", "", "PEM bundle of the CAs that sign the access log senders' (Envoys') client certificates; a sender without a certificate this bundle verifies is refused in the handshake; the three files are read again every --tls-reload-interval"),
  accessLogAllowedPeers: list("access-log-allowed-peers", "KEYWARD_ACCESS_LOG_ALLOWED_PEERS", [], "with --access-log-client-ca-file: the identities a sender's certificate must name in its subjectAltName (URI, e.g. a SPIFFE ID spiffe://cluster.local/ns/ingress/sa/envoy, or DNS), comma-separated; one ending in * matches by prefix; empty: any certificate the CA verifies"),
  accessLogProofKeyFile: s("access-log-proof-key-file", "KEYWARD_ACCESS_LOG_PROOF_KEY_FILE", "", "file of shared secret keys, one per line, each at least 32 bytes (the first signs, all verify), the same on every replica: each allowed check with a request id adds a proof (an HMAC of request id, key id, ApiKey uid and check time) to its metadata, and the access log service drops entries without a valid one (keyward_access_log_dropped_total{reason=\"unproven\"}); empty: entries are not checked against the checks keyward made"),
  accessLogMaxConnections: int("access-log-max-connections", "KEYWARD_ACCESS_LOG_MAX_CONNECTIONS", 256, "open connections the access log service accepts at most; more are closed at once (keyward_access_log_dropped_total{reason=\"connections\"})", 1),
  accessLogMaxStreams: int("access-log-max-streams-per-connection", "KEYWARD_ACCESS_LOG_MAX_STREAMS_PER_CONNECTION", 16, "concurrent access log streams one connection may hold (Envoy opens one per worker thread and log name); more are refused with RESOURCE_EXHAUSTED", 1),
  accessLogMaxMessageBytes: int("access-log-max-message-bytes", "KEYWARD_ACCESS_LOG_MAX_MESSAGE_BYTES", 1_048_576, "largest access log message accepted, in bytes (Envoy's logger flushes at its buffer_size_bytes, 16 KiB by default); a larger one ends its stream with RESOURCE_EXHAUSTED", 1024),
  accessLogMaxEntries: int("access-log-max-entries-per-message", "KEYWARD_ACCESS_LOG_MAX_ENTRIES_PER_MESSAGE", 1000, "HTTP entries read from one access log message at most; the rest are dropped and counted", 1),
  accessLogMaxEntryAge: dur("access-log-max-entry-age", "KEYWARD_ACCESS_LOG_MAX_ENTRY_AGE", 3_600_000, "an entry whose request ended longer ago than this, or further than a minute in the future, is dropped and counted (no row is written in the past)", 60_000),
  // --- usage API (the analytics store's views over HTTP) -------------------
  usageApiAddress: s("usage-api-address", "KEYWARD_USAGE_API_ADDRESS", "", "host:port of the usage API (docs/usage.md, Usage API): the analytics store's views for callers with a Kubernetes bearer token, limited to the namespaces where they may get apikeys; TLS with --tls-cert-file; needs an analytics store; empty disables it"),
  usageApiAudiences: list("usage-api-audiences", "KEYWARD_USAGE_API_AUDIENCES", [], "audiences the usage API's callers' tokens must be valid for (TokenReview spec.audiences), comma-separated; empty: the apiserver's own"),
  usageApiFrontProxy: s("usage-api-front-proxy", "KEYWARD_USAGE_API_FRONT_PROXY", "off", "the kube-apiserver as the usage API's authenticating front proxy, for the aggregated API usage.keyward.dev (docs/usage.md, Through the apiserver): X-Remote-User, X-Remote-Group and X-Remote-Extra-* name the caller only on a TLS connection whose client certificate the requestheader CA verifies and whose common name is allowed; cluster reads those settings from the ConfigMap kube-system/extension-apiserver-authentication, files from the --usage-api-requestheader-* settings; needs --tls-cert-file; off never reads those headers; one of", ["off", "cluster", "files"]),
  usageApiRequestheaderClientCaFile: s("usage-api-requestheader-client-ca-file", "KEYWARD_USAGE_API_REQUESTHEADER_CLIENT_CA_FILE", "", "with --usage-api-front-proxy=files: PEM bundle of the CAs that sign the front proxy's client certificate (the apiserver's --requestheader-client-ca-file)"),
  usageApiRequestheaderAllowedNames: list("usage-api-requestheader-allowed-names", "KEYWARD_USAGE_API_REQUESTHEADER_ALLOWED_NAMES", [], "with --usage-api-front-proxy=files: common names the front proxy's certificate may have, comma-separated (the apiserver's --requestheader-allowed-names); empty: any certificate the CA signed"),
  usageApiRequestheaderUsernameHeaders: list("usage-api-requestheader-username-headers", "KEYWARD_USAGE_API_REQUESTHEADER_USERNAME_HEADERS", ["X-Remote-User"], "with --usage-api-front-proxy=files: headers naming the user, the first one set wins"),
  usageApiRequestheaderUidHeaders: list("usage-api-requestheader-uid-headers", "KEYWARD_USAGE_API_REQUESTHEADER_UID_HEADERS", [], "with --usage-api-front-proxy=files: headers holding the user's uid, the first one set wins"),
  usageApiRequestheaderGroupHeaders: list("usage-api-requestheader-group-headers", "KEYWARD_USAGE_API_REQUESTHEADER_GROUP_HEADERS", ["X-Remote-Group"], "with --usage-api-front-proxy=files: headers holding the user's groups, one group per header line"),
  usageApiRequestheaderExtraHeadersPrefix: list("usage-api-requestheader-extra-headers-prefix", "KEYWARD_USAGE_API_REQUESTHEADER_EXTRA_HEADERS_PREFIX", ["X-Remote-Extra-"], "with --usage-api-front-proxy=files: prefixes of the headers holding the user's extra attributes"),
  usageApiRequestheaderRefresh: dur("usage-api-requestheader-refresh", "KEYWARD_USAGE_API_REQUESTHEADER_REFRESH", 60_000, "how often the front proxy's settings (the ConfigMap, or the CA file) are read again; settings that do not read keep the previous ones", 1000),
  consoleAddress: s("console-address", "KEYWARD_CONSOLE_ADDRESS", "", "host:port where keyward serves the web console (docs/console.md, Hosted mode): its pages, and the usage API under /api/v1/ with the usage API's bearer-token auth and TLS (--tls-cert-file), for use behind an OIDC proxy that passes the user's token; needs an analytics store; empty disables it"),
  usageApiCacheTtl: dur("usage-api-cache-ttl", "KEYWARD_USAGE_API_CACHE_TTL", 10_000, "how long the usage API reuses a TokenReview or SubjectAccessReview answer (kept by the token's SHA-256, never the token); a revoked token or RoleBinding is honoured after at most this long; 0 asks the apiserver every request", 0),
  // --- analytics ingest (rows to the analytics store) ---------------------
  analyticsQueueSize: int("analytics-queue-size", "KEYWARD_ANALYTICS_QUEUE_SIZE", 100_000, "request rows waiting for the analytics store at most; when full, each new row drops the oldest (keyward_analytics_rows_dropped_total)", 1),
  analyticsBatchSize: int("analytics-batch-size", "KEYWARD_ANALYTICS_BATCH_SIZE", 1000, "request rows per write to the analytics store; a full batch is written at once", 1),
  analyticsFlushInterval: dur("analytics-flush-interval", "KEYWARD_ANALYTICS_FLUSH_INTERVAL", 1000, "longest a request row waits before a write to the analytics store starts; also the wait after a refused write", 10),
  analyticsShedWhenThrottled: bool("analytics-shed-when-throttled", "KEYWARD_ANALYTICS_SHED_WHEN_THROTTLED", true, "while keyward's CPU limit is hit (its cgroup's CFS throttling count rises at two readings in a row, 100 ms apart, until two in a row show no rise), new request rows are dropped without being made (counted in keyward_analytics_rows_dropped_total) and no write to the analytics store starts, so the quota goes to checks (docs/usage.md, Where the writes and reads run); false: rows are made and written whatever the CPU"),
  analyticsShedRunDelay: num("analytics-shed-run-delay", "KEYWARD_ANALYTICS_SHED_RUN_DELAY", 0.25, "while the thread that makes request rows (the check thread; the primary's with --authz-workers) waited for a CPU (runnable, not running: /proc/thread-self/schedstat; time the CPU limit stopped it aside) at least this share of the time at two readings in a row, 100 ms apart, as on a node whose CPUs are all busy, until two readings in a row show less, new request rows are dropped without being made (counted in keyward_analytics_rows_dropped_total) and no write to the analytics store starts, so the CPU goes to checks (docs/usage.md, Where the writes and reads run); 0 to 1, 0 disables"),
  analyticsCountryDatabase: s("analytics-country-database", "KEYWARD_ANALYTICS_COUNTRY_DATABASE", "", "MaxMind-format (.mmdb) country database for the rows' country; empty: the GeoLite2 database shipped in @ip-location-db/geolite2-country-mmdb"),
  analyticsReaderIdle: dur("analytics-reader-idle", "KEYWARD_ANALYTICS_READER_IDLE", 300_000, "with --analytics-store=sqlite: the reader thread (the views' and the alert evaluator's queries, docs/usage.md, Store) starts at the first read and ends after this long without one, freeing its memory (about 30 MiB); 0 keeps it once started"),
  analyticsWriterIdle: dur("analytics-writer-idle", "KEYWARD_ANALYTICS_WRITER_IDLE", 60_000, "with --analytics-store on: the writer thread (the store's writes, docs/usage.md, Where the writes and reads run) ends after this long without a write, freeing its memory (measured 11–17 MiB of RSS), and the next write starts a new one (about half a second of one core); 0 keeps it"),
  analyticsThreadNice: int("analytics-thread-nice", "KEYWARD_ANALYTICS_THREAD_NICE", 19, "the analytics store's writer and reader threads lower their own scheduling priority to this nice value (0-19; Linux): on a saturated CPU the checks run first and the store gets what is left, dropping its oldest rows when it falls behind (docs/usage.md, Where the writes and reads run); 0 leaves them at the process's priority"),
} as const;

type Settings = typeof SETTINGS;
export type Config = { [K in keyof Settings]: ValueOf<Settings[K]["kind"]> };

function parseValue(name: string, setting: Setting<Kind>, raw: string, source: string): ValueOf<Kind> {
  const where = `${source} (${name})`;
  switch (setting.kind) {
    case "string":
      if (setting.oneOf && !setting.oneOf.includes(raw)) {
        throw new KeywardError("ConfigInvalid", `${where}: "${raw}" is not one of ${setting.oneOf.join(", ")}`);
      }
      return raw;
    case "bool":
      if (["true", "1", "yes"].includes(raw.toLowerCase())) return true;
      if (["false", "0", "no"].includes(raw.toLowerCase())) return false;
      throw new KeywardError("ConfigInvalid", `${where}: "${raw}" is not true or false`);
    case "list":
      return raw
        .split(",")
        .map((x) => x.trim())
        .filter(Boolean);
    case "duration": {
      let ms: number;
      try {
        ms = parseDuration(raw);
      } catch (err) {
        throw new KeywardError("ConfigInvalid", `${where}: ${(err as Error).message}`, { cause: err });
      }
      if (setting.min !== undefined && ms < setting.min) {
        throw new KeywardError("ConfigInvalid", `${where}: ${raw} is below the minimum ${formatDuration(setting.min)}`);
      }
      return ms;
    }
    case "processes": {
      const t = raw.trim().toLowerCase();
      if (t === "auto") return availableParallelism();
      if (!/^\d+$/.test(t) || Number(t) < (setting.min ?? 1)) {
        throw new KeywardError("ConfigInvalid", `${where}: "${raw}" is not a whole number of processes from ${setting.min ?? 1}, or auto`);
      }
      return Number(t);
    }
    case "int":
    case "number": {
      const n = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(n) || (setting.kind === "int" && !Number.isInteger(n))) {
        throw new KeywardError("ConfigInvalid", `${where}: "${raw}" is not ${setting.kind === "int" ? "a whole number" : "a number"}`);
      }
      if (setting.min !== undefined && n < setting.min) {
        throw new KeywardError("ConfigInvalid", `${where}: ${raw} is below the minimum ${setting.min}`);
      }
      return n;
    }
  }
}

/**
 * Builds the configuration: defaults, overridden by environment variables,
 * overridden by flags (`--name=value`, `--name value`, `--bool-flag`, `--no-bool-flag`).
 * Unknown flags are errors. Returns the config and the arguments that are not flags.
 */
export function loadConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): { config: Config; args: string[] } {
  const entries = Object.entries(SETTINGS) as [keyof Settings, Setting<Kind>][];
  const byFlag = new Map(entries.map(([name, st]) => [st.flag, [name, st] as const]));
  const out: Record<string, unknown> = {};
  for (const [name, st] of entries) {
    const raw = env[st.env];
    out[name] = raw !== undefined && raw !== "" ? parseValue(name, st, raw, `$${st.env}`) : st.default;
  }
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? "";
    if (!a.startsWith("--")) {
      args.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    let flag = eq === -1 ? a.slice(2) : a.slice(2, eq);
    let value: string | undefined = eq === -1 ? undefined : a.slice(eq + 1);
    let found = byFlag.get(flag);
    if (!found && flag.startsWith("no-") && byFlag.get(flag.slice(3))?.[1].kind === "bool" && value === undefined) {
      flag = flag.slice(3);
      found = byFlag.get(flag);
      value = "false";
    }
    if (!found) throw new KeywardError("ConfigInvalid", `unknown flag --${flag}; run keyward config to list the settings`);
    const [name, st] = found;
    if (value === undefined) {
      if (st.kind === "bool") value = "true";
      else {
        value = argv[i + 1];
        i++;
        if (value === undefined) throw new KeywardError("ConfigInvalid", `--${flag} needs a value`);
      }
    }
    out[name] = parseValue(name, st, value, `--${flag}`);
  }
  const config = out as Config;
  if (config.leaseRenewDeadline >= config.leaseDuration) {
    throw new KeywardError("ConfigInvalid", "--lease-renew-deadline must be shorter than --lease-duration");
  }
  if (config.leaseRetryPeriod >= config.leaseRenewDeadline) {
    throw new KeywardError("ConfigInvalid", "--lease-retry-period must be shorter than --lease-renew-deadline");
  }
  if (config.analyticsThreadNice > 19) throw new KeywardError("ConfigInvalid", "--analytics-thread-nice must be 19 or less (the lowest priority Linux gives)");
  if (config.unknownKeyIpv4Prefix > 32) throw new KeywardError("ConfigInvalid", "--unknown-key-ipv4-prefix must be 32 or less");
  if (config.unknownKeyIpv6Prefix > 128) throw new KeywardError("ConfigInvalid", "--unknown-key-ipv6-prefix must be 128 or less");
  if (config.analyticsShedRunDelay > 1) {
    throw new KeywardError("ConfigInvalid", `--analytics-shed-run-delay must be between 0 and 1 (a share of the time; 0 disables), got ${config.analyticsShedRunDelay}`);
  }
  if (config.maxIndexStaleness > 0 && config.maxIndexStaleness <= config.watchStaleAfter) {
    // A healthy but quiet watch may hear nothing until the watchdog relists after --watch-stale-after.
    throw new KeywardError("ConfigInvalid", "--max-index-staleness must be longer than --watch-stale-after (or 0)");
  }
  if (Boolean(config.tlsCertFile) !== Boolean(config.tlsKeyFile)) throw new KeywardError("ConfigInvalid", "--tls-cert-file and --tls-key-file go together");
  if (config.tlsClientCaFile && !config.tlsCertFile) throw new KeywardError("ConfigInvalid", "--tls-client-ca-file needs --tls-cert-file and --tls-key-file");
  const accessLogTls = [config.accessLogTlsCertFile, config.accessLogTlsKeyFile, config.accessLogClientCaFile].filter(Boolean).length;
  if (accessLogTls !== 0 && accessLogTls !== 3) throw new KeywardError("ConfigInvalid", "--access-log-tls-cert-file, --access-log-tls-key-file and --access-log-client-ca-file go together (mTLS on the access log port)");
  if (config.accessLogAllowedPeers.length > 0 && !config.accessLogClientCaFile) throw new KeywardError("ConfigInvalid", "--access-log-allowed-peers needs --access-log-client-ca-file (the identities are read from verified client certificates)");
  if (config.usageApiAddress && config.analyticsStore === "off") throw new KeywardError("ConfigInvalid", "--usage-api-address serves the analytics store: it needs --analytics-store sqlite or postgres");
  if (config.usageApiFrontProxy !== "off" && (!config.usageApiAddress || !config.tlsCertFile)) {
    throw new KeywardError("ConfigInvalid", "--usage-api-front-proxy trusts a client certificate: it needs --usage-api-address and TLS (--tls-cert-file, --tls-key-file)");
  }
  if (config.usageApiFrontProxy === "files" && !config.usageApiRequestheaderClientCaFile) {
    throw new KeywardError("ConfigInvalid", "--usage-api-front-proxy=files needs --usage-api-requestheader-client-ca-file");
  }
  if (config.consoleAddress && config.analyticsStore === "off") throw new KeywardError("ConfigInvalid", "--console-address serves the analytics store: it needs --analytics-store sqlite or postgres");
  if (config.retryBase > config.retryMax) throw new KeywardError("ConfigInvalid", "--retry-base must not exceed --retry-max");
  if (config.httpAuthPathPrefix !== "" && (config.httpAuthProxy !== "envoy" || !config.httpAuthPathPrefix.startsWith("/"))) {
    throw new KeywardError("ConfigInvalid", "--http-auth-path-prefix is Envoy's path_prefix: it starts with / and needs --http-auth-proxy=envoy");
  }
  return { config, args };
}

/** The default configuration, as tests and embedders start from. */
export function defaultConfig(overrides: Partial<Config> = {}): Config {
  return { ...loadConfig([], {}).config, ...overrides };
}

function showDefault(st: Setting<Kind>): string {
  if (st.kind === "duration") return formatDuration(st.default as number);
  if (st.kind === "list") return (st.default as string[]).join(",");
  return String(st.default);
}

/** The settings table in Markdown, the body of docs/configuration.md. */
export function configMarkdown(): string {
  const rows = (Object.values(SETTINGS) as Setting<Kind>[]).map((st) => {
    const def = showDefault(st);
    const allowed = st.oneOf ? ` (${st.oneOf.join(", ")})` : "";
    return `| \`--${st.flag}\` | \`${st.env}\` | ${def === "" ? "(empty)" : `\`${def}\``} | ${st.doc}${allowed} |`;
  });
  return [
    "# Configuration",
    "",
    "Every setting is a flag and an environment variable; a flag wins over the variable, the variable over",
    "the default. Durations are written like Go durations (`500ms`, `15s`, `1m30s`, `720h`); lists are",
    "comma-separated; booleans take `true`/`false` (or `--flag` / `--no-flag`). Unknown flags and",
    "invalid values stop keyward at start-up with a message naming the setting.",
    "",
    "This file is generated by `keyward config --markdown`; a unit test keeps it in sync.",
    "",
    "| flag | environment | default | meaning |",
    "| --- | --- | --- | --- |",
    ...rows,
    "",
  ].join("\n");
}
