import type { Logger } from 'pino';
import { LOCAL_MODEL_CACHES, LOCAL_MODEL_NODE_GROUPS, LOCAL_MODEL_NODES, type LocalModelCache, type LocalModelNode, type LocalModelNodeGroup } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import { Informer } from '../kube/informer.ts';
import { NODES } from '../kube/resources.ts';
import type { Node } from '../kube/types.ts';
import { computePlacement, type Placement } from './placement/plan.ts';

/**
 * The controller's view of the cluster: one informer per resource type, and the placement computed
 * from them, memoised until any informer delivers a change.
 */
export class World {
  readonly caches: Informer<LocalModelCache>;
  readonly groups: Informer<LocalModelNodeGroup>;
  readonly nodes: Informer<Node>;
  readonly localModelNodes: Informer<LocalModelNode>;
  #version = 0;
  #placement?: { version: number; value: Placement };

  constructor(client: KubeClient, log?: Logger) {
    this.caches = new Informer(client, LOCAL_MODEL_CACHES, { log });
    this.groups = new Informer(client, LOCAL_MODEL_NODE_GROUPS, { log });
    this.nodes = new Informer(client, NODES, { log });
    this.localModelNodes = new Informer(client, LOCAL_MODEL_NODES, { log });
    const bump = { add: () => this.#version++, update: () => this.#version++, delete: () => this.#version++ };
    this.caches.on(bump);
    this.groups.on(bump);
    this.nodes.on(bump);
    this.localModelNodes.on(bump);
  }

  #all(): Array<Informer<LocalModelCache> | Informer<LocalModelNodeGroup> | Informer<Node> | Informer<LocalModelNode>> {
    return [this.caches, this.groups, this.nodes, this.localModelNodes];
  }

  start(signal: AbortSignal): void {
    for (const inf of this.#all()) void inf.start(signal);
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
        value: computePlacement({ caches: this.caches.list(), groups: this.groups.list(), nodes: this.nodes.list() }),
      };
    }
    return this.#placement.value;
  }

  nodesByName(): Map<string, Node> {
    return new Map(this.nodes.list().map((n) => [n.metadata.name ?? '', n]));
  }

  localModelNodesByName(): Map<string, LocalModelNode> {
    return new Map(this.localModelNodes.list().map((n) => [n.metadata.name ?? '', n]));
  }
}
