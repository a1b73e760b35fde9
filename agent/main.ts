import { mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { credentialsFromEnv } from '../download/env-credentials.ts';
import { HttpClient } from '../download/http-client.ts';
import { KubeClient } from '../kube/client.ts';
import { runReconciler } from '../kube/reconciler.ts';
import { WorkQueue } from '../kube/workqueue.ts';
import { createLogger } from '../ops/logger.ts';
import { defineFlags, kubeconfigFlag, listenAddress, logLevelFlag, parseFlags, usage } from '../ops/flag-spec.ts';
import { startOpsServer } from '../ops/server.ts';
import { ModelAgent } from './agent.ts';
import { STAGING } from './folders.ts';
import { configMapSource, fileSource } from './models-source.ts';
import { AgentMetrics } from './metrics.ts';
import { ModelServer } from './model-server.ts';
import { LoadReporter } from './status.ts';

/** The agent's flags, declared once: its parser, range checks and `--help` are made from this table. */
export const agentFlags = defineFlags({
  command: 'agent',
  exactlyOne: [{ flags: ['models-json', 'configmap'], what: 'where the models.json of the InferenceService is' }],
  flags: {
    'models-json': {
      kind: 'string',
      arg: 'FILE',
      help: 'the mounted models.json of the InferenceService (modelconfig-<isvc>-0)',
      parse: (text) => (text ? resolve(text) : undefined),
    },
    configmap: {
      kind: 'string',
      arg: 'NAME',
      help: 'or watch that ConfigMap (in --namespace) instead of a mounted file',
    },
    'model-dir': {
      kind: 'string',
      arg: 'DIR',
      required: 'the agent puts the models there',
      help: "where models go, one folder per model (the server's model repository)",
      parse: (text) => resolve(text),
    },
    server: {
      kind: 'string',
      arg: 'URL',
      required: 'the agent loads the models into that server',
      help: "the model server's V2 repository API base, e.g. http://127.0.0.1:8080",
      parse: serverFlag,
    },
    'cache-url': {
      kind: 'string',
      arg: 'URL',
      help: "the node daemon's artifact server: http://HOST:PORT, or unix:///PATH for its --artifact-socket",
      defaultText: 'none, always the source',
      parse: (text) => (text ? { ...cacheEndpoint(text), text } : undefined),
    },
    namespace: {
      kind: 'string',
      arg: 'NS',
      env: 'POD_NAMESPACE',
      help: "TrainedModels' namespace, to report ModelLoaded",
      note: 'none: no reports',
    },
    kubeconfig: { ...kubeconfigFlag, help: 'kubeconfig for the reports' },
    'max-concurrent': { kind: 'whole', default: 2, min: 1, max: 64, help: 'models fetched and loaded at once' },
    'max-model-size': { kind: 'quantity', default: '1Ti', min: 1, help: 'largest model taken from a source' },
    'poll-ms': {
      kind: 'duration',
      unit: 'ms',
      default: 1000,
      min: 50,
      max: 3_600_000,
      help: 'how often models.json is read',
    },
    listen: {
      kind: 'string',
      arg: 'ADDR',
      default: '127.0.0.1:9091',
      help: '/metrics, /healthz, /readyz',
      parse: listenAddress,
    },
    'log-level': logLevelFlag,
  },
});

/** --server: the model server's http(s) base URL. */
function serverFlag(text: string): string {
  if (!/^https?:\/\/[^/]/.test(text) || !URL.canParse(text))
    throw new Error(`--server ${text}: give the model server's base URL, e.g. http://127.0.0.1:8080`);
  return text;
}

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
  // Every flag is checked before anything is touched.
  const parsed = parseFlags(agentFlags, args);
  if (parsed.help) {
    console.log(usage(agentFlags));
    return 0;
  }
  const { flags } = parsed;
  const cache = flags['cache-url'];
  const namespace = flags.namespace;
  if (flags.configmap && !namespace) throw new Error('--configmap needs --namespace (or $POD_NAMESPACE)');
  const log = createLogger('agent', flags['log-level']);
  const modelDir = flags['model-dir'];
  await mkdir(modelDir, { recursive: true });
  await rm(join(modelDir, STAGING), { recursive: true, force: true });
  const client = namespace ? KubeClient.fromKubeconfig({ kubeconfig: flags.kubeconfig }) : undefined;
  const shutdown = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => shutdown.abort(new Error(sig)));

  const queue = new WorkQueue({ backoff: { baseMs: 500, maxMs: 30_000 }, signal: shutdown.signal });
  const KEY = 'agent';
  const source = flags.configmap
    ? configMapSource(client!, namespace!, flags.configmap, () => queue.add(KEY), log, shutdown.signal)
    : fileSource(flags['models-json']!);
  const http = new HttpClient({
    connectTimeoutMs: 10_000,
    responseTimeoutMs: 30_000,
    ...(cache?.socketPath ? { socketPath: cache.socketPath } : {}),
  });
  const server = new ModelServer(flags.server);
  const holder: { agent?: ModelAgent } = {};
  const metrics = new AgentMetrics(() => holder.agent?.loaded.size ?? 0);
  const agent = new ModelAgent({
    metrics,
    modelsJson: source.read,
    modelsSource: source.describe,
    modelDir,
    ...(cache ? { cacheUrl: cache.url } : {}),
    maxModelBytes: flags['max-model-size'],
    credentials: credentialsFromEnv(process.env),
    http,
    server,
    ...(client && namespace ? { reporter: new LoadReporter(client, namespace, log) } : {}),
    log,
    maxConcurrent: flags['max-concurrent'],
    onChange: () => queue.add(KEY),
  });
  holder.agent = agent;
  const ops = await startOpsServer({
    addr: flags.listen,
    registry: metrics.registry,
    unready: () => (source.ready() ? undefined : 'models.json not read yet'),
  });
  log.info(
    {
      metrics: `${ops.url}/metrics`,
      models: source.describe,
      modelDir,
      server: flags.server,
      cache: cache?.text ?? null,
    },
    'agent started',
  );
  const poll = setInterval(() => queue.add(KEY), flags['poll-ms']);
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
