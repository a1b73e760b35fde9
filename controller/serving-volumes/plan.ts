// The serving volumes of one cache (pure): a PV and a PVC for each namespace and group its consumers read
// through; those of a namespace whose consumers left are kept for a grace period and while any pod mounts
// the claim; outdated or released ones are replaced only when no pod mounts them.
import type { LocalModelCache, LocalModelNodeGroup } from '../../api/types.ts';
import type { PersistentVolume, PersistentVolumeClaim } from '../../kube/resources.ts';
import type { CacheConsumer } from './consumers.ts';
import { ownedBy, servingVolume, SPEC_HASH_ANNOTATION, type ServingVolume } from './volumes.ts';

export interface VolumeObservation {
  cache: LocalModelCache;
  groups: ReadonlyMap<string, LocalModelNodeGroup>;
  /** This cache's consumers. */
  consumers: readonly CacheConsumer[];
  /** Every PV, by name. */
  volumes: ReadonlyMap<string, PersistentVolume>;
  /** Every PVC, by `namespace/name`. */
  claims: ReadonlyMap<string, PersistentVolumeClaim>;
  /** `namespace/claim` of every PVC an active pod mounts. */
  inUse: ReadonlySet<string>;
  /** When each of this cache's claims was first seen without a consumer (ms), from the previous passes. */
  unusedSince: ReadonlyMap<string, number>;
  /** False while consumers or pods are not all known yet: nothing is deleted. */
  consumersKnown: boolean;
  now: number;
  graceMs: number;
}

export type VolumeAction =
  | { kind: 'create'; object: PersistentVolume | PersistentVolumeClaim }
  | { kind: 'delete-pvc'; namespace: string; name: string; uid?: string; why: string }
  | { kind: 'delete-pv'; name: string; uid?: string; why: string };

export interface VolumePlan {
  actions: VolumeAction[];
  /** This cache's memory of unused claims after the pass (replaces the observed one). */
  unusedSince: Map<string, number>;
  /** Look again then: a grace period ends. */
  requeueAfterMs?: number;
  /** What stops a consumer from getting its volume, for the user (sorted). */
  problems: string[];
}

const claimKey = (namespace: string, name: string): string => `${namespace}/${name}`;

function outdated(actual: PersistentVolume | PersistentVolumeClaim, desired: ServingVolume['pv' | 'pvc']): boolean {
  return actual.metadata.annotations?.[SPEC_HASH_ANNOTATION] !== desired.metadata.annotations?.[SPEC_HASH_ANNOTATION];
}

/** Plans the PVs and PVCs of one cache. Same observation, same plan; at steady state no actions. */
export function planServingVolumes(o: VolumeObservation): VolumePlan {
  const { cache } = o;
  const cacheName = cache.metadata.name ?? '';
  const actions: VolumeAction[] = [];
  const problems = new Set<string>();
  const unusedSince = new Map<string, number>();
  let requeueAfterMs: number | undefined;
  const deletePair = (pvc: PersistentVolumeClaim | undefined, pv: PersistentVolume | undefined, why: string): void => {
    if (pvc && !pvc.metadata.deletionTimestamp)
      actions.push({
        kind: 'delete-pvc',
        namespace: pvc.metadata.namespace ?? '',
        name: pvc.metadata.name ?? '',
        ...(pvc.metadata.uid ? { uid: pvc.metadata.uid } : {}),
        why,
      });
    if (pv && !pv.metadata.deletionTimestamp)
      actions.push({
        kind: 'delete-pv',
        name: pv.metadata.name ?? '',
        ...(pv.metadata.uid ? { uid: pv.metadata.uid } : {}),
        why,
      });
  };

  // Desired: one volume per (namespace, group) that a consumer reads through.
  const desired = new Map<string, ServingVolume>();
  for (const c of o.consumers) {
    const group = o.groups.get(c.group);
    if (!group) {
      problems.add(
        `${c.kind} ${c.namespace}/${c.name} reads through LocalModelNodeGroup '${c.group}', which does not exist: ` +
          'create it or remove it from spec.nodeGroups',
      );
      continue;
    }
    const v = servingVolume(cache, group, c.namespace);
    if ('error' in v) {
      problems.add(v.error);
      continue;
    }
    desired.set(claimKey(c.namespace, v.pvc.metadata.name ?? ''), v);
  }

  for (const [key, want] of desired) {
    const pvName = want.pv.metadata.name ?? '';
    const pv = o.volumes.get(pvName);
    const pvc = o.claims.get(key);
    const foreign = [
      pv && !ownedBy(pv, cache) ? `PersistentVolume ${pvName}` : undefined,
      pvc && !ownedBy(pvc, cache) ? `PersistentVolumeClaim ${key}` : undefined,
    ].filter((x) => x !== undefined);
    if (foreign.length) {
      problems.add(
        `${foreign.join(' and ')} already exist(s) and belong(s) to something other than LocalModelCache ` +
          `'${cacheName}': delete it so that modelcache can make the cache's volume there`,
      );
      continue;
    }
    if (pv?.metadata.deletionTimestamp || pvc?.metadata.deletionTimestamp) continue; // made again once gone
    const boundElsewhere = pv?.spec?.claimRef?.uid && pvc?.metadata.uid && pv.spec.claimRef.uid !== pvc.metadata.uid;
    const stale =
      (pv && (outdated(pv, want.pv) || ['Released', 'Failed'].includes(pv.status?.phase ?? ''))) ||
      boundElsewhere ||
      (pvc && (outdated(pvc, want.pvc) || pvc.status?.phase === 'Lost'));
    if (stale) {
      if (pvc && o.inUse.has(key))
        problems.add(
          `the volume ${key} (PersistentVolume ${pvName}) no longer matches its node group or is released; it is ` +
            'replaced once no pod mounts it',
        );
      else deletePair(pvc, pv, 'outdated or released: replaced');
      continue;
    }
    if (!pv) actions.push({ kind: 'create', object: want.pv });
    if (!pvc) actions.push({ kind: 'create', object: want.pvc });
  }

  // Ours that no consumer wants: kept for the grace period and while mounted, then removed with their PV.
  for (const pvc of o.claims.values()) {
    if (!ownedBy(pvc, cache)) continue;
    const key = claimKey(pvc.metadata.namespace ?? '', pvc.metadata.name ?? '');
    if (desired.has(key) || pvc.metadata.deletionTimestamp) continue;
    const pv = pvc.spec?.volumeName ? o.volumes.get(pvc.spec.volumeName) : undefined;
    const ownPv = pv && ownedBy(pv, cache) ? pv : undefined;
    if (!o.consumersKnown || o.inUse.has(key)) {
      if (!o.consumersKnown && o.unusedSince.has(key)) unusedSince.set(key, o.unusedSince.get(key) ?? o.now);
      continue;
    }
    const since = o.unusedSince.get(key) ?? o.now;
    const left = since + o.graceMs - o.now;
    if (left > 0) {
      unusedSince.set(key, since);
      requeueAfterMs = Math.min(requeueAfterMs ?? left, left);
      continue;
    }
    deletePair(pvc, ownPv, `no consumer in namespace ${pvc.metadata.namespace} for ${Math.round(o.graceMs / 1000)}s`);
  }

  // Our PVs whose claim is gone (deleted by someone, or by the pass above): a released PV never binds again.
  const claimed = new Set(actions.flatMap((a) => (a.kind === 'delete-pv' ? [a.name] : [])));
  for (const pv of o.volumes.values()) {
    if (!ownedBy(pv, cache) || pv.metadata.deletionTimestamp || claimed.has(pv.metadata.name ?? '')) continue;
    const ref = pv.spec?.claimRef;
    const key = claimKey(ref?.namespace ?? '', ref?.name ?? '');
    if (desired.has(key) || o.claims.has(key) || !o.consumersKnown) continue;
    deletePair(undefined, pv, 'its claim is gone');
  }

  return {
    actions,
    unusedSince,
    ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}),
    problems: [...problems].sort(),
  };
}
