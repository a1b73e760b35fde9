import { constants } from 'node:fs';
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join, relative } from 'node:path';
import type { Logger } from 'pino';
import { isValidKey, modelPaths } from '../../disk/layout.ts';
import { isInside } from '../../download/containment.ts';
import { parseAddr } from '../../ops/server.ts';
import type { PeerAuthenticator } from './auth.ts';
import type { CopiesInProgress, CopyView } from './copies.ts';
import { ManifestCache } from './manifest-cache.ts';
import { BufferPool, sendRange } from './send-range.ts';
import { countPieces, encodeHave, parseWaitQuery, pieceLength, PROGRESS_HEADER, type PieceId } from './protocol.ts';

export interface PeerRoutesOptions {
  auth: PeerAuthenticator;
  /** Piece responses in flight at most; one more is refused with 429. */
  maxUploads: number;
  log: Logger;
  /** Copies this node is fetching from peers: their verified pieces are served too. */
  copies?: CopiesInProgress;
  /** Hears of every piece sent whole: its bytes and model. */
  onServed?: (bytes: number, storageKey: string) => void;
}

/** A request handler that answers what is its own and returns false for anything else (ops/server.ts `extra`). */
export type PeerHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

type Route =
  | { kind: 'manifest'; key: string }
  | { kind: 'have'; key: string }
  | { kind: 'piece'; key: string; id: PieceId }
  | { kind: 'refused'; status: 400 | 404; message: string };

/** A refusal: the status, what the peer is told, and headers that go with it. */
interface Refusal {
  status: number;
  message: string;
  headers?: Record<string, string>;
  /** For the log only. */
  detail?: string;
}

/** Read size while a piece is sent. */
const SEND_CHUNK = 1024 * 1024;
/** A connection that moves no byte this long is dropped, so a stalled peer does not hold an upload forever. */
const IDLE_TIMEOUT_MS = 60_000;
/** Longest a long-polled `have` or manifest answer is held back (protocol.ts waitQuery), whatever was asked. */
const MAX_WAIT_MS = 30_000;
/** Long-polled answers held back at once; past this, asks are answered at once (each holds a connection). */
const MAX_HELD_ASKS = 256;

/**
 * The peer endpoints of protocol.ts under /v1/peer/: the manifest of a model complete here or being copied from
 * peers, which pieces of it are held, and the pieces themselves, read from the files this node's own manifest
 * names (of a copy in progress, only pieces it verified, from its staging folder). Every request is authenticated first; piece responses are
 * capped at `maxUploads` at once. Each refused request is one log line (never with the token).
 */
export function peerRoutes(root: string, o: PeerRoutesOptions): PeerHandler {
  const pool = new BufferPool(SEND_CHUNK, 2 * o.maxUploads);
  let uploads = 0;
  let held = 0;
  const manifests = new ManifestCache(root);
  return async (req, res) => {
    const pathname = (req.url ?? '/').split('?')[0] ?? '/';
    const raw = pathname.split('/').slice(1);
    if (raw[0] !== 'v1' || raw[1] !== 'peer') return false;
    let username: string | undefined;
    const refuse = (r: Refusal): true => {
      const level = r.status === 404 || r.status === 429 ? 'debug' : r.status >= 500 ? 'warn' : 'info';
      o.log[level](
        { status: r.status, path: pathname.slice(0, 300), peer: req.socket.remoteAddress, username, detail: r.detail },
        `peer request refused: ${r.message}`,
      );
      return sendJson(res, r.status, { error: r.message }, r.headers);
    };

    const aborted = new AbortController();
    res.once('close', () => aborted.abort());
    const verdict = await o.auth.check(req.headers.authorization, aborted.signal);
    if (!verdict.ok)
      return refuse({
        status: verdict.status,
        message: verdict.message,
        detail: verdict.detail,
        headers: verdict.status === 401 ? { 'www-authenticate': 'Bearer' } : undefined,
      });
    username = verdict.username;
    if (req.method !== 'GET') return refuse({ status: 405, message: 'only GET', headers: { allow: 'GET' } });
    const route = parseRoute(raw.slice(2));
    if (route.kind === 'refused') return refuse(route);
    let copy = o.copies?.get(route.key);
    const wait = route.kind === 'piece' ? undefined : parseWaitQuery(req.url?.slice(pathname.length) ?? '');
    if (copy && wait && copy.held() <= wait.held && held < MAX_HELD_ASKS) {
      // Long-polled: answered once this copy holds more than the asker heard, it ended, or the wait is over.
      const until = Date.now() + Math.min(wait.waitMs, MAX_WAIT_MS);
      const c = copy;
      const waiting = (): boolean =>
        !aborted.signal.aborted && c.held() <= wait.held && Date.now() < until && o.copies?.get(route.key) === c;
      held++;
      try {
        while (waiting()) await c.changed(until - Date.now(), aborted.signal);
      } finally {
        held--;
      }
      if (aborted.signal.aborted) return true;
      copy = o.copies?.get(route.key);
    }
    if (route.kind === 'manifest') {
      if (copy) {
        const progress = copy.progress?.();
        const headers: Record<string, string> = progress === undefined ? {} : { [PROGRESS_HEADER]: String(progress) };
        return sendBytes(res, copy.manifestBytes(), 'application/json', headers);
      }
      const found = await manifests.get(route.key);
      if ('status' in found) return refuse(found);
      return sendBytes(res, found.bytes, 'application/json');
    }
    if (route.kind === 'have') {
      if (copy) {
        const { count, bits } = copy.have();
        return sendJson(res, 200, encodeHave(count, bits));
      }
      const found = await manifests.get(route.key);
      if ('status' in found) return refuse(found);
      const count = countPieces(found.manifest);
      const bits = new Uint8Array(Math.ceil(count / 8)).fill(0xff);
      return sendJson(res, 200, encodeHave(count, bits));
    }
    if (uploads >= o.maxUploads)
      return refuse({ status: 429, message: `${o.maxUploads} pieces are being sent`, headers: { 'retry-after': '1' } });
    uploads++;
    try {
      const sent = await servePiece(root, manifests, route.key, route.id, copy, res, aborted.signal, pool);
      if (typeof sent !== 'number') return refuse(sent);
      if (res.writableFinished) o.onServed?.(sent, route.key);
      return true;
    } finally {
      uploads--;
    }
  };
}

/** The route of the path after /v1/peer/ (segments as sent: nothing is normalised, every one decoded once). */
function parseRoute(raw: string[]): Route {
  let parts: string[];
  try {
    parts = raw.map((p) => decodeURIComponent(p));
  } catch {
    return { kind: 'refused', status: 400, message: 'bad percent-encoding in path' };
  }
  if (parts[0] !== 'models' || parts.length < 3) return { kind: 'refused', status: 404, message: 'not found' };
  const key = parts[1] ?? '';
  if (!isValidKey(key)) return { kind: 'refused', status: 400, message: `invalid storage key '${key.slice(0, 200)}'` };
  if (parts.length === 3 && parts[2] === 'manifest') return { kind: 'manifest', key };
  if (parts.length === 3 && parts[2] === 'have') return { kind: 'have', key };
  if (parts.length !== 5 || parts[2] !== 'pieces') return { kind: 'refused', status: 404, message: 'not found' };
  const file = index(parts[3]);
  const piece = index(parts[4]);
  if (file === undefined || piece === undefined)
    return { kind: 'refused', status: 400, message: 'file and piece are whole numbers' };
  return { kind: 'piece', key, id: { file, piece } };
}

function index(s: string | undefined): number | undefined {
  return s !== undefined && /^\d{1,15}$/.test(s) ? Number(s) : undefined;
}

/**
 * Sends piece `id` of a complete model, or of `copy` when it is being copied here and that piece is verified, read
 * from the file this node's manifest names (a copy's partial file in its staging folder, or the file once placed),
 * opened without following a link, really inside the model's folder and of the size the manifest says. Resolves
 * when the response has ended (sent, or the connection gone: `gone` aborts) with the piece's length, or with the
 * refusal when nothing was sent.
 */
async function servePiece(
  root: string,
  manifests: ManifestCache,
  key: string,
  id: PieceId,
  copy: CopyView | undefined,
  res: ServerResponse,
  gone: AbortSignal,
  pool: BufferPool,
): Promise<Refusal | number> {
  const found = copy ?? (await manifests.get(key));
  if ('status' in found) return found;
  const { pieceSize, files } = found.manifest;
  const file = files[id.file];
  if (!file || id.piece >= file.pieces.length)
    return { status: 404, message: `model ${key} has no piece ${id.file}/${id.piece}` };
  if (copy && !copy.has(id)) return { status: 404, message: `piece ${id.file}/${id.piece} of ${key} is not here yet` };
  const start = id.piece * pieceSize;
  const length = pieceLength(file.size, pieceSize, id.piece);
  // Of a copy, the partial file until it is placed (a rename: a descriptor opened before stays the same file); a
  // seed's partial grows as its origin download writes it, so it only has to hold the piece.
  const fh = copy
    ? ((await openContained(copy.workDir, relative(copy.workDir, copy.partialOf(file.path)), start + length, true)) ??
      (await openContained(copy.workDir, file.path, file.size)))
    : await openContained(modelPaths(root, key).final, file.path, file.size);
  if (!fh) return { status: 404, message: `piece ${id.file}/${id.piece} of ${key} is not held here` };
  try {
    if (gone.aborted) return length; // the peer left while the file was opened: no 'close' is to come
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(length) });
    await sendRange(fh, res, start, length, pool);
  } finally {
    // Closed in the background: the upload slot, and the count of bytes served, do not wait on the threadpool (a
    // peer that asks for its next piece the moment this one arrived would meet the slot still taken).
    void fh.close().catch(() => undefined);
  }
  return length;
}

/**
 * `path` ('/'-separated, relative) of the folder `dir` opened for reading, or undefined: its last component is never
 * followed, its real path must be inside the folder and be the very file opened, and its size `size` (with
 * `atLeast`, no less than `size`).
 */
async function openContained(
  dir: string,
  path: string,
  size: number,
  atLeast = false,
): Promise<FileHandle | undefined> {
  const abs = join(dir, ...path.split('/'));
  const fh = await open(abs, constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => undefined);
  if (!fh) return undefined;
  try {
    const st = await fh.stat();
    if (!st.isFile() || (atLeast ? st.size < size : st.size !== size))
      throw new Error('not the file the manifest lists');
    const [base, real] = await Promise.all([realpath(dir), realpath(abs)]);
    if (real === base || !isInside(base, real)) throw new Error('outside the model folder');
    const there = await stat(real);
    if (there.dev !== st.dev || there.ino !== st.ino) throw new Error('replaced while it was opened');
    return fh;
  } catch {
    await fh.close();
    return undefined;
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): true {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(text)),
  });
  res.end(text);
  return true;
}

function sendBytes(res: ServerResponse, bytes: Buffer, type: string, headers: Record<string, string> = {}): true {
  res.writeHead(200, { ...headers, 'content-type': type, 'content-length': String(bytes.length) });
  res.end(bytes);
  return true;
}

/** A listening peer server. */
export interface PeerServer {
  /** `http://host:port`, with 127.0.0.1 for all interfaces. */
  url: string;
  port: number;
  close: () => Promise<void>;
}

/**
 * Serves `handler` on `addr` (`host:port`, `:port` for all interfaces, port 0 picks a free one) on its own
 * port, 404 for what it does not answer; resolves once listening, and closes when `signal` aborts.
 */
export async function startPeerServer(
  addr: string,
  handler: (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>,
  signal?: AbortSignal,
): Promise<PeerServer> {
  const { host, port } = parseAddr(addr, 'peer-listen');
  const server = createServer((req, res) => {
    void (async () => {
      if (!(await handler(req, res))) sendJson(res, 404, { error: 'not found' });
    })().catch((err: unknown) => {
      if (res.headersSent) res.destroy();
      else sendJson(res, 500, { error: String((err as Error)?.message ?? err) });
    });
  });
  server.setTimeout(IDLE_TIMEOUT_MS);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(`--peer-listen ${addr}: cannot listen there (${err.message})`, { cause: err })),
    );
    server.listen(port, host, () => resolve());
  });
  const a = server.address();
  const bound = typeof a === 'object' && a ? a.port : port;
  const shownHost = host === '0.0.0.0' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }));
  if (signal?.aborted) await close();
  else signal?.addEventListener('abort', () => void close(), { once: true });
  return { url: `http://${shownHost}:${bound}`, port: bound, close };
}
