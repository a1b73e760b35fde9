import {
  INFERENCE_SERVICES,
  LLM_INFERENCE_SERVICES,
  TRAINED_MODELS,
  type InferenceService,
  type LLMInferenceService,
  type PredictorImpl,
  type TrainedModel,
} from '../api/kserve.ts';
import type { Informer, InformerHandlers } from '../kube/informer.ts';
import type { Kinds } from '../kube/kinds.ts';
import type { Pod } from '../kube/resources.ts';
import { subpathUnder } from '../serving/cache-uri.ts';
import { predictorOf } from '../serving/isvc.ts';

export interface IsvcRef {
  name: string;
  namespace: string;
}

/** Every storage URI an InferenceService loads: its predictor's own, and those of its TrainedModels. */
function isvcUris(isvc: InferenceService, models: TrainedModel[]): string[] {
  const impl = predictorOf(isvc)?.impl as PredictorImpl | undefined;
  const own = impl?.storageUri ? [impl.storageUri] : [];
  const tms = models
    .filter((m) => m.metadata.namespace === isvc.metadata.namespace && m.spec?.inferenceService === isvc.metadata.name)
    .map((m) => m.spec.model.storageUri);
  return [...own, ...tms];
}

/** The model URI of an LLMInferenceService, when it names one. */
function llmUri(llm: LLMInferenceService): string | undefined {
  const uri = llm.spec?.model?.uri;
  return typeof uri === 'string' ? uri : undefined;
}

const byRef = (a: IsvcRef, b: IsvcRef): number => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1);

/** A pod still runs (or may still start): it holds what it mounts. */
export function podActive(pod: Pod): boolean {
  return pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed';
}

const KSERVE_KINDS = [INFERENCE_SERVICES, TRAINED_MODELS, LLM_INFERENCE_SERVICES] as const;

/**
 * Which InferenceServices and LLMInferenceServices use which model URIs (LocalModelCache.status, and to
 * hold deletion of a cache in use), and which pods name a cache by label. Reads the process's shared
 * informers: KServe's start once their CRDs exist.
 */
export class ModelUsers {
  readonly #kinds: Kinds;
  readonly #listeners: Array<() => void> = [];
  readonly #isvcs: Informer<InferenceService>;
  readonly #models: Informer<TrainedModel>;
  readonly #llms: Informer<LLMInferenceService>;
  readonly #pods: Informer<Pod>;

  constructor(kinds: Kinds, pods: Informer<Pod>) {
    this.#kinds = kinds;
    this.#pods = pods;
    this.#isvcs = kinds.optional(INFERENCE_SERVICES);
    this.#models = kinds.optional(TRAINED_MODELS);
    this.#llms = kinds.optional(LLM_INFERENCE_SERVICES);
    const changed = { add: this.#changed, update: this.#changed, delete: this.#changed };
    this.#isvcs.on(changed);
    this.#models.on(changed);
    this.#llms.on(changed);
    for (const rt of KSERVE_KINDS) kinds.onCrd(rt, this.#changed);
  }

  /** A source of "who uses what may have changed" (the users as a whole are the object). */
  on(handlers: InformerHandlers<ModelUsers>): void {
    this.#listeners.push(() => handlers.update?.(this, this));
  }

  #changed = (): void => {
    for (const fn of this.#listeners) fn();
  };

  /** Known: for each of KServe's kinds, either its CRD is not installed, or its informer has synced. */
  get ready(): boolean {
    return KSERVE_KINDS.every((rt) => this.#kinds.known(rt));
  }

  /** InferenceServices that use a cache's URI, sorted. */
  usersOf(cacheUri: string): IsvcRef[] {
    const models = this.#models.list();
    const out: IsvcRef[] = [];
    for (const isvc of this.#isvcs.list()) {
      if (isvc.metadata.deletionTimestamp) continue;
      if (isvcUris(isvc, models).some((u) => subpathUnder(u, cacheUri) !== undefined))
        out.push({ name: isvc.metadata.name ?? '', namespace: isvc.metadata.namespace ?? '' });
    }
    return out.sort(byRef);
  }

  /** LLMInferenceServices whose spec.model.uri is a cache's URI or below it, sorted. */
  llmUsersOf(cacheUri: string): IsvcRef[] {
    return this.llmInferenceServices()
      .filter((l) => subpathUnder(llmUri(l) ?? '', cacheUri) !== undefined)
      .map((l) => ({ name: l.metadata.name ?? '', namespace: l.metadata.namespace ?? '' }))
      .sort(byRef);
  }

  /** InferenceServices not being deleted. */
  inferenceServices(): InferenceService[] {
    return this.#isvcs.list().filter((o) => !o.metadata.deletionTimestamp);
  }

  /** LLMInferenceServices not being deleted. */
  llmInferenceServices(): LLMInferenceService[] {
    return this.#llms.list().filter((o) => !o.metadata.deletionTimestamp);
  }

  /** Pods that name a cache by one of `labels` (opt-in, KServe's predictor label), still active and not deleted. */
  podsNamingCaches(labels: readonly string[]): Pod[] {
    return this.#pods
      .list()
      .filter(
        (p) =>
          !p.metadata.deletionTimestamp && podActive(p) && labels.some((l) => p.metadata.labels?.[l] !== undefined),
      );
  }

  /** `namespace/claim` of every PVC an active pod mounts (deleting pods too: they may still run). */
  claimsInUse(): Set<string> {
    const out = new Set<string>();
    for (const p of this.#pods.list()) {
      if (!podActive(p)) continue;
      for (const v of p.spec?.volumes ?? [])
        if (v.persistentVolumeClaim?.claimName) out.add(`${p.metadata.namespace}/${v.persistentVolumeClaim.claimName}`);
    }
    return out;
  }

  /** Whether pods are known (their informer has listed once). */
  get podsKnown(): boolean {
    return this.#pods.hasSynced;
  }
}
