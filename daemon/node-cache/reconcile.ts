import type { Logger } from 'pino';
import type { LocalModelDetail, LocalModelNode } from '../../api/types.ts';
import type { Informer } from '../../kube/informer.ts';
import type { Node } from '../../kube/types.ts';
import type { ReconcileResult } from '../../kube/reconciler.ts';
import { bytesWritten, type CapacityLedger } from '../../disk/capacity.ts';
import { takeInventory, type Inventory } from '../../disk/inventory.ts';
import { modelPaths } from '../../disk/layout.ts';
import type { DownloadManager } from '../downloads.ts';
import type { DaemonMetrics } from '../metrics.ts';
import type { StatusWriter } from '../status-writer.ts';
import { peerOffers } from '../peers/offers.ts';
import { SeedCandidates } from '../peers/seeds.ts';
import { nodeLeavingReason } from './node-leaving.ts';
import type { SeedScope } from './peer-rules.ts';
import { planNode, startableKeys, type NodeObservation } from './plan.ts';

/** Takes the inventory, warning once per marker that does not parse (that folder counts as not complete). */
export async function inventoryWithWarnings(root: string, log: Logger, seen: Map<string, string>): Promise<Inventory> {
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
  /** LocalModelNodes: this node's only, or (peer-to-peer on) every node's, whose statuses say who offers what. */
  informer: Informer<LocalModelNode>;
  nodes: Informer<Node>;
  /** Peer-to-peer on: where this daemon serves pieces (host:port), published in its status; once it listens. */
  peerAddress?: () => string | undefined;
  /** Peer-to-peer on: bytes of pieces served to peers so far. */
  peerBytesServed?: () => number;
  /** How long a seed's copy may make no progress before the next node takes over (peer-to-peer on). */
  seedStallMs?: number;
  /** Seeds per zone (default), or one for the cluster (--peer-seeds). */
  seedScope?: SeedScope;
  /** How long files stay on disk while this node's LocalModelNode is absent. */
  orphanGraceMs: number;
  downloads: DownloadManager;
  /** Free and reserved bytes: the plan decides with them whether a download fits. */
  ledger: CapacityLedger;
  status: StatusWriter;
  metrics: DaemonMetrics;
  log: Logger;
}

/**
 * The reconcile of this node's cache and the memory it keeps between passes. One pass: what the
 * spec wants, what the disk holds, what runs, the free space → one plan → start, cancel or remove,
 * then report the plan's status. Level-based: it reads the disk each time, so a restart or a
 * hand-deleted folder is simply the next observation.
 */
export class NodeCacheReconciler {
  readonly #d: NodeCacheDeps;
  /** When this node's LocalModelNode was first seen absent (ms), while it is. */
  #specMissingSince: number | undefined;
  /** The last pause reason, to log its changes once. */
  #paused: string | undefined;
  /** Markers found invalid, with the reason last logged: each is warned about once, not on every pass. */
  readonly #invalidMarkers = new Map<string, string>();
  /** Models the plan found no room for, by storage key: logged once when that starts. */
  readonly #noRoom = new Set<string>();
  /** When each model was last used (ms), by storage key: served by the artifact server, or wanted. */
  readonly #lastUse = new Map<string, number>();
  /** Peer-to-peer on: which nodes may seed what, and the progress memory that tells a stalled seed. */
  readonly #seeds: SeedCandidates | undefined;

  constructor(d: NodeCacheDeps) {
    this.#d = d;
    this.#seeds = d.peerAddress ? new SeedCandidates(d.seedStallMs ?? 60_000, d.seedScope ?? 'zone') : undefined;
  }

  /** What is on disk now, warning once per marker that does not parse. */
  inventory(): Promise<Inventory> {
    return inventoryWithWarnings(this.#d.root, this.#d.log, this.#invalidMarkers);
  }

  /** Records that a complete model was used now (the artifact server served it). */
  used(storageKey: string): void {
    this.#lastUse.set(storageKey, Date.now());
  }

  /** One pass over this node. */
  async reconcile(): Promise<ReconcileResult | void> {
    const d = this.#d;
    const lmn = d.informer.get(d.nodeName);
    if (lmn) this.#specMissingSince = undefined;
    else if (this.#specMissingSince === undefined) {
      this.#specMissingSince = Date.now();
      d.log.info(
        { localModelNode: d.nodeName, graceSeconds: d.orphanGraceMs / 1000 },
        'LocalModelNode absent: cached files stay until it returns or the grace period ends',
      );
    }
    const specMissingSince = this.#specMissingSince;
    d.metrics.removalsHeld.set(
      specMissingSince !== undefined && Date.now() < specMissingSince + d.orphanGraceMs ? 1 : 0,
    );
    const paused = nodeLeavingReason(d.nodes.get(d.nodeName));
    d.metrics.paused.set(paused ? 1 : 0);
    if (paused !== this.#paused) {
      d.log.info(
        { node: d.nodeName, paused: paused ?? null },
        paused ? 'new downloads paused' : 'new downloads allowed',
      );
      this.#paused = paused;
    }
    // What is in flight is read before the disk: a download that completes meanwhile is then either
    // still in flight here or already on disk there, never neither (which would start it again).
    const { inFlight, failures, handedBack } = d.downloads.snapshot();
    const inv = await this.inventory();
    const reportedKeys = new Map<string, string>();
    for (const [name, detail] of Object.entries(lmn?.status?.models ?? {}))
      if (detail.storageKey) reportedKeys.set(name, detail.storageKey);
    const desired = lmn?.spec?.localModels ?? [];
    // One clock for the pass: the seed rules' settle time and the plan's requeue for it must agree, or the pass
    // meant to end the settling comes a moment early and waits once more.
    const now = Date.now();
    const o: NodeObservation = {
      desired,
      disk: { complete: inv.complete, partial: inv.partial, unmarked: new Set(inv.unknown) },
      inFlight,
      failures,
      reportedKeys,
      ...(lmn?.status?.conditions ? { reportedConditions: lmn.status.conditions } : {}),
      now,
      ...(paused ? { paused } : {}),
      ...(specMissingSince !== undefined ? { specMissingSince } : {}),
      orphanGraceMs: d.orphanGraceMs,
      ...(d.hostRoot !== undefined ? { hostRoot: d.hostRoot } : {}),
      lastUse: new Map(this.#lastUse),
      ...this.#peers(desired, now),
      ...(handedBack.size > 0 ? { handedBack } : {}),
    };
    // Free space and partial bytes are read only when a download may start: not on the passes in between.
    const startable = paused ? [] : startableKeys(o);
    if (startable.length) {
      // Unreadable free space leaves the decision to the ledger's reservation, which reports it on the model.
      const capacity = await d.ledger.view().catch(() => undefined);
      if (capacity) o.capacity = capacity;
      const partialBytes = new Map<string, number>();
      for (const key of startable)
        if (inv.partial.has(key)) partialBytes.set(key, await bytesWritten(modelPaths(d.root, key).staging));
      o.disk = { ...o.disk, partialBytes };
    }
    const plan = planNode(o);

    if (lmn) d.downloads.forgetFailuresExcept(new Set(desired.map((m) => m.storageKey)));
    for (const a of plan.actions) {
      if (a.kind === 'download') {
        if (a.from === 'origin' && o.seedCandidates)
          d.log.info(
            {
              model: a.model.modelName,
              storageKey: a.model.storageKey,
              passedOver: o.seedCandidates.get(a.model.storageKey) ?? [],
            },
            'this node seeds the model: it fetches it from its source, its peers copy it from here',
          );
        d.downloads.start(a.model, a.from === 'peers' ? { pieces: a.pieces, peers: a.peers } : undefined);
      } else if (a.kind === 'offers') d.downloads.offer(a.storageKey, a.peers);
      else if (a.kind === 'describe') d.downloads.describe(a.storageKey);
      else if (a.kind === 'cancel') d.downloads.cancel(a.storageKey);
      else d.downloads.remove(a.storageKey);
    }
    this.#keepLastUse(plan.lastUse, o.now);
    this.#logNoRoom(o, plan.status.models ?? {});
    d.metrics.cacheUsed.set([...inv.complete.values()].reduce((s, m) => s + m.bytes, 0));
    if (lmn) {
      d.status.observed(lmn.metadata.uid, lmn.status);
      await d.status.set(plan.status);
    }
    if (plan.nextRetryAt !== undefined) return { requeueAfterMs: Math.max(100, plan.nextRetryAt - Date.now()) };
  }

  /** Peer-to-peer on: this node's address and what the other nodes offer; nothing until the peer server listens. */
  #peers(
    desired: readonly { storageKey: string }[],
    now: number,
  ): Pick<
    NodeObservation,
    | 'peerAddress'
    | 'peerBytesServed'
    | 'peers'
    | 'self'
    | 'seedCandidates'
    | 'seedScope'
    | 'seedsFetching'
    | 'seedSettling'
    | 'unshareable'
  > {
    const d = this.#d;
    const address = d.peerAddress?.();
    if (!address || !this.#seeds) return {};
    const lmns = d.informer.list();
    const wanted = new Set(desired.map((m) => m.storageKey));
    const seeds = this.#seeds.observe(lmns, (n) => d.nodes.get(n), d.nodeName, wanted, now);
    return {
      peerAddress: address,
      peerBytesServed: d.peerBytesServed?.() ?? 0,
      self: d.nodeName,
      peers: peerOffers(lmns, d.nodeName, (n) => d.nodes.get(n)),
      seedCandidates: seeds.candidates,
      ...(d.seedScope === 'cluster' ? { seedScope: 'cluster' as const } : {}),
      seedsFetching: seeds.fetching,
      seedSettling: seeds.settling,
      unshareable: seeds.unshareable,
    };
  }

  /** Takes the plan's last uses, keeping a use the artifact server recorded while the pass ran. */
  #keepLastUse(planned: ReadonlyMap<string, number>, now: number): void {
    for (const [key, at] of this.#lastUse) if (!planned.has(key) && at <= now) this.#lastUse.delete(key);
    for (const [key, at] of planned) this.#lastUse.set(key, Math.max(at, this.#lastUse.get(key) ?? at));
  }

  /** Logs once per model when the plan starts refusing it for space (its status says so on every pass). */
  #logNoRoom(o: NodeObservation, models: Record<string, LocalModelDetail>): void {
    const now = new Set<string>();
    for (const [name, detail] of Object.entries(models)) {
      const key = detail.storageKey;
      if (detail.reason !== 'InsufficientCapacity' || !key || o.failures.has(key)) continue;
      now.add(key);
      if (!this.#noRoom.has(key))
        this.#d.log.warn({ model: name, storageKey: key, message: detail.message }, 'download not started: no room');
    }
    this.#noRoom.clear();
    for (const key of now) this.#noRoom.add(key);
  }
}
