import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** The model agent's Prometheus metrics. */
export class AgentMetrics {
  readonly registry = new Registry();
  readonly loads: Counter<'outcome' | 'from'>;
  readonly loaded: Gauge;

  constructor(loadedCount: () => number) {
    collectDefaultMetrics({ register: this.registry, prefix: 'modelcache_agent_' });
    const registers = [this.registry];
    this.loads = new Counter({
      name: 'modelcache_agent_loads_total',
      help: 'Model loads by outcome and where the files came from (cache, source, disk).',
      labelNames: ['outcome', 'from'],
      registers,
    });
    this.loaded = new Gauge({
      name: 'modelcache_agent_models_loaded',
      help: 'Models loaded in the model server now.',
      registers,
      collect() {
        this.set(loadedCount());
      },
    });
  }
}
