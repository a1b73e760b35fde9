import { formatBytes } from '../../api/quantity.ts';
import type { LocalModelNode, LocalModelNodeGroup, LocalModelNodeGroupStatus } from '../../api/types.ts';
import { findCondition, mergeConditions, sameJson, type ConditionInput } from '../conditions.ts';
import type { GroupPlacement } from '../placement/plan.ts';
import type { PlannedEvent } from '../local-model-cache/plan.ts';

export interface GroupPlan {
  status?: LocalModelNodeGroupStatus;
  events: PlannedEvent[];
}

/** Bytes as an exact Quantity: the largest binary unit that divides them (1536Mi), else plain bytes. */
function exactQuantity(bytes: number): string {
  for (const [unit, size] of [
    ['Ti', 2 ** 40],
    ['Gi', 2 ** 30],
    ['Mi', 2 ** 20],
    ['Ki', 2 ** 10],
  ] as const)
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  return String(bytes);
}

/**
 * Bytes the group's caches take on its fullest node, as the nodes report them (downloaded and
 * downloading copies; pending ones take nothing yet). The limit is per node, so the fullest one counts.
 */
function usedOnFullestNode(p: GroupPlacement, localModelNodes: ReadonlyMap<string, LocalModelNode>): number {
  let most = 0;
  for (const node of p.nodes) {
    const status = localModelNodes.get(node)?.status;
    let used = 0;
    for (const cache of p.caches) {
      const state = status?.modelStatus?.[cache];
      if (state !== 'ModelDownloaded' && state !== 'ModelDownloading') continue;
      used += Math.max(0, status?.models?.[cache]?.bytesDone ?? 0);
    }
    most = Math.max(most, used);
  }
  return most;
}

function readyCondition(p: GroupPlacement): ConditionInput {
  if (p.selectionErrors.length > 0)
    return {
      type: 'Ready',
      status: 'False',
      reason: 'InvalidNodeSelection',
      message: `part of the node selection selects no node; fix it: ${p.selectionErrors.slice(0, 5).join('; ')}`,
    };
  if (p.rejected.length > 0)
    return {
      type: 'Ready',
      status: 'False',
      reason: 'StorageLimitExceeded',
      message: `${p.rejected.length} cache(s) do not fit in storageLimit ${formatBytes(p.limitBytes)}: ${p.rejected
        .map((r) => r.cache)
        .slice(0, 10)
        .join(', ')}`,
    };
  return {
    type: 'Ready',
    status: 'True',
    reason: 'AllCachesPlaced',
    message: `${p.caches.length} cache(s) on ${p.nodes.length} node(s)`,
  };
}

/**
 * Status of a node group: its nodes, the caches placed on it, bytes planned against the limit and,
 * when the nodes' reports are given, KServe's used/available. Pure.
 */
export function planGroup(
  group: LocalModelNodeGroup,
  placement: GroupPlacement | undefined,
  now: string,
  localModelNodes?: ReadonlyMap<string, LocalModelNode>,
): GroupPlan {
  const old = group.status ?? {};
  const p: GroupPlacement = placement ?? {
    name: group.metadata.name ?? '',
    nodes: [],
    caches: [],
    bytesPlanned: 0,
    limitBytes: 0,
    rejected: [],
    selectionErrors: [],
  };
  const ready = readyCondition(p);
  const limit = Number.isFinite(p.limitBytes) ? p.limitBytes : 0;
  const used = localModelNodes ? usedOnFullestNode(p, localModelNodes) : undefined;
  const status: LocalModelNodeGroupStatus = {
    nodes: p.nodes,
    nodeCount: p.nodes.length,
    caches: [...p.caches].sort(),
    cacheCount: p.caches.length,
    bytesPlanned: p.bytesPlanned,
    storageLimitBytes: limit,
    usage: `${formatBytes(p.bytesPlanned)}/${formatBytes(p.limitBytes)}`,
    ...(used !== undefined ? { used: exactQuantity(used), available: exactQuantity(Math.max(0, limit - used)) } : {}),
    conditions: mergeConditions(old.conditions, [ready], now),
    ...(group.metadata.generation !== undefined ? { observedGeneration: group.metadata.generation } : {}),
  };
  const events: PlannedEvent[] = [];
  const was = findCondition(old.conditions, 'Ready');
  if (ready.status === 'False' && (was?.status !== 'False' || was.message !== ready.message)) {
    events.push({ type: 'Warning', reason: ready.reason, message: ready.message });
  }
  return { status: sameJson(status, old) ? undefined : status, events };
}
