import Bottleneck from 'bottleneck';
import { backoffDelay, sleep } from '../ops/backoff.ts';
import { DownloadError } from './errors.ts';
import type { RetryableError } from './http-status.ts';
import type { DownloadOptions } from './types.ts';

/** The error a cancelled download reports. */
export function cancelled(signal: AbortSignal): DownloadError {
  return new DownloadError('Cancelled', 'download cancelled', { cause: signal.reason });
}

/**
 * Runs `fn` over every item, at most `concurrency` at once. The first failure stops the rest
 * (their signal aborts) and is thrown once every started call has ended, so nothing keeps
 * writing after this returns.
 */
export async function runAll<T>(
  items: readonly T[],
  concurrency: number,
  signal: AbortSignal,
  fn: (item: T, signal: AbortSignal) => Promise<void>,
): Promise<void> {
  const stop = new AbortController();
  const both = AbortSignal.any([signal, stop.signal]);
  const limiter = new Bottleneck({ maxConcurrent: Math.max(1, concurrency) });
  let first: unknown;
  await Promise.allSettled(
    items.map((item) =>
      limiter.schedule(async () => {
        if (both.aborted) return;
        try {
          await fn(item, both);
        } catch (err) {
          first ??= err;
          stop.abort(err);
        }
      }),
    ),
  );
  if (signal.aborted) throw cancelled(signal);
  if (first !== undefined) throw first;
}

/**
 * Calls `attempt` until it succeeds, throws a non-retryable DownloadError, or `o.attempts` are used;
 * waits between tries with capped backoff (or the server's Retry-After). `what` names the operation
 * in the final message.
 */
export async function withRetries<T>(
  what: string,
  o: DownloadOptions,
  signal: AbortSignal,
  attempt: (n: number) => Promise<T>,
): Promise<T> {
  let last: DownloadError | undefined;
  for (let n = 1; n <= o.attempts; n++) {
    if (signal.aborted) throw cancelled(signal);
    try {
      return await attempt(n);
    } catch (err) {
      if (signal.aborted) throw cancelled(signal);
      if (!(err instanceof DownloadError) || !err.retryable) throw err;
      last = err;
      if (n < o.attempts) {
        const wait =
          (err as RetryableError).retryAfterMs ?? backoffDelay(n, { baseMs: o.backoffBaseMs, maxMs: o.backoffMaxMs });
        await sleep(wait, signal).catch(() => undefined);
      }
    }
  }
  const code = last?.code === 'IntegrityMismatch' ? 'IntegrityMismatch' : 'SourceUnavailable';
  throw new DownloadError(code, `${what} failed after ${o.attempts} attempts: ${last?.message ?? 'unknown error'}`, {
    cause: last,
  });
}
