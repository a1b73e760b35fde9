import { createHash } from 'node:crypto';
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { Socket } from 'node:net';

/** One scripted misbehaviour, consumed by one request to its path. */
export type Fault =
  | { status: number; retryAfter?: string }
  | { resetAfterBytes: number }
  | { stallAfterBytes: number; stallMs: number }
  | { shortBody: number }
  | { ignoreRange: true }
  /** Answers with a redirect (302 unless given) to `location`, absolute or relative. */
  | { redirect: string; redirectStatus?: number };

/** Content served at a path: bytes in memory, or a deterministic generator for big files. */
export type Body = Buffer | { size: number; chunk: (offset: number, length: number) => Buffer };

export interface RequestRecord {
  method: string;
  path: string;
  range?: string;
  ifRange?: string;
  status: number;
  /** Every request header as received (credentials included: tests check what was forwarded). */
  headers: IncomingHttpHeaders;
}

interface Entry {
  body: Body;
  etag: string;
  range: boolean;
  contentType: string;
  /** Bytes per second per response, to make downloads long enough to interrupt. */
  rate?: number;
  /** false: no ETag (nor Last-Modified) is sent, so a client has nothing to resume against. */
  validators: boolean;
  /** 'ignore': If-Range and If-Match are ignored, as by servers that do not implement them. */
  preconditions: 'honour' | 'ignore';
}

/** Deterministic pseudo-random bytes (same seed → same bytes), cheap to produce at any offset. */
export function generated(size: number, seed = 1): Body {
  return {
    size,
    chunk(offset, length) {
      const b = Buffer.allocUnsafe(length);
      for (let i = 0; i < length; i++) b[i] = ((offset + i) * 2654435761 + seed * 97) >>> 24;
      return b;
    },
  };
}

/** The whole body as bytes (generated bodies are made on the spot: keep them small). */
export function toBuffer(b: Body): Buffer {
  return Buffer.isBuffer(b) ? b : b.chunk(0, b.size);
}

/** A real HTTP origin on loopback with Range support, ETags, scripted faults and a request log. */
export class Origin {
  readonly requests: RequestRecord[] = [];
  /** Body bytes written to clients so far, by path: what a cluster's downloads cost the origin. */
  readonly bytesSent = new Map<string, number>();
  readonly #files = new Map<string, Entry>();
  readonly #faults = new Map<string, Fault[]>();
  readonly #sockets = new Set<Socket>();
  readonly #server: Server;
  #port = 0;

  private constructor() {
    this.#server = createServer((req, res) => void this.#handle(req, res));
    this.#server.on('connection', (s) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
  }

  static async start(): Promise<Origin> {
    const o = new Origin();
    await new Promise<void>((r) => o.#server.listen(0, '127.0.0.1', r));
    const a = o.#server.address();
    o.#port = typeof a === 'object' && a ? a.port : 0;
    return o;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.#port}${path}`;
  }

  set(
    path: string,
    body: Body,
    opts: {
      range?: boolean;
      contentType?: string;
      etag?: string;
      rate?: number;
      validators?: boolean;
      preconditions?: 'honour' | 'ignore';
    } = {},
  ): void {
    const etag =
      opts.etag ??
      `"${Buffer.isBuffer(body) ? createHash('sha1').update(body).digest('hex').slice(0, 16) : `gen-${body.size}`}"`;
    this.#files.set(path, {
      body,
      etag,
      range: opts.range ?? true,
      contentType: opts.contentType ?? 'application/octet-stream',
      ...(opts.rate ? { rate: opts.rate } : {}),
      validators: opts.validators ?? true,
      preconditions: opts.preconditions ?? 'honour',
    });
  }

  fault(path: string, ...faults: Fault[]): void {
    this.#faults.set(path, [...(this.#faults.get(path) ?? []), ...faults]);
  }

  requestsFor(path: string): RequestRecord[] {
    return this.requests.filter((r) => r.path === path);
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const record: RequestRecord = {
      method: req.method ?? 'GET',
      path,
      status: 0,
      headers: req.headers,
      ...(req.headers.range ? { range: req.headers.range } : {}),
      ...(req.headers['if-range'] ? { ifRange: String(req.headers['if-range']) } : {}),
    };
    this.requests.push(record);
    const entry = this.#files.get(path);
    const fault = this.#faults.get(path)?.shift();
    if (fault && 'status' in fault) {
      record.status = fault.status;
      res.writeHead(fault.status, fault.retryAfter ? { 'retry-after': fault.retryAfter } : {});
      res.end(`fault ${fault.status}`);
      return;
    }
    if (fault && 'redirect' in fault) {
      record.status = fault.redirectStatus ?? 302;
      res.writeHead(record.status, { location: fault.redirect }).end();
      return;
    }
    if (!entry) {
      record.status = 404;
      res.writeHead(404).end('not found');
      return;
    }
    const honour = entry.preconditions === 'honour';
    if (honour && req.headers['if-match'] && req.headers['if-match'] !== entry.etag) {
      record.status = 412;
      res.writeHead(412).end('precondition failed');
      return;
    }
    const size = Buffer.isBuffer(entry.body) ? entry.body.length : entry.body.size;
    let start = 0;
    let end = size - 1;
    let status = 200;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const rangeOk =
      entry.range &&
      !(fault && 'ignoreRange' in fault) &&
      m &&
      (!honour || !req.headers['if-range'] || req.headers['if-range'] === entry.etag);
    if (rangeOk && m) {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
      if (start >= size) {
        record.status = 416;
        res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
        return;
      }
      status = 206;
    }
    record.status = status;
    const length = end - start + 1;
    res.writeHead(status, {
      'content-type': entry.contentType,
      'content-length': String(length),
      ...(entry.validators ? { etag: entry.etag } : {}),
      'accept-ranges': entry.range ? 'bytes' : 'none',
      ...(status === 206 ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
    });
    const cut =
      fault && 'resetAfterBytes' in fault
        ? fault.resetAfterBytes
        : fault && 'shortBody' in fault
          ? length - fault.shortBody
          : fault && 'stallAfterBytes' in fault
            ? fault.stallAfterBytes
            : length;
    await this.#send(res, entry.body, start, Math.min(length, cut), entry.rate, path);
    if (fault && 'stallAfterBytes' in fault) {
      await new Promise((r) => setTimeout(r, fault.stallMs).unref()); // unref: a stall never keeps the test process alive
      res.destroy();
    } else if (cut < length) {
      res.socket?.destroy(); // reset or short body: the connection ends before Content-Length bytes
    } else {
      res.end();
    }
  }

  async #send(
    res: ServerResponse,
    body: Body,
    start: number,
    length: number,
    rate: number | undefined,
    path: string,
  ): Promise<void> {
    await sendPaced(
      res,
      length,
      (off, n) => (Buffer.isBuffer(body) ? body.subarray(start + off, start + off + n) : body.chunk(start + off, n)),
      rate,
      (n) => this.bytesSent.set(path, (this.bytesSent.get(path) ?? 0) + n),
    );
  }
}

/**
 * Writes `length` bytes (`read(offset, n)` gives them) to `res` in chunks, at most `rate` bytes a second when set
 * (a function: read again for every chunk, so a test can slow a transfer down while it runs), counting each chunk
 * handed to the socket (`onSent`); stops when the client is gone. Does not end `res`.
 */
export async function sendPaced(
  res: ServerResponse,
  length: number,
  read: (offset: number, n: number) => Buffer,
  rate?: number | (() => number | undefined),
  onSent?: (n: number) => void,
): Promise<void> {
  const rateNow = (): number | undefined => (typeof rate === 'function' ? rate() : rate);
  const first = rateNow();
  const CHUNK = first ? Math.max(1024, Math.min(256 * 1024, Math.floor(first / 20))) : 256 * 1024;
  for (let off = 0; off < length; off += CHUNK) {
    const n = Math.min(CHUNK, length - off);
    if (res.destroyed) return; // the client left (while this waited, say): 'close' will not come again
    const data = read(off, n);
    onSent?.(n);
    if (!res.write(data))
      await new Promise<void>((resolve) => {
        const go = (): void => {
          res.off('drain', go);
          res.off('close', go);
          resolve();
        };
        res.on('drain', go);
        res.on('close', go);
      });
    const r = rateNow();
    if (r) await new Promise((done) => setTimeout(done, (n / r) * 1000).unref());
  }
}
