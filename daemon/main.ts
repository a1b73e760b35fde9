import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
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
import { parseFlags } from '../ops/flag-spec.ts';
import { daemonFlags, daemonUsage } from './flags.ts';
import { startOpsServer } from '../ops/server.ts';
import { artifactRoutes } from './artifact-server.ts';
import { serveOnSocket } from './artifact-socket.ts';
import { SourceCredentialsReader } from './credentials.ts';
import { DownloadManager } from './downloads.ts';
import { DaemonMetrics } from './metrics.ts';
import { NodeCacheReconciler } from './node-cache/reconcile.ts';
import { CopiesInProgress } from './peers/copies.ts';
import { peerOffers } from './peers/offers.ts';
import { startPeerMode, type PeerMode } from './peers/peer-mode.ts';
import { peerTransfer } from './peers/transfer.ts';
import { StatusWriter } from './status-writer.ts';

/**
 * Whether a LocalModelNode update makes a new offer for peers (a model Downloaded that was not before, or a manifest
 * published that was not: a copy that started, and serves its pieces meanwhile), or reports a model for the first
 * time (nodes settling on a seed for it may decide now): worth a pass at once.
 */
function newOffer(old: LocalModelNode, now: LocalModelNode): boolean {
  const before = old.status?.modelStatus ?? {};
  const had = old.status?.models ?? {};
  return Object.entries(now.status?.modelStatus ?? {}).some(
    ([name, state]) =>
      (state === 'ModelDownloaded' && before[name] !== 'ModelDownloaded') ||
      (now.status?.models?.[name]?.pieces !== undefined && had[name]?.pieces === undefined) ||
      // First reported: a node settling who seeds it may decide now (see SEED_SETTLE_MIN_MS).
      (had[name] === undefined && now.status?.models?.[name] !== undefined),
  );
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
  // Peer-to-peer: the server starts with the other servers below; what the downloads need of it is made now.
  const peerListen = flags['peer-listen'];
  let peers: PeerMode | undefined;
  // Copies fetched from peers while they run: the fetch records its verified pieces, the peer server serves them.
  const copies = new CopiesInProgress();
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
    ...(peerListen
      ? {
          peers: peerTransfer({
            node: nodeName,
            tokenFile: flags['peer-token-file'],
            stallTimeoutMs: flags['stall-timeout-seconds'],
            metrics,
            log,
            copies,
          }),
          // The informer below: read only once a copy runs, long after it is made.
          offersNow: (key: string) => peerOffers(informer.list(), nodeName, (n) => nodes.get(n)).get(key) ?? [],
        }
      : {}),
  });
  const status = new StatusWriter(client, nodeName, flags['progress-interval-ms'], log);
  // Peer-to-peer on: every node's LocalModelNode (their statuses say who offers what); else only this node's.
  const informer = new Informer<LocalModelNode>(client, LOCAL_MODEL_NODES, {
    ...(peerListen ? {} : { fieldSelector: `metadata.name=${nodeName}` }),
    log,
  });
  // Its own Node: a node being removed starts no new download, and a wrong --node-name shows in /readyz.
  // Peer-to-peer on: every Node (a seed that is not Ready is replaced; zones come from their labels).
  const nodes = new Informer<Node>(client, NODES, {
    ...(peerListen ? {} : { fieldSelector: `metadata.name=${nodeName}` }),
    log,
  });
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
    peerAddress: () => peers?.address,
    peerBytesServed: () => peers?.bytesServed() ?? 0,
    seedStallMs: 2 * flags['stall-timeout-seconds'],
    seedScope: flags['peer-seeds'] === 'cluster' ? 'cluster' : 'zone',
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
    peers = peerListen
      ? await startPeerMode({
          listen: peerListen,
          advertise: flags['peer-advertise'],
          podIp: process.env.POD_IP,
          root,
          client,
          allowed: flags['peer-identity'].length
            ? flags['peer-identity']
            : [`system:serviceaccount:${flags.namespace}:modelcache-daemon`],
          maxUploads: flags['peer-max-uploads'],
          copies,
          metrics,
          log,
          onServed: () => queue.addAfter(KEY, 2000), // the status says how much was served, every 2 s at most
        })
      : undefined;
    socket = socketPath ? await serveOnSocket(socketPath, artifacts) : undefined;
    ops = await startOpsServer({
      addr: flags.listen,
      registry: metrics.registry,
      unready: () => daemonUnready(nodeName, informer, nodes),
      ...(socket ? {} : { extra: artifacts }),
    });
  } catch (err) {
    await peers?.close().catch(() => undefined);
    await socket?.close().catch(() => undefined);
    await client.close().catch(() => undefined);
    throw err;
  }
  // Another node's LocalModelNode or Node changes only who offers or seeds what: at most one pass per 2 s for those,
  // except a new offer (a copy that just completed or started from peers: nodes waiting for it copy from it at once).
  const wake = (o: { metadata: { name?: string } }): void =>
    o.metadata.name === nodeName ? queue.add(KEY) : queue.addAfter(KEY, 2000);
  informer.on({
    add: wake,
    update: (old, o) => (newOffer(old, o) ? queue.add(KEY) : wake(o)),
    delete: wake,
  });
  nodes.on({ add: wake, update: (_old, o) => wake(o), delete: wake });
  for (const inf of [informer, nodes] as const) void inf.start(shutdown.signal);
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
  await peers?.close();
  await socket?.close();
  await client.close();
  log.info('daemon stopped');
  return 0;
}
