import type { Logger } from 'pino';
import { CACHE_FINALIZER, LOCAL_MODEL_CACHES, LOCAL_MODEL_NODE_GROUPS, LOCAL_MODEL_NODES } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import type { EventRecorder } from '../kube/events.ts';
import { createMergePatch } from '../kube/merge-patch.ts';
import { NODES } from '../kube/resources.ts';
import type { KubeObject, ResourceType } from '../kube/types.ts';
import { planCache, type PlannedEvent } from './local-model-cache/plan.ts';
import { planGroup } from './local-model-node-group/plan.ts';
import { pathMismatchEvents, pathMismatchSince, planLocalModelNode } from './local-model-node/plan.ts';
import { reconcileNodeLabels } from './node-labels/reconcile.ts';
import type { ControllerMetrics } from './metrics.ts';
import type { ClusterView } from './cluster-view.ts';

export interface ReconcileDeps {
  client: KubeClient;
  cluster: ClusterView;
  events: EventRecorder;
  metrics: ControllerMetrics;
  log: Logger;
  now: () => string;
}

/** Thin shells: observe from the informers, plan (pure), apply only what differs. */
export class Reconcilers {
  readonly #d: ReconcileDeps;
  /** Per node, the StoragePathMatches transition already reported with Events (edge-triggered, not every pass). */
  readonly #pathMismatchReported = new Map<string, string>();

  constructor(deps: ReconcileDeps) {
    this.#d = deps;
  }

  #count(rt: ResourceType, verb: string): void {
    this.#d.metrics.writes.inc({ resource: rt.plural, verb });
  }

  /** Merge-patches status from what was observed to what was planned; no request when they are equal. */
  async #writeStatus(
    rt: ResourceType,
    name: string,
    observed: unknown,
    planned: unknown,
    signal: AbortSignal,
  ): Promise<void> {
    const patch = createMergePatch(observed ?? {}, planned);
    if (patch === undefined) return;
    await this.#d.client.patchStatus(rt, name, patch, { signal });
    this.#count(rt, 'status');
  }

  async #emit(obj: KubeObject, events: PlannedEvent[]): Promise<void> {
    for (const e of events) {
      this.#d.log.info({ kind: obj.kind, name: obj.metadata.name, reason: e.reason, message: e.message }, 'event');
      await this.#d.events.record(obj, e.type, e.reason, e.message);
    }
  }

  async cache(name: string, signal: AbortSignal): Promise<void> {
    const { cluster, client, log } = this.#d;
    const cache = cluster.caches.get(name);
    if (!cache) return;
    const placement = cluster.placement().caches.get(name) ?? {
      name,
      deleting: Boolean(cache.metadata.deletionTimestamp),
      nodes: [],
      problems: [],
    };
    const plan = planCache({
      cache,
      placement,
      nodes: cluster.nodesByName(),
      localModelNodes: cluster.localModelNodesByName(),
      users: cluster.users.usersOf(cache.spec.sourceModelUri),
      llmUsers: cluster.users.llmUsersOf(cache.spec.sourceModelUri),
      usersKnown: cluster.users.ready,
      now: this.#d.now(),
    });
    const finalizers = cache.metadata.finalizers ?? [];
    if (plan.finalizer === 'add') {
      await client.mergePatch(
        LOCAL_MODEL_CACHES,
        name,
        { metadata: { finalizers: [...finalizers, CACHE_FINALIZER], resourceVersion: cache.metadata.resourceVersion } },
        { signal },
      );
      this.#count(LOCAL_MODEL_CACHES, 'finalize');
    }
    if (plan.status) await this.#writeStatus(LOCAL_MODEL_CACHES, name, cache.status, plan.status, signal);
    await this.#emit(cache, plan.events);
    if (plan.finalizer === 'remove') {
      await client.mergePatch(
        LOCAL_MODEL_CACHES,
        name,
        {
          metadata: {
            finalizers: finalizers.filter((f) => f !== CACHE_FINALIZER),
            resourceVersion: cache.metadata.resourceVersion,
          },
        },
        { signal },
      );
      this.#count(LOCAL_MODEL_CACHES, 'finalize');
      log.info({ cache: name }, 'files removed from every node; finalizer released');
    }
  }

  async node(name: string, signal: AbortSignal): Promise<void> {
    const { cluster, client, log } = this.#d;
    const desired = cluster.placement().nodeModels.get(name) ?? [];
    // Labels first: a copy no longer wanted loses its node label before the daemon is told to remove its files.
    const observed = {
      node: cluster.nodes.get(name),
      wanted: desired,
      localModelNode: cluster.localModelNodes.get(name),
    };
    if (await reconcileNodeLabels(this.#d, name, observed, signal)) this.#count(NODES, 'label');
    const plan = planLocalModelNode(name, cluster.nodes.get(name), desired, cluster.localModelNodes.get(name));
    if (plan.action === 'create' || plan.action === 'update') {
      // A merge patch replaces the whole list (server-side apply would drop an emptied list and with it spec).
      if (plan.action === 'create') await client.create(LOCAL_MODEL_NODES, plan.object, { signal });
      else
        await client.mergePatch(
          LOCAL_MODEL_NODES,
          name,
          { metadata: { ownerReferences: plan.object.metadata.ownerReferences }, spec: plan.object.spec },
          { signal },
        );
      this.#count(LOCAL_MODEL_NODES, plan.action);
      log.info({ node: name, models: desired.map((m) => m.modelName) }, 'LocalModelNode spec written');
    } else if (plan.action === 'delete') {
      const uid = cluster.localModelNodes.get(name)?.metadata.uid;
      await client.delete(LOCAL_MODEL_NODES, name, { uid, signal });
      this.#count(LOCAL_MODEL_NODES, 'delete');
      log.info({ node: name, reason: plan.reason }, 'LocalModelNode deleted');
    }
    await this.#reportPathMismatch(name);
  }

  /** A Warning Event on each group a node reports StoragePathMismatch for, once per transition of its condition. */
  async #reportPathMismatch(node: string): Promise<void> {
    const { cluster } = this.#d;
    const lmn = cluster.localModelNodes.get(node);
    const since = pathMismatchSince(lmn);
    if (!lmn || since === undefined) {
      this.#pathMismatchReported.delete(node);
      return;
    }
    if (this.#pathMismatchReported.get(node) === since) return;
    for (const e of pathMismatchEvents(lmn)) {
      const group = cluster.groups.get(e.group);
      if (group) await this.#emit(group, [{ type: 'Warning', reason: 'StoragePathMismatch', message: e.message }]);
    }
    this.#pathMismatchReported.set(node, since);
  }

  async group(name: string, signal: AbortSignal): Promise<void> {
    const { cluster } = this.#d;
    const group = cluster.groups.get(name);
    if (!group || group.metadata.deletionTimestamp) return;
    const plan = planGroup(group, cluster.placement().groups.get(name), this.#d.now(), cluster.localModelNodesByName());
    if (plan.status) await this.#writeStatus(LOCAL_MODEL_NODE_GROUPS, name, group.status, plan.status, signal);
    await this.#emit(group, plan.events);
  }
}
