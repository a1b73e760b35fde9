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
import { sleep } from '../../kube/backoff.ts';
import { isStatus, type KubeClient } from '../../kube/client.ts';
import { Informer } from '../../kube/informer.ts';
import { API_VERSION } from '../../api/types.ts';
import { runReconciler } from '../../kube/reconciler.ts';
import { CONFIGMAPS, CRDS } from '../../kube/resources.ts';
import { rfc3339Now, type ConfigMap, type OwnerReference, type ResourceType } from '../../kube/types.ts';
import { WorkQueue } from '../../kube/workqueue.ts';
import type { RuntimeCandidate } from '../../serving/runtime-selection.ts';
import { sameJson } from '../conditions.ts';
import {
  configMapName,
  MODELS_JSON,
  modelsJson,
  planRegistration,
  REGISTRATION_CONDITIONS,
  type ModelEntry,
} from './plan.ts';

export const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'modelcache' };

export interface RegistrationOptions {
  client: KubeClient;
  log: Logger;
  workers?: number;
  /** How often to look again for KServe's InferenceService CRD while it is not installed. */
  crdPollMs?: number;
  now?: () => string;
}

const crdName = (rt: ResourceType): string => `${rt.plural}.${rt.group}`;
const isvcKey = (ns: string | undefined, name: string): string => `${ns ?? ''}/${name}`;
const MODELCONFIG = /^modelconfig-(.+)-0$/;

/**
 * Registers TrainedModels onto their multi-model InferenceService: keeps each ISVC's
 * `modelconfig-<isvc>-0` ConfigMap (models.json, sorted by name, owned by the ISVC) and each
 * TrainedModel's conditions. Waits for KServe's InferenceService CRD when it is not installed;
 * ServingRuntime CRDs are optional (no runtimes then).
 */
export class RegistrationController {
  readonly #o: RegistrationOptions;
  readonly models: Informer<TrainedModel>;
  readonly isvcs: Informer<InferenceService>;
  readonly configMaps: Informer<ConfigMap>;
  #runtimes?: Informer<ServingRuntime>;
  #clusterRuntimes?: Informer<ServingRuntime>;
  #queue = new WorkQueue();

  constructor(o: RegistrationOptions) {
    this.#o = o;
    this.models = new Informer(o.client, TRAINED_MODELS, { log: o.log });
    this.isvcs = new Informer(o.client, INFERENCE_SERVICES, { log: o.log });
    this.configMaps = new Informer(o.client, CONFIGMAPS, {
      labelSelector: 'app.kubernetes.io/managed-by=modelcache',
      log: o.log,
    });
  }

  #informers(): Array<{
    hasSynced: boolean;
    start(s: AbortSignal): Promise<void>;
    waitForSync(s: AbortSignal): Promise<void>;
  }> {
    return [this.models, this.isvcs, this.configMaps, this.#runtimes, this.#clusterRuntimes].filter(
      (i) => i !== undefined,
    );
  }

  async #crdInstalled(rt: ResourceType, signal: AbortSignal): Promise<boolean> {
    return (await this.#o.client.get(CRDS, crdName(rt), { signal })) !== undefined;
  }

  /** Resolves once KServe's InferenceService CRD exists (logging once while it does not). */
  async #waitForIsvcCrd(signal: AbortSignal): Promise<void> {
    let told = false;
    for (;;) {
      try {
        if (await this.#crdInstalled(INFERENCE_SERVICES, signal)) return;
        if (!told)
          this.#o.log.info(
            { crd: crdName(INFERENCE_SERVICES) },
            'InferenceService CRD not installed; TrainedModel registration starts when it is',
          );
        told = true;
      } catch (err) {
        if (signal.aborted) throw err;
        this.#o.log.warn({ err: String((err as Error).message) }, 'could not look up the InferenceService CRD');
      }
      await sleep(this.#o.crdPollMs ?? 30_000, signal);
    }
  }

  #add = (key: string): void => this.#queue.add(key);

  #enqueueAll(): void {
    for (const i of this.isvcs.list()) this.#add(isvcKey(i.metadata.namespace, i.metadata.name ?? ''));
    for (const m of this.models.list()) this.#add(isvcKey(m.metadata.namespace, m.spec?.inferenceService ?? ''));
  }

  #wire(): void {
    const fromModel = (m: TrainedModel): void =>
      this.#add(isvcKey(m.metadata.namespace, m.spec?.inferenceService ?? ''));
    this.models.on({
      add: fromModel,
      delete: fromModel,
      update: (a, b) => {
        fromModel(a);
        fromModel(b);
      },
    });
    const fromIsvc = (i: InferenceService): void => this.#add(isvcKey(i.metadata.namespace, i.metadata.name ?? ''));
    this.isvcs.on({ add: fromIsvc, delete: fromIsvc, update: (_a, b) => fromIsvc(b) });
    const fromCm = (cm: ConfigMap): void => {
      const m = MODELCONFIG.exec(cm.metadata.name ?? '');
      if (m) this.#add(isvcKey(cm.metadata.namespace, m[1]!));
    };
    this.configMaps.on({ add: fromCm, delete: fromCm, update: (_a, b) => fromCm(b) });
  }

  /** Queues every InferenceService now (what a periodic resync does). */
  resync(): void {
    this.#enqueueAll();
  }

  /** Keys waiting or being processed: zero once converged. */
  get pending(): number {
    return this.#queue.length + this.#queue.inFlight;
  }

  get ready(): boolean {
    return this.#informers().every((i) => i.hasSynced);
  }

  /** Waits for the CRD, starts the informers and reconciles until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    await this.#waitForIsvcCrd(signal);
    this.#queue = new WorkQueue({ backoff: { baseMs: 500, maxMs: 120_000 }, signal });
    this.#wire();
    for (const inf of this.#informers()) void inf.start(signal);
    await this.#watchRuntimeCrds(signal);
    await Promise.all(this.#informers().map((i) => i.waitForSync(signal)));
    this.#o.log.info(
      { runtimes: Boolean(this.#runtimes), clusterRuntimes: Boolean(this.#clusterRuntimes) },
      'TrainedModel registration started',
    );
    this.#enqueueAll();
    // ServingRuntime CRDs installed later (KServe installed after modelcache) are picked up.
    const poll = setInterval(
      () => void this.#watchRuntimeCrds(signal).catch(() => undefined),
      this.#o.crdPollMs ?? 30_000,
    );
    signal.addEventListener('abort', () => clearInterval(poll), { once: true });
    await runReconciler({
      queue: this.#queue,
      workers: this.#o.workers ?? 2,
      signal,
      reconcile: (key, s) => this.reconcile(key, s),
      observe: (key, outcome, _ms, err) => {
        if (outcome === 'error')
          this.#o.log.warn({ key, err: String((err as Error)?.message ?? err) }, 'registration failed; will retry');
      },
    });
  }

  /** Starts an informer for each ServingRuntime CRD that exists now and has none yet. */
  async #watchRuntimeCrds(signal: AbortSignal): Promise<void> {
    const all = (): void => this.#enqueueAll();
    for (const rt of [SERVING_RUNTIMES, CLUSTER_SERVING_RUNTIMES]) {
      const has = rt === SERVING_RUNTIMES ? this.#runtimes : this.#clusterRuntimes;
      if (has || !(await this.#crdInstalled(rt, signal))) continue;
      const inf = new Informer<ServingRuntime>(this.#o.client, rt, { log: this.#o.log });
      inf.on({ add: all, delete: all, update: all });
      if (rt === SERVING_RUNTIMES) this.#runtimes = inf;
      else this.#clusterRuntimes = inf;
      void inf.start(signal);
      this.#o.log.info({ crd: crdName(rt) }, 'watching ServingRuntimes');
    }
  }

  #runtimesFor(ns: string): RuntimeCandidate[] {
    const own = (this.#runtimes?.list() ?? [])
      .filter((r) => r.metadata.namespace === ns)
      .map((r) => ({ name: r.metadata.name ?? '', namespaced: true, spec: r.spec ?? {} }));
    const cluster = (this.#clusterRuntimes?.list() ?? []).map((r) => ({
      name: r.metadata.name ?? '',
      namespaced: false,
      spec: r.spec ?? {},
    }));
    return [...own, ...cluster];
  }

  /** One InferenceService (existing or not) and the TrainedModels that name it. */
  async reconcile(key: string, signal: AbortSignal): Promise<void> {
    const [ns = '', name = ''] = key.split('/');
    const { client, log } = this.#o;
    const isvc = this.isvcs.get(key);
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
