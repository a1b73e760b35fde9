import { backoffDelay, type BackoffOptions } from '../ops/backoff.ts';

/**
 * Keyed work queue in the shape of client-go's: events only add keys, a key waiting in the
 * queue is stored once, a key being processed is never handed to a second worker (a re-add
 * while it runs is parked and queued again when it is done), failures back off per key.
 */
export class WorkQueue {
  readonly #queue: string[] = [];
  readonly #queued = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #dirtyWhileProcessing = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  readonly #waiters: Array<(key: string | undefined) => void> = [];
  readonly #backoff: BackoffOptions;
  #shutDown = false;

  constructor(opts: { backoff?: BackoffOptions; signal?: AbortSignal } = {}) {
    this.#backoff = opts.backoff ?? { baseMs: 200, maxMs: 60_000 };
    opts.signal?.addEventListener('abort', () => this.shutDown(), { once: true });
  }

  /** Number of keys waiting (not counting ones being processed or delayed). */
  get length(): number {
    return this.#queue.length;
  }

  /** Keys being processed right now. */
  get inFlight(): number {
    return this.#processing.size;
  }

  get isShutDown(): boolean {
    return this.#shutDown;
  }

  /** Queue a key now. A key already waiting is not added twice. */
  add(key: string): void {
    if (this.#shutDown) return;
    if (this.#processing.has(key)) {
      this.#dirtyWhileProcessing.add(key);
      return;
    }
    if (this.#queued.has(key)) return;
    const waiter = this.#waiters.shift();
    if (waiter) {
      this.#processing.add(key);
      waiter(key);
      return;
    }
    this.#queued.add(key);
    this.#queue.push(key);
  }

  /** Queue a key after `ms`; an earlier pending delay for the same key wins. */
  addAfter(key: string, ms: number): void {
    if (this.#shutDown) return;
    if (ms <= 0) return this.add(key);
    const at = Date.now() + ms;
    const existing = this.#timers.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.#timers.delete(key);
      this.add(key);
    }, ms);
    timer.unref();
    this.#timers.set(key, { at, timer });
  }

  /** Queue a key after its per-key backoff; returns the delay chosen. */
  addRateLimited(key: string): number {
    const n = (this.#failures.get(key) ?? 0) + 1;
    this.#failures.set(key, n);
    const delay = backoffDelay(n, this.#backoff);
    this.addAfter(key, delay);
    return delay;
  }

  /** Clear a key's failure count after a success. */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  /** How often the key has failed in a row. */
  failures(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  /** Next key to work on; undefined once the queue is shut down. The caller must call done(key). */
  get(): Promise<string | undefined> {
    if (this.#shutDown) return Promise.resolve(undefined);
    const key = this.#queue.shift();
    if (key !== undefined) {
      this.#queued.delete(key);
      this.#processing.add(key);
      return Promise.resolve(key);
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Mark a key finished; if it was added while processing, it is queued again. */
  done(key: string): void {
    this.#processing.delete(key);
    if (this.#dirtyWhileProcessing.delete(key)) this.add(key);
  }

  /** Stop handing out keys; waiting get() calls resolve undefined. */
  shutDown(): void {
    if (this.#shutDown) return;
    this.#shutDown = true;
    for (const { timer } of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    for (const w of this.#waiters.splice(0)) w(undefined);
  }
}
