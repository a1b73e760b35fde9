import { HttpClient } from '../download/http-client.ts';
import { backoffDelay, sleep } from '../ops/backoff.ts';

/** The model server refused or could not be reached, after retries. */
class ModelServerError extends Error {
  readonly code = 'LoadFailed';
}

/** V2 repository API of the co-located model server: load and unload by model name. */
export class ModelServer {
  readonly base: string;
  readonly #attempts: number;
  readonly #backoff = { baseMs: 200, maxMs: 5000 };
  readonly #http = new HttpClient({ connectTimeoutMs: 10_000, responseTimeoutMs: 120_000 });

  constructor(base: string, attempts = 5) {
    this.base = base.replace(/\/$/, '');
    this.#attempts = attempts;
  }

  async close(): Promise<void> {
    await this.#http.close();
  }

  load(name: string, signal: AbortSignal): Promise<void> {
    return this.#call('load', name, signal);
  }

  unload(name: string, signal: AbortSignal): Promise<void> {
    return this.#call('unload', name, signal);
  }

  /** POST {} with retries on 5xx, 429 and network errors; 4xx answers fail at once. */
  async #call(verb: 'load' | 'unload', name: string, signal: AbortSignal): Promise<void> {
    const url = `${this.base}/v2/repository/models/${encodeURIComponent(name)}/${verb}`;
    let last = '';
    for (let n = 1; n <= this.#attempts; n++) {
      try {
        const res = await this.#http.request('POST', url, {
          headers: { 'content-type': 'application/json' },
          body: '{}',
          signal,
        });
        const text = await res.body.text();
        if (res.statusCode >= 200 && res.statusCode < 300) return;
        last = `${verb} answered HTTP ${res.statusCode}: ${text.slice(0, 300)}`;
        if (res.statusCode < 500 && res.statusCode !== 429) break;
      } catch (err) {
        if (signal.aborted) throw err;
        last = `${verb} failed: ${(err as Error).message}`;
      }
      if (n < this.#attempts) await sleep(backoffDelay(n, this.#backoff), signal);
    }
    throw new ModelServerError(`model server ${this.base}: ${last}`);
  }
}
