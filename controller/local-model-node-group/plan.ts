import { formatBytes } from '../../api/quantity.ts';
import type { LocalModelNodeGroup, LocalModelNodeGroupStatus } from '../../api/types.ts';
import { findCondition, mergeConditions, sameJson, type ConditionInput } from '../conditions.ts';
import type { GroupPlacement } from '../placement/plan.ts';
import type { PlannedEvent } from '../local-model-cache/plan.ts';

export interface GroupPlan {
  status?: LocalModelNodeGroupStatus;
  events: PlannedEvent[];
}

/** Status of a node group: its nodes, the caches placed on it, bytes planned against the limit. Pure. */
export function planGroup(group: LocalModelNodeGroup, placement: GroupPlacement | undefined, now: string): GroupPlan {
  const old = group.status ?? {};
  const p = placement ?? { nodes: [], caches: [], bytesPlanned: 0, limitBytes: 0, rejected: [] };
  const ready: ConditionInput =
    p.rejected.length === 0
      ? {
          type: 'Ready',
          status: 'True',
          reason: 'AllCachesPlaced',
          message: `${p.caches.length} cache(s) on ${p.nodes.length} node(s)`,
        }
      : {
          type: 'Ready',
          status: 'False',
          reason: 'StorageLimitExceeded',
          message: `${p.rejected.length} cache(s) do not fit in storageLimit ${formatBytes(p.limitBytes)}: ${p.rejected
            .map((r) => r.cache)
            .slice(0, 10)
            .join(', ')}`,
        };
  const status: LocalModelNodeGroupStatus = {
    nodes: p.nodes,
    nodeCount: p.nodes.length,
    caches: [...p.caches].sort(),
    cacheCount: p.caches.length,
    bytesPlanned: p.bytesPlanned,
    storageLimitBytes: Number.isFinite(p.limitBytes) ? p.limitBytes : 0,
    usage: `${formatBytes(p.bytesPlanned)}/${formatBytes(p.limitBytes)}`,
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
