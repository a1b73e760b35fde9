import { createHash } from 'node:crypto';

/**
 * The peer protocol: what one daemon serves to another about a model it holds, and how a piece is named.
 * Both ends import this file; nothing else defines a path, a header or the manifest's shape or bytes.
 *
 * Trust: a manifest is accepted only when the SHA-256 of its exact bytes equals the digest the serving
 * node published in its own LocalModelNode status (which only that node's daemon may write), and a piece
 * only when its SHA-256 equals the manifest's. What a peer says about itself is never trusted.
 *
 * Live manifests: a node fetching a model from its source (a seed) serves it while the download runs. It
 * publishes a live summary (`live: 'origin'`) whose digest is that of the manifest's skeleton (every piece hash
 * empty: the files, their sizes and so the pieces are known from the source's listing before any byte), and
 * serves the manifest with the hashes of the pieces it has written so far ('' for the others). A node copying
 * from it accepts a manifest whose skeleton has the published digest, asks hashes only of the seed (or of a
 * complete peer), verifies every piece against them as usual, and publishes `live: 'peers'` while it copies.
 * Nothing is committed until the whole manifest it assembled hashes to a digest a complete peer published:
 * a copy made while the seed was downloading ends anchored in the API like any other.
 */

/** Bytes per piece: the part size of ranged downloads. The last piece of a file may be shorter. */
export const PIECE_SIZE = 16 * 1024 * 1024;

/** The audience of the projected service-account token a daemon sends to its peers. */
export const PEER_AUDIENCE = 'modelcache-peer';

/** Beside the marker in a model's folder: the manifest's exact bytes (a name content may never use). */
export const MANIFEST_FILE = '.modelcache.json.pieces';

/** One file of a model as the manifest lists it: its path in the model folder, size and piece hashes. */
export interface ManifestFile {
  /** '/'-separated, relative to the model folder. */
  path: string;
  size: number;
  /** SHA-256 (lower-case hex) of each piece, in order: ceil(size / pieceSize) entries (none for an empty file). */
  pieces: string[];
}

/** Every file of a model with the hashes of its pieces, as the first node to download it computed them. */
export interface PieceManifest {
  version: 1;
  storageKey: string;
  pieceSize: number;
  files: ManifestFile[];
}

/** What a node publishes per model in its LocalModelNode status (status.models[name].pieces). */
export interface ManifestSummary {
  /** `sha256:<hex>` of the manifest's exact bytes as served (of a live manifest: of its skeleton). */
  digest: string;
  pieceSize: number;
  /** Pieces in all files. */
  count: number;
  /**
   * The manifest grows while this node's download runs: 'origin', it hashes the pieces it fetches from the source
   * (and vouches for them); 'peers', it copies a live manifest from such a node. Absent: complete.
   */
  live?: 'origin' | 'peers';
}

/** A piece hash a live manifest does not know yet. */
export const UNKNOWN_HASH = '';

/** The manifest's exact bytes: JSON with the keys in this file's order, one line, a trailing newline. */
export function serializeManifest(m: PieceManifest): Buffer {
  const ordered: PieceManifest = {
    version: m.version,
    storageKey: m.storageKey,
    pieceSize: m.pieceSize,
    files: m.files.map((f) => ({ path: f.path, size: f.size, pieces: f.pieces })),
  };
  return Buffer.from(`${JSON.stringify(ordered)}\n`);
}

/** `sha256:<hex>` of `bytes`. */
export function digestOf(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** What a node publishes of a complete manifest: the digest of its exact bytes, its piece size and piece count. */
export function summarize(m: PieceManifest): ManifestSummary {
  return { digest: digestOf(serializeManifest(m)), pieceSize: m.pieceSize, count: countPieces(m) };
}

/** The summary of `m`'s skeleton (every hash unknown): what a seed publishes while it fetches `m`'s pieces. */
export function liveSummary(m: PieceManifest, live: 'origin' | 'peers'): ManifestSummary {
  const skeleton = { ...m, files: m.files.map((f) => ({ ...f, pieces: f.pieces.map(() => UNKNOWN_HASH) })) };
  return { ...summarize(skeleton), live };
}

/** Pieces in all files of `m`. */
export function countPieces(m: PieceManifest): number {
  return m.files.reduce((n, f) => n + f.pieces.length, 0);
}

/** A piece: file `file` (index into manifest.files), piece `piece` of it. */
export interface PieceId {
  file: number;
  piece: number;
}

/**
 * On the manifest answer of a seed still fetching from the source: the bytes it has written so far. A copy waiting
 * for the seed's next piece sees it grow, so a slow source is no stall.
 */
export const PROGRESS_HEADER = 'x-modelcache-bytes-written';

/** GET: the manifest's exact bytes (application/json); 404 when this node neither holds nor copies the model. */
export function manifestPath(storageKey: string): string {
  return `/v1/peer/models/${encodeURIComponent(storageKey)}/manifest`;
}

/** GET: the bytes of one piece (application/octet-stream); 404 when this node does not hold it verified. */
export function piecePath(storageKey: string, id: PieceId): string {
  return `/v1/peer/models/${encodeURIComponent(storageKey)}/pieces/${id.file}/${id.piece}`;
}

/**
 * GET: which pieces this node holds verified (application/json, a Have); 404 when it holds none of the model.
 * A node still copying the model answers with the pieces it has so far, a complete one with all of them.
 */
export function havePath(storageKey: string): string {
  return `/v1/peer/models/${encodeURIComponent(storageKey)}/have`;
}

/**
 * Query of a long-polled `have` or manifest request to a node still copying (or seeding) the model: `held` is how
 * many pieces the asker last heard it hold, `wait` the most milliseconds to wait. The answer comes once it holds
 * more (or its copy ended), or `wait` passed. Without the query, or of a complete model, it comes at once.
 */
export function waitQuery(held: number, waitMs: number): string {
  return `?held=${held}&wait=${waitMs}`;
}

/** The `held` and `wait` of a request's query (see waitQuery), or undefined when it asks for no wait. */
export function parseWaitQuery(search: string): { held: number; waitMs: number } | undefined {
  const q = new URLSearchParams(search);
  const held = Number(q.get('held') ?? NaN);
  const waitMs = Number(q.get('wait') ?? NaN);
  if (!Number.isSafeInteger(held) || held < 0 || !Number.isSafeInteger(waitMs) || waitMs <= 0) return undefined;
  return { held, waitMs };
}

/**
 * The body of a `have` answer: bit i (most significant bit of byte i >> 3 first) of `bitmap` (base64) is set when
 * piece i is held, pieces numbered across the manifest's files in order.
 */
export interface Have {
  count: number;
  bitmap: string;
}

/** Pieces numbered across files: the number of the first piece of each file of `m`. */
export function pieceOffsets(m: PieceManifest): number[] {
  const out: number[] = [];
  let n = 0;
  for (const f of m.files) {
    out.push(n);
    n += f.pieces.length;
  }
  return out;
}

/** A Have of `count` pieces whose bits are `bits` (ceil(count / 8) bytes). */
export function encodeHave(count: number, bits: Uint8Array): Have {
  return { count, bitmap: Buffer.from(bits.buffer, bits.byteOffset, bits.byteLength).toString('base64') };
}

/** The bits of a Have for a manifest of `count` pieces, or undefined when it is not one (what a peer says is data). */
export function decodeHave(doc: unknown, count: number): Uint8Array | undefined {
  if (typeof doc !== 'object' || doc === null) return undefined;
  const { count: c, bitmap } = doc as Record<string, unknown>;
  if (c !== count || typeof bitmap !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(bitmap)) return undefined;
  const bits = Buffer.from(bitmap, 'base64');
  return bits.length === Math.ceil(count / 8) ? new Uint8Array(bits) : undefined;
}

/** How many bits of `bits` are set (pieces a Have's bitmap holds). */
export function countBits(bits: Uint8Array): number {
  let n = 0;
  for (let b of bits) for (; b; b &= b - 1) n++;
  return n;
}

/** Whether bit `i` of `bits` is set. */
export function hasBit(bits: Uint8Array, i: number): boolean {
  return ((bits[i >> 3] ?? 0) & (0x80 >> (i & 7))) !== 0;
}

/** Bytes of piece `piece` of a file of `size` bytes. */
export function pieceLength(size: number, pieceSize: number, piece: number): number {
  return Math.max(0, Math.min(pieceSize, size - piece * pieceSize));
}

/** Pieces of a file of `size` bytes. */
export function pieceCount(size: number, pieceSize: number): number {
  return Math.ceil(size / pieceSize);
}
