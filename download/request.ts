import type { IncomingHttpHeaders } from 'node:http';
import got from 'got';
import { classify, statusError } from './http-status.ts';
import { withRetries } from './parallel.ts';
import type { DownloadOptions } from './types.ts';

/** Headers for one request to a store: signing and tokens happen here, per request. */
export type Authorize = (url: string, headers: Record<string, string>) => Promise<Record<string, string>> | Record<string, string>;

export interface TextRequest {
  url: string;
  authorize: Authorize;
  o: DownloadOptions;
  signal: AbortSignal;
  /** A store's own error code from an error body (S3's <Code>, GCS's error.message…), for messages. */
  errorDetail?: (body: string) => string | undefined;
}

/** GET a small document (a listing page, metadata), retrying network trouble, 429 and 5xx. */
export async function getText(r: TextRequest): Promise<{ body: string; headers: IncomingHttpHeaders }> {
  return withRetries(`GET ${new URL(r.url).pathname}`, r.o, r.signal, async () => {
    try {
      const res = await got(r.url, {
        headers: await r.authorize(r.url, {}),
        throwHttpErrors: false,
        retry: { limit: 0 },
        timeout: { connect: r.o.connectTimeoutMs, response: r.o.responseTimeoutMs, request: r.o.responseTimeoutMs * 2 },
        signal: r.signal,
      });
      if (res.statusCode !== 200) throw statusError(res, r.url, r.o.backoffMaxMs, r.errorDetail?.(res.body));
      return { body: res.body, headers: res.headers };
    } catch (err) {
      throw classify(err);
    }
  });
}
