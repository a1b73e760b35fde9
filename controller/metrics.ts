import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The controller's Prometheus metrics, on a registry of its own (no global state). */
export class ControllerMetrics {
  readonly registry = new Registry();
  readonly reconciles: Counter<'kind' | 'outcome'>;
  readonly duration: Histogram<'kind'>;
  readonly writes: Counter<'resource' | 'verb'>;
  readonly leader: Gauge;
  readonly queueDepth: Gauge;

  constructor(queueDepth: () => number) {
    collectDefaultMetrics({ register: this.registry, prefix: 'modelcache_controller_' });
    this.reconciles = new Counter({
      name: 'modelcache_controller_reconciles_total',
      help: 'Reconciles by kind and outcome (success, requeue, error, terminal).',
      labelNames: ['kind', 'outcome'],
      registers: [this.registry],
    });
    this.duration = new Histogram({
      name: 'modelcache_controller_reconcile_duration_seconds',
      help: 'Time spent in one reconcile.',
      labelNames: ['kind'],
      buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10],
      registers: [this.registry],
    });
    this.writes = new Counter({
      name: 'modelcache_controller_api_writes_total',
      help: 'Writes sent to the apiserver, by resource and verb.',
      labelNames: ['resource', 'verb'],
      registers: [this.registry],
    });
    this.leader = new Gauge({
      name: 'modelcache_controller_leader',
      help: '1 while this replica is the leader.',
      registers: [this.registry],
    });
    this.queueDepth = new Gauge({
      name: 'modelcache_controller_workqueue_depth',
      help: 'Keys waiting in the work queue.',
      registers: [this.registry],
      collect() {
        this.set(queueDepth());
      },
    });
  }

  /** Total writes so far (for benchmarks and tests). */
  async totalWrites(): Promise<number> {
    const m = await this.writes.get();
    return m.values.reduce((s, v) => s + v.value, 0);
  }
}
