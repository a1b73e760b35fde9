import type { Node } from '../../kube/types.ts';

/**
 * Taints that autoscalers put on a node they are about to remove. Downloading gigabytes onto such a
 * node wastes the bandwidth and the origin's quota: nothing new starts there.
 */
const REMOVAL_TAINTS: Record<string, string> = {
  ToBeDeletedByClusterAutoscaler: 'the cluster autoscaler is removing it',
  'karpenter.sh/disrupted': 'Karpenter is disrupting it',
  'karpenter.sh/disruption': 'Karpenter is disrupting it', // before Karpenter v1
};

/** Why this node is going away (so no new download should start), or undefined. Pure. */
export function nodeLeavingReason(node: Node | undefined): string | undefined {
  if (!node) return undefined;
  if (node.metadata.deletionTimestamp) return `node ${node.metadata.name} is being deleted`;
  for (const t of node.spec?.taints ?? []) {
    const why = REMOVAL_TAINTS[t.key];
    if (why) return `node ${node.metadata.name} has taint ${t.key}: ${why}`;
  }
  return undefined;
}
