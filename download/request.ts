import { DownloadError, redactUrl } from './errors.ts';
import { classify, statusError } from './http-status.ts';
import { discard, type Headers, type HttpClient, type HttpResponse } from './http-client.ts';
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

/** Largest listing page or metadata document read: a store that answers with an endless body must not fill memory. */
const MAX_DOCUMENT_BYTES = 64 * 1024 * 1024;

async function readDocument(res: HttpResponse, url: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += chunk.length;
    if (size > MAX_DOCUMENT_BYTES) {
      discard(res);
      throw new DownloadError(
        'BadResponse',
        `${redactUrl(url)} answered with more than ${MAX_DOCUMENT_BYTES} bytes where a listing or metadata document was expected`,
      );
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** GET a small document (a listing page, metadata), retrying network trouble, 429 and 5xx. */
export async function getText(r: TextRequest): Promise<{ body: string; headers: Headers }> {
  return withRetries(`GET ${new URL(r.url).pathname}`, r.o, r.signal, async () => {
    try {
      const res = await r.http.get(r.url, await r.authorize(r.url, {}), r.signal);
      const body = await readDocument(res, r.url);
      if (res.statusCode !== 200) throw statusError(res, r.url, r.o.backoffMaxMs, r.errorDetail?.(body));
      return { body, headers: res.headers };
    } catch (err) {
      throw classify(err);
    }
  });
}

/** A JSON document from a store, or BadResponse naming what it should have been. */
export function parseJson(body: string, what: string): unknown {
  try {
    return JSON.parse(body) as unknown;
  } catch {
    throw new DownloadError('BadResponse', `${what} is not JSON: ${JSON.stringify(body.slice(0, 80))}`);
  }
}
