// `kubectl keyward`: create, rotate, revoke, reveal and status of ApiKeys, with
// the caller's own kubeconfig and credentials. Everything the user reads goes
// through `io`; the plaintext key goes to io.out by `reveal` and nowhere else
// (never to io.err, never into an error message).
import { stringify } from "yaml";
import { ROTATE_ANNOTATION, SECRET_DATA_KEY, type ApiKey } from "../../api/types.ts";
import { KeywardError } from "../../errors.ts";
import { hashKey } from "../../keys/keymaterial.ts";
import { KubeApiError, KubeRest } from "../../k8s/rest.ts";
import { parseDuration } from "../../util/duration.ts";
import { revocationProgress, rotationProgress, waitUntil } from "./enforce.ts";
import { HELP, UsageError, parseCommandLine, type Command, type Parsed } from "./flags.ts";
import { buildApiKey } from "./manifest.ts";
import { openSession, type Session } from "./session.ts";
import { renderStatus } from "./status.ts";

export const FIELD_MANAGER = "kubectl-keyward";
const KEY_ID_ANNOTATION = "keyward.dev/key-id";
const DEFAULT_TIMEOUT = "2m";

export interface PluginIO {
  out(text: string): void;
  err(text: string): void;
  env: NodeJS.ProcessEnv;
  /** Whether stdout is a terminal (reveal adds a newline only then). */
  stdoutIsTTY: boolean;
  now?: () => number;
  /** Poll interval of the waits. Default 250 ms. */
  pollMs?: number;
}

/** Runs one command line; returns the exit code (0 done, 1 failed, 2 usage error). */
export async function runPlugin(argv: string[], io: PluginIO): Promise<number> {
  if (argv[0] === "console") {
    // The console takes no NAME and serves until interrupted: its own command line (src/cli/console.ts).
    const { consoleCommand } = await import("../console.ts");
    try {
      return await consoleCommand(argv.slice(1), { out: (t) => { io.out(t); }, err: (t) => { io.err(t); }, env: io.env });
    } catch (err) {
      io.err(`error: ${err instanceof Error ? err.message : String(err)}\n`);
      return 1;
    }
  }
  let parsed: Parsed;
  try {
    parsed = parseCommandLine(argv);
  } catch (err) {
    return usageFailure(err, io);
  }
  if (parsed.help || !parsed.command || parsed.name === undefined) {
    io.out(`${HELP[parsed.command ?? "plugin"]}\n`);
    return 0;
  }
  const cmd = new Commands(parsed.command, parsed.name, parsed.flags, io);
  try {
    await cmd.run();
    return 0;
  } catch (err) {
    if (err instanceof UsageError) return usageFailure(err, io);
    io.err(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  } finally {
    cmd.close();
  }
}

function usageFailure(err: unknown, io: PluginIO): number {
  const command = err instanceof UsageError ? err.command : undefined;
  io.err(`error: ${err instanceof Error ? err.message : String(err)}\nSee 'kubectl keyward ${command ? `${command} ` : ""}--help'.\n`);
  return 2;
}

interface SecretObject {
  metadata: { name: string; annotations?: Record<string, string> };
  data?: Record<string, string>;
}

class Commands {
  private session: Session | undefined;
  private restClient: KubeRest | undefined;
  private readonly now: () => number;
  private readonly command: Command;
  private readonly name: string;
  private readonly flags: Parsed["flags"];
  private readonly io: PluginIO;

  constructor(command: Command, name: string, flags: Parsed["flags"], io: PluginIO) {
    this.command = command;
    this.name = name;
    this.flags = flags;
    this.io = io;
    this.now = io.now ?? Date.now;
  }

  async run(): Promise<void> {
    this.checkFlags();
    if (this.command !== "create" || this.flags["dry-run"] !== "client") await this.connect();
    switch (this.command) {
      case "create":
        return this.create();
      case "rotate":
        return this.rotate();
      case "revoke":
        return this.revoke();
      case "reveal":
        return this.reveal();
      case "status":
        return this.status();
    }
  }

  close(): void {
    this.restClient?.close();
  }

  /** Opens the caller's kubeconfig once; every command but a client dry run starts here. */
  private async connect(): Promise<void> {
    if (this.restClient) return;
    this.session = await openSession(this.flags, this.io.env);
    this.restClient = new KubeRest(this.session.kc, { qps: 0 });
  }

  private get rest(): KubeRest {
    if (!this.restClient) throw new KeywardError("ConfigInvalid", "not connected");
    return this.restClient;
  }

  private get ns(): string {
    if (!this.session) throw new KeywardError("ConfigInvalid", "not connected");
    return this.session.namespace;
  }

  private get ref(): string {
    return `apikey "${this.name}" in namespace "${this.ns}"`;
  }

  private apiKeyPath(): string {
    return `/apis/keyward.dev/v1alpha1/namespaces/${encodeURIComponent(this.ns)}/apikeys/${encodeURIComponent(this.name)}`;
  }

  /** Runs one apiserver call, turning its failure into a message that says what was attempted and what to do. */
  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof KubeApiError)) throw err;
      const server = this.session?.server ?? "the apiserver";
      let text: string;
      if (err.status === 0) text = `cannot reach the apiserver at ${server}: ${err.message}`;
      else if (err.status === 401) text = `the apiserver at ${server} refused your credentials (401 Unauthorized); log in again or check the kubeconfig's user`;
      else if (err.status === 403)
        text = `forbidden: ${err.message}. kubectl keyward acts with your own credentials; ask for a Role that grants this (docs/kubectl-plugin.md, RBAC)`;
      else if (err.status === 404 && what.startsWith("get apikey")) text = `${this.ref} not found`;
      else if (err.status === 409) text = `conflict: ${err.message}`;
      else text = `${err.message} (HTTP ${err.status}${err.reason ? `, ${err.reason}` : ""})`;
      throw new KeywardError("KubernetesRequestFailed", `${what}: ${text}`, { cause: err });
    }
  }

  private getApiKey(): Promise<ApiKey> {
    return this.call(`get ${this.ref}`, () => this.rest.request<ApiKey>("GET", this.apiKeyPath()));
  }

  private patchApiKey(patch: unknown): Promise<ApiKey> {
    return this.call(`patch ${this.ref}`, () =>
      this.rest.request<ApiKey>("PATCH", this.apiKeyPath(), { body: patch, contentType: "application/merge-patch+json", query: { fieldManager: FIELD_MANAGER } }),
    );
  }

  private duration(flag: "timeout" | "grace", text: string): number {
    try {
      return parseDuration(text);
    } catch (err) {
      throw new UsageError(`--${flag}: ${err instanceof Error ? err.message : String(err)}`, this.command, { cause: err });
    }
  }

  private timeoutMs(): number {
    return this.duration("timeout", this.flags.timeout ?? DEFAULT_TIMEOUT);
  }

  /** The flag values that need no cluster are checked before the kubeconfig is read. */
  private checkFlags(): void {
    const f = this.flags;
    this.timeoutMs();
    if (f.grace !== undefined) this.duration("grace", f.grace);
    if (f["dry-run"] !== undefined && !["none", "client", "server"].includes(f["dry-run"])) {
      throw new UsageError(`--dry-run must be none, client or server, not "${f["dry-run"]}"`, "create");
    }
    if (f.output !== undefined && !["yaml", "json", "name"].includes(f.output)) throw new UsageError(`--output must be yaml, json or name, not "${f.output}"`, "create");
    if (this.command === "create") buildApiKey(this.name, undefined, f, this.now());
  }

  // --- create --------------------------------------------------------------

  private async create(): Promise<void> {
    const mode = this.flags["dry-run"] ?? "none";
    const output = this.flags.output;
    // A client dry run needs no cluster: the namespace is written only when -n names it.
    const obj = buildApiKey(this.name, this.flags.namespace, this.flags, this.now());
    let shown: ApiKey = obj;
    if (mode !== "client") {
      obj.metadata.namespace = this.ns;
      shown = await this.call(`apply ${this.ref}`, () => this.rest.apply(obj, FIELD_MANAGER, { dryRun: mode === "server" }));
      delete shown.metadata.managedFields;
    }
    if (output === "yaml") this.io.out(stringify(shown));
    else if (output === "json") this.io.out(`${JSON.stringify(shown, null, 2)}\n`);
    else if (output === "name") this.io.out(`apikey.keyward.dev/${this.name}\n`);
    else this.io.out(`apikey.keyward.dev/${this.name} serverside-applied${mode === "none" ? "" : ` (${mode === "server" ? "server " : ""}dry run)`}\n`);
  }

  // --- rotate --------------------------------------------------------------

  private async rotate(): Promise<void> {
    const timeoutMs = this.timeoutMs();
    const ak = await this.getApiKey();
    if (ak.spec.keyHash || ak.spec.existingSecret) {
      const where = ak.spec.keyHash ? "spec.keyHash: the key was issued elsewhere" : `spec.existingSecret: the key lives in your Secret ${ak.spec.existingSecret?.name ?? ""}`;
      throw new KeywardError("ConfigInvalid", `cannot rotate ${this.ref}: it uses ${where}; rotate it there (keyward re-hashes a changed Secret)`);
    }
    if (ak.spec.disabled) throw new KeywardError("ConfigInvalid", `cannot rotate ${this.ref}: it is disabled (rotation pauses while a key is disabled)`);
    if (ak.status?.state === "Expired") throw new KeywardError("ConfigInvalid", `cannot rotate ${this.ref}: it has expired (spec.expiresAt ${ak.spec.expiresAt ?? ""})`);
    const previous = ak.status?.keys?.find((k) => k.state === "active")?.id;
    let asked = String(this.now());
    if (ak.metadata.annotations?.[ROTATE_ANNOTATION] === asked) asked += "-1";
    await this.patchApiKey({
      metadata: { annotations: { [ROTATE_ANNOTATION]: asked } },
      ...(this.flags.grace !== undefined ? { spec: { rotation: { gracePeriod: this.flags.grace } } } : {}),
    });
    const deadline = this.now() + timeoutMs;
    const wait = { intervalMs: this.io.pollMs, now: this.now };
    const done = await waitUntil(() => this.getApiKey(), (a) => rotationProgress(a, asked, previous), { ...wait, timeoutMs, what: `rotate ${this.ref}` });
    const active = done.status?.keys?.find((k) => k.state === "active");
    const newId = active?.id ?? "";
    await this.awaitDelivery(done, newId, Math.max(0, deadline - this.now()), wait);
    const prev = done.status?.keys?.find((k) => k.id === previous);
    const after = previous === undefined ? "" : prev?.state === "grace" ? `; ${previous} is accepted until ${prev.expiresAt ?? "its grace ends"}` : `; ${previous} is no longer accepted`;
    this.io.out(`apikey.keyward.dev/${this.name} rotated: key ${newId} is active${after}\n`);
  }

  /** Waits until the Secret holds the new key (its key-id annotation), reading only its metadata; skipped when the caller may not read it. */
  private async awaitDelivery(ak: ApiKey, keyId: string, timeoutMs: number, wait: { intervalMs?: number; now: () => number }): Promise<void> {
    const secretName = ak.status?.secretName ?? ak.spec.secretName ?? `${this.name}-apikey`;
    const path = `/api/v1/namespaces/${encodeURIComponent(this.ns)}/secrets/${encodeURIComponent(secretName)}`;
    const read = (): Promise<SecretObject | undefined> =>
      this.rest.request<SecretObject>("GET", path, { accept: "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1" }).catch((err: unknown) => {
        if (err instanceof KubeApiError && err.status === 404) return undefined;
        throw err;
      });
    try {
      await waitUntil(
        read,
        (s) => (s?.metadata.annotations?.[KEY_ID_ANNOTATION] === keyId ? { done: true } : { done: false, showing: `Secret ${secretName} does not hold key ${keyId} yet` }),
        { ...wait, timeoutMs, what: `deliver key ${keyId} into Secret ${secretName}` },
      );
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 403) {
        this.io.err(`note: your credentials may not read Secret ${secretName}, so the delivery of ${keyId} into it was not awaited (the operator writes it right after the status)\n`);
        return;
      }
      throw err;
    }
  }

  // --- revoke --------------------------------------------------------------

  private async revoke(): Promise<void> {
    const timeoutMs = this.timeoutMs();
    const ak = await this.getApiKey();
    if (ak.spec.disabled && ak.status?.state === "Disabled") {
      this.io.out(`apikey.keyward.dev/${this.name} already revoked\n`);
      return;
    }
    const patched = await this.patchApiKey({ spec: { disabled: true } });
    const generation = patched.metadata.generation ?? 0;
    await waitUntil(() => this.getApiKey(), (a) => revocationProgress(a, generation), {
      timeoutMs,
      what: `revoke ${this.ref}`,
      intervalMs: this.io.pollMs,
      now: this.now,
    });
    this.io.out(`apikey.keyward.dev/${this.name} revoked: no version of its key is accepted\n`);
  }

  // --- reveal --------------------------------------------------------------

  private async reveal(): Promise<void> {
    const ak = await this.getApiKey();
    if (ak.spec.keyHash) throw new KeywardError("ConfigInvalid", `${this.ref} declares only a hash (spec.keyHash): keyward holds no key to reveal`);
    const secretName = ak.spec.existingSecret?.name ?? ak.status?.secretName ?? ak.spec.secretName ?? `${this.name}-apikey`;
    const field = ak.spec.existingSecret ? (ak.spec.existingSecret.key ?? SECRET_DATA_KEY) : SECRET_DATA_KEY;
    const secretRef = `secret "${secretName}" in namespace "${this.ns}"`;
    const secret = await this.call(`reveal reads ${secretRef} with your own credentials; get ${secretRef}`, () =>
      this.rest.request<SecretObject>("GET", `/api/v1/namespaces/${encodeURIComponent(this.ns)}/secrets/${encodeURIComponent(secretName)}`),
    );
    const encoded = secret.data?.[field];
    if (encoded === undefined) throw new KeywardError("ConfigInvalid", `${secretRef} has no field "${field}": the operator has not delivered the key yet (see kubectl keyward status ${this.name})`);
    const key = Buffer.from(encoded, "base64").toString("utf8");
    const version = ak.status?.keys?.find((k) => k.hash === hashKey(key));
    if (!version) {
      throw new KeywardError(
        "ConfigInvalid",
        `the key in ${secretRef} is not one keyward accepts for ${this.ref} (a rotation being delivered, or the Secret was changed); it is not printed. Try again, or see kubectl keyward status ${this.name}`,
      );
    }
    const state = ak.status?.state;
    const grace =
      ak.spec.disabled || state === "Disabled" || state === "Expired"
        ? `; the ApiKey is ${state === "Expired" ? "expired" : "disabled"}, so the key is not accepted`
        : version.state === "grace"
          ? `; it is in grace and stops being accepted at ${version.expiresAt ?? "the end of its grace"}`
          : "";
    this.io.err(`warning: printing the API key ${version.id} of ${this.ref} to stdout${grace}. Treat it as a password: keep it out of shell history, tickets and chats.\n`);
    this.io.out(this.io.stdoutIsTTY ? `${key}\n` : key);
  }

  // --- status --------------------------------------------------------------

  private async status(): Promise<void> {
    this.io.out(renderStatus(await this.getApiKey()));
  }
}
