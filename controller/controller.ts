import type { Logger } from 'pino';
import type { KubeClient } from '../kube/client.ts';
import { EventRecorder } from '../kube/events.ts';
import { runReconciler } from '../kube/reconciler.ts';
import { WorkQueue } from '../kube/workqueue.ts';
import { rfc3339Now } from '../kube/types.ts';
import { ControllerMetrics } from './metrics.ts';
import { Reconcilers } from './reconcile.ts';
import { ServingVolumes } from './serving-volumes/reconcile.ts';
import { VOLUMES_KIND } from './serving-volumes/watches.ts';
import { enqueueAll, registerWatches } from './watches.ts';
import { World } from './world.ts';

export interface ControllerOptions {
  client: KubeClient;
  log: Logger;
  workers?: number;
  /** Every this many ms, every object is reconciled again (level-based safety net). */
  resyncMs?: number;
  /** How often to look again for KServe's CRDs while they are not installed. */
  crdPollMs?: number;
  /** How long a namespace without consumers keeps a cache's PV and PVC (default 10 minutes). */
  volumeGraceMs?: number;
}

/**
 * The cluster controller: fans LocalModelCaches out to LocalModelNodes, aggregates node reports
 * into cache status, keeps node-group status. Informers run from start(); reconciling runs only
 * inside run() (called while leader).
 */
export class CacheController {
  readonly world: World;
  #queue: WorkQueue;
  readonly metrics: ControllerMetrics;
  readonly #opts: ControllerOptions;
  readonly #reconcilers: Reconcilers;
  readonly #volumes: ServingVolumes;

  constructor(opts: ControllerOptions) {
    this.#opts = opts;
    this.world = new World(opts.client, opts.log, { ...(opts.crdPollMs ? { crdPollMs: opts.crdPollMs } : {}) });
    this.#queue = new WorkQueue();
    this.metrics = new ControllerMetrics(() => this.#queue.length);
    const events = new EventRecorder(opts.client, 'modelcache-controller', opts.log);
    this.#reconcilers = new Reconcilers({
      client: opts.client,
      world: this.world,
      events,
      metrics: this.metrics,
      log: opts.log,
      now: rfc3339Now,
    });
    this.#volumes = new ServingVolumes({
      client: opts.client,
      world: this.world,
      events,
      metrics: this.metrics,
      log: opts.log.child({ part: 'serving-volumes' }),
      graceMs: opts.volumeGraceMs ?? 600_000,
    });
    registerWatches(this.world, (key) => this.#queue.add(key));
  }

  /** Starts the informers (all replicas keep warm caches). */
  start(signal: AbortSignal): void {
    this.world.start(signal);
  }

  get ready(): boolean {
    return this.world.hasSynced;
  }

  /** Reconciles until the signal aborts (leadership lost or shutdown). */
  async run(signal: AbortSignal): Promise<void> {
    await this.world.waitForSync(signal);
    // A fresh queue per term of leadership: the previous one was shut down when its term ended.
    const queue = new WorkQueue({ backoff: { baseMs: 500, maxMs: 120_000 }, signal });
    this.#queue = queue;
    const add = (key: string): void => queue.add(key);
    enqueueAll(this.world, add);
    const resync = setInterval(() => enqueueAll(this.world, add), this.#opts.resyncMs ?? 300_000);
    resync.unref();
    const log = this.#opts.log;
    try {
      await runReconciler({
        queue,
        reconcile: (key, s) =>
          key.startsWith(`${VOLUMES_KIND}:`)
            ? this.#volumes.reconcile(key.slice(VOLUMES_KIND.length + 1), s)
            : this.#reconcilers.reconcile(key, s),
        workers: this.#opts.workers ?? 4,
        signal,
        observe: (key, outcome, ms, err) => {
          const kind = key.slice(0, key.indexOf(':'));
          this.metrics.reconciles.inc({ kind, outcome });
          this.metrics.duration.observe({ kind }, ms / 1000);
          if (outcome === 'error')
            log.warn(
              { key, err: String((err as Error)?.message ?? err), failures: queue.failures(key) },
              'reconcile failed; will retry',
            );
        },
      });
    } finally {
      clearInterval(resync);
    }
  }

  /** Queues every object now (what a periodic resync does). */
  resync(): void {
    enqueueAll(this.world, (key) => this.#queue.add(key));
  }

  /** Keys waiting or being processed: zero once converged. */
  get pending(): number {
    return this.#queue.length + this.#queue.inFlight;
  }
}
