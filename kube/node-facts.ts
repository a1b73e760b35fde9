import type { Node } from './types.ts';

// What every layer reads of a Node, written once: whether it is Ready, and its zone.

/** The well-known label that says which zone a node is in (nodes without it are one zone together). */
export const ZONE_LABEL = 'topology.kubernetes.io/zone';

/** A node is Ready when its Ready condition is True (what the kubelet, or a test, reports). */
export function isNodeReady(node: Node): boolean {
  return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** The node's zone (ZONE_LABEL), undefined when it has none. */
export function zoneOf(node: Node | undefined): string | undefined {
  return node?.metadata.labels?.[ZONE_LABEL];
}
