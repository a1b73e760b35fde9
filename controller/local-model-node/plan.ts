import { API_VERSION, type LocalModelInfo, type LocalModelNode } from '../../api/types.ts';
import type { Node } from '../../kube/types.ts';
import { sameJson } from '../conditions.ts';
import { STORAGE_PATH_CONDITION } from '../../api/states.ts';

export type LocalModelNodePlan =
  { action: 'none' } | { action: 'create' | 'update'; object: LocalModelNode } | { action: 'delete'; reason: string };

/**
 * What to do with one node's LocalModelNode. Pure. It exists while the node must hold a model or
 * still reports one on disk; it is owned by the Node, so deleting the Node garbage-collects it.
 */
export function planLocalModelNode(
  nodeName: string,
  node: Node | undefined,
  desired: LocalModelInfo[],
  existing: LocalModelNode | undefined,
): LocalModelNodePlan {
  if (!node || node.metadata.deletionTimestamp) {
    return existing ? { action: 'delete', reason: 'node deleted' } : { action: 'none' };
  }
  const current = existing?.spec?.localModels ?? [];
  const reported = Object.keys(existing?.status?.modelStatus ?? {}).length;
  if (desired.length === 0 && existing && current.length === 0 && reported === 0) {
    return { action: 'delete', reason: 'node holds no models' };
  }
  if (desired.length === 0 && !existing) return { action: 'none' };
  const ownerOk = existing?.metadata.ownerReferences?.some((r) => r.uid === node.metadata.uid) ?? false;
  if (existing && ownerOk && sameJson(current, desired)) return { action: 'none' };
  return {
    action: existing ? 'update' : 'create',
    object: {
      apiVersion: API_VERSION,
      kind: 'LocalModelNode',
      metadata: {
        name: nodeName,
        ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: nodeName, uid: node.metadata.uid ?? '' }],
      },
      spec: { localModels: desired },
    },
  };
}

/** A Warning Event to record on a LocalModelNodeGroup because a node reports its storage path is not there. */
export interface PathMismatchEvent {
  group: string;
  message: string;
}

/**
 * The Events a LocalModelNode's `StoragePathMatches` False condition asks for: one per group of the models the
 * daemon reports StoragePathMismatch, with the daemon's message (both paths and the fix). Pure; the shell
 * records them once per transition of the condition (its lastTransitionTime), not on every pass.
 */
export function pathMismatchEvents(lmn: LocalModelNode): PathMismatchEvent[] {
  const node = lmn.metadata.name ?? '';
  const out = new Map<string, string>();
  const groupOf = new Map((lmn.spec?.localModels ?? []).map((m) => [m.modelName, m.nodeGroup]));
  for (const [model, detail] of Object.entries(lmn.status?.models ?? {})) {
    const group = groupOf.get(model);
    if (detail.reason !== 'StoragePathMismatch' || !group || out.has(group)) continue;
    out.set(group, `node ${node} does not cache the group's models: ${detail.message ?? ''}`);
  }
  return [...out].map(([group, message]) => ({ group, message }));
}

/** The transition time of a LocalModelNode's `StoragePathMatches` False condition, if it has one. */
export function pathMismatchSince(lmn: LocalModelNode | undefined): string | undefined {
  const c = lmn?.status?.conditions?.find((x) => x.type === STORAGE_PATH_CONDITION);
  return c?.status === 'False' ? c.lastTransitionTime : undefined;
}
