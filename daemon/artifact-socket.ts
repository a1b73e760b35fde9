import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { dirname } from 'node:path';

/** Longest Unix socket path Linux accepts (sun_path is 108 bytes, NUL included). */
const MAX_SOCKET_PATH = 107;

/** A failure to set up the socket, as the error of the flag that named it: `--artifact-socket PATH: …`. */
function socketError(path: string, what: string, err: unknown): Error {
  const e = err as NodeJS.ErrnoException;
  const hint =
    e?.code === 'EACCES' || e?.code === 'EPERM'
      ? 'the daemon may not write there; choose a path it owns'
      : e?.code === 'ENOTDIR' || e?.code === 'EEXIST'
        ? 'a part of the path is a file, not a directory'
        : e?.code === 'EADDRINUSE'
          ? 'another process listens on it'
          : 'choose another path';
  return new Error(`--artifact-socket ${path}: ${what}: ${e?.code ?? String(err)} (${hint})`, { cause: err });
}

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
  // Longer paths do not fit sockaddr_un (108 bytes with its NUL): listen would fail, or bind a truncated name.
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH)
    throw new Error(
      `--artifact-socket ${path}: the path is ${Buffer.byteLength(path)} bytes, more than the ${MAX_SOCKET_PATH} a Unix socket path may have; choose a shorter one`,
    );
  await mkdir(dirname(path), { recursive: true }).catch((err: unknown) => {
    throw socketError(path, `cannot create its directory ${dirname(path)}`, err);
  });
  const old = await lstat(path).catch(() => undefined);
  if (old && !old.isSocket())
    throw new Error(`--artifact-socket ${path}: exists and is not a socket; remove it or choose another path`);
  if (old)
    await unlink(path).catch((err: unknown) => {
      throw socketError(path, 'cannot remove the socket an earlier run left', err);
    });
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
    server.once('error', (err) => reject(socketError(path, 'cannot listen on it', err)));
    server.listen(path, () => resolve());
  });
  // Consumers run as other users; who may connect is decided by who may mount the directory.
  await chmod(path, mode).catch(async (err: unknown) => {
    await new Promise((r) => server.close(r));
    throw socketError(path, 'cannot make it reachable by consumers (chmod)', err);
  });
  return {
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
