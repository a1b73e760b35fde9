import type { WorkQueue } from './workqueue.ts';

/** What a reconcile asks for after it succeeds. */
export interface ReconcileResult {
  /** Run again after this many milliseconds even if nothing changes (a timed check). */
  requeueAfterMs?: number;
}

/** A reconcile that failed on input it cannot fix by retrying: not requeued until the key is added again. */
export class TerminalError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TerminalError';
    this.code = code;
  }
}

type ReconcileFn = (key: string, signal: AbortSignal) => Promise<ReconcileResult | void>;

export type ReconcileOutcome = 'success' | 'requeue' | 'error' | 'terminal';

export interface RunnerOptions {
  queue: WorkQueue;
  reconcile: ReconcileFn;
  workers: number;
  signal: AbortSignal;
  /** Called once per reconcile, for metrics and logs. */
  observe?: (key: string, outcome: ReconcileOutcome, durationMs: number, err?: unknown) => void;
}

/**
 * Drives `reconcile` over the queue with N workers until the signal aborts.
 * Errors requeue with the key's backoff; TerminalError forgets the key; requeueAfterMs schedules a re-run.
 * Resolves when every worker has finished its current key.
 */
export async function runReconciler(opts: RunnerOptions): Promise<void> {
  const { queue, reconcile, signal, observe } = opts;
  signal.addEventListener('abort', () => queue.shutDown(), { once: true });
  const worker = async (): Promise<void> => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      const start = performance.now();
      try {
        const result = await reconcile(key, signal);
        queue.forget(key);
        const after = result?.requeueAfterMs;
        if (after !== undefined) queue.addAfter(key, after);
        observe?.(key, after !== undefined ? 'requeue' : 'success', performance.now() - start);
      } catch (err) {
        if (err instanceof TerminalError) {
          queue.forget(key);
          observe?.(key, 'terminal', performance.now() - start, err);
        } else {
          if (!signal.aborted) queue.addRateLimited(key);
          observe?.(key, 'error', performance.now() - start, err);
        }
      } finally {
        queue.done(key);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.workers) }, worker));
}
