import { mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { credentialsFromEnv } from '../download/env-credentials.ts';
import { HttpClient } from '../download/http-client.ts';
import { KubeClient } from '../kube/client.ts';
import { runReconciler } from '../kube/reconciler.ts';
import { WorkQueue } from '../kube/workqueue.ts';
import { createLogger } from '../ops/logger.ts';
import { durationFlag, quantityFlag, wholeNumberFlag } from '../ops/flags.ts';
import { parseAddr, startOpsServer } from '../ops/server.ts';
import { ModelAgent } from './agent.ts';
import { STAGING } from './folders.ts';
import { configMapSource, fileSource } from './models-source.ts';
import { AgentMetrics } from './metrics.ts';
import { ModelServer } from './model-server.ts';
import { LoadReporter } from './status.ts';

export const agentUsage = `usage: modelcache agent (--models-json FILE | --configmap NAME) --model-dir DIR --server URL [flags]

  --models-json FILE     the mounted models.json of the InferenceService (modelconfig-<isvc>-0)
  --configmap NAME       or watch that ConfigMap (in --namespace) instead of a mounted file
  --model-dir DIR        where models go, one folder per model (the server's model repository)
  --server URL           the model server's V2 repository API base, e.g. http://127.0.0.1:8080
  --cache-url URL        the node daemon's artifact server: http://HOST:PORT, or unix:///PATH for its
                         --artifact-socket (default: none, always the source)
  --namespace NS         TrainedModels' namespace, to report ModelLoaded (default: $POD_NAMESPACE;
                         none: no reports)
  --kubeconfig FILE      kubeconfig for the reports (default: $KUBECONFIG, in-cluster, ~/.kube/config)
  --max-concurrent N     models fetched and loaded at once, 1-64 (default 2)
  --max-model-size Q     largest model taken from a source, a quantity ≥ 1 (default 1Ti)
  --poll-ms N            how often models.json is read, 50-3600000 (default 1000)
  --listen ADDR          /metrics, /healthz, /readyz (default 127.0.0.1:9091)
  --log-level LEVEL      debug, info, warn, error (default info)`;

/** --cache-url: an http(s) base URL, or unix:///path of the daemon's artifact socket (then requests go to it as http://localhost). */
export function cacheEndpoint(raw: string): { url: string; socketPath?: string } {
  if (raw.startsWith('unix:')) {
    const path = raw.replace(/^unix:(\/\/)?/, '');
    if (!path.startsWith('/'))
      throw new Error(
        `--cache-url ${raw}: a socket must be an absolute path, e.g. unix:///run/modelcache/artifacts.sock`,
      );
    return { url: 'http://localhost', socketPath: path };
  }
  if (!/^https?:\/\//.test(raw) || !URL.canParse(raw))
    throw new Error(`--cache-url ${raw}: use http://HOST:PORT or unix:///PATH`);
  return { url: raw.replace(/\/$/, '') };
}

/** `modelcache agent`: runs beside a model server until SIGTERM/SIGINT. */
export async function runAgent(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      'models-json': { type: 'string' },
      configmap: { type: 'string' },
      'model-dir': { type: 'string' },
      server: { type: 'string' },
      'cache-url': { type: 'string' },
      namespace: { type: 'string' },
      kubeconfig: { type: 'string' },
      'max-concurrent': { type: 'string', default: '2' },
      'max-model-size': { type: 'string', default: '1Ti' },
      'poll-ms': { type: 'string', default: '1000' },
      listen: { type: 'string', default: '127.0.0.1:9091' },
      'log-level': { type: 'string', default: 'info' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(agentUsage);
    return 0;
  }
  for (const f of ['model-dir', 'server'] as const)
    if (!values[f]) throw new Error(`--${f} is required (see modelcache agent --help)`);
  if (Boolean(values['models-json']) === Boolean(values.configmap))
    throw new Error(
      'give one of --models-json FILE or --configmap NAME: where the models.json of the InferenceService is',
    );
  // Every flag is checked before anything is touched.
  const maxConcurrent = wholeNumberFlag('max-concurrent', values['max-concurrent'], 1, 64);
  const pollMs = durationFlag('poll-ms', values['poll-ms'], 'ms', { min: 50, max: 3_600_000 });
  const maxModelBytes = quantityFlag('max-model-size', values['max-model-size'], { min: 1 });
  parseAddr(values.listen ?? '127.0.0.1:9091', 'listen');
  if (!/^https?:\/\/[^/]/.test(values.server!) || !URL.canParse(values.server!))
    throw new Error(`--server ${values.server}: give the model server's base URL, e.g. http://127.0.0.1:8080`);
  const cache = values['cache-url'] ? cacheEndpoint(values['cache-url']) : undefined;
  const namespace = values.namespace ?? process.env.POD_NAMESPACE;
  if (values.configmap && !namespace) throw new Error('--configmap needs --namespace (or $POD_NAMESPACE)');
  const level = values['log-level'] ?? 'info';
  if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(level))
    throw new Error(`--log-level must be one of trace, debug, info, warn, error, fatal, silent (got '${level}')`);
  const log = createLogger('agent', level);
  const modelDir = resolve(values['model-dir']!);
  await mkdir(modelDir, { recursive: true });
  await rm(join(modelDir, STAGING), { recursive: true, force: true });
  const client = namespace ? KubeClient.fromKubeconfig({ kubeconfig: values.kubeconfig }) : undefined;
  const shutdown = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => shutdown.abort(new Error(sig)));

  const queue = new WorkQueue({ backoff: { baseMs: 500, maxMs: 30_000 }, signal: shutdown.signal });
  const KEY = 'agent';
  const source = values.configmap
    ? configMapSource(client!, namespace!, values.configmap, () => queue.add(KEY), log, shutdown.signal)
    : fileSource(resolve(values['models-json']!));
  const http = new HttpClient({
    connectTimeoutMs: 10_000,
    responseTimeoutMs: 30_000,
    ...(cache?.socketPath ? { socketPath: cache.socketPath } : {}),
  });
  const server = new ModelServer(values.server!);
  const holder: { agent?: ModelAgent } = {};
  const metrics = new AgentMetrics(() => holder.agent?.loaded.size ?? 0);
  const agent = new ModelAgent({
    metrics,
    modelsJson: source.read,
    modelsSource: source.describe,
    modelDir,
    ...(cache ? { cacheUrl: cache.url } : {}),
    maxModelBytes,
    credentials: credentialsFromEnv(process.env),
    http,
    server,
    ...(client && namespace ? { reporter: new LoadReporter(client, namespace, log) } : {}),
    log,
    maxConcurrent,
    onChange: () => queue.add(KEY),
  });
  holder.agent = agent;
  const ops = await startOpsServer({
    addr: values.listen ?? '127.0.0.1:9091',
    registry: metrics.registry,
    unready: () => (source.ready() ? undefined : 'models.json not read yet'),
  });
  log.info(
    {
      metrics: `${ops.url}/metrics`,
      models: source.describe,
      modelDir,
      server: values.server,
      cache: values['cache-url'] ?? null,
    },
    'agent started',
  );
  const poll = setInterval(() => queue.add(KEY), pollMs);
  queue.add(KEY);
  await runReconciler({
    queue,
    workers: 1,
    signal: shutdown.signal,
    reconcile: () => agent.reconcile(),
    observe: (_k, outcome, _ms, err) => {
      if (outcome === 'error')
        log.warn({ err: String((err as Error)?.message ?? err) }, 'agent pass failed; will retry');
    },
  });
  clearInterval(poll);
  await agent.stop();
  await server.close();
  await http.close();
  await ops.close();
  await client?.close();
  log.info('agent stopped');
  return 0;
}
