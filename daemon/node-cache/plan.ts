import { posix } from 'node:path';
import type { LocalModelDetail, LocalModelInfo, LocalModelNodeStatus, ModelState } from '../../api/types.ts';
import { progressPart, totalProgress } from '../../api/progress.ts';
import { availableBytes, insufficientCapacityMessage, type CapacityView } from '../../disk/capacity.ts';
import { markerIsFor } from '../../disk/inventory.ts';
import type { Condition } from '../../kube/types.ts';

/** A host path compared as a path: `/models/` and `/models` are one directory. */
function samePath(a: string, b: string): boolean {
  const norm = (p: string): string => posix.normalize(p).replace(/(.)\/+$/, '$1');
  return norm(a) === norm(b);
}

/** Why a model is not cached on this node when its group's path is not where the daemon's root comes from. */
export function storagePathMismatch(m: LocalModelInfo, hostRoot: string): string {
  return (
    `node group ${m.nodeGroup ?? '(unnamed)'} keeps its models in ${m.storagePath} on the host, but this daemon's ` +
    `--root is mounted from ${hostRoot} (--host-root): pods would not find the model where it would be cached. ` +
    `Mount ${m.storagePath} as the daemon's root (and set --host-root to it), or set the group's storage path to ${hostRoot}`
  );
}

/**
 * The condition the daemon writes while some wanted model's group keeps its models in another host directory
 * than the daemon's root: status False, reason StoragePathMismatch. It is absent otherwise (never True), so a
 * node whose groups all match reports no conditions at all.
 */
export const STORAGE_PATH_CONDITION = 'StoragePathMatches';

/** What is on this node's disk, by storage key (from the inventory). */
export interface DiskState {
  /** Complete models: marker present; sha256 of the URI the marker records (never the URI: it may hold secrets). */
  complete: ReadonlyMap<string, { uriSha256: string; bytes: number; completedAt: string }>;
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
}

export type NodeAction =
  /** `from`: where the bytes come from, the model's source (peers come later). */
  | { kind: 'download'; model: LocalModelInfo; from: 'origin' }
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
  | { kind: 'complete'; done: { bytes: number; completedAt: string } }
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
        };
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
        };
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
    actions.push({ kind: 'download', model: m, from: 'origin' });
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

  return {
    actions,
    status: statusOf(o.desired, modelStatus, models, pathCondition(mismatched, o)),
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
