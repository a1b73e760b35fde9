import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';

export interface OpsServerOptions {
  /** host:port; port 0 picks a free one. */
  addr: string;
  registry: Registry;
  /** Why the component is not ready (caches not synced, …), shown by /readyz; undefined when ready. */
  unready: () => string | undefined;
  /** The flag that gave `addr`, named in errors (default: listen). */
  flag?: string;
  /** Extra routes (the daemon's artifact server); return false to fall through to 404. */
  extra?: (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;
}

/** Splits "host:port" (":8080" means all interfaces); errors name the flag that gave it. */
export function parseAddr(addr: string, flag = 'listen'): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  if (i < 0) throw new Error(`--${flag} ${addr}: give host:port, e.g. 127.0.0.1:8080 or :8080`);
  const portText = addr.slice(i + 1);
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535)
    throw new Error(`--${flag} ${addr}: the port must be a whole number from 0 to 65535 (0 picks a free one)`);
  const host = addr.slice(0, i).replace(/^\[|\]$/g, '') || '0.0.0.0';
  return { host, port };
}

/** Why listening on `addr` failed, in words that say what to change. */
function listenError(flag: string, addr: string, err: NodeJS.ErrnoException): Error {
  const why =
    err.code === 'EADDRINUSE'
      ? 'another process listens on that port: stop it, or choose another port (0 picks a free one)'
      : err.code === 'EACCES'
        ? 'not allowed to listen there: ports below 1024 need privileges; choose a higher port'
        : err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN'
          ? 'no interface of this machine has that address: use one of its addresses, 127.0.0.1 or :PORT for all'
          : 'cannot listen there';
  return new Error(`--${flag} ${addr}: ${why} (${err.message})`, { cause: err });
}

/** Serves /metrics (Prometheus), /healthz and /readyz. Resolves once listening. */
export async function startOpsServer(
  opts: OpsServerOptions,
): Promise<{ server: Server; url: string; close: () => Promise<void> }> {
  const flag = opts.flag ?? 'listen';
  const { host, port } = parseAddr(opts.addr, flag);
  const server = createServer((req, res) => {
    void handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String((err as Error)?.message ?? err));
    });
  });
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      const body = await opts.registry.metrics();
      res.writeHead(200, { 'content-type': opts.registry.contentType });
      res.end(body);
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    } else if (path === '/readyz') {
      const why = opts.unready();
      res.writeHead(why === undefined ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(why === undefined ? 'ok' : `not ready: ${why}`);
    } else if (!(opts.extra && (await opts.extra(req, res)))) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    }
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(listenError(flag, opts.addr, err)));
    server.listen(port, host, () => resolve());
  });
  const a = server.address();
  const bound = typeof a === 'object' && a ? a.port : port;
  const shownHost = host === '0.0.0.0' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return {
    server,
    url: `http://${shownHost}:${bound}`,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
