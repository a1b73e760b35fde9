// The InferenceService / LLMInferenceService defaulter (pure): KServe's own local-model labels and annotations,
// so KServe's pod mutator mounts the cache and skips the storage initializer, whether or not KServe's own
// local-model feature is on.
import type { InferenceService } from '../../api/kserve.ts';
import type { LocalModelCache, LocalModelNodeGroup } from '../../api/types.ts';
import {
  cachePvcName,
  matchConsumer,
  NODE_GROUP_ANNOTATION,
  type NodeConstraints,
  type NodeSelector,
} from '../../serving/cache-match.ts';
import { predictorOf } from '../../serving/isvc.ts';
import { metadataMapOps, type Decision } from './admission.ts';

export const LOCAL_MODEL_LABEL = 'internal.serving.kserve.io/localmodel';
/** Set by KServe for a LocalModelNamespaceCache, which modelcache does not serve: such objects are left alone. */
export const LOCAL_MODEL_NAMESPACE_LABEL = 'internal.serving.kserve.io/localmodel-namespace';
export const SOURCE_URI_ANNOTATION = 'internal.serving.kserve.io/localmodel-sourceuri';
export const PVC_NAME_ANNOTATION = 'internal.serving.kserve.io/localmodel-pvc-name';

export type ServingKind = 'InferenceService' | 'LLMInferenceService';

interface PodShape {
  nodeSelector?: Record<string, string>;
  affinity?: { nodeAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: NodeSelector } };
}

/** A pod spec's own node constraints (nodeSelector and required node affinity). */
export function podConstraints(spec: PodShape | undefined): NodeConstraints {
  const required = spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
  return {
    ...(spec?.nodeSelector ? { nodeSelector: spec.nodeSelector } : {}),
    ...(required ? { required } : {}),
  };
}

/** The model URI and the pod constraints of a serving object: the predictor's, or the LLMInferenceService's template. */
function servingFacts(obj: Record<string, unknown>, kind: ServingKind): { uri?: string; constraints: NodeConstraints } {
  if (kind === 'LLMInferenceService') {
    const spec = obj.spec as { model?: { uri?: unknown }; template?: PodShape } | undefined;
    const uri = spec?.model?.uri;
    return { ...(typeof uri === 'string' ? { uri } : {}), constraints: podConstraints(spec?.template) };
  }
  const isvc = obj as unknown as InferenceService;
  const uri = (predictorOf(isvc)?.impl as { storageUri?: unknown } | undefined)?.storageUri;
  return {
    ...(typeof uri === 'string' ? { uri } : {}),
    constraints: podConstraints(isvc.spec?.predictor as PodShape | undefined),
  };
}

/**
 * Labels and annotations an InferenceService or LLMInferenceService should carry: set when a cache serves its
 * model, removed when none does (or `serving.kserve.io/disable-localmodel` is set). A choice already made
 * (by KServe's own webhook, or by this one at creation) that names one of the cache's groups is kept.
 */
export function defaultServing(
  obj: Record<string, unknown>,
  kind: ServingKind,
  caches: readonly LocalModelCache[],
  groups: ReadonlyMap<string, LocalModelNodeGroup>,
): Decision {
  const meta = (obj.metadata ?? {}) as { labels?: Record<string, string>; annotations?: Record<string, string> };
  if (meta.labels?.[LOCAL_MODEL_NAMESPACE_LABEL] !== undefined) return { allowed: true, patch: [] };
  const facts = servingFacts(obj, kind);
  const match = matchConsumer(
    { ...facts, ...(meta.annotations ? { annotations: meta.annotations } : {}) },
    caches,
    groups,
  );
  if (match.kind === 'refused') return { allowed: false, message: `${kind}: ${match.message}`, code: 400 };
  if (match.kind === 'none') {
    return {
      allowed: true,
      patch: [
        ...metadataMapOps(meta, 'labels', { [LOCAL_MODEL_LABEL]: undefined }),
        ...metadataMapOps(meta, 'annotations', {
          [SOURCE_URI_ANNOTATION]: undefined,
          [PVC_NAME_ANNOTATION]: undefined,
        }),
      ],
    };
  }
  const c = match.choice;
  const existing = meta.annotations?.[PVC_NAME_ANNOTATION];
  const keep =
    meta.labels?.[LOCAL_MODEL_LABEL] === c.cacheName &&
    existing !== undefined &&
    (c.cache.spec.nodeGroups ?? []).some((g) => cachePvcName(c.cacheName, g) === existing) &&
    meta.annotations?.[NODE_GROUP_ANNOTATION] === undefined;
  return {
    allowed: true,
    patch: [
      ...metadataMapOps(meta, 'labels', { [LOCAL_MODEL_LABEL]: c.cacheName }),
      ...metadataMapOps(meta, 'annotations', {
        [SOURCE_URI_ANNOTATION]: c.cache.spec.sourceModelUri,
        [PVC_NAME_ANNOTATION]: keep ? existing : c.pvcName,
      }),
    ],
  };
}
