import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join, normalize } from 'node:path';

/** A plain static file server on loopback (no faults), fast enough not to be what is measured. */
export async function serveDir(
  dir: string,
): Promise<{ url: (p: string) => string; close: () => Promise<void>; server: Server }> {
  const server = createServer((req, res) => {
    const rel = normalize(decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/')).replace(/^(\.\.[/\\])+/, '');
    const file = join(dir, rel);
    void stat(file).then(
      (st) => {
        const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
        const start = m ? Number(m[1]) : 0;
        res.writeHead(m ? 206 : 200, {
          'content-length': String(st.size - start),
          etag: `"${st.size}"`,
          ...(m ? { 'content-range': `bytes ${start}-${st.size - 1}/${st.size}` } : {}),
        });
        createReadStream(file, { start, highWaterMark: 1 << 20 }).pipe(res);
      },
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  return {
    server,
    url: (p) => `http://127.0.0.1:${port}${p}`,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
