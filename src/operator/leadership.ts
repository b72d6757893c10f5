// Leader election for the operator: only the replica holding the Lease works
// the queue; the others keep their caches warm and take over when it lapses.
import type { Config } from "../config/config.ts";
import { LeaderElector } from "../k8s/leader.ts";
import type { KubeRest } from "../k8s/rest.ts";
import type { Logger } from "../log.ts";

export interface Leadership {
  isLeader(): boolean;
  stop(): Promise<void>;
}

export function startLeadership(opts: {
  config: Config;
  rest: KubeRest;
  log: Logger;
  identity: string;
  onStart: () => void;
  onStop: () => Promise<void>;
}): Leadership {
  const { config, rest, log, identity } = opts;
  let stopping: Promise<void> = Promise.resolve();
  const elector = new LeaderElector({
    rest,
    name: config.leaseName,
    namespace: config.leaseNamespace,
    identity,
    leaseDurationMs: config.leaseDuration,
    renewDeadlineMs: config.leaseRenewDeadline,
    retryPeriodMs: config.leaseRetryPeriod,
    log,
    onStartedLeading: () => {
      opts.onStart();
    },
    onStoppedLeading: () => {
      stopping = opts.onStop();
    },
    onNewLeader: (id: string) => {
      if (id !== identity) log.info("another replica leads", { leader: id });
    },
  });
  const running = elector.run().catch((err: unknown) => {
    log.error("leader election stopped", { err });
  });
  return {
    isLeader: () => elector.isLeader(),
    stop: async () => {
      await elector.stop();
      await running;
      await stopping;
    },
  };
}
