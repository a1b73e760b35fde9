import type { Logger } from 'pino';
import type { KubeClient } from '../kube/client.ts';
import { ControllerGroup, formatRef } from '../kube/controller-builder.ts';
import { EventRecorder } from '../kube/events.ts';
import { Kinds } from '../kube/kinds.ts';
import { rfc3339Now } from '../ops/time.ts';
import { ControllerMetrics } from './metrics.ts';
import { Reconcilers } from './reconcile.ts';
import { ServingVolumes } from './serving-volumes/reconcile.ts';
import { servingVolumesController } from './serving-volumes/watches.ts';
import { cacheController, groupController, nodeController } from './watches.ts';
import { ClusterView } from './cluster-view.ts';

export interface ControllerOptions {
  client: KubeClient;
  log: Logger;
  /** The process's shared informers; without it the controller keeps its own. */
  kinds?: Kinds;
  /** Concurrent reconciles (shared by the four controllers). */
  workers?: number;
  /** Every this many ms, every object is reconciled again (level-based safety net). */
  resyncMs?: number;
  /** How often to look again for KServe's CRDs while they are not installed (only without `kinds`). */
  crdPollMs?: number;
  /** How long a namespace without consumers keeps a cache's PV and PVC (default 10 minutes). */
  volumeGraceMs?: number;
}

/**
 * The cluster controllers of caches: LocalModelCache (fan-out to nodes, status from their reports),
 * LocalModelNode (and its Node's model labels), LocalModelNodeGroup status and the serving volumes —
 * one controller per primary kind, their keys in one shared queue. Informers run from start() on every replica;
 * reconciling runs only inside run() (called while leader).
 */
export class CacheController {
  readonly cluster: ClusterView;
  readonly metrics: ControllerMetrics;
  readonly #opts: ControllerOptions;
  readonly #kinds: Kinds;
  readonly #controllers: ControllerGroup;

  constructor(opts: ControllerOptions) {
    this.#opts = opts;
    this.#kinds =
      opts.kinds ?? new Kinds(opts.client, { log: opts.log, ...(opts.crdPollMs ? { crdPollMs: opts.crdPollMs } : {}) });
    this.cluster = new ClusterView(this.#kinds);
    this.metrics = new ControllerMetrics(() => this.#controllers.waiting);
    const events = new EventRecorder(opts.client, 'modelcache-controller', opts.log);
    const reconcilers = new Reconcilers({
      client: opts.client,
      cluster: this.cluster,
      events,
      metrics: this.metrics,
      log: opts.log,
      now: rfc3339Now,
    });
    const volumes = new ServingVolumes({
      client: opts.client,
      cluster: this.cluster,
      events,
      metrics: this.metrics,
      log: opts.log.child({ part: 'serving-volumes' }),
      graceMs: opts.volumeGraceMs ?? 600_000,
    });
    // Made in the order a pass goes through them; one queue keeps their keys in the order events came.
    this.#controllers = new ControllerGroup([
      cacheController(this.cluster, (key, s) => reconcilers.cache(key.name, s)),
      groupController(this.cluster, (key, s) => reconcilers.group(key.name, s)),
      nodeController(this.cluster, (key, s) => reconcilers.node(key.name, s)),
      servingVolumesController(this.cluster, (key, s) => volumes.reconcile(key.name, s)),
    ]);
  }

  /** Starts the informers (all replicas keep warm caches); does nothing more when the process started them. */
  start(signal: AbortSignal): void {
    this.#kinds.start(signal);
  }

  get ready(): boolean {
    return this.cluster.hasSynced;
  }

  /** Reconciles until the signal aborts (leadership lost or shutdown). */
  async run(signal: AbortSignal): Promise<void> {
    await this.cluster.waitForSync(signal);
    const log = this.#opts.log;
    await this.#controllers.run(signal, {
      workers: this.#opts.workers ?? 4,
      resyncMs: this.#opts.resyncMs ?? 300_000,
      observe: (kind, key, outcome, ms, err, failures) => {
        this.metrics.reconciles.inc({ kind, outcome });
        this.metrics.duration.observe({ kind }, ms / 1000);
        if (outcome === 'error')
          log.warn(
            { kind, key: formatRef(key), err: String((err as Error)?.message ?? err), failures },
            'reconcile failed; will retry',
          );
      },
    });
  }

  /** Queues every object now (what a periodic resync does). */
  resync(): void {
    this.#controllers.resync();
  }

  /** Keys waiting or being processed: zero once converged. */
  get pending(): number {
    return this.#controllers.pending;
  }
}
