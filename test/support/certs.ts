// Throwaway certificates for the TLS tests, made with the openssl CLI in a temp
// directory: a CA, server certificates for 127.0.0.1 and localhost, client
// certificates. EC P-256 keys, so each takes milliseconds.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const exec = promisify(execFile);

async function openssl(...args: string[]): Promise<void> {
  await exec("openssl", args);
}

export interface Pair {
  cert: string;
  key: string;
}

export interface TestCa extends Pair {
  /** A server certificate signed by this CA (SAN 127.0.0.1, ::1, localhost and `dnsNames`) and its serial. */
  server(name: string, dnsNames?: readonly string[]): Promise<Pair & { serial: string }>;
  /** A client certificate signed by this CA (extendedKeyUsage clientAuth), with `san` as its subjectAltName when given (e.g. `URI:spiffe://...`). */
  client(name: string, san?: string): Promise<Pair>;
}

export interface CertDir {
  dir: string;
  /** A new self-signed CA whose files are named after `name`. */
  ca(name: string): Promise<TestCa>;
  remove(): Promise<void>;
}

export async function certDir(): Promise<CertDir> {
  const dir = await mkdtemp(join(tmpdir(), "keyward-tls-"));
  let serial = 0x1000;
  const ca = async (caName: string): Promise<TestCa> => {
    const c = { cert: join(dir, `${caName}.crt`), key: join(dir, `${caName}.key`) };
    await openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", `/CN=${caName}`, "-keyout", c.key, "-out", c.cert);
    const issue = async (name: string, ext: string): Promise<Pair & { serial: string }> => {
      const p = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
      const csr = join(dir, `${name}.csr`);
      const extFile = join(dir, `${name}.ext`);
      const s = (serial++).toString(16).toUpperCase();
      await writeFile(extFile, ext);
      await openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${name}`, "-keyout", p.key, "-out", csr);
      await openssl("x509", "-req", "-in", csr, "-CA", c.cert, "-CAkey", c.key, "-set_serial", `0x${s}`, "-days", "2", "-extfile", extFile, "-out", p.cert);
      return { ...p, serial: s.padStart(2, "0") };
    };
    return {
      ...c,
      server: (name, dnsNames = []) => issue(name, `subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost${dnsNames.map((d) => `,DNS:${d}`).join("")}\nextendedKeyUsage=serverAuth\n`),
      client: (name, san) => issue(name, `${san ? `subjectAltName=${san}\n` : ""}extendedKeyUsage=clientAuth\n`),
    };
  };
  return { dir, ca, remove: () => rm(dir, { recursive: true, force: true }) };
}

export const pem = (path: string): Promise<Buffer> => readFile(path);
