// A small JSON client for the Kubernetes REST API on node:https, with the
// credentials of a KubeConfig. keyward uses it for every write: it sends objects
// exactly as given (no model classes in between, so CRD schemas keep
// `x-kubernetes-*` and `enum`), supports server-side apply and merge patches, and
// paces its own requests with a token bucket (QPS and burst, like client-go).
import { Agent, request as httpsRequest, type RequestOptions } from "node:https";
import { request as httpRequest } from "node:http";
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { KeywardError } from "../errors.ts";

export interface RestOptions {
  /** Sustained requests per second this client sends. Default 50. 0 disables pacing. */
  qps?: number;
  /** Requests allowed at once above qps. Default 100. */
  burst?: number;
  /** Per-request timeout. Default 30 s. */
  timeoutMs?: number;
  /** Counts every request by verb, for metrics and the requests-per-reconcile figures. */
  onRequest?: (method: string) => void;
}

/** A request the apiserver answered with an error status, or that did not reach it. */
export class KubeApiError extends KeywardError {
  /** HTTP status, or 0 when there was no response. */
  readonly status: number;
  /** The Status reason (NotFound, Conflict, Invalid, ...), when the apiserver sent one. */
  readonly reason: string;
  constructor(status: number, reason: string, message: string, options?: ErrorOptions) {
    super("KubernetesRequestFailed", message, options);
    this.name = "KubeApiError";
    this.status = status;
    this.reason = reason;
  }
}

/**
 * A streamed answer that sent nothing for the client's timeout. Named TimeoutError, as an aborted
 * fetch's is: an informer watches again at once after one, as after a watch's own end.
 */
export class KubeTimeoutError extends KubeApiError {
  constructor(message: string) {
    super(0, "", message);
    this.name = "TimeoutError";
  }
}

/** How streamLines reads: stopped by `signal`; `onOpen` once the answer streams; `long` for a watch that holds its connection. */
export interface StreamOptions {
  signal?: AbortSignal;
  onOpen?: () => void;
  long?: boolean;
}

export const isNotFound = (err: unknown): boolean => err instanceof KubeApiError && err.status === 404;
export const isConflict = (err: unknown): boolean => err instanceof KubeApiError && err.status === 409;

interface ResourceInfo {
  name: string;
  namespaced: boolean;
}

/** Token bucket that spaces requests; `take` resolves when a token is available. */
class Pacer {
  private readonly qps: number;
  private readonly burst: number;
  private tokens: number;
  private last = Date.now();
  private chain: Promise<void> = Promise.resolve();
  constructor(qps: number, burst: number) {
    this.qps = qps;
    this.burst = burst;
    this.tokens = burst;
  }
  take(): Promise<void> {
    if (this.qps <= 0) return Promise.resolve();
    const next = this.chain.then(async () => {
      const now = Date.now();
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.qps);
      this.last = now;
      if (this.tokens < 1) {
        const waitMs = ((1 - this.tokens) / this.qps) * 1000;
        await new Promise((r) => setTimeout(r, waitMs));
        this.tokens = 1;
        this.last = Date.now();
      }
      this.tokens -= 1;
    });
    this.chain = next;
    return next;
  }
}

export class KubeRest {
  readonly server: URL;
  private readonly kc: KubeConfig;
  private readonly pacer: Pacer;
  private readonly timeoutMs: number;
  private onRequest: ((method: string) => void) | undefined;
  private agent: Agent | undefined;
  private watchAgent: Agent | undefined;
  private readonly discovery = new Map<string, Promise<Map<string, ResourceInfo>>>();

  constructor(kc: KubeConfig, opts: RestOptions = {}) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new KeywardError("ConfigInvalid", "the kubeconfig has no current cluster");
    this.kc = kc;
    this.server = new URL(cluster.server);
    this.pacer = new Pacer(opts.qps ?? 50, opts.burst ?? 100);
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.onRequest = opts.onRequest;
  }

  /**
   * A GET whose answer is read as it arrives, one line at a time (a watch: one JSON event a
   * line). `onLine` is called with each complete line; returning true ends the request there.
   * Resolves when `onLine` has ended it, the server has, or `stream.signal` aborted it; rejects
   * with a KubeApiError on an error status, with a KubeTimeoutError when nothing arrived for the
   * client's timeout, or with what `onLine` threw (the request is then aborted). `stream.onOpen`
   * is called once the answer's status says it streams.
   */
  async streamLines(path: string, query: Record<string, string | undefined>, onLine: (line: string) => boolean, stream: StreamOptions = {}): Promise<void> {
    const { send, reqOpts, url } = await this.prepare("GET", path, { query }, stream.long === true);
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (err?: Error): void => {
        if (settled) return;
        settled = true;
        stream.signal?.removeEventListener("abort", aborted);
        req.destroy();
        if (err === undefined) resolve();
        else reject(err);
      };
      const aborted = (): void => {
        finish();
      };
      if (stream.signal?.aborted) {
        resolve();
        return;
      }
      stream.signal?.addEventListener("abort", aborted);
      const req = send(reqOpts, (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) stream.onOpen?.();
        if (status < 200 || status >= 300) {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            finish(statusError("GET", url, status, Buffer.concat(chunks).toString("utf8")));
          });
          return;
        }
        let rest: Buffer | undefined;
        res.on("data", (chunk: Buffer) => {
          if (settled) return;
          const buf = rest ? Buffer.concat([rest, chunk]) : chunk;
          let start = 0;
          try {
            for (let nl = buf.indexOf(10, start); nl !== -1; nl = buf.indexOf(10, start)) {
              const line = buf.toString("utf8", start, nl);
              start = nl + 1;
              if (line.length > 0 && onLine(line)) {
                finish();
                return;
              }
            }
          } catch (err) {
            finish(err instanceof Error ? err : new KubeApiError(0, "", `GET ${url.pathname}: a line could not be read`, { cause: err }));
            return;
          }
          rest = start < buf.length ? buf.subarray(start) : undefined;
        });
        res.on("error", (err) => {
          finish(new KubeApiError(0, "", `GET ${url.pathname}: ${err.message}`, { cause: err }));
        });
        res.on("end", () => {
          finish();
        });
      });
      req.on("timeout", () => {
        finish(new KubeTimeoutError(`GET ${url.pathname}: no data for ${this.timeoutMs} ms`));
      });
      req.on("error", (err) => {
        finish(new KubeApiError(0, "", `GET ${url.pathname}: ${err.message}`, { cause: err }));
      });
      req.end();
    });
  }

  /** Paces, counts and builds one request: its options (auth, TLS agent) and the function that sends it. */
  private async prepare(method: string, path: string, opts: { body?: Buffer; contentType?: string; query?: Record<string, string | undefined>; accept?: string }, long = false): Promise<{ send: typeof httpsRequest; reqOpts: RequestOptions; url: URL }> {
    await this.pacer.take();
    this.onRequest?.(method);
    const url = new URL(path, this.server);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const body = opts.body;
    const reqOpts: RequestOptions = {
      method,
      protocol: url.protocol,
      hostname: url.hostname,
      port: url.port,
      path: url.pathname + url.search,
      headers: {
        accept: opts.accept ?? "application/json",
        ...(body ? { "content-type": opts.contentType ?? "application/json", "content-length": String(body.length) } : {}),
      },
      timeout: this.timeoutMs,
    };
    await this.kc.applyToHTTPSOptions(reqOpts);
    if (url.protocol === "https:") {
      // One keep-alive agent, built from the kubeconfig's TLS material on first use; watches, which
      // hold their connection for minutes, get one of their own without a socket limit, so any
      // number of them never keeps a request waiting for a socket.
      if (long) reqOpts.agent = this.watchAgent ??= new Agent({ ...agentTls(reqOpts), keepAlive: false });
      else reqOpts.agent = this.agent ??= new Agent({ ...agentTls(reqOpts), keepAlive: true, maxSockets: 32 });
    }
    return { send: url.protocol === "https:" ? httpsRequest : httpRequest, reqOpts, url };
  }

  async request<T>(
    method: string,
    path: string,
    opts: { body?: unknown; contentType?: string; query?: Record<string, string | undefined>; accept?: string } = {},
  ): Promise<T> {
    const body = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    const { send, reqOpts, url } = await this.prepare(method, path, { ...opts, body });
    return new Promise<T>((resolve, reject) => {
      const req = send(reqOpts, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", (err) => {
          reject(new KubeApiError(0, "", `${method} ${url.pathname}: ${err.message}`, { cause: err }));
        });
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const status = res.statusCode ?? 0;
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            parsed = undefined;
          }
          if (status >= 200 && status < 300) {
            resolve(parsed as T);
            return;
          }
          reject(statusError(method, url, status, parsed));
        });
      });
      req.on("timeout", () => {
        req.destroy(new Error(`timed out after ${this.timeoutMs} ms`));
      });
      req.on("error", (err) => {
        reject(new KubeApiError(0, "", `${method} ${url.pathname}: ${err.message}`, { cause: err }));
      });
      if (body) req.write(body);
      req.end();
    });
  }

  /** The REST path of an object's collection (name undefined) or of the object. */
  async pathFor(apiVersion: string, kind: string, namespace: string | undefined, name?: string): Promise<string> {
    const info = (await this.resources(apiVersion)).get(kind);
    if (!info) throw new KeywardError("ManifestInvalid", `the apiserver serves no kind ${kind} in ${apiVersion}`);
    const base = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    let path = base;
    if (info.namespaced) {
      if (!namespace) throw new KeywardError("ManifestInvalid", `${kind} ${name ?? ""} needs a namespace`);
      path += `/namespaces/${encodeURIComponent(namespace)}`;
    }
    path += `/${info.name}`;
    if (name !== undefined) path += `/${encodeURIComponent(name)}`;
    return path;
  }

  private resources(apiVersion: string): Promise<Map<string, ResourceInfo>> {
    let found = this.discovery.get(apiVersion);
    if (!found) {
      const base = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
      found = this.request<{ resources: { name: string; kind: string; namespaced: boolean }[] }>("GET", base).then(
        (list) => new Map(list.resources.filter((r) => !r.name.includes("/")).map((r) => [r.kind, { name: r.name, namespaced: r.namespaced }])),
      );
      found.catch(() => this.discovery.delete(apiVersion));
      this.discovery.set(apiVersion, found);
    }
    return found;
  }

  /** Server-side apply; `force` takes fields other managers own. */
  async apply<T extends KubernetesObject>(obj: T, fieldManager: string, opts: { force?: boolean; dryRun?: boolean } = {}): Promise<T> {
    const { apiVersion, kind } = obj;
    const name = obj.metadata?.name;
    if (!apiVersion || !kind || !name) throw new KeywardError("ManifestInvalid", "an object needs apiVersion, kind and metadata.name");
    const path = await this.pathFor(apiVersion, kind, obj.metadata?.namespace, name);
    return this.request<T>("PATCH", path, {
      body: obj,
      contentType: "application/apply-patch+yaml",
      query: { fieldManager, force: opts.force ? "true" : undefined, dryRun: opts.dryRun ? "All" : undefined },
    });
  }

  /** Creates an object (POST); `dryRun` validates it without storing it. */
  async create<T extends KubernetesObject>(obj: T, opts: { dryRun?: boolean; fieldManager?: string } = {}): Promise<T> {
    const { apiVersion, kind } = obj;
    if (!apiVersion || !kind) throw new KeywardError("ManifestInvalid", "an object needs apiVersion and kind");
    const path = await this.pathFor(apiVersion, kind, obj.metadata?.namespace);
    return this.request<T>("POST", path, {
      body: obj,
      query: { dryRun: opts.dryRun ? "All" : undefined, fieldManager: opts.fieldManager },
    });
  }

  /** Counts every request by verb (for metrics and requests-per-reconcile figures). */
  setRequestHook(hook: ((method: string) => void) | undefined): void {
    this.onRequest = hook;
  }

  /** Forgets cached discovery (after installing CRDs, say). */
  resetDiscovery(): void {
    this.discovery.clear();
  }

  close(): void {
    this.agent?.destroy();
    this.agent = undefined;
    this.watchAgent?.destroy();
    this.watchAgent = undefined;
  }
}

/** The error of an answer with an error status; `body` the Status the apiserver sent (parsed, or its text). */
function statusError(method: string, url: URL, status: number, body: unknown): KubeApiError {
  let st = body;
  if (typeof body === "string") {
    try {
      st = JSON.parse(body);
    } catch {
      st = undefined;
    }
  }
  // A Status from the apiserver, or {"error": ...} from keyward's usage API behind it.
  const { message, reason, error } = (st ?? {}) as { message?: string; reason?: string; error?: string };
  return new KubeApiError(status, reason ?? "", message ?? error ?? `${method} ${url.pathname}: HTTP ${status}`);
}

function agentTls(request: RequestOptions): Record<string, unknown> {
  const { ca, cert, key, pfx, passphrase, rejectUnauthorized, servername } = request as Record<string, unknown>;
  return { ca, cert, key, pfx, passphrase, rejectUnauthorized, servername };
}
