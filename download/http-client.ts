import { Agent, interceptors, type Dispatcher } from 'undici';

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

/**
 * HTTP for sources (undici, the kube client's stack too): one connection pool per download, so
 * ranged parts and many small objects reuse connections; redirects are followed (a CDN for
 * Hugging Face files) and credentials are not sent to another origin. Bodies are not decompressed:
 * bytes are stored as the source has them.
 */
export class HttpClient {
  readonly #agent: Agent;
  readonly #dispatcher: Dispatcher;
  readonly #t: HttpTimeouts;

  constructor(t: HttpTimeouts) {
    this.#t = t;
    this.#agent = new Agent({
      connect: { timeout: t.connectTimeoutMs, ...(t.socketPath ? { socketPath: t.socketPath } : {}) },
      connections: 64,
    });
    this.#dispatcher = this.#agent.compose(interceptors.redirect({ maxRedirections: 5 }));
  }

  async request(
    method: 'GET' | 'POST',
    url: string,
    opts: { headers?: Record<string, string>; body?: string; signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<HttpResponse> {
    const u = new URL(url);
    const res = await this.#dispatcher.request({
      origin: u.origin,
      path: u.pathname + u.search,
      method,
      headers: opts.headers ?? {},
      ...(opts.body !== undefined ? { body: opts.body } : {}),
      signal: opts.signal,
      headersTimeout: opts.timeoutMs ?? this.#t.responseTimeoutMs,
      bodyTimeout: 0, // stalls are the caller's (a timer over the bytes it reads)
    });
    return {
      statusCode: res.statusCode,
      headers: res.headers as Headers,
      body: res.body as unknown as HttpResponse['body'],
    };
  }

  get(url: string, headers: Record<string, string>, signal?: AbortSignal, timeoutMs?: number): Promise<HttpResponse> {
    return this.request('GET', url, { headers, ...(signal ? { signal } : {}), ...(timeoutMs ? { timeoutMs } : {}) });
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}

/** Drops a body not (fully) read, freeing its connection; a late error of the dropped body is ignored. */
export function discard(res: HttpResponse | undefined): void {
  if (!res) return;
  const body = res.body as unknown as { on(ev: 'error', fn: () => void): void; destroy(): void };
  body.on('error', () => undefined);
  body.destroy();
}
