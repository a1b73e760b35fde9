import type { Logger } from 'pino';
import {
  INFERENCE_SERVICES,
  TRAINED_MODELS,
  type InferenceService,
  type PredictorImpl,
  type TrainedModel,
} from '../api/kserve.ts';
import { sleep } from '../kube/backoff.ts';
import type { KubeClient } from '../kube/client.ts';
import { Informer } from '../kube/informer.ts';
import { CRDS } from '../kube/resources.ts';
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

/**
 * Which InferenceServices use which model URIs, for LocalModelCache.status.inferenceServices and to
 * hold deletion of a cache in use. Watches InferenceServices once KServe's CRD exists (looked for
 * again every crdPollMs) and TrainedModels.
 */
export class ModelUsers {
  readonly #client: KubeClient;
  readonly #log?: Logger;
  readonly #pollMs: number;
  readonly #listeners: Array<() => void> = [];
  #isvcs?: Informer<InferenceService>;
  #models?: Informer<TrainedModel>;
  /** True once we know whether the InferenceService CRD exists. */
  #checked = false;

  constructor(client: KubeClient, opts: { log?: Logger; crdPollMs?: number } = {}) {
    this.#client = client;
    this.#log = opts.log;
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
    return (!this.#isvcs || this.#isvcs.hasSynced) && (!this.#models || this.#models.hasSynced);
  }

  /** Looks for the CRDs until both informers run; returns when the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted && !(this.#isvcs && this.#models)) {
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
        ] as const) {
          const have = rt === INFERENCE_SERVICES ? this.#isvcs : this.#models;
          if (have || !(await this.#client.get(CRDS, `${rt.plural}.${rt.group}`, { signal }))) continue;
          const inf = make() as Informer<InferenceService | TrainedModel>;
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
    return out.sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1));
  }
}
