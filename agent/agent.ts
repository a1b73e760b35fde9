import Bottleneck from 'bottleneck';
import type { Logger } from 'pino';
import { backoffDelay } from '../ops/backoff.ts';
import type { ReconcileResult } from '../kube/reconciler.ts';
import { DownloadError } from '../download/errors.ts';
import { fetchModel, type FetchDeps } from './fetch-model.ts';
import { ModelFolderError, observeFolders, removeOwned } from './folders.ts';
import type { ModelServer } from './model-server.ts';
import { parseModelsJson, planAgent, type AgentAction, type DesiredModel } from './plan.ts';
import type { AgentMetrics } from './metrics.ts';
import type { LoadReporter } from './status.ts';

export interface AgentOptions extends FetchDeps {
  /** models.json as text now: from the mounted file or the watched ConfigMap; undefined when absent. */
  modelsJson: () => Promise<string | undefined>;
  /** Where models.json comes from, for messages. */
  modelsSource: string;
  server: ModelServer;
  reporter?: LoadReporter;
  metrics?: AgentMetrics;
  log: Logger;
  maxConcurrent: number;
  /** Called when something changed that the plan depends on. */
  onChange: () => void;
  retry?: { baseMs: number; maxMs: number };
}

/**
 * Keeps a model server's loaded models equal to models.json: each model is put on disk (from the
 * node cache when it has it) and loaded through the V2 repository API; removed or changed models
 * are unloaded, then deleted. Outcomes go to each TrainedModel's ModelLoaded condition.
 */
export class ModelAgent {
  readonly loaded = new Map<string, string>();
  readonly #busy = new Set<string>();
  readonly #failures = new Map<string, { hash: string; retryAt: number; attempts: number }>();
  readonly #o: AgentOptions;
  readonly #limiter: Bottleneck;
  readonly #stop = new AbortController();
  /** Work started and not finished yet, so `settled()` and `stop()` can wait for it. */
  readonly #running = new Set<Promise<void>>();
  #lastInvalid = '';
  #lastForeign = '';
  #absentLogged = false;

  constructor(o: AgentOptions) {
    this.#o = o;
    this.#limiter = new Bottleneck({ maxConcurrent: o.maxConcurrent });
  }

  /** The folders the agent made; the others are named in a log line once (when they change) and never touched. */
  async #onDisk(): Promise<Map<string, string>> {
    const { owned, foreign } = await observeFolders(this.#o.modelDir);
    const names = foreign.join('/');
    if (names && names !== this.#lastForeign)
      this.#o.log.info(
        { modelDir: this.#o.modelDir, entries: foreign },
        'entries in the model folder that the agent did not make are left alone',
      );
    this.#lastForeign = names;
    return owned;
  }

  async #desired(): Promise<Map<string, DesiredModel> | undefined> {
    const text = await this.#o.modelsJson();
    if (text === undefined) {
      // Absent is "unknown", not "empty" (a ConfigMap volume swapping its files, a ConfigMap being
      // recreated): keep what is loaded. An explicit [] is what unloads everything.
      if (!this.#absentLogged)
        this.#o.log.warn({ source: this.#o.modelsSource }, 'models.json is absent; keeping the models as they are');
      this.#absentLogged = true;
      return undefined;
    }
    this.#absentLogged = false;
    try {
      const { models, invalid } = parseModelsJson(text);
      const inv = invalid.join(',');
      if (inv && inv !== this.#lastInvalid)
        this.#o.log.warn(
          { entries: invalid },
          'models.json entries skipped: they need modelName and modelSpec.storageUri',
        );
      this.#lastInvalid = inv;
      return models;
    } catch (err) {
      this.#o.log.warn(
        { source: this.#o.modelsSource, err: String((err as Error).message) },
        'models.json is not valid; keeping the models as they are',
      );
      return undefined;
    }
  }

  /** One pass: observe models.json, the folder and the server state; start what is missing. */
  async reconcile(): Promise<ReconcileResult | void> {
    const desired = await this.#desired();
    if (!desired) return;
    const plan = planAgent({
      desired,
      onDisk: await this.#onDisk(),
      loaded: this.loaded,
      busy: this.#busy,
      failures: this.#failures,
      now: Date.now(),
    });
    for (const a of plan.actions) this.#start(a);
    if (plan.nextRetryAt !== undefined) return { requeueAfterMs: Math.max(100, plan.nextRetryAt - Date.now()) };
  }

  #start(a: AgentAction): void {
    const name = a.kind === 'load' ? a.model.name : a.name;
    this.#busy.add(name);
    const work = this.#limiter
      .schedule(() =>
        a.kind === 'load'
          ? this.#load(a.model, a.present)
          : a.kind === 'unload'
            ? this.#unload(a.name)
            : this.#remove(a.name),
      )
      .catch((err: unknown) => {
        // Jobs dropped by stop() end here too; anything else is a bug worth a line, never a crash.
        if (!this.#stop.signal.aborted)
          this.#o.log.error(
            { model: name, action: a.kind, err: String((err as Error)?.message ?? err) },
            'agent action failed',
          );
      })
      .finally(() => {
        this.#busy.delete(name);
        this.#running.delete(work);
        if (!this.#stop.signal.aborted) this.#o.onChange();
      });
    this.#running.add(work);
  }

  /** Resolves when no started work is left (work started meanwhile is waited for too). */
  async settled(): Promise<void> {
    while (this.#running.size > 0) await Promise.all(this.#running);
  }

  async #load(m: DesiredModel, present: boolean): Promise<void> {
    const { log, server, reporter } = this.#o;
    const signal = this.#stop.signal;
    const t0 = performance.now();
    try {
      const from = present ? 'disk' : (await fetchModel(m, this.#o, signal)).from;
      await server.load(m.name, signal);
      this.loaded.set(m.name, m.hash);
      this.#failures.delete(m.name);
      const seconds = Math.round((performance.now() - t0) / 100) / 10;
      this.#o.metrics?.loads.inc({ outcome: 'success', from });
      log.info({ model: m.name, uri: m.spec.storageUri, from, seconds }, 'model loaded');
      await reporter?.report(
        m.name,
        true,
        'Loaded',
        `loaded by ${server.base} (files from ${from === 'cache' ? 'the node cache' : from === 'disk' ? 'the model folder' : 'the source'})`,
        signal,
      );
    } catch (err) {
      if (signal.aborted) return;
      const attempts = (this.#failures.get(m.name)?.attempts ?? 0) + 1;
      const r = this.#o.retry ?? { baseMs: 5000, maxMs: 300_000 };
      const delay = backoffDelay(attempts, r);
      this.#failures.set(m.name, { hash: m.hash, retryAt: Date.now() + delay, attempts });
      const reason =
        err instanceof DownloadError || err instanceof ModelFolderError
          ? err.code
          : (err as { code?: string }).code === 'LoadFailed'
            ? 'LoadFailed'
            : 'FetchFailed';
      const message = (err as Error).message;
      this.#o.metrics?.loads.inc({ outcome: 'error', from: present ? 'disk' : 'unknown' });
      log.warn({ model: m.name, reason, message, retryInS: Math.round(delay / 1000) }, 'model not loaded');
      await reporter?.report(m.name, false, reason, `${message} (retried in ${Math.round(delay / 1000)} s)`, signal);
    }
  }

  async #unload(name: string): Promise<void> {
    try {
      await this.#o.server.unload(name, this.#stop.signal);
      this.#o.log.info({ model: name }, 'model unloaded');
    } catch (err) {
      if (this.#stop.signal.aborted) return;
      // A server that no longer knows the model has unloaded it; the files go either way.
      this.#o.log.warn(
        { model: name, err: String((err as Error).message) },
        'unload failed; removing the files anyway',
      );
    }
    this.loaded.delete(name);
    await this.#remove(name);
  }

  async #remove(name: string): Promise<void> {
    const outcome = await removeOwned(this.#o.modelDir, name);
    if (outcome === 'removed') this.#o.log.info({ model: name }, 'model files removed');
    else if (outcome === 'foreign')
      this.#o.log.warn({ model: name }, 'model folder not removed: the agent did not make it (no SUCCESS marker)');
  }

  async stop(): Promise<void> {
    this.#stop.abort(new Error('agent stopping'));
    await this.#limiter.stop({ dropWaitingJobs: true }).catch(() => undefined);
    await this.settled();
  }
}
