import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sendPaced } from '../../localcluster/origin.ts';

export interface HubRepo {
  /** Revision name (branch or tag) → commit sha. */
  revisions: Record<string, string>;
  /** Files at the commit (one commit per repo is enough for the tests). */
  files: Record<string, Buffer>;
  /** When set, every request needs `Authorization: Bearer <token>`. */
  token?: string;
}

export interface HubRequest {
  server: 'hub' | 'cdn';
  path: string;
  authorization?: string;
  range?: string;
}

/** Files above this size are served the way the hub serves LFS files: a redirect to its CDN. */
const LFS_MIN = 1024;

function listen(server: Server): Promise<string> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)),
  );
}

/**
 * A local server speaking the Hugging Face hub endpoints the hf:// source uses (revision info,
 * paginated recursive tree, resolve with LFS redirects to a CDN on another origin, Range on the
 * CDN), with tokens for private repositories and a request log.
 */
export class HfHub {
  readonly requests: HubRequest[] = [];
  readonly repos = new Map<string, HubRepo>();
  readonly #hub = createServer((req, res) => this.#handleHub(req, res));
  readonly #cdn = createServer((req, res) => this.#handleCdn(req, res));
  readonly #blobs = new Map<string, Buffer>();
  endpoint = '';
  #cdnUrl = '';
  /** Entries per tree page, to exercise pagination. */
  pageSize = 2;
  /** 'self': every tree page's `Link: rel=next` names the first page again; 'cycle': pages 1 and 2 name each other. */
  pagination: 'normal' | 'self' | 'cycle' = 'normal';
  /** Most bytes a second the CDN sends on each request (unset: as fast as it can); read as each chunk goes. */
  rate: number | undefined;
  /** Bytes of file bodies the CDN has handed to its sockets, by sha256 of the body. */
  readonly cdnBytesSent = new Map<string, number>();

  static async start(): Promise<HfHub> {
    const hub = new HfHub();
    hub.endpoint = await listen(hub.#hub);
    hub.#cdnUrl = await listen(hub.#cdn);
    return hub;
  }

  addRepo(name: string, repo: HubRepo): void {
    this.repos.set(name, repo);
    for (const body of Object.values(repo.files))
      this.#blobs.set(createHash('sha256').update(body).digest('hex'), body);
  }

  #record(server: 'hub' | 'cdn', req: IncomingMessage): void {
    this.requests.push({
      server,
      path: decodeURIComponent((req.url ?? '').split('?')[0]!),
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
      ...(req.headers.range ? { range: req.headers.range } : {}),
    });
  }

  #handleHub(req: IncomingMessage, res: ServerResponse): void {
    this.#record('hub', req);
    const url = new URL(req.url ?? '/', this.endpoint);
    const json = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
    };
    const m = /^\/(?:api\/models\/)?([\w.-]+\/[\w.-]+)\/(revision|tree|resolve)\/([^/]+)\/?(.*)$/.exec(url.pathname);
    const repo = m ? this.repos.get(m[1]!) : undefined;
    if (!m || !repo) return json(404, { error: 'Repository not found' });
    if (repo.token && req.headers.authorization !== `Bearer ${repo.token}`)
      return json(401, { error: 'Invalid credentials in Authorization header' });
    const rev = decodeURIComponent(m[3]!);
    const sha = repo.revisions[rev] ?? (Object.values(repo.revisions).includes(rev) ? rev : undefined);
    if (!sha) return json(404, { error: `Revision Not Found for url: ${url.pathname}` });
    if (m[2] === 'revision')
      return json(200, { id: m[1], sha, siblings: Object.keys(repo.files).map((rfilename) => ({ rfilename })) });
    if (m[2] === 'tree') {
      const entries = Object.entries(repo.files).map(([path, body]) => ({
        type: 'file',
        path,
        size: body.length,
        oid: createHash('sha1').update(body).digest('hex'),
        ...(body.length > LFS_MIN
          ? { lfs: { oid: createHash('sha256').update(body).digest('hex'), size: body.length, pointerSize: 134 } }
          : {}),
      }));
      const dirs = [
        ...new Set(
          Object.keys(repo.files)
            .filter((p) => p.includes('/'))
            .map((p) => p.split('/')[0]!),
        ),
      ].map((path) => ({ type: 'directory', path, size: 0, oid: 'x' }));
      const all = [...dirs, ...entries];
      const cursor = Number(url.searchParams.get('cursor') ?? 0);
      const page = all.slice(cursor, cursor + this.pageSize);
      const nextCursor =
        this.pagination === 'self'
          ? 0
          : this.pagination === 'cycle'
            ? cursor === 0
              ? this.pageSize
              : 0
            : cursor + this.pageSize;
      const next: Record<string, string> =
        this.pagination !== 'normal' || nextCursor < all.length
          ? { link: `<${url.pathname}?recursive=true&expand=false&cursor=${nextCursor}>; rel="next"` }
          : {};
      return json(200, page, next);
    }
    const path = decodeURIComponent(m[4]!);
    const body = repo.files[path];
    if (!body) return json(404, { error: 'Entry not found' });
    if (body.length > LFS_MIN) {
      res
        .writeHead(302, {
          location: `${this.#cdnUrl}/blobs/${createHash('sha256').update(body).digest('hex')}?signature=cdn-signed`,
        })
        .end();
      return;
    }
    res.writeHead(200, { 'content-length': String(body.length), etag: `"${sha}"` }).end(body);
  }

  #handleCdn(req: IncomingMessage, res: ServerResponse): void {
    this.#record('cdn', req);
    const hash = /^\/blobs\/([0-9a-f]{64})/.exec(req.url ?? '')?.[1];
    const body = hash ? this.#blobs.get(hash) : undefined;
    if (!body) return void res.writeHead(404).end();
    const r = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const start = r ? Number(r[1]) : 0;
    const end = r?.[2] ? Math.min(Number(r[2]), body.length - 1) : body.length - 1;
    if (r)
      res.writeHead(206, {
        'content-length': String(end - start + 1),
        'content-range': `bytes ${start}-${end}/${body.length}`,
      });
    else res.writeHead(200, { 'content-length': String(body.length) });
    const count = (n: number): void => void this.cdnBytesSent.set(hash!, (this.cdnBytesSent.get(hash!) ?? 0) + n);
    void sendPaced(
      res,
      end - start + 1,
      (off, n) => body.subarray(start + off, start + off + n),
      () => this.rate,
      count,
    )
      .then(() => res.end())
      .catch(() => res.destroy());
  }

  async close(): Promise<void> {
    this.#hub.closeAllConnections();
    this.#cdn.closeAllConnections();
    await Promise.all([new Promise((r) => this.#hub.close(r)), new Promise((r) => this.#cdn.close(r))]);
  }
}
