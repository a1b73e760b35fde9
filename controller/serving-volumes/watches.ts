// The serving volumes' controller and what wakes a cache's volumes: its PVs and PVCs (by owner), pods that
// name it or mount one of its claims, and whatever moves placement.
import {
  ControllerBuilder,
  refOf,
  type Controller,
  type ObjectRef,
  type Reconcile,
} from '../../kube/controller-builder.ts';
import type { Pod } from '../../kube/resources.ts';
import { cachePvcName } from '../../serving/cache-match.ts';
import { podActive } from '../model-users.ts';
import { specChanged, watchPlacement } from '../watches.ts';
import type { ClusterView } from '../cluster-view.ts';
import { CONSUMER_POD_LABELS } from './consumers.ts';

/** The caches a pod names by label or whose claim it mounts. */
function cachesOfPod(cluster: ClusterView, pod: Pod): ObjectRef[] {
  const labels = pod.metadata.labels ?? {};
  const out = new Set(CONSUMER_POD_LABELS.flatMap((l) => labels[l] ?? []));
  const claims = new Set((pod.spec?.volumes ?? []).flatMap((v) => v.persistentVolumeClaim?.claimName ?? []));
  if (claims.size)
    for (const c of cluster.caches.list()) {
      const name = c.metadata.name ?? '';
      if ((c.spec.nodeGroups ?? []).some((g) => claims.has(cachePvcName(name, g)))) out.add(name);
    }
  return [...out].map((name) => ({ name }));
}

/** A pod update that changes what it consumes or holds: labels, ending, deletion. Status heartbeats do not. */
function podChanged(a: Pod, b: Pod): boolean {
  return (
    JSON.stringify(a.metadata.labels ?? {}) !== JSON.stringify(b.metadata.labels ?? {}) ||
    podActive(a) !== podActive(b) ||
    a.metadata.deletionTimestamp !== b.metadata.deletionTimestamp
  );
}

/** One key per LocalModelCache: its per-namespace PVs and PVCs. */
export function servingVolumesController(cluster: ClusterView, reconcile: Reconcile): Controller {
  const every = (): ObjectRef[] => cluster.caches.list().map(refOf);
  const builder = new ControllerBuilder('volumes').for(cluster.caches, { update: specChanged });
  return watchPlacement(builder, cluster, every)
    .owns(cluster.persistentVolumes, 'LocalModelCache')
    .owns(cluster.persistentVolumeClaims, 'LocalModelCache')
    .watches(cluster.pods, (pod) => cachesOfPod(cluster, pod), { update: podChanged })
    .complete(reconcile);
}
