import { parseArgs } from 'node:util';
import { KubeClient } from '../kube/client.ts';
import { LeaderElector } from '../kube/leader.ts';
import { createLogger } from '../ops/logger.ts';
import { wholeNumberFlag } from '../ops/flags.ts';
import { startOpsServer } from '../ops/server.ts';
import { CacheController } from './controller.ts';
import { RegistrationController } from './trained-model/controller.ts';

export const controllerUsage = `usage: modelcache controller [flags]

  --kubeconfig FILE           kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)
  --metrics-addr ADDR         /metrics, /healthz, /readyz listen address (default :8080)
  --leader-elect              run as one of several replicas; only the Lease holder acts
  --leader-election-namespace namespace of the Lease (default: $POD_NAMESPACE or modelcache-system)
  --workers N                 concurrent reconciles (default 4)
  --resync-seconds N          reconcile everything this often as a safety net (default 300)
  --log-level LEVEL           debug, info, warn, error (default info)`;

/** `modelcache controller`: runs until SIGTERM/SIGINT. */
export async function runController(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      kubeconfig: { type: 'string' },
      'metrics-addr': { type: 'string', default: ':8080' },
      'leader-elect': { type: 'boolean', default: false },
      'leader-election-namespace': { type: 'string' },
      workers: { type: 'string', default: '4' },
      'resync-seconds': { type: 'string', default: '300' },
      'log-level': { type: 'string', default: 'info' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(controllerUsage);
    return 0;
  }
  const workers = wholeNumberFlag('workers', values.workers);
  const resync = Number(values['resync-seconds']);
  if (!Number.isFinite(resync) || resync < 1)
    throw new Error(`--resync-seconds must be ≥ 1 (got '${values['resync-seconds']}')`);

  const log = createLogger('controller', values['log-level']);
  const client = KubeClient.fromKubeconfig({ kubeconfig: values.kubeconfig });
  const shutdown = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => shutdown.abort(new Error(sig)));

  const controller = new CacheController({ client, log, workers, resyncMs: resync * 1000 });
  // Caches and TrainedModel registration run side by side while leading; each fails on its own.
  const runAll = async (signal: AbortSignal): Promise<void> => {
    const registration = new RegistrationController({ client, log: log.child({ part: 'registration' }) });
    await Promise.all([
      controller.run(signal),
      registration.run(signal).catch((err: unknown) => {
        if (!signal.aborted)
          log.error({ err: String((err as Error)?.message ?? err) }, 'TrainedModel registration stopped');
      }),
    ]);
  };
  controller.start(shutdown.signal);
  const ops = await startOpsServer({
    addr: values['metrics-addr'],
    registry: controller.metrics.registry,
    unready: () => (controller.ready ? undefined : 'caches not synced'),
  });
  log.info(
    { metrics: `${ops.url}/metrics`, server: client.server, leaderElect: values['leader-elect'] },
    'controller started',
  );

  if (values['leader-elect']) {
    const elector = new LeaderElector({
      client,
      namespace: values['leader-election-namespace'] ?? process.env.POD_NAMESPACE ?? 'modelcache-system',
      name: 'modelcache-controller',
      log,
    });
    await elector.run(async (signal) => {
      controller.metrics.leader.set(1);
      try {
        await runAll(signal);
      } finally {
        controller.metrics.leader.set(0);
      }
    }, shutdown.signal);
  } else {
    controller.metrics.leader.set(1);
    await runAll(shutdown.signal).catch((err: unknown) => {
      if (!shutdown.signal.aborted) throw err;
    });
  }
  await ops.close();
  await client.close();
  log.info('controller stopped');
  return 0;
}
