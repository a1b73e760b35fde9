/** Capped exponential backoff with full jitter, and an abortable sleep: shared by kube/, download/ and agent/. */
export interface BackoffOptions {
  /** First delay in milliseconds. */
  baseMs: number;
  /** Largest delay in milliseconds. */
  maxMs: number;
  /** Random source in [0,1); tests pass a fixed one. */
  random?: () => number;
}

/** Delay before retry number `attempt` (1-based): base·2^(attempt-1), capped, jittered into [d/2, d]. */
export function backoffDelay(attempt: number, opts: BackoffOptions): number {
  const exp = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.max(0, attempt - 1));
  const r = (opts.random ?? Math.random)();
  return Math.round(exp / 2 + (exp / 2) * r);
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
