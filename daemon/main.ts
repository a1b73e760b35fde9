import { mkdir } from 'node:fs/promises';
import { isAbsolute, posix, resolve } from 'node:path';
import { LOCAL_MODEL_NODES, type LocalModelNode } from '../api/types.ts';
import { KubeClient } from '../kube/client.ts';
import { Informer } from '../kube/informer.ts';
import { NODES } from '../kube/resources.ts';
import type { Node } from '../kube/types.ts';
import { runReconciler } from '../kube/reconciler.ts';
import { WorkQueue } from '../kube/workqueue.ts';
import { CapacityLedger } from '../disk/capacity.ts';
import { emptyTrash } from '../disk/inventory.ts';
import { migrateLegacyLayout } from '../disk/legacy-layout.ts';
import { createLogger } from '../ops/logger.ts';
import { defineFlags, listenAddress, logLevelFlag, parseFlags, usage } from '../ops/flag-spec.ts';
import { startOpsServer } from '../ops/server.ts';
import { artifactRoutes } from './artifact-server.ts';
import { serveOnSocket } from './artifact-socket.ts';
import { SourceCredentialsReader } from './credentials.ts';
import { DownloadManager } from './downloads.ts';
import { DaemonMetrics } from './metrics.ts';
import { NodeCacheReconciler } from './node-cache/reconcile.ts';
import { StatusWriter } from './status-writer.ts';

/** The daemon's flags, declared once: its parser, range checks and `--help` are made from this table. */
export const daemonFlags = defineFlags({
  command: 'daemon',
  flags: {
    kubeconfig: {
      kind: 'string',
      arg: 'FILE',
      help: 'kubeconfig',
      defaultText: '$KUBECONFIG, in-cluster, ~/.kube/config',
    },
    'node-name': {
      kind: 'string',
      arg: 'N',
      env: 'NODE_NAME',
      required: 'the daemon serves one node; $NODE_NAME comes from the downward API (spec.nodeName)',
      help: 'this node',
      note: 'from the downward API',
    },
    root: {
      kind: 'string',
      arg: 'DIR',
      required: "the directory that holds this node's cached models",
      help: "cache directory on the node (the group's storagePath, mounted); models in DIR/models/<key>",
      parse: (text) => resolve(text),
    },
    'host-root': {
      kind: 'string',
      arg: 'PATH',
      help:
        "the host directory --root is mounted from (the DaemonSet's hostPath): models of groups whose storage path " +
        'is another one are reported (StoragePathMismatch), not cached',
      parse: hostRootFlag,
    },
    listen: {
      kind: 'string',
      arg: 'ADDR',
      default: '127.0.0.1:8081',
      help: '/metrics, /healthz, /readyz, and the artifact server unless --artifact-socket',
      parse: listenAddress,
    },
    'artifact-socket': {
      kind: 'string',
      arg: 'PATH',
      help: 'serve cached models on this Unix socket only (consumers mount its directory), not on --listen',
      parse: (text) => (text ? resolve(text) : undefined),
    },
    'max-concurrent': { kind: 'whole', default: 2, min: 1, max: 64, help: 'downloads at once' },
    'safety-margin': { kind: 'quantity', default: '1Gi', min: 0, help: 'free space always left on the disk' },
    'stall-timeout-seconds': {
      kind: 'duration',
      unit: 's',
      default: 30,
      min: 1,
      max: 86_400,
      help: 'abort and retry a download that received nothing this long',
    },
    'allow-file-root': {
      kind: 'list',
      arg: 'DIR',
      help: 'let file:// sources read host paths under DIR',
      defaultText: 'none',
      note: 'repeatable',
    },
    namespace: {
      kind: 'string',
      arg: 'NS',
      env: 'POD_NAMESPACE',
      default: 'modelcache-system',
      help: "where node groups' credential Secrets live",
      defaultText: '$POD_NAMESPACE or modelcache-system',
    },
    'part-size': {
      kind: 'quantity',
      default: '16Mi',
      min: 2 ** 20,
      max: 2 ** 30,
      help: 'objects of twice this size are fetched as parallel ranged GETs of this size',
    },
    'parallel-parts': {
      kind: 'whole',
      default: 4,
      min: 1,
      max: 64,
      help: 'ranged GETs at once per object',
      note: '1 = one stream',
    },
    'parallel-files': {
      kind: 'whole',
      default: 4,
      min: 1,
      max: 64,
      help: 'objects at once when a source lists many',
    },
    'progress-interval-ms': {
      kind: 'duration',
      unit: 'ms',
      default: 2000,
      min: 100,
      max: 3_600_000,
      help: 'at most one progress write per this interval',
    },
    'orphan-grace-seconds': {
      kind: 'duration',
      unit: 's',
      default: 600,
      min: 0,
      max: 604_800,
      help: "while this node's LocalModelNode is absent, keep cached files this long",
    },
    'log-level': logLevelFlag,
  },
});

/** The daemon's `--help`. */
export const daemonUsage = usage(daemonFlags);

/** --host-root: the absolute host path the DaemonSet mounts as --root, normalized. */
function hostRootFlag(text: string): string {
  if (!isAbsolute(text) || text.includes('\0'))
    throw new Error(
      `--host-root ${JSON.stringify(text)}: must be an absolute host path, the hostPath the DaemonSet mounts as --root`,
    );
  return posix.normalize(text);
}

/** Why the daemon is not ready, or undefined when it is. */
function daemonUnready(nodeName: string, lmns: Informer<LocalModelNode>, nodes: Informer<Node>): string | undefined {
  if (!lmns.hasSynced || !nodes.hasSynced) return 'caches not synced';
  if (!nodes.get(nodeName))
    return `Node ${nodeName} not found: --node-name (or $NODE_NAME) must be this node's name, spec.nodeName from the downward API`;
  return undefined;
}

/** `modelcache daemon`: runs on every cache node until SIGTERM/SIGINT. */
export async function runDaemon(args: string[]): Promise<number> {
  // Every flag is checked before anything starts: a bad value is one clear error, never a half-started daemon.
  const parsed = parseFlags(daemonFlags, args);
  if (parsed.help) {
    console.log(daemonUsage);
    return 0;
  }
  const { flags } = parsed;
  const nodeName = flags['node-name'];
  const root = flags.root;
  const hostRoot = flags['host-root'];
  await mkdir(root, { recursive: true });
  const log = createLogger('daemon', flags['log-level']).child({ node: nodeName });
  const client = KubeClient.fromKubeconfig({ kubeconfig: flags.kubeconfig });
  const shutdown = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => shutdown.abort(new Error(sig)));

  // The earlier layout (models at <root>/<key>) moves by rename before anything reads the disk.
  const migrated = await migrateLegacyLayout(root, (marker, reason) =>
    log.warn({ marker, reason }, 'completion marker is not valid: that folder stays where it is'),
  );
  if (migrated.moved.length || migrated.staged.length || migrated.kept.length)
    log.info(migrated, 'moved models of the earlier layout under models/');
  await emptyTrash(root);
  const metrics = new DaemonMetrics();
  const ledger = new CapacityLedger(root, flags['safety-margin']);
  const queue = new WorkQueue({ backoff: { baseMs: 500, maxMs: 30_000 }, signal: shutdown.signal });
  const KEY = 'node';
  const secrets = new SourceCredentialsReader(client, flags.namespace, process.env);
  const downloads = new DownloadManager({
    root,
    ledger,
    maxConcurrent: flags['max-concurrent'],
    log,
    metrics,
    onChange: () => queue.add(KEY),
    download: {
      stallTimeoutMs: flags['stall-timeout-seconds'],
      fileRoots: flags['allow-file-root'].map((d) => resolve(d)),
      partSizeBytes: flags['part-size'],
      partParallelism: flags['parallel-parts'],
      fileConcurrency: flags['parallel-files'],
    },
    credentials: (model, signal) => secrets.for(model, signal),
  });
  const status = new StatusWriter(client, nodeName, flags['progress-interval-ms'], log);
  const informer = new Informer<LocalModelNode>(client, LOCAL_MODEL_NODES, {
    fieldSelector: `metadata.name=${nodeName}`,
    log,
  });
  // Its own Node: a node being removed starts no new download, and a wrong --node-name shows in /readyz.
  const nodes = new Informer<Node>(client, NODES, { fieldSelector: `metadata.name=${nodeName}`, log });
  const reconciler = new NodeCacheReconciler({
    nodeName,
    root,
    hostRoot,
    informer,
    nodes,
    orphanGraceMs: flags['orphan-grace-seconds'],
    downloads,
    ledger,
    status,
    metrics,
    log,
  });
  const inv = await reconciler.inventory();
  log.info(
    { root, hostRoot, complete: inv.complete.size, partial: inv.partial.size, unknown: inv.unknown },
    'inventory taken',
  );
  // The servers start before anything that keeps the process alive: a bad --listen or --artifact-socket
  // is an error that ends the command, not a daemon left running without them.
  const socketPath = flags['artifact-socket'];
  const artifacts = artifactRoutes(root, { used: (key) => reconciler.used(key) });
  let socket: Awaited<ReturnType<typeof serveOnSocket>> | undefined;
  let ops: Awaited<ReturnType<typeof startOpsServer>>;
  try {
    socket = socketPath ? await serveOnSocket(socketPath, artifacts) : undefined;
    ops = await startOpsServer({
      addr: flags.listen,
      registry: metrics.registry,
      unready: () => daemonUnready(nodeName, informer, nodes),
      ...(socket ? {} : { extra: artifacts }),
    });
  } catch (err) {
    await socket?.close().catch(() => undefined);
    await client.close().catch(() => undefined);
    throw err;
  }
  for (const inf of [informer, nodes] as const) {
    inf.on({ add: () => queue.add(KEY), update: () => queue.add(KEY), delete: () => queue.add(KEY) });
    void inf.start(shutdown.signal);
  }
  const capacityTimer = setInterval(() => {
    void ledger.free().then(
      (free) => metrics.cacheCapacity.set(free + ledger.reservedBytes),
      () => undefined,
    );
    queue.add(KEY); // capacity may have freed: the plan checks models that did not fit again
  }, 30_000);
  capacityTimer.unref();

  log.info(
    { metrics: `${ops.url}/metrics`, artifacts: socketPath ? `unix://${socketPath}` : `${ops.url}/v1/models`, root },
    'daemon started',
  );
  await Promise.all([informer.waitForSync(shutdown.signal), nodes.waitForSync(shutdown.signal)]).catch(() => undefined);
  queue.add(KEY);
  await runReconciler({
    queue,
    workers: 1,
    signal: shutdown.signal,
    reconcile: () => reconciler.reconcile(),
    observe: (_k, outcome, _ms, err) => {
      if (outcome === 'error')
        log.warn({ err: String((err as Error)?.message ?? err) }, 'reconcile failed; will retry');
    },
  });
  clearInterval(capacityTimer);
  await downloads.stop();
  await status.flush().catch(() => undefined);
  status.stop();
  await ops.close();
  await socket?.close();
  await client.close();
  log.info('daemon stopped');
  return 0;
}
