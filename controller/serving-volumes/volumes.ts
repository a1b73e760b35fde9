// The PV and PVC a namespace gets for one cache and group, exactly as KServe names and shapes them (pure):
// PV `<cache>-<group>-<namespace>` with the group's persistentVolumeSpec, PVC `<cache>-<group>` with the
// group's persistentVolumeClaimSpec and volumeName; for a group of ours (no PV spec), a `local` PV at the
// group's path whose node affinity is the group's node selector, so it follows members as they change.
import { createHash } from 'node:crypto';
import {
  API_VERSION,
  type LabelSelector,
  type LocalModelCache,
  type LocalModelNodeGroup,
  type NodeSelector,
  type NodeSelectorRequirement,
  type PersistentVolumeClaimSpec,
  type PersistentVolumeSpec,
} from '../../api/types.ts';
import type { PersistentVolume, PersistentVolumeClaim } from '../../kube/resources.ts';
import type { OwnerReference } from '../../kube/types.ts';
import { cachePvcName } from '../../serving/cache-match.ts';
import { groupStoragePath } from '../placement/group-spec.ts';

/** Hash of the spec a PV or PVC was made from: a different desired spec means the object is outdated. */
export const SPEC_HASH_ANNOTATION = 'modelcache.io/spec-hash';
const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'modelcache' } as const;

/** KServe's PV name for a cache's group in a namespace. */
function servingPvName(cache: string, group: string, namespace: string): string {
  return `${cachePvcName(cache, group)}-${namespace}`;
}

export interface ServingVolume {
  pv: PersistentVolume;
  pvc: PersistentVolumeClaim;
}

/** JSON with object keys sorted, so equal specs hash equally whatever order their fields came in. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

function specHash(spec: unknown): string {
  return createHash('sha256').update(canonical(spec)).digest('hex').slice(0, 16);
}

/** A label selector as node selector requirements (the same semantics for In, NotIn, Exists, DoesNotExist). */
function selectorRequirements(sel: LabelSelector): NodeSelectorRequirement[] {
  const reqs: NodeSelectorRequirement[] = [
    ...Object.entries(sel.matchLabels ?? {}).map(([key, v]) => ({ key, operator: 'In' as const, values: [v] })),
    ...(sel.matchExpressions ?? []).map((e) => ({ ...e })),
  ];
  // An empty selector selects every node; a PV's node selector term must say something.
  return reqs.length ? reqs : [{ key: 'kubernetes.io/hostname', operator: 'Exists' }];
}

/** The PV's required node affinity: the group's PV affinity ANDed with its node selector (both must match). */
function nodeAffinity(spec: LocalModelNodeGroup['spec']): { required: NodeSelector } | undefined {
  const required = spec.persistentVolumeSpec?.nodeAffinity?.required;
  const sel = spec.nodeSelector ? selectorRequirements(spec.nodeSelector) : undefined;
  if (!sel) return required ? { required } : undefined;
  if (!required) return { required: { nodeSelectorTerms: [{ matchExpressions: sel }] } };
  return {
    required: {
      nodeSelectorTerms: required.nodeSelectorTerms.map((t) => ({
        ...t,
        matchExpressions: [...(t.matchExpressions ?? []), ...sel],
      })),
    },
  };
}

function pvSpec(group: LocalModelNodeGroup): { spec: PersistentVolumeSpec } | { error: string } {
  const affinity = nodeAffinity(group.spec);
  const given = group.spec.persistentVolumeSpec;
  if (given) return { spec: { ...given, ...(affinity ? { nodeAffinity: affinity } : {}) } };
  if (!affinity)
    return {
      error:
        `LocalModelNodeGroup '${group.metadata.name}' selects no nodes (neither nodeSelector nor ` +
        'persistentVolumeSpec.nodeAffinity is set), so no PersistentVolume can be made for it: set one',
    };
  const spec: PersistentVolumeSpec = {
    accessModes: ['ReadOnlyMany'],
    capacity: { storage: String(group.spec.storageLimit) },
    storageClassName: '',
    persistentVolumeReclaimPolicy: 'Retain',
    volumeMode: 'Filesystem',
    local: { path: groupStoragePath(group.spec) },
    nodeAffinity: affinity,
  };
  return { spec };
}

/** A claim that binds to the PV: same access modes, class and mode, asking for what the PV offers. */
function defaultClaimSpec(pv: PersistentVolumeSpec, group: LocalModelNodeGroup): PersistentVolumeClaimSpec {
  return {
    accessModes: pv.accessModes ?? ['ReadOnlyMany'],
    storageClassName: pv.storageClassName ?? '',
    ...(pv.volumeMode ? { volumeMode: pv.volumeMode } : {}),
    resources: { requests: { storage: String(pv.capacity?.storage ?? group.spec.storageLimit) } },
  };
}

/** The cache as owner: the garbage collector removes its volumes with it. */
function cacheOwner(cache: LocalModelCache): OwnerReference {
  return {
    apiVersion: API_VERSION,
    kind: 'LocalModelCache',
    name: cache.metadata.name ?? '',
    uid: cache.metadata.uid ?? '',
  };
}

/** Is the object owned by this cache (by uid: a cache deleted and created again under the same name is another)? */
export function ownedBy(obj: { metadata: { ownerReferences?: OwnerReference[] } }, cache: LocalModelCache): boolean {
  return (obj.metadata.ownerReferences ?? []).some((o) => o.kind === 'LocalModelCache' && o.uid === cache.metadata.uid);
}

/** The PV and PVC of a cache's group in a namespace, or why there can be none. */
export function servingVolume(
  cache: LocalModelCache,
  group: LocalModelNodeGroup,
  namespace: string,
): ServingVolume | { error: string } {
  const cacheName = cache.metadata.name ?? '';
  const groupName = group.metadata.name ?? '';
  const pvName = servingPvName(cacheName, groupName, namespace);
  const pvcName = cachePvcName(cacheName, groupName);
  if (pvName.length > 253)
    return {
      error:
        `the PersistentVolume name '${pvName.slice(0, 40)}…' (<cache>-<group>-<namespace>) is longer than 253 ` +
        'characters: use shorter cache, group or namespace names',
    };
  const made = pvSpec(group);
  if ('error' in made) return made;
  const spec = made.spec;
  const pvFull = {
    ...spec,
    claimRef: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace, name: pvcName },
  };
  const claim = { ...(group.spec.persistentVolumeClaimSpec ?? defaultClaimSpec(spec, group)), volumeName: pvName };
  const meta = (name: string, hashed: unknown) => ({
    name,
    labels: { ...MANAGED_BY },
    annotations: { [SPEC_HASH_ANNOTATION]: specHash(hashed) },
    ownerReferences: [cacheOwner(cache)],
  });
  return {
    pv: { apiVersion: 'v1', kind: 'PersistentVolume', metadata: meta(pvName, pvFull), spec: pvFull },
    pvc: {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { ...meta(pvcName, claim), namespace },
      spec: claim,
    },
  };
}
