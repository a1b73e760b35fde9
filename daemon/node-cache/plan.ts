import { posix } from 'node:path';
import type { LocalModelDetail, LocalModelInfo, LocalModelNodeStatus, ModelState } from '../../api/types.ts';
import { progressPart, totalProgress } from '../../api/progress.ts';
import { availableBytes, insufficientCapacityMessage, type CapacityView } from '../../disk/capacity.ts';
import { markerIsFor } from '../../disk/inventory.ts';
import type { PiecesSummary } from '../../disk/layout.ts';
import type { Condition } from '../../kube/types.ts';
import { STORAGE_PATH_CONDITION } from '../../api/states.ts';
import {
  downloadFrom,
  COPY_QUEUED,
  copySources,
  offersFor,
  SEED_RECHECK_MS,
  SEED_SETTLE_MIN_MS,
  SEED_SETTLE_MS,
  SETTLING,
  WAITING_FOR_SEED,
  waitsForSeed,
  type SeedScope,
} from './peer-rules.ts';

/** A host path compared as a path: `/models/` and `/models` are one directory. */
function samePath(a: string, b: string): boolean {
  const norm = (p: string): string => posix.normalize(p).replace(/(.)\/+$/, '$1');
  return norm(a) === norm(b);
}

/** Why a model is not cached on this node when its group's path is not where the daemon's root comes from. */
function storagePathMismatch(m: LocalModelInfo, hostRoot: string): string {
  return (
    `node group ${m.nodeGroup ?? '(unnamed)'} keeps its models in ${m.storagePath} on the host, but this daemon's ` +
    `--root is mounted from ${hostRoot} (--host-root): pods would not find the model where it would be cached. ` +
    `Mount ${m.storagePath} as the daemon's root (and set --host-root to it), or set the group's storage path to ${hostRoot}`
  );
}

/** What is on this node's disk, by storage key (from the inventory). */
export interface DiskState {
  /** Complete models: marker present; sha256 of the URI the marker records (never the URI: it may hold secrets). */
  complete: ReadonlyMap<
    string,
    { uriSha256: string; bytes: number; completedAt: string; pieces?: PiecesSummary; bytesFromPeers?: number }
  >;
  /** Keys with partial data (staging) that a download can resume. */
  partial: ReadonlySet<string>;
  /**
   * Bytes already in staging, measured for the partial keys a download may start for (startableKeys):
   * a resume needs only the rest. A partial key not measured counts as needing its whole size.
   */
  partialBytes?: ReadonlyMap<string, number>;
  /** Folders without a valid marker (KServe's agent downloaded them): adopted in place, they need no space. */
  unmarked?: ReadonlySet<string>;
}

/** A download running now. */
export interface InFlight {
  modelName: string;
  /** Waiting for a download slot (reported Pending, not Downloading). */
  queued: boolean;
  uri: string;
  bytesDone: number;
  bytesTotal?: number;
  /** When it really started (RFC 3339); empty while queued. */
  startedAt: string;
  /** Bytes of bytesDone that came from peers. */
  bytesFromPeers?: number;
  /** Copying from peers: the manifest fetched (and served while it runs); absent for a download from the origin. */
  pieces?: PiecesSummary;
  /** Queued to copy from peers (what the plan chose; once it runs, `pieces` says so). */
  copyQueued?: true;
}

/** A node that holds a model (or copies it from peers) and serves its pieces, as its LocalModelNode status says. */
export interface PeerOffer {
  node: string;
  /** host:port of its peer server. */
  address: string;
  pieces: PiecesSummary;
  /** In this node's zone (topology.kubernetes.io/zone): asked first, and its bytes count as same-zone. */
  sameZone: boolean;
  /** It is still copying the model (from peers, or from the source as a seed): it serves the pieces verified so far. */
  inProgress?: true;
  /** Of a copy in progress: the bytes it has so far, as last reported (a seed that makes progress is not stalled). */
  bytesDone?: number;
}

/** The last failure of a model's download, and when it may be tried again. */
export interface Failure {
  uri: string;
  reason: string;
  message: string;
  /** When it may be tried again; undefined: not until the spec changes (a new URI is a new storage key). */
  retryAt: number | undefined;
  startedAt?: string | undefined;
}

export interface NodeObservation {
  desired: readonly LocalModelInfo[];
  disk: DiskState;
  inFlight: ReadonlyMap<string, InFlight>;
  failures: ReadonlyMap<string, Failure>;
  /** storageKey of models reported before but no longer desired (from the last status), by modelName. */
  reportedKeys: ReadonlyMap<string, string>;
  /** Conditions of the last status: an unchanged condition keeps its lastTransitionTime. */
  reportedConditions?: readonly Condition[];
  now: number;
  /** Why no new download may start here now (the node is being removed), if so. */
  paused?: string;
  /**
   * When this node's LocalModelNode was first seen absent (ms), while it is. Absent is not "empty":
   * the controller empties the spec to ask for removal, so an absent object (deleted by hand, or
   * not created yet) changes nothing on disk until `orphanGraceMs` has passed.
   */
  specMissingSince?: number;
  orphanGraceMs?: number;
  /**
   * The host directory this daemon's root is mounted from (--host-root), when known. A model whose
   * group keeps its models in another host directory is not cached here: no pod would look there.
   */
  hostRoot?: string;
  /**
   * Free and reserved bytes of the cache's filesystem (the CapacityLedger's view). A download that does
   * not fit is not started: it is reported InsufficientCapacity with the numbers. Absent: not checked here
   * (the ledger's reservation still refuses it when it starts).
   */
  capacity?: CapacityView;
  /** When each model (by storage key) was last used, in ms: last served by the artifact server, or last wanted. */
  lastUse?: ReadonlyMap<string, number>;
  /** Other nodes offering each model (by storage key), peer-to-peer on; absent or empty: only the origin. */
  peers?: ReadonlyMap<string, readonly PeerOffer[]>;
  /** Where this daemon serves pieces (host:port), published in the status, peer-to-peer on. */
  peerAddress?: string;
  /** Bytes of pieces this daemon has sent to peers since it started (published with the address). */
  peerBytesServed?: number;
  /** This node's name (peer-to-peer on): seeds are chosen among it and `seedCandidates`. */
  self?: string;
  /**
   * Peer-to-peer on: by storage key, the other nodes of this node's zone that want the model, do not hold it yet,
   * serve peers and are fit to fetch it (Ready, not failed, not stalled). One node per (model, zone), by rendezvous
   * hash over these and this node, fetches a model nobody offers from its source; the others wait to copy it.
   */
  seedCandidates?: ReadonlyMap<string, readonly string[]>;
  /** 'cluster' (--peer-seeds): one seed for all zones, and copies in progress in other zones are offers too. */
  seedScope?: SeedScope;
  /**
   * Of the candidates, those already fetching the model from its source: a seed that started is kept even when
   * the hash would now pick another node (membership changes while specs and statuses arrive).
   */
  seedsFetching?: ReadonlyMap<string, readonly string[]>;
  /** Peer-to-peer on: keys wanted here too recently to choose their seed (other nodes have not reported yet). */
  seedSettling?: ReadonlySet<string>;
  /** Peer-to-peer on: keys a peer holds complete but cannot share (no manifest: the model holds links). */
  unshareable?: ReadonlySet<string>;
  /** Peer-to-peer on: by storage key, copies from peers that failed and were handed back to the plan. */
  handedBack?: ReadonlyMap<string, HandBack>;
}

/** A copy from peers that failed for want of peers, as the plan reads it. */
export interface HandBack {
  /**
   * The peers it failed with, and their offer then (offerSeen). An offer that stays the same (the status of a dead
   * node does) is not copied from again; such a seed is waited for until it stalls out of the candidates, then the
   * next seed takes over.
   */
  avoided: ReadonlyMap<string, string>;
  /**
   * When it was handed back last (ms). For SEED_SETTLE_MS after that this node does not choose itself as the seed:
   * the others whose copies failed too decide meanwhile, and it sees who started.
   */
  at: number;
}

export type NodeAction =
  /** `from`: where the bytes come from: the model's source, or peers holding one manifest (origin when they fail). */
  | { kind: 'download'; model: LocalModelInfo; from: 'origin' }
  | { kind: 'download'; model: LocalModelInfo; from: 'peers'; pieces: PiecesSummary; peers: readonly PeerOffer[] }
  /** A download from peers that runs: the peers that offer its manifest now (some may have joined since). */
  | { kind: 'offers'; storageKey: string; peers: readonly PeerOffer[] }
  /** Peer-to-peer on: hash a complete copy that has no piece manifest yet (adopted, or cached before), to offer it. */
  | { kind: 'describe'; storageKey: string }
  | { kind: 'cancel'; storageKey: string }
  | { kind: 'remove'; storageKey: string };

/** Everything one pass over this node's cache does, and what holds after it. */
export interface NodeCachePlan {
  actions: NodeAction[];
  /** The status that holds once the actions are taken (a download started is Pending until its slot runs). */
  status: LocalModelNodeStatus;
  /**
   * The last use of every model this node still holds or wants after the pass: a wanted one is used
   * now, one only on disk keeps its time (eviction reads it), one gone from disk is forgotten.
   */
  lastUse: ReadonlyMap<string, number>;
  /** Earliest time (ms) a waiting failure becomes retryable, to requeue then. */
  nextRetryAt?: number;
}

/** Where one desired model stands, before capacity and pauses are considered. */
type Standing =
  | { kind: 'mismatch'; hostRoot: string }
  | { kind: 'complete'; done: { bytes: number; completedAt: string; pieces?: PiecesSummary; bytesFromPeers?: number } }
  | { kind: 'replace' }
  | { kind: 'running'; running: InFlight }
  | { kind: 'failed'; failed: Failure }
  | { kind: 'startable' };

/** The one place that says where a desired model stands; planNode and startableKeys both read it. */
function standing(m: LocalModelInfo, o: NodeObservation): Standing {
  const key = m.storageKey;
  if (o.hostRoot !== undefined && !samePath(m.storagePath, o.hostRoot))
    return { kind: 'mismatch', hostRoot: o.hostRoot };
  const done = o.disk.complete.get(key);
  // Same folder, other URI (a hash collision or a changed spec): replace it.
  if (done) return markerIsFor(done, m.sourceModelUri) ? { kind: 'complete', done } : { kind: 'replace' };
  const running = o.inFlight.get(key);
  if (running) return { kind: 'running', running };
  const failed = o.failures.get(key);
  if (failed && failed.uri === m.sourceModelUri && (failed.retryAt === undefined || failed.retryAt > o.now))
    return { kind: 'failed', failed };
  return { kind: 'startable' };
}

/**
 * Storage keys of the desired models a download may start for in this observation. The shell reads
 * capacity and measures partial bytes only for these (none in the steady state). Pure.
 */
export function startableKeys(o: NodeObservation): string[] {
  return o.desired.filter((m) => standing(m, o).kind === 'startable').map((m) => m.storageKey);
}

/**
 * The node's single decision point: desired models (spec) against what is on disk, in flight, failed,
 * and the free space → every action, and the status after them. Pure. A model is Downloaded only when
 * its completion marker exists for the same URI; files of models no longer desired are removed,
 * and their status entries stay until the files are gone (the controller waits on that).
 */
export function planNode(o: NodeObservation): NodeCachePlan {
  const actions: NodeAction[] = [];
  const modelStatus: Record<string, ModelState> = {};
  const models: Record<string, LocalModelDetail> = {};
  const wantedKeys = new Set(o.desired.map((m) => m.storageKey));
  /** Keys wanted and cached on this node (not those of groups whose models live elsewhere). */
  const wantedHere = new Set<string>();
  let nextRetryAt: number | undefined;
  /** Bytes the downloads this plan starts will take, on top of what the ledger has reserved. */
  let allotted = 0;
  /** One message per group whose path is not the daemon's root (several models may share a group). */
  const mismatched = new Map<string, string>();

  for (const m of o.desired) {
    const key = m.storageKey;
    const s = standing(m, o);
    if (s.kind !== 'mismatch') wantedHere.add(key);
    switch (s.kind) {
      case 'mismatch':
        modelStatus[m.modelName] = 'ModelDownloadError';
        models[m.modelName] = {
          storageKey: key,
          reason: 'StoragePathMismatch',
          message: storagePathMismatch(m, s.hostRoot),
        };
        mismatched.set(m.nodeGroup ?? '', storagePathMismatch(m, s.hostRoot));
        continue;
      case 'complete':
        modelStatus[m.modelName] = 'ModelDownloaded';
        models[m.modelName] = {
          storageKey: key,
          bytesDone: s.done.bytes,
          bytesTotal: s.done.bytes,
          completedAt: s.done.completedAt,
          ...(s.done.bytesFromPeers ? { bytesFromPeers: s.done.bytesFromPeers } : {}),
          ...(s.done.pieces ? { pieces: s.done.pieces } : {}),
        };
        if (o.peerAddress && !s.done.pieces) actions.push({ kind: 'describe', storageKey: key });
        continue;
      case 'replace':
        actions.push({ kind: 'remove', storageKey: key });
        modelStatus[m.modelName] = 'ModelDownloadPending';
        models[m.modelName] = { storageKey: key };
        continue;
      case 'running':
        modelStatus[m.modelName] = s.running.queued ? 'ModelDownloadPending' : 'ModelDownloading';
        models[m.modelName] = {
          storageKey: key,
          bytesDone: s.running.bytesDone,
          ...(s.running.bytesTotal !== undefined ? { bytesTotal: s.running.bytesTotal } : {}),
          ...(s.running.startedAt ? { startedAt: s.running.startedAt } : {}),
          ...(s.running.bytesFromPeers ? { bytesFromPeers: s.running.bytesFromPeers } : {}),
          // A copy serves its verified pieces meanwhile: from peers, or from the origin as a seed (a live manifest).
          ...(s.running.pieces && !s.running.queued ? { pieces: s.running.pieces } : {}),
          // Other nodes tell it from a seed queued to fetch from the source.
          ...(s.running.queued && s.running.copyQueued ? { reason: COPY_QUEUED } : {}),
        };
        if (s.running.pieces && s.running.pieces.live !== 'origin') {
          const peers = copySources(s.running.pieces, offersFor(key, o));
          if (peers.length > 0) actions.push({ kind: 'offers', storageKey: key, peers });
        }
        continue;
      case 'failed':
        modelStatus[m.modelName] = 'ModelDownloadError';
        models[m.modelName] = {
          storageKey: key,
          reason: s.failed.reason,
          message: s.failed.message,
          ...(s.failed.startedAt ? { startedAt: s.failed.startedAt } : {}),
        };
        if (s.failed.retryAt !== undefined)
          nextRetryAt = Math.min(nextRetryAt ?? Number.POSITIVE_INFINITY, s.failed.retryAt);
        continue;
      case 'startable':
        break;
    }
    if (o.paused) {
      modelStatus[m.modelName] = 'ModelDownloadPending';
      models[m.modelName] = {
        storageKey: key,
        bytesDone: 0,
        bytesTotal: m.modelSize,
        message: `not started: ${o.paused}`,
      };
      continue;
    }
    const seed = waitsForSeed(m, o);
    if (seed !== undefined) {
      modelStatus[m.modelName] = 'ModelDownloadPending';
      models[m.modelName] = {
        storageKey: key,
        bytesDone: 0,
        bytesTotal: m.modelSize,
        reason: WAITING_FOR_SEED,
        message:
          seed === SETTLING
            ? 'looking for peers that fetch it too, to choose the one that fetches it from its source'
            : `waiting for ${seed}, this ${o.seedScope === 'cluster' ? "cluster's" : "zone's"} seed, to fetch it from ` +
              'its source; then it is copied from peers',
      };
      const again = o.now + (seed === SETTLING ? SEED_SETTLE_MIN_MS : SEED_RECHECK_MS);
      nextRetryAt = Math.min(nextRetryAt ?? Number.POSITIVE_INFINITY, again);
      continue;
    }
    const need = o.disk.unmarked?.has(key) ? 0 : Math.max(0, m.modelSize - (o.disk.partialBytes?.get(key) ?? 0));
    if (o.capacity) {
      const view = { ...o.capacity, reservedBytes: o.capacity.reservedBytes + allotted };
      if (need > availableBytes(view)) {
        modelStatus[m.modelName] = 'ModelDownloadError';
        models[m.modelName] = {
          storageKey: key,
          reason: 'InsufficientCapacity',
          message: insufficientCapacityMessage(need, view),
        };
        continue;
      }
      allotted += need;
    }
    // Started now: Pending (queued for a download slot) until the slot runs it.
    modelStatus[m.modelName] = 'ModelDownloadPending';
    models[m.modelName] = { storageKey: key, bytesDone: 0, bytesTotal: m.modelSize };
    actions.push(downloadFrom(m, offersFor(key, o)));
  }

  const onDisk = new Set([...o.disk.complete.keys(), ...o.disk.partial]);
  const unwanted = [...o.inFlight.keys(), ...onDisk].filter((key) => !wantedKeys.has(key));
  const holdUntil = o.specMissingSince !== undefined ? o.specMissingSince + (o.orphanGraceMs ?? 0) : undefined;
  if (holdUntil !== undefined && holdUntil > o.now) {
    if (unwanted.length) nextRetryAt = Math.min(nextRetryAt ?? Number.POSITIVE_INFINITY, holdUntil);
  } else {
    for (const key of o.inFlight.keys()) if (!wantedKeys.has(key)) actions.push({ kind: 'cancel', storageKey: key });
    for (const key of onDisk)
      if (!wantedKeys.has(key) && !o.inFlight.has(key)) actions.push({ kind: 'remove', storageKey: key });
  }

  // Models no longer desired keep their entry while their files are still on disk.
  for (const [name, key] of o.reportedKeys) {
    if (modelStatus[name] !== undefined || wantedKeys.has(key)) continue;
    if (onDisk.has(key) || o.inFlight.has(key)) {
      modelStatus[name] = o.disk.complete.has(key) ? 'ModelDownloaded' : 'ModelDownloading';
      models[name] = { storageKey: key, message: 'removing: no longer wanted on this node' };
    }
  }

  const lastUse = new Map<string, number>();
  for (const key of [...o.inFlight.keys(), ...onDisk]) {
    const at = o.lastUse?.get(key);
    if (at !== undefined) lastUse.set(key, at);
  }
  for (const key of wantedHere) lastUse.set(key, Math.max(o.now, o.lastUse?.get(key) ?? o.now));

  const status = statusOf(o.desired, modelStatus, models, pathCondition(mismatched, o));
  return {
    actions,
    status: o.peerAddress
      ? {
          ...status,
          peer: { address: o.peerAddress, ...(o.peerBytesServed ? { bytesServed: o.peerBytesServed } : {}) },
        }
      : status,
    lastUse,
    ...(nextRetryAt !== undefined ? { nextRetryAt } : {}),
  };
}

/** StoragePathMatches False naming every mismatched group, its path, the root's and the fix; none when all match. */
function pathCondition(mismatched: ReadonlyMap<string, string>, o: NodeObservation): Condition | undefined {
  if (mismatched.size === 0) return undefined;
  const prev = o.reportedConditions?.find((c) => c.type === STORAGE_PATH_CONDITION);
  const messages = [...mismatched].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, m]) => m);
  return {
    type: STORAGE_PATH_CONDITION,
    status: 'False',
    reason: 'StoragePathMismatch',
    message: messages.join('; '),
    lastTransitionTime: prev?.status === 'False' ? prev.lastTransitionTime : new Date(o.now).toISOString(),
  };
}

/** The status from each model's state and detail: the summary counts and the total progress of the desired ones. */
function statusOf(
  desired: readonly LocalModelInfo[],
  modelStatus: Record<string, ModelState>,
  models: Record<string, LocalModelDetail>,
  pathMatches: Condition | undefined,
): LocalModelNodeStatus {
  const states = Object.values(modelStatus);
  const progress = totalProgress(
    desired.map((m) => {
      const state = modelStatus[m.modelName];
      return progressPart(
        state === 'ModelDownloaded' ? 'downloaded' : state === 'ModelDownloading' ? 'downloading' : 'other',
        models[m.modelName],
        m.modelSize,
      );
    }),
  );
  return {
    modelStatus,
    models,
    summary: {
      models: states.length,
      downloaded: states.filter((s) => s === 'ModelDownloaded').length,
      failed: states.filter((s) => s === 'ModelDownloadError').length,
      ...(progress !== undefined ? { progress } : {}),
    },
    ...(pathMatches ? { conditions: [pathMatches] } : {}),
  };
}
