// TypeScript shapes of keyward's resources (keyward.dev/v1alpha1). The CRDs in
// crds/ are the source of truth for validation; these types mirror them for code.
import type { KubernetesObject } from "@kubernetes/client-node";

export const GROUP = "keyward.dev";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;
export const APIKEY_PLURAL = "apikeys";
export const APIKEYPOLICY_PLURAL = "apikeypolicies";

/** Annotation that rotates a key now when its value changes (imperative rotation). */
export const ROTATE_ANNOTATION = "keyward.dev/rotate";
/** Labels keyward puts on the Secrets it creates. */
export const LABEL_MANAGED_BY = "app.kubernetes.io/managed-by";
export const LABEL_APIKEY = "keyward.dev/apikey";
/** Default data key inside a delivered Secret. */
export const SECRET_DATA_KEY = "api-key";

export interface RateLimit {
  requests: number;
  /** Go duration, 1s to 24h. */
  per: string;
  burst?: number;
}

export interface Quota {
  requests: number;
  per: "day" | "month";
}

export interface Limits {
  rate?: RateLimit;
  quota?: Quota;
}

export interface ApiKeySpec {
  owner: string;
  description?: string;
  scopes?: string[];
  prefix?: string;
  secretName?: string;
  existingSecret?: { name: string; key?: string };
  keyHash?: string;
  expiresAt?: string;
  disabled?: boolean;
  rotation?: { every?: string; gracePeriod?: string; trigger?: string };
  limits?: Limits;
  allowedSources?: string[];
}

export type KeyState = "active" | "grace";

export interface KeyVersion {
  /** Short public id, `<prefix>_<8 chars>`; safe to log. */
  id: string;
  /** `sha256:<64 hex>` of the full key. */
  hash: string;
  state: KeyState;
  createdAt?: string;
  /** For a key in grace: when it stops being accepted. */
  expiresAt?: string;
}

export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  observedGeneration?: number;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

export type ApiKeyState = "Pending" | "Active" | "Rotating" | "Expired" | "Disabled" | "Failed";

/** Requests of one UTC day by decision outcome, plus upstream answers from access logs. */
export interface DailyUsage {
  /** UTC date, YYYY-MM-DD. */
  date: string;
  allowed?: number;
  unauthenticated?: number;
  forbidden?: number;
  invalid?: number;
  limited?: number;
  error?: number;
  /** Upstream responses by class, from Envoy access logs joined to the key. */
  upstream2xx?: number;
  upstream3xx?: number;
  upstream4xx?: number;
  upstream5xx?: number;
}

/** Usage of an ApiKey, aggregated by the ext_authz servers and flushed at a bounded rate. */
export interface UsageStatus {
  /** Last request seen with any version of this key. */
  lastUsedAt?: string;
  /** Last request per key version (the current key and one in grace). */
  keys?: { id: string; lastUsedAt: string }[];
  /** Requests checked (any outcome) in the last 24 hours, from `hourly`. */
  requests24h?: number;
  /** Allowed requests in the current quota period (the key's quota period, else the calendar month). */
  currentPeriod?: { per: "day" | "month"; start: string; requests: number };
  /** Requests per UTC hour for the last 24 hours. */
  hourly?: { hour: string; requests: number }[];
  /** The last 30 UTC days, oldest first. */
  daily?: DailyUsage[];
  /** The most used routes (method and path pattern) since `topRoutesSince`, bounded. */
  topRoutes?: { route: string; requests: number }[];
  topRoutesSince?: string;
}

export interface ApiKeyStatus {
  observedGeneration?: number;
  state?: ApiKeyState;
  currentKeyId?: string;
  secretName?: string;
  nextRotationAt?: string;
  lastRotationAt?: string;
  observedTrigger?: string;
  observedRotateAnnotation?: string;
  keys?: KeyVersion[];
  usage?: UsageStatus;
  conditions?: Condition[];
}

export interface ApiKey extends KubernetesObject {
  apiVersion: typeof API_VERSION;
  kind: "ApiKey";
  metadata: NonNullable<KubernetesObject["metadata"]> & { name: string; namespace: string };
  spec: ApiKeySpec;
  status?: ApiKeyStatus;
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: "In" | "NotIn" | "Exists" | "DoesNotExist"; values?: string[] }[];
}

export type HttpMethod = "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" | "CONNECT" | "TRACE";

export interface PolicyRule {
  name?: string;
  paths: string[];
  methods?: HttpMethod[];
  scopes?: string[];
}

export interface ApiKeyPolicySpec {
  hosts: string[];
  credentials?: { headers?: string[]; bearer?: boolean; queryParams?: string[] };
  keys?: { namespaces?: string[]; selector?: LabelSelector };
  defaults?: Limits;
  /** Ceilings on the rate and quota of every key this policy admits (its own limits or the defaults). */
  maximums?: Limits;
  rules: PolicyRule[];
}

/** A host of the policy that another namespace owns; `owners` is empty when nobody may claim it. */
export interface HostConflictStatus {
  host: string;
  owners: string[];
}

export interface ApiKeyPolicyStatus {
  observedGeneration?: number;
  ruleCount?: number;
  /** Hosts of this policy that other namespaces own: not enforced by this policy. */
  conflicts?: HostConflictStatus[];
  conditions?: Condition[];
}

export interface ApiKeyPolicy extends KubernetesObject {
  apiVersion: typeof API_VERSION;
  kind: "ApiKeyPolicy";
  metadata: NonNullable<KubernetesObject["metadata"]> & { name: string; namespace: string };
  spec: ApiKeyPolicySpec;
  status?: ApiKeyPolicyStatus;
}
