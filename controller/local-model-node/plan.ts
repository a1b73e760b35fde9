import { API_VERSION, type LocalModelInfo, type LocalModelNode } from '../../api/types.ts';
import type { Node } from '../../kube/types.ts';
import { sameJson } from '../conditions.ts';

export type NodePlan =
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
): NodePlan {
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
