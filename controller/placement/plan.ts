import { parseQuantity, formatBytes } from '../../api/quantity.ts';
import { storageKeyFor } from '../../api/storage-key.ts';
import {
  DEFAULT_STORAGE_PATH,
  type LocalModelCache,
  type LocalModelInfo,
  type LocalModelNodeGroup,
} from '../../api/types.ts';
import type { Node } from '../../kube/types.ts';
import { oldestFirst } from '../oldest-first.ts';
import { groupMembership, groupStoragePath } from './group-spec.ts';

type PlacementProblemReason = 'NodeGroupNotFound' | 'StorageLimitExceeded' | 'DuplicateSourceModelUri' | 'InvalidSpec';

interface PlacementProblem {
  reason: PlacementProblemReason;
  message: string;
  group?: string;
}

export interface CachePlacement {
  name: string;
  /** Being deleted and not held: placed nowhere, so nodes drop it. */
  deleting: boolean;
  /** Being deleted but still in use (or use not yet known): placed as before until it is free. */
  held?: boolean;
  /** Nodes that must hold the model, sorted. */
  nodes: string[];
  problems: PlacementProblem[];
}

export interface GroupPlacement {
  name: string;
  nodes: string[];
  caches: string[];
  bytesPlanned: number;
  limitBytes: number;
  /** Caches that did not fit, with the message shown to users. */
  rejected: Array<{ cache: string; message: string }>;
  /** Parts of the group's node selection that cannot be evaluated (they select no node). */
  selectionErrors: string[];
}

export interface Placement {
  caches: Map<string, CachePlacement>;
  groups: Map<string, GroupPlacement>;
  /** What each node must hold, by node name, sorted by modelName. Nodes with nothing are absent. */
  nodeModels: Map<string, LocalModelInfo[]>;
}

export interface PlacementInput {
  caches: LocalModelCache[];
  groups: LocalModelNodeGroup[];
  nodes: Node[];
  /** Caches being deleted that must stay placed: InferenceServices still use them. */
  held?: ReadonlySet<string>;
}

/**
 * Places every cache on the nodes of its groups. Pure: the same input gives the same placement.
 * Caches are taken oldest first; one that would push a group past its storageLimit is not placed in
 * that group, a newer cache with an already-cached sourceModelUri is not placed at all, and caches
 * being deleted are placed nowhere (so nodes drop them). Nodes being deleted are in no group.
 */
export function computePlacement(input: PlacementInput): Placement {
  const liveNodes = input.nodes.filter((n) => !n.metadata.deletionTimestamp).sort(oldestFirst);
  const groups = new Map<string, GroupPlacement>();
  const groupSpecs = new Map<string, LocalModelNodeGroup>();
  for (const g of input.groups) {
    const name = g.metadata.name ?? '';
    if (g.metadata.deletionTimestamp) continue;
    let limitBytes = Number.POSITIVE_INFINITY;
    try {
      limitBytes = parseQuantity(g.spec.storageLimit, 'storageLimit');
    } catch {
      // The apiserver validates storageLimit; an unparsable one is treated as no room at all.
      limitBytes = 0;
    }
    const nodes = liveNodes
      .filter((n) => groupMembership(g.spec, { name: n.metadata.name ?? '', labels: n.metadata.labels ?? {} }).member)
      .map((n) => n.metadata.name ?? '')
      .sort();
    // What cannot be evaluated depends on the spec alone, not on the node.
    const selectionErrors = groupMembership(g.spec, { name: '' }).errors;
    groups.set(name, { name, nodes, caches: [], bytesPlanned: 0, limitBytes, rejected: [], selectionErrors });
    groupSpecs.set(name, g);
  }

  const caches = new Map<string, CachePlacement>();
  const nodeModels = new Map<string, LocalModelInfo[]>();
  const uriOwner = new Map<string, string>();
  for (const cache of [...input.caches].sort(oldestFirst)) {
    const name = cache.metadata.name ?? '';
    const held = Boolean(cache.metadata.deletionTimestamp) && (input.held?.has(name) ?? false);
    const placement: CachePlacement = {
      name,
      deleting: Boolean(cache.metadata.deletionTimestamp) && !held,
      ...(held ? { held } : {}),
      nodes: [],
      problems: [],
    };
    caches.set(name, placement);
    if (placement.deleting) continue;
    const uri = cache.spec.sourceModelUri;
    const owner = uriOwner.get(uri);
    if (owner !== undefined) {
      placement.problems.push({
        reason: 'DuplicateSourceModelUri',
        message: `sourceModelUri ${uri} is already cached by LocalModelCache ${owner}, created earlier; delete one of the two (both would share one folder on each node)`,
      });
      continue;
    }
    uriOwner.set(uri, name);
    let size: number;
    try {
      size = parseQuantity(cache.spec.modelSize, 'spec.modelSize');
    } catch (err) {
      placement.problems.push({ reason: 'InvalidSpec', message: (err as Error).message });
      continue;
    }
    const placedOn = new Map<string, string>();
    for (const groupName of cache.spec.nodeGroups ?? []) {
      const group = groups.get(groupName);
      if (!group) {
        placement.problems.push({
          reason: 'NodeGroupNotFound',
          group: groupName,
          message: `LocalModelNodeGroup ${groupName} does not exist; create it or remove it from spec.nodeGroups`,
        });
        continue;
      }
      if (group.bytesPlanned + size > group.limitBytes) {
        const left = Math.max(0, group.limitBytes - group.bytesPlanned);
        const message = `needs ${formatBytes(size)} but node group ${groupName} has ${formatBytes(left)} of its ${formatBytes(group.limitBytes)} storageLimit left (${formatBytes(group.bytesPlanned)} planned for ${group.caches.length} older cache(s)); it is placed when room appears`;
        placement.problems.push({ reason: 'StorageLimitExceeded', group: groupName, message });
        group.rejected.push({ cache: name, message });
        continue;
      }
      group.bytesPlanned += size;
      group.caches.push(name);
      for (const node of group.nodes) if (!placedOn.has(node)) placedOn.set(node, groupName);
    }
    placement.nodes = [...placedOn.keys()].sort();
    for (const [node, groupName] of placedOn) {
      const g = groupSpecs.get(groupName);
      const info: LocalModelInfo = {
        sourceModelUri: uri,
        modelName: name,
        nodeGroup: groupName,
        modelSize: size,
        storagePath: g ? groupStoragePath(g.spec) : DEFAULT_STORAGE_PATH,
        storageKey: storageKeyFor(uri),
        ...(g?.spec.credentials?.secretName ? { credentialsSecret: g.spec.credentials.secretName } : {}),
        ...(cache.spec.serviceAccountName ? { serviceAccountName: cache.spec.serviceAccountName } : {}),
        ...(cache.spec.storage ? { storage: cache.spec.storage } : {}),
      };
      const list = nodeModels.get(node) ?? [];
      list.push(info);
      nodeModels.set(node, list);
    }
  }
  for (const list of nodeModels.values()) list.sort((a, b) => (a.modelName < b.modelName ? -1 : 1));
  return { caches, groups, nodeModels };
}
