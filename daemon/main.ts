import { mkdir } from 'node:fs/promises';
import { isAbsolute, posix, resolve } from 'node:path';
import { parseArgs } from 'node:util';
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
import { durationFlag, quantityFlag, wholeNumberFlag } from '../ops/flags.ts';
import { startOpsServer } from '../ops/server.ts';
import { artifactRoutes } from './artifact-server.ts';
import { serveOnSocket } from './artifact-socket.ts';
import { SourceCredentialsReader } from './credentials.ts';
import { DownloadManager } from './downloads.ts';
import { DaemonMetrics } from './metrics.ts';
import { inventoryWithWarnings, reconcileNode, type NodeCacheMemory } from './node-cache/reconcile.ts';
import { StatusWriter } from './status-writer.ts';

export const daemonUsage = `usage: modelcache daemon --node-name N --root DIR [flags]

  --kubeconfig FILE        kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)
  --node-name N            this node (default: $NODE_NAME, from the downward API)
  --root DIR               cache directory on the node (the group's storagePath, mounted); models in DIR/models/<key>
  --host-root PATH         the host directory --root is mounted from (the DaemonSet's hostPath): models of
                           groups whose storage path is another one are reported (StoragePathMismatch), not cached
  --listen ADDR            /metrics, /healthz, /readyz, and the artifact server unless --artifact-socket (default 127.0.0.1:8081)
  --artifact-socket PATH   serve cached models on this Unix socket only (consumers mount its directory), not on --listen
  --max-concurrent N       downloads at once, 1-64 (default 2)
  --safety-margin Q        free space always left on the disk, a quantity ≥ 0 (default 1Gi)
  --stall-timeout-seconds  abort and retry a download that received nothing this long, 1-86400 (default 30)
  --allow-file-root DIR    let file:// sources read host paths under DIR (repeatable; default none)
  --namespace NS           where node groups' credential Secrets live (default: $POD_NAMESPACE or modelcache-system)
  --part-size Q            objects of twice this size are fetched as parallel ranged GETs of this size, 1Mi-1Gi (default 16Mi)
  --parallel-parts N       ranged GETs at once per object, 1-64 (default 4; 1 = one stream)
  --parallel-files N       objects at once when a source lists many, 1-64 (default 4)
  --progress-interval-ms   at most one progress write per this interval, 100-3600000 (default 2000)
  --orphan-grace-seconds   while this node's LocalModelNode is absent, keep cached files this long, 0-604800 (default 600)
  --log-level LEVEL        debug, info, warn, error (default info)`;

/** Why the daemon is not ready, or undefined when it is. */
function daemonUnready(nodeName: string, lmns: Informer<LocalModelNode>, nodes: Informer<Node>): string | undefined {
  if (!lmns.hasSynced || !nodes.hasSynced) return 'caches not synced';
  if (!nodes.get(nodeName))
    return `Node ${nodeName} not found: --node-name (or $NODE_NAME) must be this node's name, spec.nodeName from the downward API`;
  return undefined;
}

/** `modelcache daemon`: runs on every cache node until SIGTERM/SIGINT. */
export async function runDaemon(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      kubeconfig: { type: 'string' },
      'node-name': { type: 'string' },
      root: { type: 'string' },
      'host-root': { type: 'string' },
      listen: { type: 'string', default: '127.0.0.1:8081' },
      'artifact-socket': { type: 'string' },
      'max-concurrent': { type: 'string', default: '2' },
      'safety-margin': { type: 'string', default: '1Gi' },
      'stall-timeout-seconds': { type: 'string', default: '30' },
      'progress-interval-ms': { type: 'string', default: '2000' },
      'orphan-grace-seconds': { type: 'string', default: '600' },
      'allow-file-root': { type: 'string', multiple: true, default: [] },
      namespace: { type: 'string' },
      'part-size': { type: 'string', default: '16Mi' },
      'parallel-parts': { type: 'string', default: '4' },
      'parallel-files': { type: 'string', default: '4' },
      'log-level': { type: 'string', default: 'info' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(daemonUsage);
    return 0;
  }
  const nodeName = values['node-name'] ?? process.env.NODE_NAME;
  if (!nodeName)
    throw new Error('--node-name (or $NODE_NAME from the downward API) is required: the daemon serves one node');
  if (!values.root) throw new Error("--root DIR is required: the directory that holds this node's cached models");
  const root = resolve(values.root);
  const hostRootFlag = values['host-root'];
  if (hostRootFlag !== undefined && (!isAbsolute(hostRootFlag) || hostRootFlag.includes('\0')))
    throw new Error(
      `--host-root ${JSON.stringify(hostRootFlag)}: must be an absolute host path, the hostPath the DaemonSet mounts as --root`,
    );
  const hostRoot = hostRootFlag === undefined ? undefined : posix.normalize(hostRootFlag);
  // Every flag is checked before anything starts: a bad value is one clear error, never a half-started daemon.
  const flags = {
    margin: quantityFlag('safety-margin', values['safety-margin'], { min: 0 }),
    maxConcurrent: wholeNumberFlag('max-concurrent', values['max-concurrent'], 1, 64),
    stallTimeoutMs: durationFlag('stall-timeout-seconds', values['stall-timeout-seconds'], 's', {
      min: 1,
      max: 86_400,
    }),
    partSizeBytes: quantityFlag('part-size', values['part-size'], { min: 2 ** 20, max: 2 ** 30 }),
    partParallelism: wholeNumberFlag('parallel-parts', values['parallel-parts'], 1, 64),
    fileConcurrency: wholeNumberFlag('parallel-files', values['parallel-files'], 1, 64),
    progressIntervalMs: durationFlag('progress-interval-ms', values['progress-interval-ms'], 'ms', {
      min: 100,
      max: 3_600_000,
    }),
    orphanGraceMs: durationFlag('orphan-grace-seconds', values['orphan-grace-seconds'], 's', { min: 0, max: 604_800 }),
  };
  await mkdir(root, { recursive: true });
  const log = createLogger('daemon', values['log-level']).child({ node: nodeName });
  const client = KubeClient.fromKubeconfig({ kubeconfig: values.kubeconfig });
  const shutdown = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => shutdown.abort(new Error(sig)));

  // The earlier layout (models at <root>/<key>) moves by rename before anything reads the disk.
  const migrated = await migrateLegacyLayout(root, (marker, reason) =>
    log.warn({ marker, reason }, 'completion marker is not valid: that folder stays where it is'),
  );
  if (migrated.moved.length || migrated.staged.length || migrated.kept.length)
    log.info(migrated, 'moved models of the earlier layout under models/');
  await emptyTrash(root);
  const memory: NodeCacheMemory = { invalidMarkers: new Map() };
  const inv = await inventoryWithWarnings(root, log, memory.invalidMarkers ?? new Map());
  log.info(
    { root, hostRoot, complete: inv.complete.size, partial: inv.partial.size, unknown: inv.unknown },
    'inventory taken',
  );
  const metrics = new DaemonMetrics();
  const ledger = new CapacityLedger(root, flags.margin);
  const queue = new WorkQueue({ backoff: { baseMs: 500, maxMs: 30_000 }, signal: shutdown.signal });
  const KEY = 'node';
  const secrets = new SourceCredentialsReader(
    client,
    values.namespace ?? process.env.POD_NAMESPACE ?? 'modelcache-system',
    process.env,
  );
  const downloads = new DownloadManager({
    root,
    ledger,
    maxConcurrent: flags.maxConcurrent,
    log,
    metrics,
    onChange: () => queue.add(KEY),
    download: {
      stallTimeoutMs: flags.stallTimeoutMs,
      fileRoots: (values['allow-file-root'] ?? []).map((d) => resolve(d)),
      partSizeBytes: flags.partSizeBytes,
      partParallelism: flags.partParallelism,
      fileConcurrency: flags.fileConcurrency,
    },
    credentials: (model, signal) => secrets.for(model, signal),
  });
  const status = new StatusWriter(client, nodeName, flags.progressIntervalMs, log);
  const informer = new Informer<LocalModelNode>(client, LOCAL_MODEL_NODES, {
    fieldSelector: `metadata.name=${nodeName}`,
    log,
  });
  // Its own Node: a node being removed starts no new download, and a wrong --node-name shows in /readyz.
  const nodes = new Informer<Node>(client, NODES, { fieldSelector: `metadata.name=${nodeName}`, log });
  // The servers start before anything that keeps the process alive: a bad --listen or --artifact-socket
  // is an error that ends the command, not a daemon left running without them.
  const socketPath = values['artifact-socket'] ? resolve(values['artifact-socket']) : undefined;
  const artifacts = artifactRoutes(root);
  let socket: Awaited<ReturnType<typeof serveOnSocket>> | undefined;
  let ops: Awaited<ReturnType<typeof startOpsServer>>;
  try {
    socket = socketPath ? await serveOnSocket(socketPath, artifacts) : undefined;
    ops = await startOpsServer({
      addr: values.listen ?? '127.0.0.1:8081',
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
  const orphanGraceMs = flags.orphanGraceMs;
  const capacityTimer = setInterval(() => {
    void ledger.free().then(
      (free) => metrics.cacheCapacity.set(free + ledger.reservedBytes),
      () => undefined,
    );
    queue.add(KEY); // capacity may have freed: failed-for-space models are re-checked when their retry time comes
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
    reconcile: () =>
      reconcileNode({
        nodeName,
        root,
        hostRoot,
        informer,
        nodes,
        memory,
        orphanGraceMs,
        downloads,
        status,
        metrics,
        log,
      }),
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
