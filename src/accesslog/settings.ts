// The access log service's TLS and limits, from configuration (ADR 0053).
import type { Config } from "../config/config.ts";
import { KeywardError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { TlsSource } from "../tls/source.ts";
import type { AccessLogLimits } from "./server.ts";

type AccessLogConfig = Pick<
  Config,
  | "accessLogTlsCertFile"
  | "accessLogTlsKeyFile"
  | "accessLogClientCaFile"
  | "accessLogAllowedPeers"
  | "accessLogMaxConnections"
  | "accessLogMaxStreams"
  | "accessLogMaxMessageBytes"
  | "accessLogMaxEntries"
  | "accessLogMaxEntryAge"
  | "tlsReloadInterval"
>;

export function accessLogLimits(config: AccessLogConfig): AccessLogLimits {
  return {
    maxConnections: config.accessLogMaxConnections,
    maxStreamsPerConnection: config.accessLogMaxStreams,
    maxMessageBytes: config.accessLogMaxMessageBytes,
    maxEntriesPerMessage: config.accessLogMaxEntries,
    maxEntryAgeMs: config.accessLogMaxEntryAge,
  };
}

/**
 * The access log port's mTLS identity and client CA, when configured: a file that cannot be read
 * or does not load stops start-up (ConfigInvalid, naming the setting and the file). Without it the
 * port is cleartext, and a warning says that any peer reaching it can write rows.
 */
export async function openAccessLogTls(config: AccessLogConfig, log: Logger): Promise<TlsSource | undefined> {
  if (!config.accessLogClientCaFile) {
    log.warn("the access log service is cleartext and unauthenticated: any peer that reaches its port can write analytics rows; set --access-log-tls-cert-file, --access-log-tls-key-file and --access-log-client-ca-file");
    return undefined;
  }
  let tls: TlsSource;
  try {
    tls = await TlsSource.open(
      { certFile: config.accessLogTlsCertFile, keyFile: config.accessLogTlsKeyFile, clientCaFile: config.accessLogClientCaFile, requireClientCert: true, reloadIntervalMs: config.tlsReloadInterval },
      {
        onReload: (cert) => {
          log.info("access log TLS certificate reloaded", { cert });
        },
        onReloadFailed: (err) => {
          log.warn("access log TLS files changed but do not load; serving the previous set", { err });
        },
      },
    );
  } catch (err) {
    const why = err instanceof KeywardError ? err.message : String(err);
    throw new KeywardError("ConfigInvalid", `access log mTLS (--access-log-tls-cert-file, --access-log-tls-key-file, --access-log-client-ca-file): ${why}`, { cause: err });
  }
  log.info("mTLS on the access log port", { cert: tls.current().info, allowedPeers: config.accessLogAllowedPeers.length > 0 ? config.accessLogAllowedPeers : "any certificate the client CA verifies" });
  return tls;
}
