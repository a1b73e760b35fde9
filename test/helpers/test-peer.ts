import { createHash } from 'node:crypto';
import { open, readdir, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { join, relative, resolve, sep } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import {
  encodeHave,
  havePath,
  manifestPath,
  pieceCount,
  pieceLength,
  type ManifestSummary,
  type PieceManifest,
} from '../../daemon/peers/protocol.ts';
import { PeerAuthenticator } from '../../daemon/peers/auth.ts';
import type { CopiesInProgress } from '../../daemon/peers/copies.ts';
import { peerRoutes, startPeerServer, type PeerServer } from '../../daemon/peers/server.ts';
import { isInside } from '../../download/containment.ts';
import type { Logger } from '../../ops/logger.ts';
import type { Fault } from '../../localcluster/origin.ts';

/** One scripted misbehaviour, consumed by one piece request (the origin's status and reset faults, and more). */
export type PeerFault =
  | Extract<Fault, { status: number } | { resetAfterBytes: number }>
  /** The piece with one byte changed. */
  | { flipBits: true }
  /** Headers, then `afterBytes` bytes (default 0), then silence for `stallMs`, then the connection drops. */
  | { stallMs: number; afterBytes?: number };

export interface PeerRequest {
  kind: 'manifest' | 'have' | 'piece' | 'other';
  path: string;
  /** For pieces: file index and piece index. */
  file?: number;
  piece?: number;
  status: number;
  authorization?: string;
}

/** A manifest built the way a serving node would: every file of `dir` (sorted), hashed in pieces. */
export async function buildManifest(
  dir: string,
  storageKey: string,
  pieceSize: number,
): Promise<{ manifest: PieceManifest; bytes: Buffer; summary: ManifestSummary }> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  const paths = entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)).split(sep).join('/'))
    .sort();
  const files: PieceManifest['files'] = [];
  for (const path of paths) {
    const size = (await stat(join(dir, path))).size;
    const fh = await open(join(dir, path));
    const pieces: string[] = [];
    try {
      for (let i = 0; i < pieceCount(size, pieceSize); i++) {
        const buf = Buffer.alloc(pieceLength(size, pieceSize, i));
        await fh.read(buf, 0, buf.length, i * pieceSize);
        pieces.push(createHash('sha256').update(buf).digest('hex'));
      }
    } finally {
      await fh.close();
    }
    files.push({ path, size, pieces });
  }
  const manifest: PieceManifest = { version: 1, storageKey, pieceSize, files };
  const bytes = Buffer.from(JSON.stringify(manifest));
  return { manifest, bytes, summary: summaryOf(bytes, pieceSize, files) };
}

/** The summary a node would publish for these manifest bytes. */
export function summaryOf(bytes: Buffer, pieceSize: number, files: PieceManifest['files']): ManifestSummary {
  const count = files.reduce((a, f) => a + f.pieces.length, 0);
  return { digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, pieceSize, count };
}

/**
 * A real HTTP server on loopback that serves one model folder per protocol.ts: the manifest bytes it is given
 * (whatever they are) and pieces read from `dir` by the manifest's file list. No authentication: it records the
 * Authorization header it got. Faults are consumed by piece requests in order; `always` applies to every one.
 */
export class TestPeer {
  readonly requests: PeerRequest[] = [];
  /** Body bytes written to clients. */
  bytesServed = 0;
  /** Responses not yet closed. */
  active = 0;
  always: PeerFault | undefined;
  /**
   * A peer still copying the model: only these pieces (`file/piece`) are served, 404 for the others; `have` answers
   * with them, or with every piece when `claimsAll` (a stale or lying answer). Undefined: a complete copy.
   */
  holding: Set<string> | undefined;
  claimsAll = false;
  readonly #faults: PeerFault[] = [];
  readonly #sockets = new Set<Socket>();
  readonly #server: Server;
  readonly #dir: string;
  readonly #storageKey: string;
  #manifest: Buffer;
  #port = 0;

  private constructor(dir: string, storageKey: string, manifest: Buffer) {
    this.#dir = dir;
    this.#storageKey = storageKey;
    this.#manifest = manifest;
    this.#server = createServer((req, res) => void this.#handle(req, res).catch(() => res.destroy()));
    this.#server.on('connection', (s) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
  }

  static async start(dir: string, storageKey: string, manifest: Buffer): Promise<TestPeer> {
    const p = new TestPeer(dir, storageKey, manifest);
    await new Promise<void>((r) => p.#server.listen(0, '127.0.0.1', r));
    const a = p.#server.address();
    p.#port = typeof a === 'object' && a ? a.port : 0;
    return p;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** Serves other manifest bytes from now on. */
  setManifest(bytes: Buffer): void {
    this.#manifest = bytes;
  }

  fault(...faults: PeerFault[]): void {
    this.#faults.push(...faults);
  }

  pieceRequests(): PeerRequest[] {
    return this.requests.filter((r) => r.kind === 'piece');
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.active++;
    res.on('close', () => this.active--);
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const auth = req.headers.authorization;
    const record: PeerRequest = { kind: 'other', path, status: 0, ...(auth ? { authorization: auth } : {}) };
    this.requests.push(record);
    const prefix = `/v1/peer/models/${encodeURIComponent(this.#storageKey)}/pieces/`;
    if (path === havePath(this.#storageKey)) {
      record.kind = 'have';
      record.status = 200;
      const doc = JSON.parse(this.#manifest.toString('utf8')) as PieceManifest;
      const count = doc.files.reduce((n, f) => n + f.pieces.length, 0);
      const bits = new Uint8Array(Math.ceil(count / 8));
      let i = 0;
      for (const [file, f] of doc.files.entries())
        for (let piece = 0; piece < f.pieces.length; piece++, i++)
          if (!this.holding || this.claimsAll || this.holding.has(`${file}/${piece}`)) bits[i >> 3]! |= 0x80 >> (i & 7);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(encodeHave(count, bits)));
      return;
    }
    if (path === manifestPath(this.#storageKey)) {
      record.kind = 'manifest';
      record.status = 200;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': this.#manifest.length });
      this.bytesServed += this.#manifest.length;
      res.end(this.#manifest);
      return;
    }
    const m = path.startsWith(prefix) ? /^(\d+)\/(\d+)$/.exec(path.slice(prefix.length)) : null;
    const held = !m || !this.holding || this.holding.has(`${m[1]}/${m[2]}`);
    const bytes = m && held ? await this.#piece(Number(m[1]), Number(m[2])) : undefined;
    if (!m || !bytes) {
      if (m && !held) Object.assign(record, { kind: 'piece', file: Number(m[1]), piece: Number(m[2]) });
      record.status = 404;
      res.writeHead(404).end('not here');
      return;
    }
    Object.assign(record, { kind: 'piece', file: Number(m[1]), piece: Number(m[2]) });
    const fault = this.#faults.shift() ?? this.always;
    if (fault && 'status' in fault) {
      record.status = fault.status;
      res.writeHead(fault.status, fault.retryAfter ? { 'retry-after': fault.retryAfter } : {});
      res.end(`fault ${fault.status}`);
      return;
    }
    if (fault && 'flipBits' in fault && bytes.length > 0) bytes[bytes.length >> 1]! ^= 0x01;
    record.status = 200;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length });
    // A reset or stall always bites: at most all bytes but the last are sent (a piece of 1 byte gets none).
    const cut =
      fault && 'resetAfterBytes' in fault
        ? fault.resetAfterBytes
        : fault && 'stallMs' in fault
          ? (fault.afterBytes ?? 0)
          : undefined;
    const sent = cut === undefined ? bytes : bytes.subarray(0, Math.min(cut, bytes.length - 1));
    if (sent.length > 0) res.write(sent);
    else res.flushHeaders();
    this.bytesServed += sent.length;
    if (fault && 'stallMs' in fault) {
      await delay(fault.stallMs, undefined, { ref: false }); // a stall never keeps the test process alive
      res.destroy();
    } else if (sent.length < bytes.length) {
      res.socket?.destroy();
    } else {
      res.end();
    }
  }

  /** The bytes of piece `piece` of file `file` as the manifest lists it, read from the folder. */
  async #piece(file: number, piece: number): Promise<Buffer | undefined> {
    let doc: PieceManifest;
    try {
      doc = JSON.parse(this.#manifest.toString('utf8')) as PieceManifest;
    } catch {
      return undefined;
    }
    const f = doc.files?.[file];
    if (!f || !(doc.pieceSize > 0) || piece >= pieceCount(f.size, doc.pieceSize)) return undefined;
    const abs = resolve(this.#dir, ...f.path.split('/'));
    if (!isInside(this.#dir, abs)) return undefined; // a hostile manifest in a test never reads outside the folder
    const buf = Buffer.alloc(pieceLength(f.size, doc.pieceSize, piece));
    const fh = await open(abs);
    try {
      await fh.read(buf, 0, buf.length, piece * doc.pieceSize);
    } finally {
      await fh.close();
    }
    return buf;
  }
}

/**
 * This node's real peer server over `root` and `copies`, its tokens checked by a table reviewer: `token` is the
 * daemon's (username 'daemon', the one allowed), any other is unknown. The apiserver's side of the review is in
 * test/integration/peer-server.test.ts.
 */
export async function startTablePeerServer(
  root: string,
  copies: CopiesInProgress,
  token: string,
  log: Logger,
): Promise<PeerServer> {
  const auth = new PeerAuthenticator({
    review: (t) =>
      Promise.resolve(t === token ? { authenticated: true, username: 'daemon' } : { authenticated: false }),
    allowed: ['daemon'],
  });
  return startPeerServer('127.0.0.1:0', peerRoutes(root, { auth, maxUploads: 8, log, copies }));
}
