import { dirname } from 'node:path/posix';
import { entryParts, reservedComponent } from '../../download/containment.ts';
import { DownloadError } from '../../download/errors.ts';
import { MAX_LIST_OBJECTS } from '../../download/objects.ts';
import {
  digestOf,
  liveSummary,
  pieceCount,
  UNKNOWN_HASH,
  type ManifestFile,
  type ManifestSummary,
  type PieceManifest,
} from './protocol.ts';

const MiB = 1024 * 1024;
/** Smallest piece a real manifest may use: smaller pieces only multiply requests (tests pass their own). */
export const MIN_PIECE_SIZE = MiB;
/** Largest piece: each one is held in memory while it is verified. */
const MAX_PIECE_SIZE = 1024 * MiB;
const HEX64 = /^[0-9a-f]{64}$/;

/**
 * A manifest's exact bytes from a peer as a PieceManifest, or a DownloadError naming the problem.
 * Hostile input: the digest is checked first (IntegrityMismatch: that peer serves other bytes than the
 * summary names), then everything a fetch relies on (BadResponse, UnsafeObjectName for paths, SizeExceeded).
 * A live summary (protocol.ts) names the skeleton: hashes may be UNKNOWN_HASH, and the digest is checked on the
 * skeleton of what was parsed, after the rest.
 */
export function parseManifest(
  bytes: Buffer,
  expected: ManifestSummary,
  storageKey: string,
  limitBytes: number,
  minPieceSize = MIN_PIECE_SIZE,
): PieceManifest {
  const what = `the peer manifest of ${storageKey}`;
  const bad = (why: string): DownloadError => new DownloadError('BadResponse', `${what} refused: ${why}`);
  if (!/^sha256:[0-9a-f]{64}$/.test(expected.digest))
    throw bad(`the published digest '${expected.digest}' is no sha256`);
  const mismatch = (got: string): DownloadError =>
    new DownloadError(
      'IntegrityMismatch',
      `${what} refused: its ${expected.live ? 'skeleton hashes' : 'bytes hash'} to ${got}, ${expected.digest} published`,
    );
  const got = digestOf(bytes);
  if (!expected.live && got !== expected.digest) throw mismatch(got);
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw bad('it is not JSON');
  }
  if (!isObject(doc)) throw bad('it is not a JSON object');
  if (doc.version !== 1) throw bad(`version ${JSON.stringify(doc.version)}, only 1 is understood`);
  if (doc.storageKey !== storageKey) throw bad(`it is for storage key ${JSON.stringify(doc.storageKey)}`);
  const pieceSize = doc.pieceSize;
  if (!isCount(pieceSize) || pieceSize < minPieceSize || pieceSize > MAX_PIECE_SIZE)
    throw bad(`piece size ${JSON.stringify(pieceSize)} is not between ${minPieceSize} and ${MAX_PIECE_SIZE} bytes`);
  if (pieceSize !== expected.pieceSize) throw bad(`piece size ${pieceSize}, ${expected.pieceSize} published`);
  if (!Array.isArray(doc.files)) throw bad("'files' is not a list");
  if (doc.files.length > MAX_LIST_OBJECTS) throw bad(`it lists more than ${MAX_LIST_OBJECTS} files`);

  const files: ManifestFile[] = [];
  let total = 0;
  let pieces = 0;
  for (const [i, f] of (doc.files as unknown[]).entries()) {
    if (!isObject(f) || typeof f.path !== 'string') throw bad(`file ${i} has no path`);
    const name = `file '${f.path.slice(0, 200)}'`;
    if (!isCount(f.size)) throw bad(`${name} has size ${JSON.stringify(f.size)}, not a whole number of bytes`);
    if (!Array.isArray(f.pieces) || !f.pieces.every((h) => typeof h === 'string'))
      throw bad(`${name} has no list of piece hashes`);
    const hashes = f.pieces as string[];
    const want = pieceCount(f.size, pieceSize);
    if (hashes.length !== want)
      throw bad(`${name} has ${hashes.length} piece hashes, ${want} expected for ${f.size} bytes`);
    const wrong = hashes.findIndex((h) => !HEX64.test(h) && !(expected.live && h === UNKNOWN_HASH));
    if (wrong !== -1) throw bad(`${name} piece ${wrong}: hash is not 64 lower-case hex digits`);
    total += f.size;
    pieces += want;
    if (total > limitBytes)
      throw new DownloadError(
        'SizeExceeded',
        `${what} refused: its files hold more than modelSize allows (${limitBytes} bytes)`,
      );
    files.push({ path: f.path, size: f.size, pieces: hashes });
  }
  if (pieces !== expected.count) throw bad(`it lists ${pieces} pieces, ${expected.count} published`);
  checkManifestPaths(files, what);
  const m: PieceManifest = { version: 1, storageKey, pieceSize, files };
  if (expected.live) {
    const skeleton = liveSummary(m, expected.live).digest;
    if (skeleton !== expected.digest) throw mismatch(skeleton);
  }
  return m;
}

/**
 * Every path is canonical ('a/b': no '', '.', '\\', leading or trailing '/'), stays inside the model folder,
 * names nothing the cache reserves, is listed once and is no folder of another file.
 * (The rule of objects.ts checkPaths, which is not exported, made strict: 'a//b' and 'a/b' are one file.)
 */
function checkManifestPaths(files: readonly ManifestFile[], what: string): void {
  const unsafe = (why: string): DownloadError => new DownloadError('UnsafeObjectName', `${what} refused: ${why}`);
  const paths = new Set<string>();
  for (const { path } of files) {
    const name = `'${path.slice(0, 200)}'`;
    let parts: string[];
    try {
      parts = entryParts(path);
    } catch {
      throw unsafe(`file ${name} would be written outside the model folder`);
    }
    if (parts.length === 0 || parts.join('/') !== path)
      throw unsafe(`file ${name} is not a plain relative path ('dir/name')`);
    const reserved = reservedComponent(parts);
    if (reserved) throw unsafe(`file ${name} uses '${reserved}', a name the cache keeps for its own state`);
    if (paths.has(path)) throw unsafe(`file ${name} is listed twice`);
    paths.add(path);
  }
  for (const p of paths) {
    for (let d = dirname(p); d !== '.'; d = dirname(d))
      if (paths.has(d)) throw unsafe(`'${d.slice(0, 200)}' is both a file and a folder of '${p.slice(0, 200)}'`);
  }
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isCount(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}
