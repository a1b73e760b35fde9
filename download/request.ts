import { classify, statusError } from './http-status.ts';
import type { Headers, HttpClient } from './http-client.ts';
import { withRetries } from './parallel.ts';
import type { DownloadOptions } from './types.ts';

/** Headers for one request to a store: signing and tokens happen here, per request. */
export type Authorize = (
  url: string,
  headers: Record<string, string>,
) => Promise<Record<string, string>> | Record<string, string>;

export interface TextRequest {
  url: string;
  http: HttpClient;
  authorize: Authorize;
  o: DownloadOptions;
  signal: AbortSignal;
  /** A store's own error code from an error body (S3's <Code>, GCS's error.message…), for messages. */
  errorDetail?: (body: string) => string | undefined;
}

/** GET a small document (a listing page, metadata), retrying network trouble, 429 and 5xx. */
export async function getText(r: TextRequest): Promise<{ body: string; headers: Headers }> {
  return withRetries(`GET ${new URL(r.url).pathname}`, r.o, r.signal, async () => {
    try {
      const res = await r.http.get(r.url, await r.authorize(r.url, {}), r.signal);
      const body = await res.body.text();
      if (res.statusCode !== 200) throw statusError(res, r.url, r.o.backoffMaxMs, r.errorDetail?.(body));
      return { body, headers: res.headers };
    } catch (err) {
      throw classify(err);
    }
  });
}
