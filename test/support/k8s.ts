// Helpers shared by the integration suites.
import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";

/** Writes `kc` to `path`, readable by its owner only (it holds a token); returns `path`. */
export function writeKubeconfig(path: string, kc: KubeConfig): string {
  writeFileSync(path, kc.exportConfig(), { mode: 0o600 });
  return path;
}

/** Creates a namespace with a unique name for one suite and returns its name. */
export async function createTestNamespace(kc: KubeConfig, prefix: string): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString("hex")}`;
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name, labels: { "keyward.dev/test": "true" } } } });
  return name;
}

export async function deleteNamespace(kc: KubeConfig, name: string): Promise<void> {
  await kc.makeApiClient(CoreV1Api).deleteNamespace({ name }).catch(() => undefined);
}

/**
 * Deletes a namespace and waits until it is gone, so that the controller-manager has
 * emptied it before the next suite starts (a suite that left thousands of objects behind
 * would otherwise keep the garbage collector busy under the next one's feet).
 */
export async function deleteNamespaceAndWait(kc: KubeConfig, name: string, timeoutMs: number): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  await deleteNamespace(kc, name);
  await eventually(
    () =>
      core.readNamespace({ name }).then(
        () => undefined,
        (err: unknown) => {
          if ((err as { code?: number }).code === 404) return true;
          throw err;
        },
      ),
    timeoutMs,
    `namespace ${name} to be gone`,
  );
}

/** Polls `fn` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function eventually<T>(fn: () => T | undefined | Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let delay = 20;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError });
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 250);
  }
}
