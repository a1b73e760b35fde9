import { posix } from 'node:path';
import type { LocalModelDetail, LocalModelInfo, LocalModelNodeStatus, ModelState } from '../../api/types.ts';
import { progressPart, totalProgress } from '../../api/progress.ts';
import { markerIsFor } from '../../disk/inventory.ts';

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

/** What is on this node's disk, by storage key (from the inventory). */
export interface DiskState {
  /** Complete models: marker present; sha256 of the URI the marker records (never the URI: it may hold secrets). */
  complete: ReadonlyMap<string, { uriSha256: string; bytes: number; completedAt: string }>;
  /** Keys with partial data (staging) that a download can resume. */
  partial: ReadonlySet<string>;
}

/** A download running now. */
export interface InFlight {
  modelName: string;
  /** Waiting for a download slot (reported Pending, not Downloading). */
  queued: boolean;
  uri: string;
  bytesDone: number;
  bytesTotal?: number;
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
}

export type NodeAction =
  | { kind: 'download'; model: LocalModelInfo }
  | { kind: 'cancel'; storageKey: string }
  | { kind: 'remove'; storageKey: string };

export interface NodePlan {
  actions: NodeAction[];
  status: LocalModelNodeStatus;
  /** Earliest time (ms) a waiting failure becomes retryable, to requeue then. */
  nextRetryAt?: number;
}

/**
 * Desired models (spec) against what is on disk and in flight. Pure. A model is Downloaded only when
 * its completion marker exists for the same URI; files of models no longer desired are removed,
 * and their status entries stay until the files are gone (the controller waits on that).
 */
export function planNode(o: NodeObservation): NodePlan {
  const actions: NodeAction[] = [];
  const modelStatus: Record<string, ModelState> = {};
  const models: Record<string, LocalModelDetail> = {};
  const wantedKeys = new Set(o.desired.map((m) => m.storageKey));
  let nextRetryAt: number | undefined;

  for (const m of o.desired) {
    const key = m.storageKey;
    if (o.hostRoot !== undefined && !samePath(m.storagePath, o.hostRoot)) {
      modelStatus[m.modelName] = 'ModelDownloadError';
      models[m.modelName] = {
        storageKey: key,
        reason: 'StoragePathMismatch',
        message: storagePathMismatch(m, o.hostRoot),
      };
      continue;
    }
    const done = o.disk.complete.get(key);
    const running = o.inFlight.get(key);
    const failed = o.failures.get(key);
    const sameUri = done !== undefined && markerIsFor(done, m.sourceModelUri);
    if (done && sameUri) {
      modelStatus[m.modelName] = 'ModelDownloaded';
      models[m.modelName] = {
        storageKey: key,
        bytesDone: done.bytes,
        bytesTotal: done.bytes,
        completedAt: done.completedAt,
      };
      continue;
    }
    if (done && !sameUri) {
      // Same folder, other URI (a hash collision or a changed spec): replace it.
      actions.push({ kind: 'remove', storageKey: key });
      modelStatus[m.modelName] = 'ModelDownloadPending';
      models[m.modelName] = { storageKey: key };
      continue;
    }
    if (running) {
      modelStatus[m.modelName] = running.queued ? 'ModelDownloadPending' : 'ModelDownloading';
      models[m.modelName] = {
        storageKey: key,
        bytesDone: running.bytesDone,
        ...(running.bytesTotal !== undefined ? { bytesTotal: running.bytesTotal } : {}),
        startedAt: running.startedAt,
      };
      continue;
    }
    if (failed && failed.uri === m.sourceModelUri && (failed.retryAt === undefined || failed.retryAt > o.now)) {
      modelStatus[m.modelName] = 'ModelDownloadError';
      models[m.modelName] = {
        storageKey: key,
        reason: failed.reason,
        message: failed.message,
        ...(failed.startedAt ? { startedAt: failed.startedAt } : {}),
      };
      if (failed.retryAt !== undefined) nextRetryAt = Math.min(nextRetryAt ?? Number.POSITIVE_INFINITY, failed.retryAt);
      continue;
    }
    modelStatus[m.modelName] = 'ModelDownloadPending';
    models[m.modelName] = {
      storageKey: key,
      bytesDone: 0,
      bytesTotal: m.modelSize,
      ...(o.paused ? { message: `not started: ${o.paused}` } : {}),
    };
    if (!o.paused) actions.push({ kind: 'download', model: m });
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

  const states = Object.values(modelStatus);
  const progress = totalProgress(
    o.desired.map((m) => {
      const state = modelStatus[m.modelName];
      return progressPart(
        state === 'ModelDownloaded' ? 'downloaded' : state === 'ModelDownloading' ? 'downloading' : 'other',
        models[m.modelName],
        m.modelSize,
      );
    }),
  );
  return {
    actions,
    status: {
      modelStatus,
      models,
      summary: {
        models: states.length,
        downloaded: states.filter((s) => s === 'ModelDownloaded').length,
        failed: states.filter((s) => s === 'ModelDownloadError').length,
        ...(progress !== undefined ? { progress } : {}),
      },
    },
    ...(nextRetryAt !== undefined ? { nextRetryAt } : {}),
  };
}
