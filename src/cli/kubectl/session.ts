// Whose cluster and which namespace: the caller's kubeconfig, read as kubectl
// reads it (--kubeconfig, else $KUBECONFIG, else ~/.kube/config), its context
// (--context, else the current one) and namespace (-n, else the context's, else
// "default"). The plugin acts with the caller's own credentials, nothing else.
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { KeywardError } from "../../errors.ts";

export interface SessionFlags {
  kubeconfig?: string;
  context?: string;
  namespace?: string;
}

export interface Session {
  kc: KubeConfig;
  namespace: string;
  /** The apiserver's address, for messages. */
  server: string;
}

/** The kubeconfig files kubectl would read, in its order; none when no file exists. */
export function kubeconfigFiles(flags: SessionFlags, env: NodeJS.ProcessEnv, home = homedir()): string[] {
  if (flags.kubeconfig) return [flags.kubeconfig];
  const fromEnv = (env.KUBECONFIG ?? "").split(delimiter).filter((p) => p !== "");
  if (fromEnv.length > 0) return fromEnv.filter((p) => existsSync(p));
  const dflt = join(home, ".kube", "config");
  return existsSync(dflt) ? [dflt] : [];
}

/** Reads the kubeconfig. The Kubernetes client library is loaded only here, so help and usage errors answer at once. */
export async function openSession(flags: SessionFlags, env: NodeJS.ProcessEnv): Promise<Session> {
  const files = kubeconfigFiles(flags, env);
  if (files.length === 0) {
    throw new KeywardError("ConfigInvalid", "no kubeconfig found: set KUBECONFIG, pass --kubeconfig, or create ~/.kube/config");
  }
  if (flags.kubeconfig && !existsSync(flags.kubeconfig)) {
    throw new KeywardError("ConfigInvalid", `--kubeconfig ${flags.kubeconfig}: no such file`);
  }
  const { KubeConfig } = await import("@kubernetes/client-node");
  const kc = new KubeConfig();
  try {
    kc.loadFromFile(files[0] as string);
    // As kubectl merges them: the first file to name a cluster, user, context or current context wins.
    for (const more of files.slice(1)) {
      const next = new KubeConfig();
      next.loadFromFile(more);
      for (const c of next.clusters) if (!kc.getCluster(c.name)) kc.addCluster(c);
      for (const u of next.users) if (!kc.getUser(u.name)) kc.addUser(u);
      for (const c of next.contexts) if (!kc.getContextObject(c.name)) kc.addContext(c);
      if (!kc.getCurrentContext() && next.getCurrentContext()) kc.setCurrentContext(next.getCurrentContext());
    }
  } catch (err) {
    throw new KeywardError("ConfigInvalid", `cannot read kubeconfig ${files.join(delimiter)}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  if (flags.context !== undefined) {
    if (!kc.getContextObject(flags.context)) {
      throw new KeywardError("ConfigInvalid", `context "${flags.context}" is not in the kubeconfig (it has: ${kc.getContexts().map((c) => c.name).join(", ") || "none"})`);
    }
    kc.setCurrentContext(flags.context);
  }
  const context = kc.getContextObject(kc.getCurrentContext());
  const cluster = kc.getCurrentCluster();
  if (!context || !cluster) {
    throw new KeywardError("ConfigInvalid", "the kubeconfig has no current context: pass --context or run `kubectl config use-context NAME`");
  }
  return { kc, namespace: flags.namespace || context.namespace || "default", server: cluster.server };
}
