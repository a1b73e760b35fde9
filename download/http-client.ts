import { Agent } from 'undici';
import { DownloadError, redactUrl } from './errors.ts';

export type Headers = Record<string, string | string[] | undefined>;

/** An answer whose body is read as a stream of Buffers (or whole, for small documents). */
export interface HttpResponse {
  statusCode: number;
  headers: Headers;
  body: AsyncIterable<Buffer> & { text(): Promise<string>; json(): Promise<unknown>; destroy(err?: Error): unknown };
}

export interface HttpTimeouts {
  connectTimeoutMs: number;
  /** Until the response headers arrive. */
  responseTimeoutMs: number;
  /** Connect to this Unix socket whatever the URL's host (the node daemon's artifact socket). */
  socketPath?: string;
}

/** A header's single value (the first, when repeated). */
export function header(h: Headers, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;
/** The only request headers that go to another origin: no credential of any kind (Authorization, cookies, S3/GCS tokens). */
const CROSS_ORIGIN_HEADERS = new Set(['range', 'if-range', 'if-match', 'if-none-match', 'accept', 'user-agent']);

function crossOriginHeaders(h: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).filter(([k]) => CROSS_ORIGIN_HEADERS.has(k.toLowerCase())));
}

/**
 * HTTP for sources (undici, the kube client's stack too): one connection pool per download, so
 * ranged parts and many small objects reuse connections; GET redirects are followed (a CDN for
 * Hugging Face files) to http(s) only, and no credential header is sent to another origin. Bodies
 * are not decompressed: bytes are stored as the source has them.
 */
export class HttpClient {
  readonly #agent: Agent;
  readonly #t: HttpTimeouts;

  constructor(t: HttpTimeouts) {
    this.#t = t;
    this.#agent = new Agent({
      connect: { timeout: t.connectTimeoutMs, ...(t.socketPath ? { socketPath: t.socketPath } : {}) },
      connections: 64,
    });
  }

  async request(
    method: 'GET' | 'POST',
    url: string,
    opts: { headers?: Record<string, string>; body?: string; signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<HttpResponse> {
    const first = new URL(url);
    let u = first;
    let headers = opts.headers ?? {};
    for (let hop = 0; ; hop++) {
      const res = await this.#agent.request({
        origin: u.origin,
        path: u.pathname + u.search,
        method,
        headers,
        ...(opts.body !== undefined ? { body: opts.body } : {}),
        signal: opts.signal,
        headersTimeout: opts.timeoutMs ?? this.#t.responseTimeoutMs,
        bodyTimeout: 0, // stalls are the caller's (a timer over the bytes it reads)
      });
      const location = header(res.headers as Headers, 'location');
      if (method !== 'GET' || !REDIRECTS.has(res.statusCode) || location === undefined) {
        return {
          statusCode: res.statusCode,
          headers: res.headers as Headers,
          body: res.body as unknown as HttpResponse['body'],
        };
      }
      await res.body.dump().catch(() => undefined); // a redirect's body is never read: free its connection
      u = nextHop(u, location, url, hop);
      if (u.origin !== first.origin) headers = crossOriginHeaders(headers);
    }
  }

  get(url: string, headers: Record<string, string>, signal?: AbortSignal, timeoutMs?: number): Promise<HttpResponse> {
    return this.request('GET', url, { headers, ...(signal ? { signal } : {}), ...(timeoutMs ? { timeoutMs } : {}) });
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}

/** Where a redirect leads: an http(s) URL within the redirect limit, or a final BadResponse (never retried). */
function nextHop(from: URL, location: string, url: string, hop: number): URL {
  if (hop + 1 > MAX_REDIRECTS)
    throw new DownloadError('BadResponse', `${redactUrl(url)} redirected more than ${MAX_REDIRECTS} times`);
  let next: URL;
  try {
    next = new URL(location, from);
  } catch {
    throw new DownloadError('BadResponse', `${redactUrl(url)} redirected to an invalid URL`);
  }
  if (next.protocol !== 'http:' && next.protocol !== 'https:')
    throw new DownloadError(
      'BadResponse',
      `${redactUrl(url)} redirected to a ${next.protocol} URL; only http and https redirects are followed`,
    );
  return next;
}

/** Drops a body not (fully) read, freeing its connection; a late error of the dropped body is ignored. */
export function discard(res: HttpResponse | undefined): void {
  if (!res) return;
  const body = res.body as unknown as { on(ev: 'error', fn: () => void): void; destroy(): void };
  body.on('error', () => undefined);
  body.destroy();
}
