// The pod mutator (pure): pods that opt in with `modelcache.io/cache: <cache>` get the cache's PVC mounted
// read-only and a required node affinity on the node label of a complete copy; KServe's predictor pods that
// use a cache get the affinity (their mount is KServe's pod mutator's job). Any pod naming what does not exist
// is refused with the way out, so an opted-in pod is never admitted without its mount.
import { storageKeyFor } from '../../api/storage-key.ts';
import type { LocalModelCache, LocalModelNodeGroup, NodeSelector, NodeSelectorRequirement } from '../../api/types.ts';
import { matchConsumer, modelNodeLabel } from '../../serving/cache-match.ts';
import type { Decision, JsonPatchOp } from './admission.ts';
import {
  CACHE_LABEL,
  LOCAL_MODEL_LABEL,
  LOCAL_MODEL_NAMESPACE_LABEL,
  podConstraints,
} from '../../serving/local-model.ts';

/** Where the model appears in the containers (default /mnt/models). */
const MOUNT_PATH_ANNOTATION = 'modelcache.io/mount-path';
/** Comma-separated names of the containers (or init containers) that get the mount (default: every container). */
const CONTAINERS_ANNOTATION = 'modelcache.io/containers';
const DEFAULT_MOUNT_PATH = '/mnt/models';
/** Name of the volume added to an opted-in pod. */
const VOLUME_NAME = 'modelcache-model';

interface VolumeMount {
  name: string;
  mountPath: string;
  subPath?: string;
  readOnly?: boolean;
}

interface ContainerShape {
  name: string;
  volumeMounts?: VolumeMount[];
}

interface PodSpecShape {
  containers?: ContainerShape[];
  initContainers?: ContainerShape[];
  volumes?: Array<{ name: string; persistentVolumeClaim?: { claimName?: string } }>;
  nodeSelector?: Record<string, string>;
  affinity?: { nodeAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: NodeSelector } } & Record<
    string,
    unknown
  >;
}

export interface PodShape {
  metadata?: {
    name?: string;
    generateName?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: PodSpecShape;
}

const deny = (message: string): Decision => ({ allowed: false, message });

/** The mutation of one pod at creation. */
export function mutatePod(
  pod: PodShape,
  caches: readonly LocalModelCache[],
  groups: ReadonlyMap<string, LocalModelNodeGroup>,
): Decision {
  const labels = pod.metadata?.labels ?? {};
  const opted = labels[CACHE_LABEL];
  if (opted !== undefined) return mutateOptedIn(pod, opted, caches, groups);
  const kserve = labels[LOCAL_MODEL_LABEL];
  if (kserve === undefined || labels[LOCAL_MODEL_NAMESPACE_LABEL] !== undefined) return { allowed: true, patch: [] };
  const cache = caches.find((c) => c.metadata.name === kserve);
  if (!cache)
    return {
      allowed: true,
      patch: [],
      warnings: [
        `label ${LOCAL_MODEL_LABEL} names LocalModelCache '${kserve}', which does not exist: no node affinity added`,
      ],
    };
  return { allowed: true, patch: affinityOps(pod.spec, storageKeyFor(cache.spec.sourceModelUri)) };
}

function mutateOptedIn(
  pod: PodShape,
  cacheName: string,
  caches: readonly LocalModelCache[],
  groups: ReadonlyMap<string, LocalModelNodeGroup>,
): Decision {
  const annotations = pod.metadata?.annotations ?? {};
  const spec = pod.spec ?? {};
  if (!cacheName) return deny(`label ${CACHE_LABEL} is empty: set it to the name of a LocalModelCache`);
  const match = matchConsumer({ annotations, constraints: podConstraints(spec) }, caches, groups, cacheName);
  if (match.kind === 'none') {
    const known = caches.map((c) => c.metadata.name).slice(0, 10);
    return deny(
      `label ${CACHE_LABEL} names LocalModelCache '${cacheName}', which does not exist: create it, or set the label ` +
        `to an existing cache${known.length ? ` (${known.join(', ')})` : ' (there are none yet)'}`,
    );
  }
  if (match.kind === 'refused') return deny(match.message);
  const { pvcName, storageKey } = match.choice;

  const mountPath = annotations[MOUNT_PATH_ANNOTATION] ?? DEFAULT_MOUNT_PATH;
  if (!mountPath.startsWith('/') || mountPath.includes(':'))
    return deny(
      `annotation ${MOUNT_PATH_ANNOTATION}: '${mountPath}' is not an absolute path: give one such as ${DEFAULT_MOUNT_PATH}`,
    );

  const all = [
    ...(spec.containers ?? []).map((c, i) => ({ c, path: `/spec/containers/${i}` })),
    ...(spec.initContainers ?? []).map((c, i) => ({ c, path: `/spec/initContainers/${i}` })),
  ];
  const named = annotations[CONTAINERS_ANNOTATION]?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  let targets = all.slice(0, spec.containers?.length ?? 0);
  if (named?.length) {
    const missing = named.filter((n) => !all.some((t) => t.c.name === n));
    if (missing.length)
      return deny(
        `annotation ${CONTAINERS_ANNOTATION} names container '${missing.join("', '")}', which the pod does not have ` +
          `(its containers: ${all.map((t) => t.c.name).join(', ')}): correct the name, or remove the annotation to ` +
          `mount into every container`,
      );
    targets = all.filter((t) => named.includes(t.c.name));
  }

  const ops: JsonPatchOp[] = [];
  const volume = spec.volumes?.find((v) => v.name === VOLUME_NAME);
  if (volume && volume.persistentVolumeClaim?.claimName !== pvcName)
    return deny(`the pod already has a volume named '${VOLUME_NAME}', which modelcache adds: rename that volume`);
  if (!volume) {
    const v = { name: VOLUME_NAME, persistentVolumeClaim: { claimName: pvcName, readOnly: true } };
    ops.push(
      spec.volumes
        ? { op: 'add', path: '/spec/volumes/-', value: v }
        : { op: 'add', path: '/spec/volumes', value: [v] },
    );
  }
  const mount: VolumeMount = { name: VOLUME_NAME, mountPath, subPath: `models/${storageKey}`, readOnly: true };
  for (const { c, path } of targets) {
    const there = c.volumeMounts?.find((m) => m.mountPath.replace(/\/+$/, '') === mountPath.replace(/\/+$/, ''));
    if (there?.name === VOLUME_NAME) continue;
    if (there)
      return deny(
        `container '${c.name}' already mounts volume '${there.name}' at ${mountPath}: set annotation ` +
          `${MOUNT_PATH_ANNOTATION} to another path for the model`,
      );
    ops.push(
      c.volumeMounts
        ? { op: 'add', path: `${path}/volumeMounts/-`, value: mount }
        : { op: 'add', path: `${path}/volumeMounts`, value: [mount] },
    );
  }
  return { allowed: true, patch: [...ops, ...affinityOps(spec, storageKey)] };
}

/**
 * Requires the node label of a complete copy, ANDed into every term of the pod's required node affinity
 * (a new term when it has none); nothing when every term already requires it.
 */
export function affinityOps(spec: PodSpecShape | undefined, storageKey: string): JsonPatchOp[] {
  const req: NodeSelectorRequirement = { key: modelNodeLabel(storageKey), operator: 'In', values: ['true'] };
  const has = (rs: NodeSelectorRequirement[] | undefined): boolean =>
    rs?.some((r) => r.key === req.key && r.operator === 'In' && r.values?.length === 1 && r.values[0] === 'true') ??
    false;
  const affinity = spec?.affinity;
  const terms = affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms ?? [];
  if (terms.length && terms.every((t) => has(t.matchExpressions))) return [];
  const merged = terms.length
    ? terms.map((t) => (has(t.matchExpressions) ? t : { ...t, matchExpressions: [...(t.matchExpressions ?? []), req] }))
    : [{ matchExpressions: [req] }];
  const nodeAffinity = {
    ...(affinity?.nodeAffinity ?? {}),
    requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: merged },
  };
  return [{ op: 'add', path: '/spec/affinity', value: { ...(affinity ?? {}), nodeAffinity } }];
}
