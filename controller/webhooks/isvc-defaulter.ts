// The InferenceService / LLMInferenceService defaulter (pure): KServe's own local-model labels and annotations,
// so KServe's pod mutator mounts the cache and skips the storage initializer, whether or not KServe's own
// local-model feature is on.
import type { LocalModelCache, LocalModelNodeGroup } from '../../api/types.ts';
import { cachePvcName, matchConsumer, NODE_GROUP_ANNOTATION, type NodeConstraints } from '../../serving/cache-match.ts';
import {
  LOCAL_MODEL_LABEL,
  LOCAL_MODEL_NAMESPACE_LABEL,
  PVC_NAME_ANNOTATION,
  SOURCE_URI_ANNOTATION,
  servingFacts,
  type ServingKind,
} from '../../serving/local-model.ts';
import { metadataMapOps, type Decision } from './admission.ts';

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
