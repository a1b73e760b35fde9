// The cache controllers' watches, declared next to each controller: what wakes which key.
import {
  ControllerBuilder,
  refOf,
  type Controller,
  type ObjectRef,
  type Reconcile,
} from '../kube/controller-builder.ts';
import type { KubeObject, Node } from '../kube/types.ts';
import type { LocalModelNode } from '../api/types.ts';
import { sameJson } from './conditions.ts';
import { isNodeReady } from '../kube/node-facts.ts';
import { labelsBesidesModels, modelLabels } from './node-labels/plan.ts';
import type { ClusterView } from './cluster-view.ts';

/** Changes other than status: what moves placement. */
export function specChanged(a: KubeObject & { spec?: unknown }, b: KubeObject & { spec?: unknown }): boolean {
  return (
    a.metadata.generation !== b.metadata.generation ||
    a.metadata.deletionTimestamp !== b.metadata.deletionTimestamp ||
    !sameJson(a.metadata.finalizers, b.metadata.finalizers) ||
    !sameJson(a.spec, b.spec)
  );
}

/** What moves placement; the controller's own model labels do not (they follow from it). */
function nodeChanged(a: Node, b: Node): boolean {
  return (
    !sameJson(labelsBesidesModels(a.metadata.labels), labelsBesidesModels(b.metadata.labels)) ||
    isNodeReady(a) !== isNodeReady(b) ||
    a.metadata.deletionTimestamp !== b.metadata.deletionTimestamp
  );
}

function modelsOf(lmn: LocalModelNode): ObjectRef[] {
  return [...(lmn.spec?.localModels ?? []).map((m) => m.modelName), ...Object.keys(lmn.status?.modelStatus ?? {})].map(
    (name) => ({ name }),
  );
}

/**
 * What moves placement wakes every key of a controller: after a cache's or group's spec change, a node's
 * labels or readiness, or a change of who uses a cache, other caches may move (room freed, duplicates resolved).
 */
export function watchPlacement(
  b: ControllerBuilder,
  cluster: ClusterView,
  every: () => Iterable<ObjectRef>,
): ControllerBuilder {
  return b
    .watches(cluster.caches, every, { update: specChanged })
    .watches(cluster.groups, every, { update: specChanged })
    .watches(cluster.nodes, every, { update: nodeChanged })
    .watches(cluster.users, every);
}

/** LocalModelCache: its status aggregates its nodes' reports; status-only updates wake just that cache. */
export function cacheController(cluster: ClusterView, reconcile: Reconcile): Controller {
  const every = (): ObjectRef[] => cluster.caches.list().map(refOf);
  return watchPlacement(new ControllerBuilder('cache').for(cluster.caches), cluster, every)
    .watches(cluster.localModelNodes, modelsOf)
    .complete(reconcile);
}

/** LocalModelNode and its Node's model labels, keyed by node name; heartbeats that change neither wake nothing. */
export function nodeController(cluster: ClusterView, reconcile: Reconcile): Controller {
  const every = (): ObjectRef[] => [...cluster.nodes.list().map(refOf), ...cluster.localModelNodes.list().map(refOf)];
  // Someone else changed a model label: that node's labels are reconciled back.
  const labelsChanged = (a: Node, b: Node): boolean =>
    !sameJson(modelLabels(a.metadata.labels), modelLabels(b.metadata.labels));
  return watchPlacement(new ControllerBuilder('node').for(cluster.nodes, { update: labelsChanged }), cluster, every)
    .watches(cluster.localModelNodes, (lmn) => [refOf(lmn)])
    .all(every)
    .complete(reconcile);
}

/** LocalModelNodeGroup: its used/available come from its nodes' reports. */
export function groupController(cluster: ClusterView, reconcile: Reconcile): Controller {
  const every = (): ObjectRef[] => cluster.groups.list().map(refOf);
  return watchPlacement(new ControllerBuilder('group').for(cluster.groups), cluster, every)
    .watches(cluster.localModelNodes, every)
    .complete(reconcile);
}
