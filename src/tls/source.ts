// TLS for keyward's check ports. A TlsSource reads the server certificate, its
// key and the optional client CA bundle from files, checks them, and reads them
// again every reload interval: a certificate rotated in a mounted Secret (kubelet
// swaps the volume's `..data` symlink) is served to new connections without a
// restart, and connections already open keep theirs. A new set that does not
// load (unreadable, not PEM, a key that does not match the certificate) is
// reported and the previous one kept. ADR 0029.
import { createHash, createPrivateKey, X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createSecureContext, type SecureContextOptions, type Server as TlsServer, type TLSSocket, type TlsOptions } from "node:tls";
import { KeywardError } from "../errors.ts";

export interface TlsSettings {
  certFile: string;
  keyFile: string;
  /** PEM bundle of the CAs that sign client certificates; empty: clients are not asked for one. */
  clientCaFile: string;
  /**
   * With a client CA: refuse a client that presents no certificate. Without it such a client is
   * served; a client that presents a certificate the CA does not verify is refused either way.
   */
  requireClientCert: boolean;
  /** How often the files are read again, in ms; 0 never reads them again. */
  reloadIntervalMs: number;
}

/** What keyward logs about a loaded certificate (public parts only). */
export interface CertInfo {
  subject: string;
  serialNumber: string;
  validTo: string;
  fingerprint256: string;
}

export interface TlsSourceEvents {
  /** A changed set of files was loaded and is now served. */
  onReload?: (info: CertInfo) => void;
  /** A changed set of files did not load; the previous one is still served. */
  onReloadFailed?: (err: KeywardError) => void;
}

/** A checked certificate, key and client CA, ready for a secure context. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca: Buffer | undefined;
  info: CertInfo;
}

type Listener = (m: TlsMaterial) => void;

async function readAll(s: TlsSettings): Promise<{ cert: Buffer; key: Buffer; ca: Buffer | undefined }> {
  const [cert, key, ca] = await Promise.all([readFile(s.certFile), readFile(s.keyFile), s.clientCaFile ? readFile(s.clientCaFile) : Promise.resolve(undefined)]);
  return { cert, key, ca };
}

function digest(f: { cert: Buffer; key: Buffer; ca: Buffer | undefined }): string {
  const h = createHash("sha256");
  for (const b of [f.cert, f.key, f.ca ?? Buffer.alloc(0)]) h.update(String(b.length)).update(":").update(b);
  return h.digest("hex");
}

/**
 * Checks that the files make a usable server identity: a certificate, a private key that belongs
 * to it, and a client CA bundle with at least one certificate. Errors name the file, never the key.
 */
export function checkMaterial(s: Pick<TlsSettings, "certFile" | "keyFile" | "clientCaFile">, f: { cert: Buffer; key: Buffer; ca: Buffer | undefined }): TlsMaterial {
  const fail = (what: string, err: unknown): never => {
    throw new KeywardError("ConfigInvalid", what, { cause: err });
  };
  let x509: X509Certificate | undefined;
  try {
    x509 = new X509Certificate(f.cert);
  } catch (err) {
    fail(`${s.certFile} holds no PEM certificate`, err);
  }
  let privateKey: ReturnType<typeof createPrivateKey> | undefined;
  try {
    privateKey = createPrivateKey(f.key);
  } catch {
    // The parser's message may quote the input; report only the file.
    fail(`${s.keyFile} holds no PEM private key`, undefined);
  }
  if (!x509 || !privateKey || !x509.checkPrivateKey(privateKey)) fail(`the key in ${s.keyFile} does not belong to the certificate in ${s.certFile}`, undefined);
  if (f.ca) {
    try {
      new X509Certificate(f.ca);
    } catch (err) {
      fail(`${s.clientCaFile} holds no PEM certificate`, err);
    }
  }
  try {
    createSecureContext({ cert: f.cert, key: f.key, ca: f.ca });
  } catch (err) {
    fail(`${s.certFile}, ${s.keyFile}${f.ca ? `, ${s.clientCaFile}` : ""}: not a usable TLS identity: ${(err as Error).message}`, undefined);
  }
  const c = x509 as X509Certificate;
  return { ...f, info: { subject: c.subject.replaceAll("\n", ", "), serialNumber: c.serialNumber, validTo: c.validTo, fingerprint256: c.fingerprint256 } };
}

export class TlsSource {
  readonly settings: TlsSettings;
  private material: TlsMaterial;
  private loadedDigest: string;
  /** The digest of the last set that failed, so one bad set is reported once, not every interval. */
  private failedDigest: string | undefined;
  private readonly listeners = new Set<Listener>();
  private readonly events: TlsSourceEvents;
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;

  private constructor(settings: TlsSettings, material: TlsMaterial, d: string, events: TlsSourceEvents) {
    this.settings = settings;
    this.material = material;
    this.loadedDigest = d;
    this.events = events;
    if (settings.reloadIntervalMs > 0) {
      this.timer = setInterval(() => {
        void this.reload();
      }, settings.reloadIntervalMs);
      this.timer.unref();
    }
  }

  /** Loads the files; a set that does not load stops start-up (ConfigInvalid). */
  static async open(settings: TlsSettings, events: TlsSourceEvents = {}): Promise<TlsSource> {
    let files: Awaited<ReturnType<typeof readAll>>;
    try {
      files = await readAll(settings);
    } catch (err) {
      throw new KeywardError("ConfigInvalid", `cannot read the TLS files: ${(err as Error).message}`, { cause: err });
    }
    return new TlsSource(settings, checkMaterial(settings, files), digest(files), events);
  }

  /** The certificate, key and CA served to new connections now. */
  current(): TlsMaterial {
    return this.material;
  }

  /** Whether clients are asked for a certificate. */
  get requestCert(): boolean {
    return Boolean(this.settings.clientCaFile);
  }

  /** Calls `fn` with each set loaded from now on; returns the function that stops it. */
  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * Reads the files once and, when they changed and load, serves them. Runs every reload interval;
   * exported for tests and for a caller that knows the files changed.
   */
  reload(): Promise<void> {
    this.checking ??= this.check().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private async check(): Promise<void> {
    let files: Awaited<ReturnType<typeof readAll>>;
    try {
      files = await readAll(this.settings);
    } catch (err) {
      // A file missing for a moment (a symlink being swapped by hand) is read again next interval;
      // report it once per state, like a bad set.
      this.failed("unreadable", new KeywardError("ConfigInvalid", `cannot read the TLS files: ${(err as Error).message}`, { cause: err }));
      return;
    }
    const d = digest(files);
    if (d === this.loadedDigest || d === this.failedDigest) return;
    let m: TlsMaterial;
    try {
      m = checkMaterial(this.settings, files);
    } catch (err) {
      this.failed(d, err as KeywardError);
      return;
    }
    this.material = m;
    this.loadedDigest = d;
    this.failedDigest = undefined;
    for (const fn of this.listeners) fn(m);
    this.events.onReload?.(m.info);
  }

  private failed(d: string, err: KeywardError): void {
    if (d === this.failedDigest) return;
    this.failedDigest = d;
    this.events.onReloadFailed?.(err);
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.listeners.clear();
  }
}

function contextOptions(m: TlsMaterial, ca: string | Buffer | undefined = m.ca): SecureContextOptions {
  return { cert: m.cert, key: m.key, ...(ca ? { ca } : {}) };
}

/**
 * The options of a node:tls (or node:https) server serving `src`: its current identity, client
 * certificates asked for when there is a client CA, and a limit on the handshake's duration.
 */
export function tlsServerOptions(src: TlsSource, handshakeTimeoutMs: number): TlsOptions {
  return {
    ...contextOptions(src.current()),
    minVersion: "TLSv1.2",
    requestCert: src.requestCert,
    rejectUnauthorized: src.requestCert && src.settings.requireClientCert,
    handshakeTimeout: handshakeTimeoutMs,
  };
}

/** True when the peer presented a certificate that the client CA did not verify. */
function presentedUnverified(s: TLSSocket): boolean {
  return !s.authorized && s.getPeerX509Certificate() !== undefined;
}

/**
 * Keeps a server created with tlsServerOptions(src) on the files of `src`: each reloaded set
 * becomes the secure context of new connections (open ones keep theirs). A connection whose
 * handshake fails or times out is closed (node:tls only reports a handshake timeout). When client
 * certificates are optional, a client that presents one the CA does not verify is disconnected
 * before it is served. Stops following when the server closes. With `clientCa`, client
 * certificates are verified with the bundle it returns instead of the files' (the usage API's
 * front proxy, src/usage/front-proxy.ts); the function returned applies a changed bundle.
 */
export function followTls(server: TlsServer, src: TlsSource, clientCa?: () => string | undefined): () => void {
  const apply = (m: TlsMaterial): void => {
    server.setSecureContext(contextOptions(m, clientCa ? clientCa() : m.ca));
  };
  const stop = src.subscribe(apply);
  server.once("close", stop);
  server.on("tlsClientError", (_err, socket) => {
    socket.destroy();
  });
  if (src.requestCert && !src.settings.requireClientCert) {
    server.prependListener("secureConnection", (s: TLSSocket) => {
      if (presentedUnverified(s)) s.destroy();
    });
  }
  return () => {
    apply(src.current());
  };
}
