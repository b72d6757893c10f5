// Loads a kubeconfig: an explicit path, else $KUBECONFIG / ~/.kube/config, else
// the in-cluster service account.
// From its own file, not the package's index: the index loads every generated API
// client (see slim-load.ts).
import { KubeConfig } from "@kubernetes/client-node/dist/config.js";

export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}
