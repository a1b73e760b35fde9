// The shell of the serving volumes: observe from the ClusterView's informers, plan (pure), apply what differs.
// It keeps, per cache, when each claim was first seen without a consumer (the grace period) and which
// problems were last reported, so neither needs a write at steady state.
import type { Logger } from 'pino';
import type { LocalModelNodeGroup } from '../../api/types.ts';
import { isStatus, type KubeClient } from '../../kube/client.ts';
import type { EventRecorder } from '../../kube/events.ts';
import type { ReconcileResult } from '../../kube/reconciler.ts';
import { PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES } from '../../kube/resources.ts';
import { objectKey } from '../../kube/types.ts';
import type { ControllerMetrics } from '../metrics.ts';
import type { ClusterView } from '../cluster-view.ts';
import { CONSUMER_POD_LABELS, findConsumers } from './consumers.ts';
import { planServingVolumes, type VolumeAction } from './plan.ts';

export interface ServingVolumesDeps {
  client: KubeClient;
  cluster: ClusterView;
  events: EventRecorder;
  metrics: ControllerMetrics;
  log: Logger;
  /** How long the volumes of a namespace without consumers stay (a consumer coming back finds them). */
  graceMs: number;
  now?: () => number;
}

/** Keeps every cache's per-namespace PVs and PVCs; one instance per controller process. */
export class ServingVolumes {
  readonly #d: ServingVolumesDeps;
  /** cache → `namespace/claim` → first seen without a consumer (ms). */
  readonly #unused = new Map<string, Map<string, number>>();
  /** cache → the problems last reported as Events. */
  readonly #reported = new Map<string, string>();

  constructor(deps: ServingVolumesDeps) {
    this.#d = deps;
  }

  async reconcile(cacheName: string, signal: AbortSignal): Promise<ReconcileResult | void> {
    const { cluster, log } = this.#d;
    const cache = cluster.caches.get(cacheName);
    if (!cache) {
      // The garbage collector removes what the cache owned.
      this.#unused.delete(cacheName);
      this.#reported.delete(cacheName);
      return;
    }
    const groups = new Map<string, LocalModelNodeGroup>(cluster.groups.list().map((g) => [g.metadata.name ?? '', g]));
    const users = cluster.users;
    const consumers = findConsumers(
      {
        inferenceServices: users.inferenceServices(),
        llmInferenceServices: users.llmInferenceServices(),
        pods: users.podsNamingCaches(CONSUMER_POD_LABELS),
      },
      cluster.caches.list(),
      groups,
    ).filter((c) => c.cache === cacheName);
    const plan = planServingVolumes({
      cache,
      groups,
      consumers,
      volumes: new Map(cluster.persistentVolumes.list().map((v) => [v.metadata.name ?? '', v])),
      claims: new Map(cluster.persistentVolumeClaims.list().map((c) => [objectKey(c), c])),
      inUse: users.claimsInUse(),
      unusedSince: this.#unused.get(cacheName) ?? new Map(),
      consumersKnown: users.ready && cluster.hasSynced,
      now: (this.#d.now ?? Date.now)(),
      graceMs: this.#d.graceMs,
    });
    for (const action of plan.actions) await this.#apply(action, signal);
    if (plan.unusedSince.size) this.#unused.set(cacheName, plan.unusedSince);
    else this.#unused.delete(cacheName);
    const problems = plan.problems.join('\n');
    if (problems !== (this.#reported.get(cacheName) ?? '')) {
      for (const p of plan.problems) {
        log.warn({ cache: cacheName, problem: p }, 'serving volume not made');
        await this.#d.events.record(cache, 'Warning', 'ServingVolume', p);
      }
      this.#reported.set(cacheName, problems);
    }
    return plan.requeueAfterMs !== undefined ? { requeueAfterMs: plan.requeueAfterMs } : undefined;
  }

  async #apply(a: VolumeAction, signal: AbortSignal): Promise<void> {
    const { client, log, metrics } = this.#d;
    if (a.kind === 'create') {
      const rt = a.object.kind === 'PersistentVolume' ? PERSISTENT_VOLUMES : PERSISTENT_VOLUME_CLAIMS;
      try {
        await client.create(rt, a.object, { signal });
      } catch (err) {
        // Made already (the informer has not delivered it yet): the next pass sees it.
        if (!isStatus(err, 409)) throw err;
        return;
      }
      metrics.writes.inc({ resource: rt.plural, verb: 'create' });
      log.info({ kind: a.object.kind, name: objectKey(a.object) }, 'serving volume created');
      return;
    }
    const rt = a.kind === 'delete-pv' ? PERSISTENT_VOLUMES : PERSISTENT_VOLUME_CLAIMS;
    const namespace = a.kind === 'delete-pvc' ? a.namespace : undefined;
    try {
      await client.delete(rt, a.name, {
        ...(namespace ? { namespace } : {}),
        ...(a.uid ? { uid: a.uid } : {}),
        signal,
      });
    } catch (err) {
      // 409: the uid precondition failed, so the object is another one than the plan saw; the next pass decides.
      if (!isStatus(err, 409)) throw err;
      return;
    }
    metrics.writes.inc({ resource: rt.plural, verb: 'delete' });
    log.info(
      { kind: rt.kind, name: namespace ? `${namespace}/${a.name}` : a.name, why: a.why },
      'serving volume deleted',
    );
  }
}
