import { setTimeout as delay } from 'node:timers/promises';

/**
 * Retries `check` until it stops throwing or `timeoutMs` passes, then rethrows its last error.
 * The way tests wait for observable state: never a fixed sleep.
 */
export async function eventually<T>(
  check: () => T | Promise<T>,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  const interval = opts.intervalMs ?? 50;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await delay(interval);
    }
  }
}
