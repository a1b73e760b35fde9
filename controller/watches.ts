import { sameJson } from './conditions.ts';
import { isNodeReady } from './placement/node-ready.ts';
import { labelsBesidesModels, modelLabels } from './node-labels/plan.ts';
import { enqueueAllVolumes, registerServingVolumeWatches } from './serving-volumes/watches.ts';
import type { World } from './world.ts';
import type { KubeObject, Node } from '../kube/types.ts';
import type { LocalModelNode } from '../api/types.ts';

export const cacheKey = (name: string): string => `cache:${name}`;
export const nodeKey = (name: string): string => `node:${name}`;
export const groupKey = (name: string): string => `group:${name}`;

/** Everything: after a spec change, placement of other caches may move (room freed, duplicates resolved). */
export function enqueueAll(world: World, add: Enqueue): void {
  for (const c of world.caches.list()) add(cacheKey(c.metadata.name ?? ''));
  for (const g of world.groups.list()) add(groupKey(g.metadata.name ?? ''));
  for (const n of world.nodes.list()) add(nodeKey(n.metadata.name ?? ''));
  for (const n of world.localModelNodes.list()) add(nodeKey(n.metadata.name ?? ''));
  enqueueAllVolumes(world, add);
}

export type Enqueue = (key: string) => void;

/** Changes other than status: what moves placement. */
function specChanged(a: KubeObject & { spec?: unknown }, b: KubeObject & { spec?: unknown }): boolean {
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

function modelsOf(lmn: LocalModelNode): string[] {
  return [...(lmn.spec?.localModels ?? []).map((m) => m.modelName), ...Object.keys(lmn.status?.modelStatus ?? {})];
}

/**
 * Wires informer events to queue keys. Status-only updates of our own objects enqueue just that
 * object; node heartbeats that change neither labels nor readiness enqueue nothing.
 */
export function registerWatches(world: World, add: Enqueue): void {
  const all = (): void => enqueueAll(world, add);
  registerServingVolumeWatches(world, add);
  // Who uses a cache moves placement of caches being deleted (held or not): everything.
  world.users.onChange(all);
  world.caches.on({
    add: all,
    delete: all,
    update: (a, b) => (specChanged(a, b) ? all() : add(cacheKey(b.metadata.name ?? ''))),
  });
  world.groups.on({
    add: all,
    delete: all,
    update: (a, b) => (specChanged(a, b) ? all() : add(groupKey(b.metadata.name ?? ''))),
  });
  world.nodes.on({
    add: all,
    delete: all,
    update: (a, b) => {
      if (nodeChanged(a, b)) all();
      // Someone else changed a model label: that node's labels are reconciled back.
      else if (!sameJson(modelLabels(a.metadata.labels), modelLabels(b.metadata.labels)))
        add(nodeKey(b.metadata.name ?? ''));
    },
  });
  const fromLmn = (lmn: LocalModelNode): void => {
    add(nodeKey(lmn.metadata.name ?? ''));
    for (const m of modelsOf(lmn)) add(cacheKey(m));
    // A group's used/available come from its nodes' reports.
    for (const g of world.groups.list()) add(groupKey(g.metadata.name ?? ''));
  };
  world.localModelNodes.on({
    add: fromLmn,
    delete: fromLmn,
    update: (a, b) => {
      fromLmn(b);
      for (const m of modelsOf(a)) add(cacheKey(m));
    },
  });
}
