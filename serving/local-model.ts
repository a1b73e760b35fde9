// KServe's local-model contract for serving objects (pure): the labels and annotations its webhooks set,
// and the facts of a serving object that decide which cache and group it reads. Used by the admission
// webhooks and by the per-namespace volumes, so both name the same PVC.
import type { InferenceService } from '../api/kserve.ts';
import type { NodeSelector } from '../api/types.ts';
import type { NodeConstraints } from './cache-match.ts';
import { predictorOf } from './isvc.ts';

export const LOCAL_MODEL_LABEL = 'internal.serving.kserve.io/localmodel';
/** Set by KServe for a LocalModelNamespaceCache, which modelcache does not serve: such objects are left alone. */
export const LOCAL_MODEL_NAMESPACE_LABEL = 'internal.serving.kserve.io/localmodel-namespace';
export const SOURCE_URI_ANNOTATION = 'internal.serving.kserve.io/localmodel-sourceuri';
export const PVC_NAME_ANNOTATION = 'internal.serving.kserve.io/localmodel-pvc-name';
/** Ours: a pod that opts in to a cache by name. */
export const CACHE_LABEL = 'modelcache.io/cache';

export type ServingKind = 'InferenceService' | 'LLMInferenceService';

export interface PodShape {
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
export function servingFacts(
  obj: Record<string, unknown>,
  kind: ServingKind,
): { uri?: string; constraints: NodeConstraints } {
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
