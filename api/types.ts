// The modelcache API: KServe-compatible field names (serving.kserve.io/v1alpha1) plus our additions.
import type { Condition, KubeObject, ResourceType } from '../kube/types.ts';

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

export type NodeState =
  'NodeNotReady' | 'NodeDownloadPending' | 'NodeDownloading' | 'NodeDownloaded' | 'NodeDownloadError';
export const NODE_STATES: NodeState[] = [
  'NodeNotReady',
  'NodeDownloadPending',
  'NodeDownloading',
  'NodeDownloaded',
  'NodeDownloadError',
];

export type ModelState = 'ModelDownloadPending' | 'ModelDownloading' | 'ModelDownloaded' | 'ModelDownloadError';
export const MODEL_STATES: ModelState[] = [
  'ModelDownloadPending',
  'ModelDownloading',
  'ModelDownloaded',
  'ModelDownloadError',
];

export interface StorageSpec {
  key?: string;
  parameters?: Record<string, string>;
}

export interface LocalModelCacheSpec {
  sourceModelUri: string;
  /** A Kubernetes quantity; YAML may give it as a number. */
  modelSize: string | number;
  nodeGroups: string[];
  serviceAccountName?: string;
  storage?: StorageSpec;
}

export interface Copies {
  available: number;
  failed: number;
  total: number;
}

export interface LocalModelCacheStatus {
  copies?: Copies;
  nodeStatus?: Record<string, NodeState>;
  inferenceServices?: Array<{ name: string; namespace: string }>;
  /** KServe's: the LLMInferenceServices (spec.model.uri) that use this cache. */
  llmInferenceServices?: Array<{ name: string; namespace: string }>;
  /** Bytes on disk across the cache's nodes, as a whole percent of what they must hold (for kubectl get). */
  progress?: string;
  conditions?: Condition[];
  observedGeneration?: number;
}

export interface LocalModelCache extends KubeObject {
  spec: LocalModelCacheSpec;
  status?: LocalModelCacheStatus;
}

export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

/** core/v1 NodeSelectorRequirement: the operators of node affinity (Gt and Lt compare integers). */
export interface NodeSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist' | 'Gt' | 'Lt';
  values?: string[];
}

/** core/v1 NodeSelectorTerm: every requirement must hold; matchFields may name only `metadata.name`. */
export interface NodeSelectorTerm {
  matchExpressions?: NodeSelectorRequirement[];
  matchFields?: NodeSelectorRequirement[];
}

/** core/v1 NodeSelector: a node matches when any term matches; no terms match no node. */
export interface NodeSelector {
  nodeSelectorTerms: NodeSelectorTerm[];
}

/**
 * The parts of a core/v1 PersistentVolumeSpec that modelcache reads (KServe's node groups carry one);
 * every other field of a PV spec is kept as given.
 */
export interface PersistentVolumeSpec {
  accessModes?: string[];
  capacity?: Record<string, string | number>;
  storageClassName?: string;
  persistentVolumeReclaimPolicy?: string;
  volumeMode?: string;
  mountOptions?: string[];
  local?: { path?: string; fsType?: string };
  hostPath?: { path?: string; type?: string };
  /** KServe's only definition of group membership. */
  nodeAffinity?: { required?: NodeSelector };
  [field: string]: unknown;
}

/** The parts of a core/v1 PersistentVolumeClaimSpec that modelcache reads; the rest is kept as given. */
export interface PersistentVolumeClaimSpec {
  accessModes?: string[];
  storageClassName?: string;
  volumeMode?: string;
  volumeName?: string;
  resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
  [field: string]: unknown;
}

export interface LocalModelNodeGroupSpec {
  /** Ours: nodes whose labels match. With persistentVolumeSpec.nodeAffinity too, a node must match both. */
  nodeSelector?: LabelSelector;
  storageLimit: string | number;
  /** Ours: the host directory; without it, persistentVolumeSpec.local.path or .hostPath.path. */
  storagePath?: string;
  /** Secret (in the daemon's namespace) whose keys are the source's settings: AWS_ACCESS_KEY_ID, HF_TOKEN… */
  credentials?: { secretName: string };
  /** KServe's: the PV each consuming namespace gets; its nodeAffinity.required selects the group's nodes. */
  persistentVolumeSpec?: PersistentVolumeSpec;
  /** KServe's: the PVC each consuming namespace gets. */
  persistentVolumeClaimSpec?: PersistentVolumeClaimSpec;
}

export interface LocalModelNodeGroupStatus {
  nodes?: string[];
  nodeCount?: number;
  caches?: string[];
  cacheCount?: number;
  bytesPlanned?: number;
  storageLimitBytes?: number;
  /** "3Gi/10Gi": planned over limit, for kubectl get. */
  usage?: string;
  /** KServe's: bytes the group's models take on its fullest node, as the nodes report them. */
  used?: string;
  /** KServe's: storageLimit minus used (room left on the fullest node). */
  available?: string;
  conditions?: Condition[];
  observedGeneration?: number;
}

export interface LocalModelNodeGroup extends KubeObject {
  spec: LocalModelNodeGroupSpec;
  status?: LocalModelNodeGroupStatus;
}

export interface LocalModelInfo {
  sourceModelUri: string;
  /** The LocalModelCache name. */
  modelName: string;
  namespace?: string;
  nodeGroup?: string;
  serviceAccountName?: string;
  storage?: StorageSpec;
  /** Bytes the model may take on disk (from the cache's modelSize). */
  modelSize: number;
  /** Host directory under which the model is stored (from the node group). */
  storagePath: string;
  /** Folder name of the model under storagePath: stable for a URI. */
  storageKey: string;
  /** From the node group: the Secret the daemon reads the source's credentials from. */
  credentialsSecret?: string;
}

export interface LocalModelDetail {
  /** Folder of the model on this node (so a removal can be tracked after the spec entry is gone). */
  storageKey?: string;
  bytesDone?: number;
  bytesTotal?: number;
  reason?: string;
  message?: string;
  startedAt?: string;
  completedAt?: string;
}

export interface LocalModelNodeStatus {
  modelStatus?: Record<string, ModelState>;
  models?: Record<string, LocalModelDetail>;
  /** Counts for kubectl get. */
  summary?: { models: number; downloaded: number; failed: number; progress?: string };
  observedGeneration?: number;
}

export interface LocalModelNode extends KubeObject {
  spec: { localModels: LocalModelInfo[] };
  status?: LocalModelNodeStatus;
}
