import type { Logger } from 'pino';
import {
  CLUSTER_SERVING_RUNTIMES,
  INFERENCE_SERVICES,
  SERVING_RUNTIMES,
  TRAINED_MODELS,
  type InferenceService,
  type ServingRuntime,
  type TrainedModel,
} from '../../api/kserve.ts';
import { isStatus, type KubeClient } from '../../kube/client.ts';
import { ControllerBuilder, refOf, type Controller, type ObjectRef } from '../../kube/controller-builder.ts';
import type { Informer } from '../../kube/informer.ts';
import { Kinds } from '../../kube/kinds.ts';
import { API_VERSION } from '../../api/types.ts';
import { CONFIGMAPS } from '../../kube/resources.ts';
import type { ConfigMap, KubeObject, OwnerReference } from '../../kube/types.ts';
import { rfc3339Now } from '../../ops/time.ts';
import type { RuntimeCandidate } from '../../serving/runtime-selection.ts';
import { sameJson } from '../conditions.ts';
import { configMapName, MODELS_JSON, modelsJson, type ModelEntry } from '../../serving/models-json.ts';
import { planRegistration, REGISTRATION_CONDITIONS } from './plan.ts';

const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'modelcache' };

export interface RegistrationOptions {
  client: KubeClient;
  log: Logger;
  /** The process's shared informers; without it the controller keeps its own. */
  kinds?: Kinds;
  workers?: number;
  /** How often to look again for KServe's CRDs while they are not installed (only without `kinds`). */
  crdPollMs?: number;
  now?: () => string;
}

const MODELCONFIG = /^modelconfig-(.+)-0$/;

/** The InferenceService a TrainedModel names. */
const isvcOf = (m: TrainedModel): ObjectRef => ({
  namespace: m.metadata.namespace ?? '',
  name: m.spec?.inferenceService ?? '',
});

/**
 * Registers TrainedModels onto their multi-model InferenceService: keeps each ISVC's
 * `modelconfig-<isvc>-0` ConfigMap (models.json, sorted by name, owned by the ISVC) and each
 * TrainedModel's conditions. Waits for KServe's InferenceService CRD when it is not installed;
 * ServingRuntime CRDs are optional (no runtimes then).
 */
export class RegistrationController {
  readonly #o: RegistrationOptions;
  readonly #kinds: Kinds;
  readonly models: Informer<TrainedModel>;
  readonly isvcs: Informer<InferenceService>;
  readonly configMaps: Informer<ConfigMap>;
  readonly #runtimes: Informer<ServingRuntime>;
  readonly #clusterRuntimes: Informer<ServingRuntime>;
  readonly #controller: Controller;

  constructor(o: RegistrationOptions) {
    this.#o = o;
    this.#kinds = o.kinds ?? new Kinds(o.client, { log: o.log, ...(o.crdPollMs ? { crdPollMs: o.crdPollMs } : {}) });
    this.models = this.#kinds.optional(TRAINED_MODELS);
    this.isvcs = this.#kinds.optional(INFERENCE_SERVICES);
    this.configMaps = this.#kinds.informer(CONFIGMAPS, { labelSelector: 'app.kubernetes.io/managed-by=modelcache' });
    // ServingRuntime CRDs installed later (KServe installed after modelcache) are picked up.
    this.#runtimes = this.#kinds.optional(SERVING_RUNTIMES);
    this.#clusterRuntimes = this.#kinds.optional(CLUSTER_SERVING_RUNTIMES);
    const every = (): ObjectRef[] => [...this.isvcs.list().map(refOf), ...this.models.list().map(isvcOf)];
    const ofConfigMap = (cm: ConfigMap): ObjectRef[] => {
      const m = MODELCONFIG.exec(cm.metadata.name ?? '');
      return m ? [{ namespace: cm.metadata.namespace ?? '', name: m[1]! }] : [];
    };
    this.#controller = new ControllerBuilder('registration')
      .for(this.isvcs)
      .watches(this.models, (m) => [isvcOf(m)])
      .watches(this.configMaps, ofConfigMap)
      .watches(this.#runtimes, every)
      .watches(this.#clusterRuntimes, every)
      .all(every)
      .complete((key, s) => this.reconcile(key, s));
  }

  /** The informers registration reads: KServe's once their CRDs are installed, and its ConfigMaps. */
  #informers(): Array<Pick<Informer<KubeObject>, 'hasSynced' | 'waitForSync'>> {
    const kserve = [
      [TRAINED_MODELS, this.models],
      [INFERENCE_SERVICES, this.isvcs],
      [SERVING_RUNTIMES, this.#runtimes],
      [CLUSTER_SERVING_RUNTIMES, this.#clusterRuntimes],
    ] as const;
    return [this.configMaps, ...kserve.filter(([rt]) => this.#kinds.installed(rt)).map(([, inf]) => inf)];
  }

  /** Starts the informers (all replicas keep warm caches); does nothing more when the process started them. */
  start(signal: AbortSignal): void {
    this.#kinds.start(signal);
  }

  /** Queues every InferenceService now (what a periodic resync does). */
  resync(): void {
    this.#controller.resync();
  }

  /** Keys waiting or being processed: zero once converged. */
  get pending(): number {
    return this.#controller.pending;
  }

  get ready(): boolean {
    return this.#informers().every((i) => i.hasSynced);
  }

  /** Waits for KServe's InferenceService CRD and the informers' first lists, then reconciles until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    this.start(signal);
    if (!this.#kinds.installed(INFERENCE_SERVICES))
      this.#o.log.info(
        { crd: `${INFERENCE_SERVICES.plural}.${INFERENCE_SERVICES.group}` },
        'InferenceService CRD not installed; TrainedModel registration starts when it is',
      );
    await this.#kinds.waitForCrd(INFERENCE_SERVICES, signal);
    await Promise.all(this.#informers().map((i) => i.waitForSync(signal)));
    this.#o.log.info(
      {
        runtimes: this.#kinds.installed(SERVING_RUNTIMES),
        clusterRuntimes: this.#kinds.installed(CLUSTER_SERVING_RUNTIMES),
      },
      'TrainedModel registration started',
    );
    await this.#controller.run(signal, {
      workers: this.#o.workers ?? 2,
      observe: (key, outcome, _ms, err) => {
        if (outcome === 'error')
          this.#o.log.warn(
            { key: `${key.namespace}/${key.name}`, err: String((err as Error)?.message ?? err) },
            'registration failed; will retry',
          );
      },
    });
  }

  #runtimesFor(ns: string): RuntimeCandidate[] {
    const own = this.#runtimes
      .list()
      .filter((r) => r.metadata.namespace === ns)
      .map((r) => ({ name: r.metadata.name ?? '', namespaced: true, spec: r.spec ?? {} }));
    const cluster = this.#clusterRuntimes.list().map((r) => ({
      name: r.metadata.name ?? '',
      namespaced: false,
      spec: r.spec ?? {},
    }));
    return [...own, ...cluster];
  }

  /** One InferenceService (existing or not) and the TrainedModels that name it. */
  async reconcile(key: ObjectRef, signal: AbortSignal): Promise<void> {
    const { namespace: ns = '', name } = key;
    const { client, log } = this.#o;
    const isvc = this.isvcs.get(`${ns}/${name}`);
    const models = this.models.list().filter((m) => m.metadata.namespace === ns && m.spec?.inferenceService === name);
    const cmName = configMapName(name);
    const cm = this.configMaps.get(`${ns}/${cmName}`);
    const plan = planRegistration({
      namespace: ns,
      isvcName: name,
      ...(isvc ? { isvc } : {}),
      models,
      runtimes: this.#runtimesFor(ns),
      listed: parseListed(cm),
      now: (this.#o.now ?? rfc3339Now)(),
    });

    if (plan.models && isvc) await this.#writeConfigMap(isvc, cm, plan.models, signal);
    for (const m of models) {
      // Owned by the InferenceService: deleting it deletes its TrainedModels (KServe does the same).
      if (isvc?.metadata.uid && !m.metadata.ownerReferences?.some((r) => r.uid === isvc.metadata.uid)) {
        await client.mergePatch(
          TRAINED_MODELS,
          m.metadata.name ?? '',
          { metadata: { ownerReferences: [...(m.metadata.ownerReferences ?? []), ownerRef(isvc)] } },
          { namespace: ns, signal },
        );
      }
    }
    for (const [tmName, status] of plan.statuses) {
      // Server-side apply of the fields registration owns: the model agent owns ModelLoaded, and
      // neither overwrites the other's condition.
      const owned = {
        conditions: (status.conditions ?? []).filter((c) => REGISTRATION_CONDITIONS.includes(c.type)),
        ...(status.url ? { url: status.url } : {}),
        ...(status.observedGeneration !== undefined ? { observedGeneration: status.observedGeneration } : {}),
      };
      await client
        .apply(
          TRAINED_MODELS,
          {
            apiVersion: API_VERSION,
            kind: 'TrainedModel',
            metadata: { name: tmName, namespace: ns },
            status: owned,
          } as unknown as TrainedModel,
          { subresource: 'status', signal },
        )
        .catch((err: unknown) => {
          if (!isStatus(err, 404)) throw err; // deleted meanwhile
        });
      const ready = status.conditions?.find((c) => c.type === 'Ready');
      log.info(
        { trainedModel: `${ns}/${tmName}`, ready: ready?.status, reason: ready?.reason },
        'TrainedModel status written',
      );
    }
  }

  async #writeConfigMap(
    isvc: InferenceService,
    cm: ConfigMap | undefined,
    models: ModelEntry[],
    signal: AbortSignal,
  ): Promise<void> {
    const { client, log } = this.#o;
    const ns = isvc.metadata.namespace ?? '';
    const name = configMapName(isvc.metadata.name ?? '');
    const text = modelsJson(models);
    const desired = {
      metadata: { labels: MANAGED_BY, ownerReferences: [ownerRef(isvc)] },
      data: { [MODELS_JSON]: text },
    };
    if (
      cm &&
      cm.data?.[MODELS_JSON] === text &&
      sameJson(cm.metadata.ownerReferences, desired.metadata.ownerReferences)
    )
      return;
    if (!cm) {
      try {
        await client.create(
          CONFIGMAPS,
          {
            apiVersion: 'v1',
            kind: 'ConfigMap',
            metadata: { name, namespace: ns, ...desired.metadata },
            data: desired.data,
          } as ConfigMap,
          { signal },
        );
        log.info({ configMap: `${ns}/${name}`, models: models.map((m) => m.modelName) }, 'models.json created');
        return;
      } catch (err) {
        if (!isStatus(err, 409)) throw err; // made by KServe or an earlier run without our label: adopt it below
      }
    }
    await client.mergePatch(CONFIGMAPS, name, desired, { namespace: ns, signal });
    log.info({ configMap: `${ns}/${name}`, models: models.map((m) => m.modelName) }, 'models.json written');
  }
}

/** Owner reference to the InferenceService (no blockOwnerDeletion: that would need update on its finalizers). */
function ownerRef(isvc: InferenceService): OwnerReference {
  return {
    apiVersion: `${INFERENCE_SERVICES.group}/${INFERENCE_SERVICES.version}`,
    kind: INFERENCE_SERVICES.kind,
    name: isvc.metadata.name ?? '',
    uid: isvc.metadata.uid ?? '',
    controller: true,
  };
}

function parseListed(cm: ConfigMap | undefined): ModelEntry[] | undefined {
  try {
    const v = JSON.parse(cm?.data?.[MODELS_JSON] ?? 'null') as unknown;
    return Array.isArray(v) ? (v as ModelEntry[]) : undefined;
  } catch {
    return undefined;
  }
}
