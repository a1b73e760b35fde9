// The modelcache API: KServe-compatible field names (serving.kserve.io/v1alpha1) plus our additions.
// The types of spec and status are derived from api/schema.ts: a new field is one schema change.
import type { KubeObject, ResourceType } from '../kube/types.ts';
import type { FromSchema } from './from-schema.ts';
import type { localModelCacheCrd, localModelNodeCrd, localModelNodeGroupCrd } from './schema.ts';

export const GROUP = 'serving.kserve.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
/** KServe's finalizer name, so caches created under KServe are handled the same way. */
export const CACHE_FINALIZER = 'localmodel.kserve.io/finalizer';
export const DEFAULT_STORAGE_PATH = '/var/lib/modelcache';

export const LOCAL_MODEL_CACHES: ResourceType = {
  group: GROUP,
  version: VERSION,
  plural: 'localmodelcaches',
  kind: 'LocalModelCache',
  namespaced: false,
};
export const LOCAL_MODEL_NODE_GROUPS: ResourceType = {
  group: GROUP,
  version: VERSION,
  plural: 'localmodelnodegroups',
  kind: 'LocalModelNodeGroup',
  namespaced: false,
};
export const LOCAL_MODEL_NODES: ResourceType = {
  group: GROUP,
  version: VERSION,
  plural: 'localmodelnodes',
  kind: 'LocalModelNode',
  namespaced: false,
};

/** The schemas of a CRD's top-level fields (spec, status), with their literal types. */
export type CrdProperties<C extends { spec: { versions: ReadonlyArray<{ schema: { openAPIV3Schema: object } }> } }> =
  C['spec']['versions'][number]['schema']['openAPIV3Schema'] extends { properties: infer P } ? P : never;

type CacheFields = CrdProperties<typeof localModelCacheCrd>;
type GroupFields = CrdProperties<typeof localModelNodeGroupCrd>;
type NodeFields = CrdProperties<typeof localModelNodeCrd>;

export type LocalModelCacheSpec = FromSchema<CacheFields['spec']>;
export type LocalModelCacheStatus = FromSchema<CacheFields['status']>;
type StorageSpec = NonNullable<LocalModelCacheSpec['storage']>;
type Copies = NonNullable<LocalModelCacheStatus['copies']>;
export type NodeState = NonNullable<LocalModelCacheStatus['nodeStatus']>[string];

export interface LocalModelCache extends KubeObject {
  spec: LocalModelCacheSpec;
  status?: LocalModelCacheStatus;
}

export type LocalModelNodeGroupSpec = FromSchema<GroupFields['spec']>;
export type LocalModelNodeGroupStatus = FromSchema<GroupFields['status']>;
export type LabelSelector = NonNullable<LocalModelNodeGroupSpec['nodeSelector']>;
type LabelSelectorRequirement = NonNullable<LabelSelector['matchExpressions']>[number];
/**
 * The parts of a core/v1 PersistentVolumeSpec that modelcache reads (KServe's node groups carry one);
 * every other field of a PV spec is kept as given.
 */
export type PersistentVolumeSpec = NonNullable<LocalModelNodeGroupSpec['persistentVolumeSpec']>;
/** The parts of a core/v1 PersistentVolumeClaimSpec that modelcache reads; the rest is kept as given. */
export type PersistentVolumeClaimSpec = NonNullable<LocalModelNodeGroupSpec['persistentVolumeClaimSpec']>;
/** core/v1 NodeSelector: a node matches when any term matches; no terms match no node. */
export type NodeSelector = NonNullable<NonNullable<PersistentVolumeSpec['nodeAffinity']>['required']>;
/** core/v1 NodeSelectorTerm: every requirement must hold; matchFields may name only `metadata.name`. */
export type NodeSelectorTerm = NodeSelector['nodeSelectorTerms'][number];
/** core/v1 NodeSelectorRequirement: the operators of node affinity (Gt and Lt compare integers). */
export type NodeSelectorRequirement = NonNullable<NodeSelectorTerm['matchExpressions']>[number];

export interface LocalModelNodeGroup extends KubeObject {
  spec: LocalModelNodeGroupSpec;
  status?: LocalModelNodeGroupStatus;
}

/** One model of a LocalModelNode's spec: what the controller placed on the node and where it goes on disk. */
export type LocalModelInfo = LocalModelNodeSpec['localModels'][number];
type LocalModelNodeSpec = FromSchema<NodeFields['spec']>;
export type LocalModelNodeStatus = FromSchema<NodeFields['status']>;
export type LocalModelDetail = NonNullable<LocalModelNodeStatus['models']>[string];
export type ModelState = NonNullable<LocalModelNodeStatus['modelStatus']>[string];

export interface LocalModelNode extends KubeObject {
  spec: LocalModelNodeSpec;
  status?: LocalModelNodeStatus;
}
