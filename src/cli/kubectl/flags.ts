// The command line of `kubectl keyward`: the command, its arguments and flags,
// with kubectl's global flags (-n, --context, --kubeconfig) accepted anywhere.
// A flag another command owns, a missing NAME or a malformed value is a usage
// error (exit 2) that names the problem and points to --help.
import { parseArgs } from "node:util";
import { KeywardError } from "../../errors.ts";
import type { SessionFlags } from "./session.ts";

export const COMMANDS = ["create", "rotate", "revoke", "reveal", "status"] as const;
export type Command = (typeof COMMANDS)[number];

const OPTIONS = {
  namespace: { type: "string", short: "n" },
  context: { type: "string" },
  kubeconfig: { type: "string" },
  help: { type: "boolean", short: "h" },
  owner: { type: "string" },
  scopes: { type: "string" },
  description: { type: "string" },
  prefix: { type: "string" },
  label: { type: "string", short: "l", multiple: true },
  expires: { type: "string" },
  rate: { type: "string" },
  burst: { type: "string" },
  quota: { type: "string" },
  "dry-run": { type: "string" },
  output: { type: "string", short: "o" },
  grace: { type: "string" },
  timeout: { type: "string" },
} as const;

type Flag = keyof typeof OPTIONS;
const GLOBAL: Flag[] = ["namespace", "context", "kubeconfig", "help"];
const PER_COMMAND: Record<Command, Flag[]> = {
  create: ["owner", "scopes", "description", "prefix", "label", "expires", "rate", "burst", "quota", "dry-run", "output"],
  rotate: ["grace", "timeout"],
  revoke: ["timeout"],
  reveal: [],
  status: [],
};

export interface Parsed {
  /** undefined: no command (plain `kubectl keyward`, or `--help`). */
  command: Command | undefined;
  name: string | undefined;
  help: boolean;
  flags: SessionFlags & CreateFlags & { "dry-run"?: string; output?: string; grace?: string; timeout?: string };
}

/** The flags of `create` that shape the ApiKey (src/cli/kubectl/manifest.ts). */
export interface CreateFlags {
  owner?: string;
  scopes?: string;
  description?: string;
  prefix?: string;
  label?: string[];
  expires?: string;
  rate?: string;
  burst?: string;
  quota?: string;
}

/** A mistake on the command line: printed with a pointer to --help, exit code 2. */
export class UsageError extends KeywardError {
  readonly command: Command | undefined;
  constructor(message: string, command?: Command, options?: ErrorOptions) {
    super("ConfigInvalid", message, options);
    this.name = "UsageError";
    this.command = command;
  }
}

const isCommand = (s: string | undefined): s is Command => (COMMANDS as readonly string[]).includes(s ?? "");

export function parseCommandLine(argv: string[]): Parsed {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    const first = argv.find((a) => !a.startsWith("-"));
    throw new UsageError(err instanceof Error ? err.message : String(err), isCommand(first) ? first : undefined, { cause: err });
  }
  const { values, positionals } = parsed;
  const rest = [...positionals];
  let word = rest.shift();
  let help = values.help === true;
  if (word === "help") {
    help = true;
    word = rest.shift();
  }
  if (word === undefined) return { command: undefined, name: undefined, help: true, flags: values };
  if (!isCommand(word)) throw new UsageError(`unknown command "${word}"; commands: ${COMMANDS.join(", ")}`);
  const command = word;
  if (help) return { command, name: undefined, help, flags: values };
  const allowed = new Set<string>([...GLOBAL, ...PER_COMMAND[command]]);
  for (const flag of Object.keys(values)) {
    if (!allowed.has(flag)) throw new UsageError(`${command} takes no --${flag}`, command);
  }
  if (rest.length === 0) throw new UsageError(`${command} needs the ApiKey's NAME`, command);
  if (rest.length > 1) throw new UsageError(`${command} takes one NAME, got ${rest.length}: ${rest.join(" ")}`, command);
  return { command, name: rest[0], help: false, flags: values };
}

const GLOBAL_HELP = `
Global flags (as kubectl's):
  -n, --namespace NS     the ApiKey's namespace (default: the context's namespace, else "default")
      --context NAME     the kubeconfig context to use
      --kubeconfig PATH  the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)
  -h, --help             this help`;

export const HELP: Record<Command | "plugin", string> = {
  plugin: `kubectl keyward: manage keyward API keys (ApiKey objects, keyward.dev/v1alpha1) with your own kubeconfig.

Commands:
  create NAME --owner O [--scopes a,b] ...   print or apply a new ApiKey (server-side apply)
  rotate NAME [--grace D]                    issue a new key now; wait until the operator has put it in force
  revoke NAME                                disable the key (spec.disabled: true); wait until it is refused
  reveal NAME                                print the key from its Secret, to stdout (needs get on that Secret)
  status NAME                                key versions, their state and last use
  console [--port N] [--no-open]             the web console on 127.0.0.1, with your credentials

Run "kubectl keyward COMMAND --help" for a command's flags.
${GLOBAL_HELP}`,
  create: `kubectl keyward create NAME --owner OWNER [flags]

Builds an ApiKey and applies it with server-side apply (field manager kubectl-keyward); the keyward
operator then issues the key into the Secret NAME-apikey. With --dry-run=client it only prints it.

Flags:
      --owner OWNER          customer, team or integration the key belongs to (required)
      --scopes a,b           scopes granted to the key, comma-separated
      --description TEXT     free text for humans
      --prefix P             the key's visible prefix (default kw)
  -l, --label k=v            a label on the ApiKey (ApiKeyPolicies select keys by label); repeatable
      --expires WHEN         when the key stops being accepted: an RFC 3339 time (2027-06-30T00:00:00Z),
                             a date (2027-06-30) or a duration from now (720h)
      --rate N/PER           rate limit, e.g. 100/1m (PER is a duration from 1s to 24h)
      --burst N              requests allowed at once above the rate (with --rate)
      --quota N/day|month    quota, e.g. 1000000/month
      --dry-run MODE         none (default), client (print only, no cluster needed) or server (validated, not stored)
  -o, --output FORMAT        yaml, json or name (default: a one-line summary)
${GLOBAL_HELP}

Example:
  kubectl keyward create acme-orders -n shop --owner acme --scopes orders:read,orders:write --rate 100/1m --dry-run=client -o yaml`,
  rotate: `kubectl keyward rotate NAME [--grace DURATION] [--timeout DURATION]

Asks the keyward operator for a new key now (annotation keyward.dev/rotate) and waits until its
status shows the new key active and the Secret holds it. The previous key stays accepted for the
grace period (spec.rotation.gracePeriod, else the operator's default of 24h).

Flags:
      --grace DURATION       grace period of the previous key, written to spec.rotation.gracePeriod
                             (0s refuses the previous key at once)
      --timeout DURATION     how long to wait for the operator (default 2m)
${GLOBAL_HELP}`,
  revoke: `kubectl keyward revoke NAME [--timeout DURATION]

Disables the key (spec.disabled: true) and waits until the operator reports it Disabled. The data
plane refuses the key as soon as its watch delivers the change, without waiting for the operator.
Re-enable with: kubectl patch apikey NAME --type merge -p '{"spec":{"disabled":false}}'

Flags:
      --timeout DURATION     how long to wait for the operator (default 2m)
${GLOBAL_HELP}`,
  reveal: `kubectl keyward reveal NAME

Prints the key from the ApiKey's Secret, once, to stdout only (with a newline only when stdout is a
terminal, so "> file" stores the exact key); a warning goes to stderr. It reads the Secret with your
own credentials, so you need get on that Secret.
${GLOBAL_HELP}`,
  status: `kubectl keyward status NAME

The ApiKey's state and Ready condition, then each key version: its id, state, when it was issued,
when its grace ends, and when it was last used (as the data plane reports in status.usage).
${GLOBAL_HELP}`,
};
