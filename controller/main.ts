import { parseArgs } from 'node:util';
import { KubeClient } from '../kube/client.ts';
import { LeaderElector } from '../kube/leader.ts';
import { createLogger } from '../ops/logger.ts';
import { durationFlag, wholeNumberFlag } from '../ops/flags.ts';
import { startOpsServer } from '../ops/server.ts';
import { CacheController } from './controller.ts';
import { RegistrationController } from './trained-model/controller.ts';
import { startWebhooks, type Webhooks } from './webhooks/server.ts';

export const controllerUsage = `usage: modelcache controller [flags]

  --kubeconfig FILE           kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)
  --metrics-addr ADDR         /metrics, /healthz, /readyz listen address (default :8080)
  --leader-elect              run as one of several replicas; only the Lease holder acts
  --leader-election-namespace namespace of the Lease (default: $POD_NAMESPACE or modelcache-system)
  --workers N                 concurrent reconciles (default 4)
  --resync-seconds N          reconcile everything this often as a safety net (default 300)
  --volume-grace-seconds N    a namespace whose last consumer of a cache left keeps the cache's PV and PVC
                              this long, so a consumer coming back finds them (default 600; never while mounted)
  --log-level LEVEL           debug, info, warn, error (default info)
  --webhook-listen ADDR       serve the admission webhooks (HTTPS) here, e.g. :9443 (default: no webhooks)
  --webhook-service NAME      the webhooks' Service in $POD_NAMESPACE, named in a generated certificate
                              (default modelcache-webhook; the certificate is kept in Secret NAME-tls)
  --webhook-cert-secret NAME  serve the certificate of this Secret (cert-manager's tls.crt, tls.key, ca.crt)
                              instead of generating one
  --webhook-configuration NAME  MutatingWebhookConfiguration whose caBundle is kept (default modelcache-webhooks)`;

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
      'volume-grace-seconds': { type: 'string', default: '600' },
      'log-level': { type: 'string', default: 'info' },
      'webhook-listen': { type: 'string' },
      'webhook-service': { type: 'string', default: 'modelcache-webhook' },
      'webhook-cert-secret': { type: 'string' },
      'webhook-configuration': { type: 'string', default: 'modelcache-webhooks' },
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

  const volumeGraceMs = durationFlag('volume-grace-seconds', values['volume-grace-seconds'], 's', { min: 0 });
  const controller = new CacheController({ client, log, workers, resyncMs: resync * 1000, volumeGraceMs });
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
  // Every replica answers admission requests, from the informers every replica keeps.
  let webhooks: Webhooks | undefined;
  if (values['webhook-listen'])
    webhooks = await startWebhooks(
      {
        client,
        log,
        listen: values['webhook-listen'],
        namespace: process.env.POD_NAMESPACE ?? 'modelcache-system',
        service: values['webhook-service'],
        ...(values['webhook-cert-secret'] ? { certSecret: values['webhook-cert-secret'] } : {}),
        configuration: values['webhook-configuration'],
        caches: controller.world.caches,
        groups: controller.world.groups,
      },
      shutdown.signal,
    );
  const ops = await startOpsServer({
    addr: values['metrics-addr'],
    registry: controller.metrics.registry,
    unready: () => (controller.ready ? webhooks?.unready() : 'caches not synced'),
  });
  log.info(
    {
      metrics: `${ops.url}/metrics`,
      ...(webhooks ? { webhooks: webhooks.url } : {}),
      server: client.server,
      leaderElect: values['leader-elect'],
    },
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
  await webhooks?.done;
  await ops.close();
  await client.close();
  log.info('controller stopped');
  return 0;
}
