import type { Logger } from 'pino';
import type { LocalModelNode } from '../../api/types.ts';
import type { Informer } from '../../kube/informer.ts';
import type { Node } from '../../kube/types.ts';
import type { ReconcileResult } from '../../kube/reconciler.ts';
import { takeInventory } from '../../disk/inventory.ts';
import type { DownloadManager } from '../downloads.ts';
import type { DaemonMetrics } from '../metrics.ts';
import type { StatusWriter } from '../status-writer.ts';
import { nodeLeavingReason } from './node-leaving.ts';
import { planNode, type InFlight } from './plan.ts';

/** What one pass leaves for the next: since when the LocalModelNode is missing, and the last pause reason (to log changes once). */
export interface NodeCacheMemory {
  specMissingSince?: number | undefined;
  paused?: string | undefined;
  /** Markers found invalid, with the reason last logged: each is warned about once, not on every pass. */
  invalidMarkers?: Map<string, string>;
}

/** Takes the inventory, warning once per marker that does not parse (that folder counts as not complete). */
export async function inventoryWithWarnings(
  root: string,
  log: Logger,
  seen: Map<string, string>,
): Promise<Awaited<ReturnType<typeof takeInventory>>> {
  const now = new Map<string, string>();
  const inv = await takeInventory(root, (path, reason) => {
    now.set(path, reason);
    if (seen.get(path) !== reason)
      log.warn({ marker: path, reason }, 'completion marker is not valid: that model counts as not complete');
  });
  seen.clear();
  for (const [path, reason] of now) seen.set(path, reason);
  return inv;
}

export interface NodeCacheDeps {
  nodeName: string;
  root: string;
  /** The host directory `root` is mounted from (--host-root), when the daemon was told. */
  hostRoot?: string | undefined;
  informer: Informer<LocalModelNode>;
  nodes: Informer<Node>;
  memory: NodeCacheMemory;
  /** How long files stay on disk while this node's LocalModelNode is absent. */
  orphanGraceMs: number;
  downloads: DownloadManager;
  status: StatusWriter;
  metrics: DaemonMetrics;
  log: Logger;
}

/**
 * One pass over this node: what the spec wants, what the disk holds, what is running → start,
 * cancel or remove, then report. Level-based: it reads the disk each time, so a restart or a
 * hand-deleted folder is simply the next observation.
 */
export async function reconcileNode(d: NodeCacheDeps): Promise<ReconcileResult | void> {
  const lmn = d.informer.get(d.nodeName);
  const mem = d.memory;
  if (lmn) mem.specMissingSince = undefined;
  else if (mem.specMissingSince === undefined) {
    mem.specMissingSince = Date.now();
    d.log.info(
      { localModelNode: d.nodeName, graceSeconds: d.orphanGraceMs / 1000 },
      'LocalModelNode absent: cached files stay until it returns or the grace period ends',
    );
  }
  d.metrics.removalsHeld.set(
    mem.specMissingSince !== undefined && Date.now() < mem.specMissingSince + d.orphanGraceMs ? 1 : 0,
  );
  const paused = nodeLeavingReason(d.nodes.get(d.nodeName));
  d.metrics.paused.set(paused ? 1 : 0);
  if (paused !== mem.paused) {
    d.log.info({ node: d.nodeName, paused: paused ?? null }, paused ? 'new downloads paused' : 'new downloads allowed');
    mem.paused = paused;
  }
  // What is in flight is read before the disk: a download that completes meanwhile is then either
  // still in flight here or already on disk there, never neither (which would start it again).
  const inFlight = new Map(d.downloads.inFlight);
  const failures = new Map(d.downloads.failures);
  mem.invalidMarkers ??= new Map();
  const inv = await inventoryWithWarnings(d.root, d.log, mem.invalidMarkers);
  const reportedKeys = new Map<string, string>();
  for (const [name, detail] of Object.entries(lmn?.status?.models ?? {}))
    if (detail.storageKey) reportedKeys.set(name, detail.storageKey);
  const observe = (running: ReadonlyMap<string, InFlight>) =>
    planNode({
      desired: lmn?.spec?.localModels ?? [],
      disk: {
        complete: new Map(
          [...inv.complete].map(([k, m]) => [
            k,
            { uriSha256: m.uriSha256, bytes: m.bytes, completedAt: m.completedAt },
          ]),
        ),
        partial: inv.partial,
      },
      inFlight: running,
      failures,
      reportedKeys,
      now: Date.now(),
      ...(paused ? { paused } : {}),
      ...(mem.specMissingSince !== undefined ? { specMissingSince: mem.specMissingSince } : {}),
      orphanGraceMs: d.orphanGraceMs,
      ...(d.hostRoot !== undefined ? { hostRoot: d.hostRoot } : {}),
    });
  const plan = observe(inFlight);
  if (lmn) d.downloads.forgetFailuresExcept(new Set((lmn.spec?.localModels ?? []).map((m) => m.storageKey)));
  for (const a of plan.actions) {
    if (a.kind === 'download') d.downloads.start(a.model);
    else if (a.kind === 'cancel') d.downloads.cancel(a.storageKey);
    else d.downloads.remove(a.storageKey);
  }
  d.metrics.cacheUsed.set([...inv.complete.values()].reduce((s, m) => s + m.bytes, 0));
  if (lmn) {
    d.status.observed(lmn.metadata.uid, lmn.status);
    // Actions just taken change what is in flight: report from the state after them.
    // (what ended since the disk was read still counts as in flight: the next pass reports it)
    const after = plan.actions.length ? observe(new Map([...inFlight, ...d.downloads.inFlight])) : plan;
    await d.status.set(after.status);
  }
  if (plan.nextRetryAt !== undefined) return { requeueAfterMs: Math.max(100, plan.nextRetryAt - Date.now()) };
}
