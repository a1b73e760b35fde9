import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { dirname } from 'node:path';

/**
 * Serves the artifact routes on a Unix socket: only processes that can reach the socket file (pods
 * that mount its hostPath directory) read cached models, nothing on the network. A socket left by
 * an earlier run is replaced; any other file at the path is an error, never removed.
 */
export async function serveOnSocket(
  path: string,
  routes: (req: IncomingMessage, res: ServerResponse) => Promise<boolean>,
  mode = 0o666,
): Promise<{ close: () => Promise<void> }> {
  await mkdir(dirname(path), { recursive: true });
  const old = await lstat(path).catch(() => undefined);
  if (old && !old.isSocket())
    throw new Error(`--artifact-socket ${path} exists and is not a socket: remove it or choose another path`);
  if (old) await unlink(path);
  const server = createServer((req, res) => {
    void routes(req, res)
      .then((handled) => {
        if (!handled) res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      })
      .catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(String((err as Error)?.message ?? err));
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  // Consumers run as other users; who may connect is decided by who may mount the directory.
  await chmod(path, mode);
  return {
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
