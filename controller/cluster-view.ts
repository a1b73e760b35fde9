import {
  LOCAL_MODEL_CACHES,
  LOCAL_MODEL_NODE_GROUPS,
  LOCAL_MODEL_NODES,
  type LocalModelCache,
  type LocalModelNode,
  type LocalModelNodeGroup,
} from '../api/types.ts';
import type { Informer } from '../kube/informer.ts';
import type { Kinds } from '../kube/kinds.ts';
import {
  NODES,
  PERSISTENT_VOLUME_CLAIMS,
  PERSISTENT_VOLUMES,
  PODS,
  type PersistentVolume,
  type PersistentVolumeClaim,
  type Pod,
} from '../kube/resources.ts';
import type { KubeObject, Node } from '../kube/types.ts';
import { ModelUsers } from './model-users.ts';
import { computePlacement, type Placement } from './placement/plan.ts';

/**
 * The cache controllers' view of the cluster: the process's shared informers they read, and the placement
 * computed from them, memoised until any informer delivers a change.
 */
export class ClusterView {
  readonly caches: Informer<LocalModelCache>;
  readonly groups: Informer<LocalModelNodeGroup>;
  readonly nodes: Informer<Node>;
  readonly localModelNodes: Informer<LocalModelNode>;
  /** Pods (opted-in consumers, and what mounts a cache's claim), PVs and PVCs: the serving volumes. */
  readonly pods: Informer<Pod>;
  readonly persistentVolumes: Informer<PersistentVolume>;
  readonly persistentVolumeClaims: Informer<PersistentVolumeClaim>;
  /** InferenceServices (and their TrainedModels), LLMInferenceServices and opted-in pods: who uses which cache. */
  readonly users: ModelUsers;
  #version = 0;
  #placement?: { version: number; value: Placement };

  constructor(kinds: Kinds) {
    this.caches = kinds.informer(LOCAL_MODEL_CACHES);
    this.groups = kinds.informer(LOCAL_MODEL_NODE_GROUPS);
    this.nodes = kinds.informer(NODES);
    this.localModelNodes = kinds.informer(LOCAL_MODEL_NODES);
    this.pods = kinds.informer(PODS);
    this.persistentVolumes = kinds.informer(PERSISTENT_VOLUMES);
    this.persistentVolumeClaims = kinds.informer(PERSISTENT_VOLUME_CLAIMS);
    const bump = { add: () => this.#version++, update: () => this.#version++, delete: () => this.#version++ };
    this.caches.on(bump);
    this.groups.on(bump);
    this.nodes.on(bump);
    this.localModelNodes.on(bump);
    this.users = new ModelUsers(kinds, this.pods);
    this.users.on(bump);
  }

  #all(): Array<Pick<Informer<KubeObject>, 'hasSynced' | 'waitForSync'>> {
    return [
      this.caches,
      this.groups,
      this.nodes,
      this.localModelNodes,
      this.pods,
      this.persistentVolumes,
      this.persistentVolumeClaims,
    ];
  }

  get hasSynced(): boolean {
    return this.#all().every((i) => i.hasSynced);
  }

  async waitForSync(signal: AbortSignal): Promise<void> {
    await Promise.all(this.#all().map((i) => i.waitForSync(signal)));
  }

  /** Placement of every cache, recomputed only when something changed since the last call. */
  placement(): Placement {
    if (this.#placement?.version !== this.#version) {
      this.#placement = {
        version: this.#version,
        value: computePlacement({
          caches: this.caches.list(),
          groups: this.groups.list(),
          nodes: this.nodes.list(),
          held: this.#held(),
        }),
      };
    }
    return this.#placement.value;
  }

  /** Caches being deleted that stay: in use, or use not known yet (KServe's objects not synced). */
  #held(): Set<string> {
    const out = new Set<string>();
    for (const c of this.caches.list()) {
      if (!c.metadata.deletionTimestamp) continue;
      const uri = c.spec.sourceModelUri;
      if (!this.users.ready || this.users.usersOf(uri).length > 0 || this.users.llmUsersOf(uri).length > 0)
        out.add(c.metadata.name ?? '');
    }
    return out;
  }

  nodesByName(): Map<string, Node> {
    return new Map(this.nodes.list().map((n) => [n.metadata.name ?? '', n]));
  }

  localModelNodesByName(): Map<string, LocalModelNode> {
    return new Map(this.localModelNodes.list().map((n) => [n.metadata.name ?? '', n]));
  }
}
