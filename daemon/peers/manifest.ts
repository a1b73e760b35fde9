import { createHash } from 'node:crypto';
import { constants, type Dirent } from 'node:fs';
import { lstat, open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeStateFile } from '../../disk/atomic.ts';
import { isReservedInModel } from '../../disk/layout.ts';
import { entryParts, reservedComponent } from '../../download/containment.ts';
import { diskError } from '../../download/errors.ts';
import { cancelled } from '../../download/parallel.ts';
import {
  MANIFEST_FILE,
  PIECE_SIZE,
  pieceCount,
  serializeManifest,
  summarize,
  type ManifestFile,
  type ManifestSummary,
  type PieceManifest,
} from './protocol.ts';

/** Read size while hashing: large reads keep the disk streaming (a piece is hashed across several). */
const READ_CHUNK = 4 * 1024 * 1024;
/** Largest manifest file read back (the fetching side accepts as much from a peer). */
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;
const HEX64 = /^[0-9a-f]{64}$/;

/** A manifest with its exact bytes (what is served and hashed) and the summary a node publishes for it. */
export interface BuiltManifest {
  bytes: Buffer;
  manifest: PieceManifest;
  summary: ManifestSummary;
  /** Entries that are neither files nor folders (links, sockets…): a manifest without them is not the model. */
  unlisted: string[];
}

/**
 * Hashes every regular file of the model folder `dir` in pieces of `pieceSize` into a manifest.
 * Files are listed sorted by path; links and other non-regular entries are skipped and never followed, and
 * so is every name the cache reserves (the marker, this manifest, their temp files, the download folder).
 * `known`: hashes taken as the download wrote the files (a seed's), used for a file still of that size and
 * with every piece hashed, so it is not read again.
 */
export async function buildManifest(
  dir: string,
  storageKey: string,
  signal: AbortSignal,
  pieceSize = PIECE_SIZE,
  known?: ReadonlyMap<string, ManifestFile>,
): Promise<BuiltManifest> {
  if (!Number.isSafeInteger(pieceSize) || pieceSize < 1) throw new Error(`piece size ${pieceSize} is not a size`);
  const files: ManifestFile[] = [];
  const unlisted: string[] = [];
  for (const path of (await regularFiles(dir, signal, '', unlisted)).sort()) {
    const abs = join(dir, ...path.split('/'));
    files.push(
      (await alreadyHashed(abs, known?.get(path), pieceSize)) ?? (await hashFile(abs, path, pieceSize, signal)),
    );
  }
  const manifest: PieceManifest = { version: 1, storageKey, pieceSize, files };
  return { bytes: serializeManifest(manifest), manifest, summary: summarize(manifest), unlisted };
}

/** Writes the manifest's bytes as MANIFEST_FILE in `dir` the way the marker is written (disk/atomic.ts). */
export async function writeManifest(dir: string, bytes: Buffer): Promise<void> {
  try {
    await writeStateFile(dir, MANIFEST_FILE, bytes);
  } catch (err) {
    throw diskError(err, `writing the piece manifest in ${dir}`);
  }
}

/**
 * The manifest in `dir` with its exact bytes, or undefined when it is absent, not a regular file (never
 * followed), too large, or not a well-formed manifest: paths plain and inside the folder, piece counts
 * matching sizes, hashes in hex. Callers still check that it is for the model they mean (storageKey).
 */
export async function readManifest(dir: string): Promise<{ bytes: Buffer; manifest: PieceManifest } | undefined> {
  let bytes: Buffer;
  try {
    const fh = await open(join(dir, MANIFEST_FILE), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const st = await fh.stat();
      if (!st.isFile() || st.size > MAX_MANIFEST_BYTES) return undefined;
      bytes = await fh.readFile();
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
  const manifest = checkManifest(bytes);
  return manifest && { bytes, manifest };
}

/** The manifest in `bytes` when it is well formed (see readManifest), else undefined. */
function checkManifest(bytes: Buffer): PieceManifest | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isObject(doc) || doc.version !== 1 || typeof doc.storageKey !== 'string') return undefined;
  const { pieceSize, files } = doc;
  if (!isCount(pieceSize) || pieceSize < 1 || !Array.isArray(files)) return undefined;
  const out: ManifestFile[] = [];
  const seen = new Set<string>();
  for (const f of files as unknown[]) {
    if (!isObject(f) || typeof f.path !== 'string' || !isCount(f.size) || !Array.isArray(f.pieces)) return undefined;
    if (!isPlainPath(f.path) || seen.has(f.path)) return undefined;
    const pieces = f.pieces as unknown[];
    if (pieces.length !== pieceCount(f.size, pieceSize) || !pieces.every((h) => typeof h === 'string' && HEX64.test(h)))
      return undefined;
    seen.add(f.path);
    out.push({ path: f.path, size: f.size, pieces: pieces as string[] });
  }
  return { version: 1, storageKey: doc.storageKey, pieceSize, files: out };
}

/** 'a/b' exactly as entryParts would make it (no '', '.', '..', '\\', NUL, absolute), with no reserved name. */
export function isPlainPath(path: string): boolean {
  try {
    const parts = entryParts(path);
    return parts.length > 0 && parts.join('/') === path && reservedComponent(parts) === undefined;
  } catch {
    return false;
  }
}

/** Paths ('/'-separated, relative) of the regular files below `dir`, walking real directories only. */
async function regularFiles(dir: string, signal: AbortSignal, prefix: string, unlisted: string[]): Promise<string[]> {
  if (signal.aborted) throw cancelled(signal);
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw diskError(err, `listing ${dir}`);
  }
  const out: string[] = [];
  for (const e of entries) {
    if (isReservedInModel(e.name)) continue;
    const rel = prefix + e.name;
    if (e.isDirectory()) out.push(...(await regularFiles(join(dir, e.name), signal, `${rel}/`, unlisted)));
    else if (e.isFile()) out.push(rel);
    else unlisted.push(rel);
  }
  return out;
}

/** `known` when it holds every hash of the regular file `abs` at its present size. */
async function alreadyHashed(
  abs: string,
  known: ManifestFile | undefined,
  pieceSize: number,
): Promise<ManifestFile | undefined> {
  if (!known || known.pieces.length !== pieceCount(known.size, pieceSize)) return undefined;
  if (known.pieces.some((h) => !HEX64.test(h))) return undefined;
  const st = await lstat(abs).catch(() => undefined);
  return st?.isFile() && st.size === known.size ? known : undefined;
}

/** One file's size and piece hashes, read once front to back through a descriptor that never follows a link. */
async function hashFile(abs: string, path: string, pieceSize: number, signal: AbortSignal): Promise<ManifestFile> {
  if (signal.aborted) throw cancelled(signal);
  const pieces: string[] = [];
  let size = 0;
  try {
    const fh = await open(abs, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new Error(`'${path}' is no longer a regular file`);
      let hash = createHash('sha256');
      let inPiece = 0;
      const stream = fh.createReadStream({ highWaterMark: READ_CHUNK, autoClose: false });
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        if (signal.aborted) throw cancelled(signal);
        for (let at = 0; at < chunk.length;) {
          const take = Math.min(pieceSize - inPiece, chunk.length - at);
          hash.update(chunk.subarray(at, at + take));
          at += take;
          inPiece += take;
          if (inPiece === pieceSize) {
            pieces.push(hash.digest('hex'));
            hash = createHash('sha256');
            inPiece = 0;
          }
        }
        size += chunk.length;
      }
      if (inPiece > 0) pieces.push(hash.digest('hex'));
      if (size !== st.size)
        throw new Error(`'${path}' changed size while it was hashed (${st.size}, then ${size} bytes)`);
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw diskError(err, `hashing '${path}'`);
  }
  return { path, size, pieces };
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isCount(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}
