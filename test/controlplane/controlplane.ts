// A real, local Kubernetes control plane for keyward's integration tests and demo:
// etcd, kube-apiserver (RBAC on, service-account signing keys, an admin token)
// and kube-controller-manager (so ownerReference garbage collection and namespace
// deletion really happen). Binaries come from scripts/controlplane-build.sh.
//
// Every process is started on 127.0.0.1 with free ports and stopped with
// SIGTERM, then SIGKILL after a deadline; stop() returns only when all have exited.
//
// The apiserver also authenticates client certificates of a CA of its own
// (clientCertificate() issues one for a user and groups), and runs the
// aggregation layer: a front-proxy CA and client certificate, the requestheader
// flags, and --enable-aggregator-routing, so an APIService reaches a server on
// this machine through a selector-less Service and its EndpointSlice
// (hostAddress(): Endpoints may not be loopback addresses).

import { spawn, execFile, type ChildProcess } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { createWriteStream, existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Agent, request } from "node:https";
import { promisify } from "node:util";

const repoRoot = resolve(import.meta.dirname, "..", "..");

export interface ControlPlaneOptions {
  /** Directory for data, certificates, logs and the kubeconfig. A temporary one when absent. */
  dir?: string;
  /** Start kube-controller-manager too (garbage collection, namespace deletion). Default true. */
  controllerManager?: boolean;
  /** Called with progress lines ("starting etcd", ...). */
  log?: (line: string) => void;
  /** How long to wait for each component to become ready. Default 60 s. */
  readyTimeoutMs?: number;
  /**
   * Runs once the apiserver is ready and before kube-controller-manager starts: install
   * CRDs here so the garbage collector watches them from its first discovery.
   */
  beforeControllerManager?: (kubeconfig: string) => Promise<void>;
}

/** The front proxy's certificate common name, the one the apiserver's --requestheader-allowed-names admits. */
export const FRONT_PROXY_CLIENT_NAME = "front-proxy-client";

/**
 * The first non-internal IPv4 address of this machine: an APIService's endpoint must be one (the
 * apiserver refuses loopback endpoints). Undefined when the machine has none.
 */
export function hostAddress(): string | undefined {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}

async function openssl(...args: string[]): Promise<void> {
  await promisify(execFile)("openssl", args);
}

/** A self-signed CA (EC P-256) at `base`.crt and `base`.key. */
async function makeCa(base: string, cn: string): Promise<void> {
  await openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj", `/CN=${cn}`, "-keyout", `${base}.key`, "-out", `${base}.crt`, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
}

/** A client certificate (extendedKeyUsage clientAuth) signed by the CA at `ca`, at `base`.crt and `base`.key. */
async function makeClientCert(ca: string, base: string, subject: string): Promise<void> {
  const ext = `${base}.ext`;
  await writeFile(ext, "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n");
  await openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", subject, "-keyout", `${base}.key`, "-out", `${base}.csr`);
  await openssl("x509", "-req", "-in", `${base}.csr`, "-CA", `${ca}.crt`, "-CAkey", `${ca}.key`, "-set_serial", `0x${randomBytes(8).toString("hex")}`, "-days", "30", "-extfile", ext, "-out", `${base}.crt`);
}

/**
 * A client certificate the apiserver of the control plane in `controlPlaneDir` authenticates as
 * `user` in `groups` (CN and O, signed by its client CA), written to `dir`; returns the files.
 */
export async function issueClientCertificate(controlPlaneDir: string, dir: string, user: string, groups: readonly string[] = []): Promise<{ cert: string; key: string }> {
  const base = join(dir, `client-${randomBytes(4).toString("hex")}`);
  await makeClientCert(join(controlPlaneDir, "certs", "client-ca"), base, `${groups.map((g) => `/O=${g}`).join("")}/CN=${user}`);
  return { cert: `${base}.crt`, key: `${base}.key` };
}

export interface ControlPlaneState {
  dir: string;
  kubeconfig: string;
  server: string;
  pids: Record<string, number>;
}

/** Error raised when a component does not start; `logTail` holds the end of its log. */
export class ControlPlaneError extends Error {
  readonly component: string;
  readonly logTail: string;
  constructor(component: string, message: string, logTail: string, options?: ErrorOptions) {
    super(`${component}: ${message}${logTail ? `\n--- last lines of ${component}.log ---\n${logTail}` : ""}`, options);
    this.name = "ControlPlaneError";
    this.component = component;
    this.logTail = logTail;
  }
}

/** Builds the binaries when missing (minutes, once) and returns their directory. */
export async function controlPlaneBinDir(log: (line: string) => void = () => undefined): Promise<string> {
  if (process.env.KEYWARD_CONTROLPLANE_BIN) return process.env.KEYWARD_CONTROLPLANE_BIN;
  const script = join(repoRoot, "scripts", "controlplane-build.sh");
  return new Promise((resolveDir, reject) => {
    const child = spawn("bash", [script], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => {
      for (const line of d.toString().split("\n")) if (line) log(line);
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code === 0) resolveDir(out.trim().split("\n").pop() ?? "");
      else reject(new Error(`scripts/controlplane-build.sh exited with ${String(code)}`));
    });
  });
}

/** Ports below Linux's ephemeral range (32768-60999), so a port handed out here is not taken
 * meanwhile by some client's outgoing connection before its server binds it. */
const PORT_LOW = 20_000;
const PORT_HIGH = 32_767;
/** Ports this process handed out already: two calls never return the same one. */
const handedOut = new Set<number>();

function bindable(port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", () => {
      res(false);
    });
    srv.listen(port, "127.0.0.1", () => {
      srv.close(() => {
        res(true);
      });
    });
  });
}

/** Whether a process with this pid exists (and may be signalled). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A TCP port that was free a moment ago on 127.0.0.1, below the ephemeral range. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = PORT_LOW + Math.floor(Math.random() * (PORT_HIGH - PORT_LOW + 1));
    if (handedOut.has(port)) continue;
    if (await bindable(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port between ${PORT_LOW} and ${PORT_HIGH} on 127.0.0.1`);
}

async function tail(file: string, lines = 30): Promise<string> {
  try {
    const text = await readFile(file, "utf8");
    return text.split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

interface Component {
  name: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

export class ControlPlane {
  readonly dir: string;
  readonly kubeconfig: string;
  readonly adminToken: string;
  readonly caFile: string;
  /** The CA whose client certificates the apiserver authenticates (CN the user, O each group). */
  readonly clientCaFile: string;
  /** The CA of the aggregation layer's front proxy (--requestheader-client-ca-file). */
  readonly frontProxyCaFile: string;
  /** The certificate the apiserver presents to aggregated APIs (--proxy-client-cert-file), CN FRONT_PROXY_CLIENT_NAME. */
  readonly frontProxyClientCertFile: string;
  readonly frontProxyClientKeyFile: string;
  private readonly bin: string;
  private readonly log: (line: string) => void;
  private readonly readyTimeoutMs: number;
  private readonly withKcm: boolean;
  private readonly components = new Map<string, Component>();
  private etcdPort = 0;
  private etcdPeerPort = 0;
  private apiPort = 0;

  private constructor(dir: string, bin: string, opts: ControlPlaneOptions) {
    this.dir = dir;
    this.bin = bin;
    this.kubeconfig = join(dir, "kubeconfig");
    this.caFile = join(dir, "certs", "apiserver.crt");
    this.clientCaFile = join(dir, "certs", "client-ca.crt");
    this.frontProxyCaFile = join(dir, "certs", "front-proxy-ca.crt");
    this.frontProxyClientCertFile = join(dir, "certs", "front-proxy-client.crt");
    this.frontProxyClientKeyFile = join(dir, "certs", "front-proxy-client.key");
    this.adminToken = randomBytes(24).toString("hex");
    this.log = opts.log ?? (() => undefined);
    this.readyTimeoutMs = opts.readyTimeoutMs ?? 60_000;
    this.withKcm = opts.controllerManager ?? true;
  }

  /** etcd's client URL (for compaction in tests). */
  get etcdUrl(): string {
    return `http://127.0.0.1:${this.etcdPort}`;
  }

  get server(): string {
    return `https://127.0.0.1:${this.apiPort}`;
  }

  static async start(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
    const bin = await controlPlaneBinDir(opts.log);
    const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), "keyward-cp-")));
    await mkdir(join(dir, "logs"), { recursive: true });
    await mkdir(join(dir, "certs"), { recursive: true });
    const cp = new ControlPlane(dir, bin, opts);
    try {
      await cp.writeCredentials();
      await cp.startEtcd();
      cp.apiPort = await freePort();
      await cp.startApiserver();
      await cp.writeKubeconfig();
      await opts.beforeControllerManager?.(cp.kubeconfig);
      if (cp.withKcm) await cp.startControllerManager();
    } catch (err) {
      await cp.stop();
      throw err;
    }
    return cp;
  }

  state(): ControlPlaneState {
    const pids: Record<string, number> = {};
    for (const [name, c] of this.components) if (c.child.pid !== undefined) pids[name] = c.child.pid;
    return { dir: this.dir, kubeconfig: this.kubeconfig, server: this.server, pids };
  }

  private async writeCredentials(): Promise<void> {
    const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    await writeFile(join(this.dir, "certs", "sa.pub"), publicKey.export({ type: "spki", format: "pem" }));
    await writeFile(join(this.dir, "certs", "sa.key"), privateKey.export({ type: "pkcs8", format: "pem" }), {
      mode: 0o600,
    });
    // Static token file: the admin credential, in system:masters.
    await writeFile(join(this.dir, "certs", "tokens.csv"), `${this.adminToken},keyward-admin,keyward-admin,"system:masters"\n`, {
      mode: 0o600,
    });
    const certs = join(this.dir, "certs");
    await makeCa(join(certs, "client-ca"), "keyward-test-client-ca");
    await makeCa(join(certs, "front-proxy-ca"), "keyward-test-front-proxy-ca");
    await makeClientCert(join(certs, "front-proxy-ca"), join(certs, "front-proxy-client"), `/CN=${FRONT_PROXY_CLIENT_NAME}`);
  }

  /**
   * A client certificate the apiserver authenticates as `user` in `groups` (signed by
   * clientCaFile), written to `dir`; returns the files.
   */
  clientCertificate(dir: string, user: string, groups: readonly string[] = []): Promise<{ cert: string; key: string }> {
    return issueClientCertificate(this.dir, dir, user, groups);
  }

  private spawnComponent(name: string, args: string[]): Component {
    const logFile = join(this.dir, "logs", `${name}.log`);
    const out = createWriteStream(logFile, { flags: "a" });
    const child = spawn(join(this.bin, name), args, { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.pipe(out);
    child.stderr.pipe(out);
    const exited = new Promise<number | null>((res) => {
      child.on("exit", (code) => {
        res(code);
      });
      child.on("error", () => {
        res(-1);
      });
    });
    const comp = { name, child, exited };
    this.components.set(name, comp);
    return comp;
  }

  private async waitFor(comp: Component, probe: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + this.readyTimeoutMs;
    let exitCode: number | null | undefined;
    void comp.exited.then((c) => (exitCode = c ?? -1));
    let delay = 50;
    while (Date.now() < deadline) {
      if (exitCode !== undefined) {
        throw new ControlPlaneError(comp.name, `exited with code ${String(exitCode)} before it was ready`, await tail(this.logPath(comp.name)));
      }
      if (await probe().catch(() => false)) return;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 500);
    }
    throw new ControlPlaneError(comp.name, `not ready after ${this.readyTimeoutMs} ms`, await tail(this.logPath(comp.name)));
  }

  private logPath(name: string): string {
    return join(this.dir, "logs", `${name}.log`);
  }

  private async startEtcd(): Promise<void> {
    this.etcdPort = await freePort();
    this.etcdPeerPort = await freePort();
    this.log(`starting etcd on 127.0.0.1:${this.etcdPort}`);
    const comp = this.spawnComponent("etcd", [
      `--data-dir=${join(this.dir, "etcd")}`,
      `--listen-client-urls=http://127.0.0.1:${this.etcdPort}`,
      `--advertise-client-urls=http://127.0.0.1:${this.etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${this.etcdPeerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${this.etcdPeerPort}`,
      `--initial-cluster=default=http://127.0.0.1:${this.etcdPeerPort}`,
      "--unsafe-no-fsync=true",
      "--log-level=warn",
    ]);
    await this.waitFor(comp, async () => {
      const res = await fetch(`http://127.0.0.1:${this.etcdPort}/health`);
      return res.ok;
    });
  }

  /** Starts (or restarts) kube-apiserver on the same port and etcd, and waits for /readyz. */
  async startApiserver(): Promise<void> {
    this.log(`starting kube-apiserver on ${this.server}`);
    const certs = join(this.dir, "certs");
    const comp = this.spawnComponent("kube-apiserver", [
      `--etcd-servers=http://127.0.0.1:${this.etcdPort}`,
      `--cert-dir=${certs}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      // A loopback advertise address is refused by the endpoint reconciler; there are no nodes to reach anyway.
      "--endpoint-reconciler-type=none",
      `--secure-port=${this.apiPort}`,
      `--token-auth-file=${join(certs, "tokens.csv")}`,
      `--client-ca-file=${this.clientCaFile}`,
      // The aggregation layer (APIServices): the front proxy's CA, its certificate, the headers it sets.
      `--requestheader-client-ca-file=${this.frontProxyCaFile}`,
      `--requestheader-allowed-names=${FRONT_PROXY_CLIENT_NAME}`,
      "--requestheader-username-headers=X-Remote-User",
      "--requestheader-group-headers=X-Remote-Group",
      "--requestheader-extra-headers-prefix=X-Remote-Extra-",
      `--proxy-client-cert-file=${this.frontProxyClientCertFile}`,
      `--proxy-client-key-file=${this.frontProxyClientKeyFile}`,
      // No kube-proxy here: the apiserver calls an APIService's endpoint, not its cluster IP.
      "--enable-aggregator-routing=true",
      "--authorization-mode=RBAC",
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${join(certs, "sa.pub")}`,
      `--service-account-signing-key-file=${join(certs, "sa.key")}`,
      "--service-cluster-ip-range=10.0.0.0/24",
      "--allow-privileged=true",
      "--disable-admission-plugins=ServiceAccount",
      "--v=1",
    ]);
    await this.waitFor(comp, () => this.apiGet("/readyz"));
  }

  /** Stops kube-apiserver only (etcd keeps its data), for watch-resilience tests. */
  async stopApiserver(): Promise<void> {
    await this.stopComponent("kube-apiserver");
  }

  private async startControllerManager(): Promise<void> {
    this.log("starting kube-controller-manager (garbage collector, namespaces, service accounts)");
    const certs = join(this.dir, "certs");
    const comp = this.spawnComponent("kube-controller-manager", [
      `--kubeconfig=${this.kubeconfig}`,
      "--leader-elect=false",
      "--secure-port=0",
      "--controllers=*",
      `--service-account-private-key-file=${join(certs, "sa.key")}`,
      `--root-ca-file=${this.caFile}`,
      "--use-service-account-credentials=false",
      // The suites delete namespaces of 10,000 ApiKeys and their Secrets; at the default 20
      // requests/s the garbage collector would take many minutes over them, and a later suite's
      // one Secret would wait behind that backlog.
      "--kube-api-qps=1000",
      "--kube-api-burst=2000",
      "--concurrent-gc-syncs=50",
      "--v=1",
    ]);
    // Ready once its controllers run: the service-account controller creates the
    // `default` ServiceAccount in every namespace.
    await this.waitFor(comp, () => this.apiGet("/api/v1/namespaces/default/serviceaccounts/default"));
  }

  private apiGet(path: string): Promise<boolean> {
    return new Promise((res) => {
      if (!existsSync(this.caFile)) {
        res(false);
        return;
      }
      const req = request(
        {
          host: "127.0.0.1",
          port: this.apiPort,
          path,
          method: "GET",
          headers: { authorization: `Bearer ${this.adminToken}` },
          agent: new Agent({ ca: readFileSync(this.caFile) }),
          timeout: 2000,
        },
        (r) => {
          r.resume();
          res(r.statusCode === 200);
        },
      );
      req.on("error", () => {
        res(false);
      });
      req.on("timeout", () => {
        req.destroy();
        res(false);
      });
      req.end();
    });
  }

  private async writeKubeconfig(): Promise<void> {
    const ca = (await readFile(this.caFile)).toString("base64");
    const text = [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      "- name: keyward-local",
      "  cluster:",
      `    server: ${this.server}`,
      `    certificate-authority-data: ${ca}`,
      "users:",
      "- name: keyward-admin",
      "  user:",
      `    token: ${this.adminToken}`,
      "contexts:",
      "- name: keyward-local",
      "  context: {cluster: keyward-local, user: keyward-admin, namespace: default}",
      "current-context: keyward-local",
      "",
    ].join("\n");
    await writeFile(this.kubeconfig, text, { mode: 0o600 });
  }

  private async stopComponent(name: string, graceMs = 10_000): Promise<void> {
    const comp = this.components.get(name);
    if (!comp) return;
    this.components.delete(name);
    if (comp.child.exitCode !== null || comp.child.signalCode !== null) return;
    comp.child.kill("SIGTERM");
    const timer = setTimeout(() => comp.child.kill("SIGKILL"), graceMs);
    await comp.exited;
    clearTimeout(timer);
  }

  /** Stops every component, newest first, and waits for each to exit. */
  async stop(opts: { removeDir?: boolean } = {}): Promise<void> {
    for (const name of ["kube-controller-manager", "kube-apiserver", "etcd"]) await this.stopComponent(name);
    if (opts.removeDir) await rm(this.dir, { recursive: true, force: true });
  }
}

/** Runs `kubectl`-free checks in tests: true when no process of ours still runs with this dir in its args. */
export async function processesUsing(dir: string): Promise<string[]> {
  const { stdout } = await promisify(execFile)("ps", ["-eo", "pid=,args="]);
  return stdout
    .split("\n")
    .filter((l) => l.includes(dir) && !l.includes("ps -eo"))
    .map((l) => l.trim());
}
