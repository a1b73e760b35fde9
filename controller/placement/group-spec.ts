// What a LocalModelNodeGroup's spec means, for ours (nodeSelector, storagePath) and KServe's shape
// (persistentVolumeSpec with nodeAffinity and a local or hostPath path) alike.
import { DEFAULT_STORAGE_PATH, type LocalModelNodeGroupSpec } from '../../api/types.ts';
import { matchNodeSelector, type NodeFacts } from './node-selector.ts';
import { matchesSelector } from './selector.ts';

export interface Membership {
  member: boolean;
  /** Why part of the spec selects no node (reported on the group), empty when all of it can be evaluated. */
  errors: string[];
}

/**
 * Whether a node belongs to a group: it matches nodeSelector (when set) and the PV's
 * nodeAffinity.required (when set); a group with neither selects no node. Pure.
 */
export function groupMembership(spec: LocalModelNodeGroupSpec, node: NodeFacts): Membership {
  const required = spec.persistentVolumeSpec?.nodeAffinity?.required;
  if (!spec.nodeSelector && !required)
    return {
      member: false,
      errors: ['neither nodeSelector nor persistentVolumeSpec.nodeAffinity.required is set: the group has no nodes'],
    };
  const bySelector = spec.nodeSelector ? matchesSelector(node.labels, spec.nodeSelector) : true;
  if (!required) return { member: bySelector, errors: [] };
  const byAffinity = matchNodeSelector(required, node);
  return {
    member: bySelector && byAffinity.matches,
    errors: byAffinity.errors.map((e) => `persistentVolumeSpec.nodeAffinity.required.${e}`),
  };
}

/**
 * The host directory of a group's models: storagePath, else the PV's local.path, else its hostPath.path;
 * a group without a PV spec defaults to the daemon's root (the schema refuses a PV spec without a path).
 */
export function groupStoragePath(spec: LocalModelNodeGroupSpec): string {
  const pv = spec.persistentVolumeSpec;
  return spec.storagePath ?? pv?.local?.path ?? pv?.hostPath?.path ?? DEFAULT_STORAGE_PATH;
}
