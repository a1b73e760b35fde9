import type { Logger } from 'pino';
import {
  INFERENCE_SERVICES,
  LLM_INFERENCE_SERVICES,
  TRAINED_MODELS,
  type InferenceService,
  type LLMInferenceService,
  type PredictorImpl,
  type TrainedModel,
} from '../api/kserve.ts';
import { sleep } from '../kube/backoff.ts';
import type { KubeClient } from '../kube/client.ts';
import { Informer } from '../kube/informer.ts';
import { CRDS, type Pod } from '../kube/resources.ts';
import { subpathUnder } from '../serving/cache-uri.ts';
import { predictorOf } from '../serving/isvc.ts';

export interface IsvcRef {
  name: string;
  namespace: string;
}

/** Every storage URI an InferenceService loads: its predictor's own, and those of its TrainedModels. */
export function isvcUris(isvc: InferenceService, models: TrainedModel[]): string[] {
  const impl = predictorOf(isvc)?.impl as PredictorImpl | undefined;
  const own = impl?.storageUri ? [impl.storageUri] : [];
  const tms = models
    .filter((m) => m.metadata.namespace === isvc.metadata.namespace && m.spec?.inferenceService === isvc.metadata.name)
    .map((m) => m.spec.model.storageUri);
  return [...own, ...tms];
}

/** The model URI of an LLMInferenceService, when it names one. */
export function llmUri(llm: LLMInferenceService): string | undefined {
  const uri = llm.spec?.model?.uri;
  return typeof uri === 'string' ? uri : undefined;
}

const byRef = (a: IsvcRef, b: IsvcRef): number => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1);

/** A pod still runs (or may still start): it holds what it mounts. */
export function podActive(pod: Pod): boolean {
  return pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed';
}

/**
 * Which InferenceServices and LLMInferenceServices use which model URIs (LocalModelCache.status, and to
 * hold deletion of a cache in use), and which pods name a cache by label. Watches InferenceServices and
 * LLMInferenceServices once KServe's CRDs exist (looked for again every crdPollMs) and TrainedModels; pods
 * come from the World's informer.
 */
export class ModelUsers {
  readonly #client: KubeClient;
  readonly #log?: Logger;
  readonly #pollMs: number;
  readonly #listeners: Array<() => void> = [];
  #isvcs?: Informer<InferenceService>;
  #models?: Informer<TrainedModel>;
  #llms?: Informer<LLMInferenceService>;
  readonly #pods?: Informer<Pod>;
  /** True once we know whether the InferenceService CRD exists. */
  #checked = false;

  constructor(client: KubeClient, opts: { log?: Logger; crdPollMs?: number; pods?: Informer<Pod> } = {}) {
    this.#client = client;
    this.#log = opts.log;
    this.#pods = opts.pods;
    this.#pollMs = opts.crdPollMs ?? 30_000;
  }

  onChange(fn: () => void): void {
    this.#listeners.push(fn);
  }

  #changed = (): void => {
    for (const fn of this.#listeners) fn();
  };

  /** Known: either KServe is not installed (checked), or the informers have synced. */
  get ready(): boolean {
    if (!this.#checked) return false;
    return [this.#isvcs, this.#models, this.#llms].every((i) => !i || i.hasSynced);
  }

  /** Looks for the CRDs until every informer runs; returns when the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted && !(this.#isvcs && this.#models && this.#llms)) {
      try {
        for (const [rt, make] of [
          [
            INFERENCE_SERVICES,
            () => (this.#isvcs = new Informer<InferenceService>(this.#client, INFERENCE_SERVICES, { log: this.#log })),
          ],
          [
            TRAINED_MODELS,
            () => (this.#models = new Informer<TrainedModel>(this.#client, TRAINED_MODELS, { log: this.#log })),
          ],
          [
            LLM_INFERENCE_SERVICES,
            () =>
              (this.#llms = new Informer<LLMInferenceService>(this.#client, LLM_INFERENCE_SERVICES, {
                log: this.#log,
              })),
          ],
        ] as const) {
          const have = rt === INFERENCE_SERVICES ? this.#isvcs : rt === TRAINED_MODELS ? this.#models : this.#llms;
          if (have || !(await this.#client.get(CRDS, `${rt.plural}.${rt.group}`, { signal }))) continue;
          const inf = make() as Informer<InferenceService | TrainedModel | LLMInferenceService>;
          inf.on({ add: this.#changed, update: this.#changed, delete: this.#changed });
          void inf.start(signal);
        }
        if (!this.#checked) {
          this.#checked = true;
          this.#changed();
        }
      } catch (err) {
        if (signal.aborted) return;
        this.#log?.warn({ err: String((err as Error).message) }, 'could not look up the InferenceService CRD');
      }
      await sleep(this.#pollMs, signal).catch(() => undefined);
    }
  }

  /** InferenceServices that use a cache's URI, sorted. */
  usersOf(cacheUri: string): IsvcRef[] {
    const models = this.#models?.list() ?? [];
    const out: IsvcRef[] = [];
    for (const isvc of this.#isvcs?.list() ?? []) {
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
    return (this.#isvcs?.list() ?? []).filter((o) => !o.metadata.deletionTimestamp);
  }

  /** LLMInferenceServices not being deleted. */
  llmInferenceServices(): LLMInferenceService[] {
    return (this.#llms?.list() ?? []).filter((o) => !o.metadata.deletionTimestamp);
  }

  /** Pods that name a cache by one of `labels` (opt-in, KServe's predictor label), still active and not deleted. */
  podsNamingCaches(labels: readonly string[]): Pod[] {
    return (this.#pods?.list() ?? []).filter(
      (p) => !p.metadata.deletionTimestamp && podActive(p) && labels.some((l) => p.metadata.labels?.[l] !== undefined),
    );
  }

  /** `namespace/claim` of every PVC an active pod mounts (deleting pods too: they may still run). */
  claimsInUse(): Set<string> {
    const out = new Set<string>();
    for (const p of this.#pods?.list() ?? []) {
      if (!podActive(p)) continue;
      for (const v of p.spec?.volumes ?? [])
        if (v.persistentVolumeClaim?.claimName) out.add(`${p.metadata.namespace}/${v.persistentVolumeClaim.claimName}`);
    }
    return out;
  }

  /** Whether pods are known (their informer has listed once). */
  get podsKnown(): boolean {
    return this.#pods?.hasSynced ?? false;
  }
}
