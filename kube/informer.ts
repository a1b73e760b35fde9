import type { Logger } from 'pino';
import { backoffDelay, sleep, type BackoffOptions } from '../ops/backoff.ts';
import { KubeApiError, type KubeClient, type WatchEvent } from './client.ts';
import { objectKey, type KubeObject, type ResourceType } from './types.ts';

export interface InformerHandlers<T> {
  add?: (obj: T) => void;
  update?: (oldObj: T, newObj: T) => void;
  delete?: (obj: T) => void;
}

export interface InformerOptions {
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** Backoff between failed list/watch attempts. Default 250 ms doubling to 30 s. */
  backoff?: BackoffOptions;
  /** Every this many ms, every cached object is delivered again as an update (level-based safety net). */
  resyncMs?: number;
  /** Server-side watch timeout; the watch is re-opened from the last resourceVersion after it. */
  watchTimeoutSeconds?: number;
  log?: Logger;
}

/**
 * A list+watch cache of one resource type that keeps going whatever the apiserver does:
 * a 410 Gone (expired resourceVersion) relists and delivers the difference; any other error or a
 * closed watch restarts with capped exponential backoff. `hasSynced` turns true after the first
 * successful list — not before, unlike client-node's informer whose start() resolves on failure.
 */
export class Informer<T extends KubeObject> {
  readonly #client: KubeClient;
  readonly #rt: ResourceType;
  readonly #opts: InformerOptions;
  readonly #store = new Map<string, T>();
  readonly #handlers: InformerHandlers<T>[] = [];
  #resourceVersion: string | undefined;
  #synced = false;
  #syncWaiters: Array<() => void> = [];
  #relists = 0;

  constructor(client: KubeClient, rt: ResourceType, opts: InformerOptions = {}) {
    this.#client = client;
    this.#rt = rt;
    this.#opts = opts;
  }

  /** The resource type this informer lists and watches. */
  get resource(): ResourceType {
    return this.#rt;
  }

  /** Register handlers; call before start(). */
  on(handlers: InformerHandlers<T>): this {
    this.#handlers.push(handlers);
    return this;
  }

  get hasSynced(): boolean {
    return this.#synced;
  }

  /** How many full lists were made (1 at start, +1 per 410 or restart that needed one). */
  get relists(): number {
    return this.#relists;
  }

  get(key: string): T | undefined {
    return this.#store.get(key);
  }

  list(): T[] {
    return [...this.#store.values()];
  }

  /** Resolves once the first list has been delivered, or rejects when the signal aborts. */
  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.#synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      this.#syncWaiters.push(resolve);
    });
  }

  /** Lists and watches until the signal aborts; the returned promise settles only then (do not await it to wait for a sync: use waitForSync). */
  start(signal: AbortSignal): Promise<void> {
    const loop = this.#run(signal);
    if (this.#opts.resyncMs) this.#resyncLoop(this.#opts.resyncMs, signal);
    return loop;
  }

  async #run(signal: AbortSignal): Promise<void> {
    const log = this.#opts.log;
    const backoff = this.#opts.backoff ?? { baseMs: 250, maxMs: 30_000 };
    let failures = 0;
    let needList = true;
    while (!signal.aborted) {
      try {
        if (needList) {
          await this.#relist(signal);
          needList = false;
        }
        const opened = Date.now();
        const outcome = await this.#watch(signal);
        if (outcome === 'closed' && Date.now() - opened < 1000) {
          // A watch the server ends at once, again and again, must not become a hot loop.
          failures++;
          await sleep(backoffDelay(failures, backoff), signal).catch(() => undefined);
          continue;
        }
        failures = 0;
        if (outcome === 'gone') {
          log?.info({ resource: this.#rt.plural }, 'watch resourceVersion expired (410); relisting');
          needList = true;
        }
      } catch (err) {
        if (signal.aborted) break;
        if (err instanceof KubeApiError && err.status === 410) {
          needList = true;
          continue;
        }
        failures++;
        const delay = backoffDelay(failures, backoff);
        log?.warn(
          { resource: this.#rt.plural, err: String((err as Error)?.message ?? err), retryInMs: delay },
          'list/watch failed; retrying',
        );
        await sleep(delay, signal).catch(() => undefined);
      }
    }
  }

  async #relist(signal: AbortSignal): Promise<void> {
    const list = await this.#client.list<T>(this.#rt, {
      namespace: this.#opts.namespace,
      labelSelector: this.#opts.labelSelector,
      fieldSelector: this.#opts.fieldSelector,
      signal,
    });
    this.#relists++;
    const seen = new Set<string>();
    for (const obj of list.items) {
      const key = objectKey(obj);
      seen.add(key);
      this.#upsert(key, obj);
    }
    for (const [key, old] of this.#store) {
      if (!seen.has(key)) {
        this.#store.delete(key);
        this.#emit((h) => h.delete?.(old));
      }
    }
    this.#resourceVersion = list.metadata.resourceVersion;
    if (!this.#synced) {
      this.#synced = true;
      for (const w of this.#syncWaiters.splice(0)) w();
    }
  }

  /** Reads one watch to its end. 'gone' when the server says our resourceVersion expired. */
  async #watch(signal: AbortSignal): Promise<'closed' | 'gone'> {
    const timeoutSeconds = this.#opts.watchTimeoutSeconds ?? 240 + Math.floor(Math.random() * 120);
    // A silent connection (no event, not even a bookmark, well past the server's timeout) is abandoned.
    const stall = new AbortController();
    const timer = setTimeout(() => stall.abort(new Error('watch stalled')), (timeoutSeconds + 60) * 1000);
    const events = this.#client.watch<T>(this.#rt, {
      namespace: this.#opts.namespace,
      labelSelector: this.#opts.labelSelector,
      fieldSelector: this.#opts.fieldSelector,
      resourceVersion: this.#resourceVersion,
      timeoutSeconds,
      signal: AbortSignal.any([signal, stall.signal]),
    });
    try {
      for await (const ev of events) {
        timer.refresh();
        if (this.#apply(ev) === 'gone') return 'gone';
      }
    } finally {
      clearTimeout(timer);
    }
    return 'closed';
  }

  /** Applies one watch event to the store and handlers. */
  #apply(ev: WatchEvent<T>): 'ok' | 'gone' {
    const obj = ev.object;
    if (ev.type === 'ERROR') {
      const status = obj as unknown as { code?: number; message?: string; reason?: string };
      if (status.code === 410) return 'gone';
      throw new KubeApiError(status.code ?? 500, status.reason ?? 'WatchError', status.message ?? 'watch error');
    }
    const rv = obj.metadata?.resourceVersion;
    if (ev.type === 'BOOKMARK') {
      if (rv) this.#resourceVersion = rv;
      return 'ok';
    }
    const key = objectKey(obj);
    if (ev.type === 'DELETED') {
      const old = this.#store.get(key) ?? obj;
      this.#store.delete(key);
      this.#emit((h) => h.delete?.(old));
    } else {
      this.#upsert(key, obj);
    }
    if (rv) this.#resourceVersion = rv;
    return 'ok';
  }

  #upsert(key: string, obj: T): void {
    const old = this.#store.get(key);
    this.#store.set(key, obj);
    if (!old) this.#emit((h) => h.add?.(obj));
    else if (old.metadata.resourceVersion !== obj.metadata.resourceVersion) this.#emit((h) => h.update?.(old, obj));
  }

  #emit(fn: (h: InformerHandlers<T>) => void): void {
    for (const h of this.#handlers) {
      try {
        fn(h);
      } catch (err) {
        this.#opts.log?.error({ resource: this.#rt.plural, err }, 'informer handler threw');
      }
    }
  }

  #resyncLoop(every: number, signal: AbortSignal): void {
    const timer = setInterval(() => {
      if (!this.#synced) return;
      for (const obj of this.#store.values()) this.#emit((h) => h.update?.(obj, obj));
    }, every);
    timer.unref();
    signal.addEventListener('abort', () => clearInterval(timer), { once: true });
  }
}
