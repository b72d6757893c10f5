// The kube-apiserver as an authenticating front proxy of the usage API, when it
// is served as the aggregated API usage.keyward.dev (ADR 0046, docs/usage.md
// "Through the apiserver"). The apiserver authenticates the user with whatever
// credentials they have (client certificate, token, OIDC, exec plugin), then
// proxies the request with the user in X-Remote-User / X-Remote-Group /
// X-Remote-Extra-* headers, on a TLS connection where it presents its front-proxy
// client certificate. Those headers are believed only on such a connection: the
// certificate verified by the requestheader client CA (OpenSSL at the handshake,
// and again here against the CA current now) and its common name among the
// allowed names. On any other connection they are never read.
//
// The CA, the allowed names and the header names come from the ConfigMap
// kube-system/extension-apiserver-authentication, which the apiserver keeps, or
// from files and flags; both are read again every refresh interval.
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import type { PeerCertificate, TLSSocket } from "node:tls";
import { KeywardError } from "../errors.ts";
import type { KubeRest } from "../k8s/rest.ts";
import type { Logger } from "../log.ts";
import type { ReviewedUser } from "./api-auth.ts";

/** Who may act as the front proxy, and where it puts the user. */
export interface RequestHeaderSettings {
  /** PEM bundle of the CAs that sign the front proxy's client certificate. */
  clientCa: string;
  /** Common names the front proxy's certificate may have; empty: any certificate the CA signed. */
  allowedNames: readonly string[];
  /** Headers holding the user name; the first one present and not empty counts. */
  usernameHeaders: readonly string[];
  /** Headers holding the user's uid; the first one present and not empty counts. */
  uidHeaders: readonly string[];
  /** Headers holding the user's groups, one group per header line. */
  groupHeaders: readonly string[];
  /** Prefixes of the headers holding the user's extra attributes (the rest of the name is the key). */
  extraPrefixes: readonly string[];
}

export const AUTHENTICATION_CONFIGMAP = { namespace: "kube-system", name: "extension-apiserver-authentication" } as const;

function jsonList(name: string, text: string | undefined): string[] {
  if (text === undefined || text === "") return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new KeywardError("ConfigInvalid", `${name} is not a JSON list of strings`, { cause: err });
  }
  if (!Array.isArray(parsed) || !parsed.every((v): v is string => typeof v === "string")) throw new KeywardError("ConfigInvalid", `${name} is not a JSON list of strings`);
  return parsed;
}

/** The front proxy the apiserver describes in extension-apiserver-authentication's data; undefined when it has none (no requestheader CA). */
export function settingsFromConfigMap(data: Readonly<Record<string, string>>): RequestHeaderSettings | undefined {
  const clientCa = data["requestheader-client-ca-file"] ?? "";
  if (clientCa.trim() === "") return undefined;
  return {
    clientCa,
    allowedNames: jsonList("requestheader-allowed-names", data["requestheader-allowed-names"]),
    usernameHeaders: jsonList("requestheader-username-headers", data["requestheader-username-headers"]),
    uidHeaders: jsonList("requestheader-uid-headers", data["requestheader-uid-headers"]),
    groupHeaders: jsonList("requestheader-group-headers", data["requestheader-group-headers"]),
    extraPrefixes: jsonList("requestheader-extra-headers-prefix", data["requestheader-extra-headers-prefix"]),
  };
}

/** The certificates of a PEM bundle; a bundle without one is an error. */
export function parseBundle(pem: string, where: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const certs: X509Certificate[] = [];
  for (const b of blocks) {
    try {
      certs.push(new X509Certificate(b));
    } catch (err) {
      throw new KeywardError("ConfigInvalid", `${where}: a certificate does not parse`, { cause: err });
    }
  }
  if (certs.length === 0) throw new KeywardError("ConfigInvalid", `${where} holds no PEM certificate`);
  return certs;
}

interface Trusted {
  settings: RequestHeaderSettings;
  cas: X509Certificate[];
}

/** The peer's chain, leaf first, as node:tls reports it (the issuer links end at a self-signed certificate or a missing issuer). */
function peerChain(socket: TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  let c: PeerCertificate | undefined = socket.getPeerCertificate(true);
  const seen = new Set<string>();
  while (c?.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    chain.push(new X509Certificate(c.raw));
    const next: PeerCertificate | undefined = (c as PeerCertificate & { issuerCertificate?: PeerCertificate }).issuerCertificate;
    c = next;
  }
  return chain;
}

/**
 * True when the chain, walked from the leaf through each certificate's issuer, reaches a
 * certificate that one of `cas` issued and signed. A CA presented in the chain proves nothing by
 * itself: only a signature by a CA held here counts.
 */
function anchoredIn(chain: readonly X509Certificate[], cas: readonly X509Certificate[]): boolean {
  for (let i = 0; i < chain.length; i++) {
    const cert = chain[i] as X509Certificate;
    if (cas.some((ca) => ca.fingerprint256 !== cert.fingerprint256 && cert.checkIssued(ca) && cert.verify(ca.publicKey))) return true;
    const issuer = chain[i + 1];
    if (!issuer || !cert.checkIssued(issuer) || !cert.verify(issuer.publicKey)) return false;
  }
  return false;
}

/** The common name of a certificate's subject; undefined when it has none or several. */
function commonName(cert: X509Certificate): string | undefined {
  const names = cert.subject.split("\n").filter((l) => l.startsWith("CN=")).map((l) => l.slice(3));
  return names.length === 1 ? names[0] : undefined;
}

/** The first non-empty value among the headers, in order. */
function firstValue(headers: NodeJS.Dict<string[]>, names: readonly string[]): string | undefined {
  for (const n of names) for (const v of headers[n.toLowerCase()] ?? []) if (v !== "") return v;
  return undefined;
}

/** The user the front proxy names in the request's headers; undefined when no user header is set. */
export function userFromHeaders(req: IncomingMessage, s: RequestHeaderSettings): ReviewedUser | undefined {
  const h = req.headersDistinct;
  const username = firstValue(h, s.usernameHeaders);
  if (username === undefined) return undefined;
  const uid = firstValue(h, s.uidHeaders);
  const groups = s.groupHeaders.flatMap((n) => (h[n.toLowerCase()] ?? []).filter((v) => v !== ""));
  const extra: Record<string, string[]> = {};
  for (const prefix of s.extraPrefixes) {
    const p = prefix.toLowerCase();
    for (const [name, values] of Object.entries(h)) {
      if (!name.startsWith(p) || name.length === p.length || values === undefined) continue;
      let key = name.slice(p.length);
      try {
        key = decodeURIComponent(key);
      } catch {
        // Kept as sent, as the apiserver does with a key that is not %-encoded.
      }
      (extra[key] ??= []).push(...values);
    }
  }
  return { username, ...(uid !== undefined ? { uid } : {}), groups, ...(Object.keys(extra).length ? { extra } : {}) };
}

/** Where the settings come from, read at start and again every refresh. */
export type SettingsLoader = () => Promise<RequestHeaderSettings | undefined>;

/** Reads extension-apiserver-authentication with `rest` (needs the extension-apiserver-authentication-reader Role in kube-system). */
export function configMapLoader(rest: KubeRest): SettingsLoader {
  const path = `/api/v1/namespaces/${AUTHENTICATION_CONFIGMAP.namespace}/configmaps/${AUTHENTICATION_CONFIGMAP.name}`;
  return async () => settingsFromConfigMap((await rest.request<{ data?: Record<string, string> }>("GET", path)).data ?? {});
}

/** Reads the CA bundle from a file; the rest as given. */
export function fileLoader(caFile: string, rest: Omit<RequestHeaderSettings, "clientCa">): SettingsLoader {
  return async () => ({ ...rest, clientCa: await readFile(caFile, "utf8") });
}

export interface FrontProxyOptions {
  load: SettingsLoader;
  /** Where the settings come from, for messages. */
  source: string;
  /** How often they are read again, in ms; 0 never. */
  refreshMs: number;
  log: Logger;
}

/**
 * The front proxy keyward trusts now. Settings that cannot be read or do not parse leave the
 * previous ones in force (reported once per distinct failure); until the first good read no
 * connection is a front proxy, so every request takes the bearer-token path.
 */
export class FrontProxyTrust {
  readonly #options: FrontProxyOptions;
  #trusted: Trusted | undefined;
  #lastError: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #listeners = new Set<() => void>();

  private constructor(options: FrontProxyOptions) {
    this.#options = options;
  }

  /** Reads the settings once (a failure is logged, not thrown) and keeps reading them every refresh. */
  static async start(options: FrontProxyOptions): Promise<FrontProxyTrust> {
    const t = new FrontProxyTrust(options);
    await t.refresh();
    if (options.refreshMs > 0) {
      t.#timer = setInterval(() => {
        void t.refresh();
      }, options.refreshMs);
      t.#timer.unref();
    }
    return t;
  }

  /** The CA bundle new connections are verified with; undefined while none is known. */
  get clientCa(): string | undefined {
    return this.#trusted?.settings.clientCa;
  }

  /** Calls `fn` whenever the CA bundle changes. */
  onCaChange(fn: () => void): void {
    this.#listeners.add(fn);
  }

  /** Reads the settings now; exported for tests. */
  async refresh(): Promise<void> {
    let next: Trusted | undefined;
    try {
      const settings = await this.#options.load();
      next = settings ? { settings, cas: parseBundle(settings.clientCa, `${this.#options.source}: the requestheader client CA`) } : undefined;
    } catch (err) {
      const text = err instanceof Error ? err.message : String(err);
      if (text !== this.#lastError) {
        this.#lastError = text;
        this.#options.log.warn("usage API: cannot read the front proxy's settings; the previous ones stay in force", { source: this.#options.source, err });
      }
      return;
    }
    this.#lastError = undefined;
    const before = this.#trusted?.settings.clientCa;
    if (!next && this.#trusted === undefined) return;
    if (!next) this.#options.log.warn("usage API: the front proxy's settings name no requestheader client CA; X-Remote-* headers are no longer trusted", { source: this.#options.source });
    else if (before !== next.settings.clientCa) this.#options.log.info("usage API: front proxy trusted", { source: this.#options.source, allowedNames: next.settings.allowedNames, cas: next.cas.map((c) => c.subject.replaceAll("\n", ", ")) });
    this.#trusted = next;
    if (before !== next?.settings.clientCa) for (const fn of this.#listeners) fn();
  }

  /**
   * The user a verified front proxy names, or undefined: the connection is not TLS, presents no
   * certificate, one the current requestheader CA did not sign or whose common name is not allowed,
   * or the request has no user header. The headers of such a request are never read.
   */
  user(req: IncomingMessage): ReviewedUser | undefined {
    const t = this.#trusted;
    const socket = req.socket as Partial<TLSSocket>;
    if (!t || socket.encrypted !== true || socket.authorized !== true) return undefined;
    const chain = peerChain(socket as TLSSocket);
    const leaf = chain[0];
    if (!leaf || !anchoredIn(chain, t.cas)) return undefined;
    const cn = commonName(leaf);
    if (t.settings.allowedNames.length > 0 && (cn === undefined || !t.settings.allowedNames.includes(cn))) return undefined;
    return userFromHeaders(req, t.settings);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#listeners.clear();
  }
}
