// Which `models.modelcache.io/<storage key>` labels a Node carries (pure). The label says "a complete copy of
// that model is on this node", so pods that require it by node affinity wait for the bytes instead of starting
// against an empty folder. Labels outside the prefix are never planned, so never touched.
import type { LocalModelInfo, LocalModelNode } from '../../api/types.ts';
import type { Node } from '../../kube/types.ts';
import { MODEL_NODE_LABEL_PREFIX, modelNodeLabel } from '../../serving/cache-match.ts';

export interface NodeLabelsObservation {
  node: Node | undefined;
  /** What placement says the node must hold now (a model no longer wanted loses its label at once). */
  wanted: readonly LocalModelInfo[];
  /** What the node's daemon reports. */
  localModelNode: LocalModelNode | undefined;
}

export interface NodeLabelsPlan {
  /** The labels under the prefix the node carries once the patch is applied. */
  labels: Record<string, 'true'>;
  /** Merge patch of `metadata.labels` (null removes a label); absent when the node already carries exactly those. */
  patch?: Record<string, 'true' | null>;
}

/** Is this label key one the controller owns? */
function isModelLabel(key: string): boolean {
  return key.startsWith(MODEL_NODE_LABEL_PREFIX);
}

/** A node's labels without the ones the controller owns: what placement and users decide by. */
export function labelsBesidesModels(labels: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(labels ?? {}).filter(([k]) => !isModelLabel(k)));
}

/** A node's labels under the prefix. */
export function modelLabels(labels: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(labels ?? {}).filter(([k]) => isModelLabel(k)));
}

/**
 * The model labels one node must carry: one per wanted model whose copy its LocalModelNode reports
 * ModelDownloaded (in the folder of that model's storage key), none for anything else, including labels
 * under the prefix that someone else set. A LocalModelNode left by an earlier Node of the same name
 * (owned by another uid) says nothing about this one. A node being deleted is left alone.
 */
export function planNodeLabels(obs: NodeLabelsObservation): NodeLabelsPlan {
  const { node, localModelNode: lmn } = obs;
  const current = modelLabels(node?.metadata.labels);
  if (!node || node.metadata.deletionTimestamp) return { labels: {} };
  const reportsForThisNode = lmn?.metadata.ownerReferences?.some((r) => r.uid === node.metadata.uid) ?? false;
  const labels: Record<string, 'true'> = {};
  if (reportsForThisNode) {
    for (const m of obs.wanted) {
      if (lmn?.status?.modelStatus?.[m.modelName] !== 'ModelDownloaded') continue;
      // The report names its folder: a copy of another URI once cached under this name is not this model.
      const folder = lmn.status.models?.[m.modelName]?.storageKey ?? m.storageKey;
      if (folder === m.storageKey) labels[modelNodeLabel(m.storageKey)] = 'true';
    }
  }
  const patch: Record<string, 'true' | null> = {};
  for (const key of Object.keys(current)) if (!(key in labels)) patch[key] = null;
  for (const key of Object.keys(labels)) if (current[key] !== 'true') patch[key] = 'true';
  return Object.keys(patch).length ? { labels, patch } : { labels };
}
