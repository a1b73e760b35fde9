import type { Node } from '../../kube/types.ts';

/** A node is Ready when its Ready condition is True (what the kubelet, or a test, reports). */
export function isNodeReady(node: Node): boolean {
  return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}
