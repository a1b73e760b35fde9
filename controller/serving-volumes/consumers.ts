// Who reads a cache in which namespace, through which group's PVC (pure). The same rules as the admission
// webhooks, so the volume made is the one the mutated pods name: the PVC a serving object's
// `…/localmodel-pvc-name` annotation (or a pod's volume) already names when it is one of the cache's, else
// matchConsumer's choice.
import type { InferenceService, LLMInferenceService } from '../../api/kserve.ts';
import type { LocalModelCache, LocalModelNodeGroup } from '../../api/types.ts';
import type { Pod } from '../../kube/resources.ts';
import { cachePvcName, matchConsumer, type Consumer } from '../../serving/cache-match.ts';
import {
  CACHE_LABEL,
  LOCAL_MODEL_LABEL,
  LOCAL_MODEL_NAMESPACE_LABEL,
  PVC_NAME_ANNOTATION,
  podConstraints,
  servingFacts,
  type PodShape,
  type ServingKind,
} from '../../serving/local-model.ts';

/** Labels by which a pod names the cache it reads: ours (opt-in) and KServe's on its predictor pods. */
export const CONSUMER_POD_LABELS: readonly string[] = [CACHE_LABEL, LOCAL_MODEL_LABEL];

type ConsumerKind = 'InferenceService' | 'LLMInferenceService' | 'Pod';

/** One object in one namespace that reads a cache through one of its groups. */
export interface CacheConsumer {
  kind: ConsumerKind;
  name: string;
  namespace: string;
  cache: string;
  group: string;
}

export interface ConsumerSources {
  inferenceServices: readonly InferenceService[];
  llmInferenceServices: readonly LLMInferenceService[];
  /** Pods that name a cache by label (modelcache.io/cache, or KServe's internal.serving.kserve.io/localmodel). */
  pods: readonly Pod[];
}

/** The group whose PVC `claim` is, when it is one of the cache's. */
function groupOfClaim(cache: LocalModelCache, claim: string | undefined): string | undefined {
  const name = cache.metadata.name ?? '';
  return claim === undefined ? undefined : cache.spec.nodeGroups?.find((g) => cachePvcName(name, g) === claim);
}

function resolve(
  kind: ConsumerKind,
  obj: { metadata: { name?: string; namespace?: string; annotations?: Record<string, string> } },
  consumer: Consumer,
  caches: readonly LocalModelCache[],
  groups: ReadonlyMap<string, LocalModelNodeGroup>,
  claims: readonly string[],
  cacheName?: string,
): CacheConsumer | undefined {
  const match = matchConsumer(consumer, caches, groups, cacheName);
  if (match.kind !== 'cache') return undefined;
  const chosen = claims.map((c) => groupOfClaim(match.choice.cache, c)).find((g) => g !== undefined);
  return {
    kind,
    name: obj.metadata.name ?? '',
    namespace: obj.metadata.namespace ?? '',
    cache: match.choice.cacheName,
    group: chosen ?? match.choice.group,
  };
}

/**
 * Every consumer of every cache: InferenceServices by predictor storageUri, LLMInferenceServices by
 * spec.model.uri, pods by the cache their label names. Objects using no cache (or asking wrongly) are left out.
 */
export function findConsumers(
  sources: ConsumerSources,
  caches: readonly LocalModelCache[],
  groups: ReadonlyMap<string, LocalModelNodeGroup>,
): CacheConsumer[] {
  const out: CacheConsumer[] = [];
  const push = (c: CacheConsumer | undefined): void => {
    if (c) out.push(c);
  };
  const skip = (labels: Record<string, string> | undefined): boolean =>
    labels?.[LOCAL_MODEL_NAMESPACE_LABEL] !== undefined;
  const serving: Array<[ServingKind, InferenceService | LLMInferenceService]> = [
    ...sources.inferenceServices.map((x): [ServingKind, InferenceService] => ['InferenceService', x]),
    ...sources.llmInferenceServices.map((x): [ServingKind, LLMInferenceService] => ['LLMInferenceService', x]),
  ];
  for (const [kind, obj] of serving) {
    if (skip(obj.metadata.labels)) continue;
    const { uri, constraints } = servingFacts(obj as unknown as Record<string, unknown>, kind);
    if (uri === undefined) continue;
    const consumer: Consumer = {
      uri,
      ...(obj.metadata.annotations ? { annotations: obj.metadata.annotations } : {}),
      constraints,
    };
    const named = obj.metadata.annotations?.[PVC_NAME_ANNOTATION];
    push(resolve(kind, obj, consumer, caches, groups, named ? [named] : []));
  }
  for (const pod of sources.pods) {
    const labels = pod.metadata.labels ?? {};
    if (skip(labels)) continue;
    const cacheName = CONSUMER_POD_LABELS.map((l) => labels[l]).find((v) => v !== undefined);
    if (!cacheName) continue;
    const consumer: Consumer = {
      ...(pod.metadata.annotations ? { annotations: pod.metadata.annotations } : {}),
      constraints: podConstraints(pod.spec as PodShape | undefined),
    };
    const claims = (pod.spec?.volumes ?? []).flatMap((v) => v.persistentVolumeClaim?.claimName ?? []);
    push(resolve('Pod', pod, consumer, caches, groups, claims, cacheName));
  }
  return out;
}
