// What wakes the serving volumes of a cache: its PVs and PVCs (by owner), and pods that name it or mount
// one of its claims. Caches, groups and serving objects enqueue every cache through enqueueAll.
import type { KubeObject } from '../../kube/types.ts';
import type { Pod } from '../../kube/resources.ts';
import { cachePvcName } from '../../serving/cache-match.ts';
import { podActive } from '../model-users.ts';
import type { World } from '../world.ts';
import { CONSUMER_POD_LABELS } from './consumers.ts';

export const VOLUMES_KIND = 'volumes';
export const volumesKey = (cache: string): string => `${VOLUMES_KIND}:${cache}`;

type Enqueue = (key: string) => void;

/** Every cache's volumes (what a resync does). */
export function enqueueAllVolumes(world: World, add: Enqueue): void {
  for (const c of world.caches.list()) add(volumesKey(c.metadata.name ?? ''));
}

function owners(obj: KubeObject): string[] {
  return (obj.metadata.ownerReferences ?? []).filter((o) => o.kind === 'LocalModelCache').map((o) => o.name);
}

/** The caches a pod names by label or whose claim it mounts. */
function cachesOfPod(world: World, pod: Pod): string[] {
  const labels = pod.metadata.labels ?? {};
  const out = new Set(CONSUMER_POD_LABELS.flatMap((l) => labels[l] ?? []));
  const claims = new Set((pod.spec?.volumes ?? []).flatMap((v) => v.persistentVolumeClaim?.claimName ?? []));
  if (claims.size)
    for (const c of world.caches.list()) {
      const name = c.metadata.name ?? '';
      if ((c.spec.nodeGroups ?? []).some((g) => claims.has(cachePvcName(name, g)))) out.add(name);
    }
  return [...out];
}

/** A pod update that changes what it consumes or holds: labels, ending, deletion. Status heartbeats do not. */
function podChanged(a: Pod, b: Pod): boolean {
  return (
    JSON.stringify(a.metadata.labels ?? {}) !== JSON.stringify(b.metadata.labels ?? {}) ||
    podActive(a) !== podActive(b) ||
    a.metadata.deletionTimestamp !== b.metadata.deletionTimestamp
  );
}

export function registerServingVolumeWatches(world: World, add: Enqueue): void {
  const fromOwner = (obj: KubeObject): void => {
    for (const name of owners(obj)) add(volumesKey(name));
  };
  for (const inf of [world.persistentVolumes, world.persistentVolumeClaims] as const)
    inf.on({ add: fromOwner, delete: fromOwner, update: (_a, b) => fromOwner(b) });
  const fromPod = (pod: Pod): void => {
    for (const name of cachesOfPod(world, pod)) add(volumesKey(name));
  };
  world.pods.on({
    add: fromPod,
    delete: fromPod,
    update: (a, b) => {
      if (!podChanged(a, b)) return;
      fromPod(a);
      fromPod(b);
    },
  });
}
