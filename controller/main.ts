import { KubeClient } from '../kube/client.ts';
import { Kinds } from '../kube/kinds.ts';
import { LeaderElector } from '../kube/leader.ts';
import { createLogger } from '../ops/logger.ts';
import { defineFlags, kubeconfigFlag, listenAddress, logLevelFlag, parseFlags, usage } from '../ops/flag-spec.ts';
import { startOpsServer } from '../ops/server.ts';
import { CacheController } from './controller.ts';
import { RegistrationController } from './trained-model/controller.ts';
import { startWebhooks, type Webhooks } from './webhooks/server.ts';

/** The controller's flags, declared once: its parser, range checks and `--help` are made from this table. */
export const controllerFlags = defineFlags({
  command: 'controller',
  flags: {
    kubeconfig: kubeconfigFlag,
    'metrics-addr': {
      kind: 'string',
      arg: 'ADDR',
      default: ':8080',
      help: '/metrics, /healthz, /readyz listen address',
      parse: listenAddress,
    },
    'leader-elect': { kind: 'boolean', help: 'run as one of several replicas; only the Lease holder acts' },
    'leader-election-namespace': {
      kind: 'string',
      arg: 'NS',
      env: 'POD_NAMESPACE',
      default: 'modelcache-system',
      help: 'namespace of the Lease',
      defaultText: '$POD_NAMESPACE or modelcache-system',
    },
    workers: { kind: 'whole', default: 4, min: 1, help: 'concurrent reconciles' },
    'resync-seconds': {
      kind: 'duration',
      unit: 's',
      default: 300,
      min: 1,
      help: 'reconcile everything this often as a safety net',
    },
    'volume-grace-seconds': {
      kind: 'duration',
      unit: 's',
      default: 600,
      min: 0,
      help:
        "a namespace whose last consumer of a cache left keeps the cache's PV and PVC this long, so a consumer " +
        'coming back finds them',
      note: 'never while mounted',
    },
    'log-level': logLevelFlag,
    'webhook-listen': {
      kind: 'string',
      arg: 'ADDR',
      help: 'serve the admission webhooks (HTTPS) here, e.g. :9443',
      defaultText: 'no webhooks',
      parse: listenAddress,
    },
    'webhook-service': {
      kind: 'string',
      arg: 'NAME',
      default: 'modelcache-webhook',
      help: "the webhooks' Service in $POD_NAMESPACE, named in a generated certificate",
      note: 'the certificate is kept in Secret NAME-tls',
    },
    'webhook-cert-secret': {
      kind: 'string',
      arg: 'NAME',
      help: "serve the certificate of this Secret (cert-manager's tls.crt, tls.key, ca.crt) instead of generating one",
    },
    'webhook-configuration': {
      kind: 'string',
      arg: 'NAME',
      default: 'modelcache-webhooks',
      help: 'MutatingWebhookConfiguration whose caBundle is kept',
    },
  },
});

/** The controller's `--help`. */
export const controllerUsage = usage(controllerFlags);

/** `modelcache controller`: runs until SIGTERM/SIGINT. */
export async function runController(args: string[]): Promise<number> {
  // Every flag is checked before anything starts.
  const parsed = parseFlags(controllerFlags, args);
  if (parsed.help) {
    console.log(controllerUsage);
    return 0;
  }
  const { flags } = parsed;

  const log = createLogger('controller', flags['log-level']);
  const client = KubeClient.fromKubeconfig({ kubeconfig: flags.kubeconfig });
  const shutdown = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => shutdown.abort(new Error(sig)));

  // One informer per kind for the whole process: the controllers and the webhooks share them.
  const kinds = new Kinds(client, { log });
  const controller = new CacheController({
    client,
    log,
    kinds,
    workers: flags.workers,
    resyncMs: flags['resync-seconds'],
    volumeGraceMs: flags['volume-grace-seconds'],
  });
  // Caches and TrainedModel registration run side by side while leading; each fails on its own.
  const registration = new RegistrationController({ client, log: log.child({ part: 'registration' }), kinds });
  const runAll = async (signal: AbortSignal): Promise<void> => {
    await Promise.all([
      controller.run(signal),
      registration.run(signal).catch((err: unknown) => {
        if (!signal.aborted)
          log.error({ err: String((err as Error)?.message ?? err) }, 'TrainedModel registration stopped');
      }),
    ]);
  };
  // Informers warm on every replica; reconciling only while leading.
  kinds.start(shutdown.signal);
  // Every replica answers admission requests, from the informers every replica keeps.
  let webhooks: Webhooks | undefined;
  if (flags['webhook-listen'])
    webhooks = await startWebhooks(
      {
        client,
        log,
        listen: flags['webhook-listen'],
        namespace: process.env.POD_NAMESPACE ?? 'modelcache-system',
        service: flags['webhook-service'],
        ...(flags['webhook-cert-secret'] ? { certSecret: flags['webhook-cert-secret'] } : {}),
        configuration: flags['webhook-configuration'],
        caches: controller.cluster.caches,
        groups: controller.cluster.groups,
      },
      shutdown.signal,
    );
  const ops = await startOpsServer({
    addr: flags['metrics-addr'],
    flag: 'metrics-addr',
    registry: controller.metrics.registry,
    unready: () => (controller.ready ? webhooks?.unready() : 'caches not synced'),
  });
  log.info(
    {
      metrics: `${ops.url}/metrics`,
      ...(webhooks ? { webhooks: webhooks.url } : {}),
      server: client.server,
      leaderElect: flags['leader-elect'],
    },
    'controller started',
  );

  if (flags['leader-elect']) {
    const elector = new LeaderElector({
      client,
      namespace: flags['leader-election-namespace'],
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
