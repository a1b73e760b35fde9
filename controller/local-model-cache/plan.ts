import {
  CACHE_FINALIZER,
  type LocalModelCache,
  type LocalModelCacheStatus,
  type LocalModelNode,
  type ModelState,
  type NodeState,
} from '../../api/types.ts';
import type { Node } from '../../kube/types.ts';
import { findCondition, mergeConditions, sameJson, type ConditionInput } from '../conditions.ts';
import type { CachePlacement } from '../placement/plan.ts';
import { isNodeReady } from '../../kube/node-facts.ts';
import { formatBytes, parseQuantity } from '../../api/quantity.ts';
import { progressPart, totalProgress } from '../../api/progress.ts';

export interface CacheObservation {
  cache: LocalModelCache;
  placement: CachePlacement;
  nodes: ReadonlyMap<string, Node>;
  localModelNodes: ReadonlyMap<string, LocalModelNode>;
  /** InferenceServices that use the cache's URI (KServe's subpath rule). */
  users?: Array<{ name: string; namespace: string }>;
  /** LLMInferenceServices whose spec.model.uri uses it (the same rule). */
  llmUsers?: Array<{ name: string; namespace: string }>;
  /** False while it is not yet known which InferenceServices exist. */
  usersKnown?: boolean;
  now: string;
}

export interface PlannedEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface CachePlan {
  /** The status to write, or undefined when the current one is already right. */
  status?: LocalModelCacheStatus;
  finalizer: 'add' | 'remove' | 'keep';
  events: PlannedEvent[];
}

const NODE_STATE: Record<ModelState, NodeState> = {
  ModelDownloadPending: 'NodeDownloadPending',
  ModelDownloading: 'NodeDownloading',
  ModelDownloaded: 'NodeDownloaded',
  ModelDownloadError: 'NodeDownloadError',
};

/** What a node reports for this cache, seen through its readiness. */
function nodeState(name: string, cacheName: string, o: CacheObservation): NodeState {
  const node = o.nodes.get(name);
  if (!node || !isNodeReady(node)) return 'NodeNotReady';
  const reported = o.localModelNodes.get(name)?.status?.modelStatus?.[cacheName];
  return reported ? NODE_STATE[reported] : 'NodeDownloadPending';
}

/** Nodes that still hold (or are still asked to hold) the model: deletion waits for them. Gone and NotReady nodes do not count. */
function nodesStillHolding(cacheName: string, o: Pick<CacheObservation, 'nodes' | 'localModelNodes'>): string[] {
  const out: string[] = [];
  for (const [name, lmn] of o.localModelNodes) {
    const node = o.nodes.get(name);
    if (!node || node.metadata.deletionTimestamp || !isNodeReady(node)) continue;
    const inSpec = lmn.spec?.localModels?.some((m) => m.modelName === cacheName);
    const onDisk = lmn.status?.modelStatus?.[cacheName] !== undefined;
    if (inSpec || onDisk) out.push(name);
  }
  return out.sort();
}

/**
 * Desired status, finalizer action and Events of one LocalModelCache. Pure.
 * copies always equals what nodeStatus says; conditions keep their transition time when unchanged.
 */
export function planCache(o: CacheObservation): CachePlan {
  const { cache, placement } = o;
  const name = cache.metadata.name ?? '';
  const finalizers = cache.metadata.finalizers ?? [];
  const old = cache.status ?? {};
  const events: PlannedEvent[] = [];

  if (placement.deleting) {
    const holding = nodesStillHolding(name, o);
    if (holding.length === 0) return { finalizer: finalizers.includes(CACHE_FINALIZER) ? 'remove' : 'keep', events };
    const nodeStatus: Record<string, NodeState> = {};
    for (const n of holding) nodeStatus[n] = nodeState(n, name, o);
    const status = buildStatus(o, nodeStatus, [
      {
        type: 'Ready',
        status: 'False',
        reason: 'Deleting',
        message: `waiting for ${holding.length} node(s) to remove the files: ${holding.slice(0, 10).join(', ')}`,
      },
    ]);
    return { status: sameJson(status, old) ? undefined : status, finalizer: 'keep', events };
  }

  const nodeStatus: Record<string, NodeState> = {};
  for (const n of placement.nodes) nodeStatus[n] = nodeState(n, name, o);
  const scheduled: ConditionInput =
    placement.problems.length === 0
      ? {
          type: 'Scheduled',
          status: 'True',
          reason: 'Scheduled',
          message: `placed on ${placement.nodes.length} node(s)`,
        }
      : {
          type: 'Scheduled',
          status: 'False',
          reason: placement.problems[0]?.reason ?? 'NotScheduled',
          message: placement.problems.map((p) => p.message).join('; '),
        };
  const conditions = [scheduled, readyCondition(name, nodeStatus, scheduled, o), sizeCondition(name, nodeStatus, o)];
  if (placement.held) {
    const users = [...(o.users ?? []), ...(o.llmUsers ?? [])].map((u) => `${u.namespace}/${u.name}`);
    conditions.push({
      type: 'DeletionHeld',
      status: 'True',
      reason: o.usersKnown === false ? 'UsersUnknown' : 'InUse',
      message:
        o.usersKnown === false
          ? 'deletion waits until the InferenceServices that may use this model are known'
          : `deletion waits until no InferenceService or LLMInferenceService uses this model: ${users.slice(0, 10).join(', ')}`,
    });
  }
  const status = buildStatus(o, nodeStatus, conditions, cacheProgress(name, nodeStatus, o));

  const wasScheduled = findCondition(old.conditions, 'Scheduled');
  if (scheduled.status === 'False' && (wasScheduled?.status !== 'False' || wasScheduled.reason !== scheduled.reason)) {
    events.push({ type: 'Warning', reason: scheduled.reason, message: scheduled.message });
  } else if (scheduled.status === 'True' && wasScheduled?.status !== 'True') {
    events.push({ type: 'Normal', reason: 'Scheduled', message: scheduled.message });
  }
  const held = findCondition(status.conditions, 'DeletionHeld');
  if (
    held?.status === 'True' &&
    held.reason === 'InUse' &&
    findCondition(old.conditions, 'DeletionHeld')?.status !== 'True'
  ) {
    events.push({ type: 'Warning', reason: 'DeletionHeld', message: held.message });
  }
  const fits = findCondition(status.conditions, 'SizeFits');
  const fitted = findCondition(old.conditions, 'SizeFits');
  if (fits?.status === 'False' && (fitted?.status !== 'False' || fitted.message !== fits.message)) {
    events.push({ type: 'Warning', reason: fits.reason ?? 'ModelSizeExceeded', message: fits.message ?? '' });
  }
  const ready = findCondition(status.conditions, 'Ready');
  if (ready?.status === 'True' && findCondition(old.conditions, 'Ready')?.status !== 'True') {
    events.push({ type: 'Normal', reason: 'Downloaded', message: ready.message });
  }
  for (const [node, state] of Object.entries(nodeStatus)) {
    if (state === 'NodeDownloadError' && old.nodeStatus?.[node] !== 'NodeDownloadError') {
      events.push({
        type: 'Warning',
        reason: 'NodeDownloadError',
        message: `node ${node}: ${nodeErrorText(node, name, o)}`,
      });
    }
  }
  return {
    status: sameJson(status, old) ? undefined : status,
    finalizer: finalizers.includes(CACHE_FINALIZER) ? 'keep' : 'add',
    events,
  };
}

function nodeErrorText(node: string, cacheName: string, o: CacheObservation): string {
  const d = o.localModelNodes.get(node)?.status?.models?.[cacheName];
  return d ? `${d.reason ?? 'Error'}: ${d.message ?? ''}`.trim() : 'download failed';
}

function readyCondition(
  name: string,
  nodeStatus: Record<string, NodeState>,
  scheduled: ConditionInput,
  o: CacheObservation,
): ConditionInput {
  const states = Object.values(nodeStatus);
  const total = states.length;
  const available = states.filter((s) => s === 'NodeDownloaded').length;
  const failedNodes = Object.entries(nodeStatus)
    .filter(([, s]) => s === 'NodeDownloadError')
    .map(([n]) => n);
  if (scheduled.status !== 'True')
    return { type: 'Ready', status: 'False', reason: 'NotScheduled', message: scheduled.message };
  if (total === 0)
    return {
      type: 'Ready',
      status: 'False',
      reason: 'NoNodes',
      message: 'no node matches the selectors of the node groups',
    };
  if (available === total)
    return { type: 'Ready', status: 'True', reason: 'Downloaded', message: `available on all ${total} node(s)` };
  if (failedNodes.length > 0) {
    const first = failedNodes[0] as string;
    return {
      type: 'Ready',
      status: 'False',
      reason: 'DownloadFailed',
      message: `failed on ${failedNodes.length} of ${total} node(s); ${first}: ${nodeErrorText(first, name, o)}`,
    };
  }
  return {
    type: 'Ready',
    status: 'False',
    reason: 'Downloading',
    message: `available on ${available} of ${total} node(s)`,
  };
}

/**
 * Whether the copies on the nodes fit modelSize. A modelSize made smaller than what a node already
 * downloaded is reported with the sizes, not enforced by truncating or dropping the copy.
 */
function sizeCondition(name: string, nodeStatus: Record<string, NodeState>, o: CacheObservation): ConditionInput {
  let size: number;
  try {
    size = parseQuantity(o.cache.spec.modelSize, 'spec.modelSize');
  } catch (err) {
    return { type: 'SizeFits', status: 'Unknown', reason: 'InvalidSpec', message: (err as Error).message };
  }
  const over: Array<[string, number]> = [];
  for (const [node, state] of Object.entries(nodeStatus)) {
    if (state !== 'NodeDownloaded' && state !== 'NodeDownloading') continue;
    const bytes = o.localModelNodes.get(node)?.status?.models?.[name]?.bytesDone ?? 0;
    if (bytes > size) over.push([node, bytes]);
  }
  if (over.length === 0)
    return {
      type: 'SizeFits',
      status: 'True',
      reason: 'Fits',
      message: `every copy fits modelSize ${formatBytes(size)}`,
    };
  const largest = Math.max(...over.map(([, b]) => b));
  const shown = over
    .slice(0, 5)
    .map(([n, b]) => `${n} holds ${formatBytes(b)} (${b} bytes)`)
    .join(', ');
  return {
    type: 'SizeFits',
    status: 'False',
    reason: 'ModelSizeExceeded',
    message: `modelSize ${formatBytes(size)} (${size} bytes) is smaller than ${over.length} copy(ies) already on nodes: ${shown}; the copies are kept whole, not truncated, but storageLimit counts only modelSize: set modelSize to at least ${largest} bytes`,
  };
}

/**
 * Bytes on disk across the nodes that must hold the model: a downloaded node counts whole, a
 * downloading one its bytesDone, any other none. Changes in whole percents, so the controller
 * writes at most ~100 progress updates per cache however many nodes report.
 */
function cacheProgress(name: string, nodeStatus: Record<string, NodeState>, o: CacheObservation): string | undefined {
  let size: number;
  try {
    size = parseQuantity(o.cache.spec.modelSize, 'spec.modelSize');
  } catch {
    return undefined;
  }
  return totalProgress(
    Object.entries(nodeStatus).map(([node, state]) =>
      progressPart(
        state === 'NodeDownloaded' ? 'downloaded' : state === 'NodeDownloading' ? 'downloading' : 'other',
        o.localModelNodes.get(node)?.status?.models?.[name],
        size,
      ),
    ),
  );
}

function buildStatus(
  o: CacheObservation,
  nodeStatus: Record<string, NodeState>,
  conditions: ConditionInput[],
  progress?: string,
): LocalModelCacheStatus {
  const states = Object.values(nodeStatus);
  const old = o.cache.status ?? {};
  return {
    copies: {
      available: states.filter((s) => s === 'NodeDownloaded').length,
      failed: states.filter((s) => s === 'NodeDownloadError').length,
      total: states.length,
    },
    nodeStatus,
    ...(o.users?.length ? { inferenceServices: o.users } : {}),
    ...(o.llmUsers?.length ? { llmInferenceServices: o.llmUsers } : {}),
    ...(progress !== undefined ? { progress } : {}),
    conditions: mergeConditions(old.conditions, conditions, o.now),
    ...(o.cache.metadata.generation !== undefined ? { observedGeneration: o.cache.metadata.generation } : {}),
  };
}
