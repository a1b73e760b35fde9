import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { DOWNLOAD_DIR, PEER_PARTIAL_PREFIX } from '../../disk/layout.ts';
import { safeJoin } from '../../download/containment.ts';
import { writeAll } from '../../download/batch-writer.ts';
import { diskError } from '../../download/errors.ts';
import { fsFault } from '../../download/http-status.ts';
import { cancelled } from '../../download/parallel.ts';
import { pieceLength, type ManifestFile, type PieceManifest } from './protocol.ts';

// Files of a peer fetch on disk: partial files under `<workDir>/.download/`, holding only verified pieces
// (and zeros where none arrived yet), so a resume finds what is done by hashing, with no state file to trust.

const NOFOLLOW = constants.O_NOFOLLOW;

/** The partial file of `path` (PEER_PARTIAL_PREFIX: it never mixes with an origin download's partial of the file). */
export function partialPath(workDir: string, path: string): string {
  const name = `${PEER_PARTIAL_PREFIX}${createHash('sha256').update(path).digest('hex').slice(0, 32)}`;
  return join(workDir, DOWNLOAD_DIR, name);
}

/** Indexes of the pieces of `file` whose bytes in `abs` (a regular file, never followed) hash as listed. */
async function verifiedPieces(
  abs: string,
  file: ManifestFile,
  pieceSize: number,
  signal: AbortSignal,
): Promise<Set<number>> {
  const ok = new Set<number>();
  const fh = await open(abs, constants.O_RDONLY | NOFOLLOW);
  try {
    const buf = Buffer.allocUnsafe(Math.min(pieceSize, file.size));
    for (let i = 0; i < file.pieces.length; i++) {
      if (signal.aborted) throw cancelled(signal);
      const len = pieceLength(file.size, pieceSize, i);
      const { bytesRead } = await fh.read(buf, 0, len, i * pieceSize);
      if (bytesRead !== len) break; // the file is shorter: no later piece is there either
      if (createHash('sha256').update(buf.subarray(0, len)).digest('hex') === file.pieces[i]) ok.add(i);
    }
  } finally {
    await fh.close();
  }
  return ok;
}

/**
 * Removes from `workDir` (its `.download/` aside) everything but files the manifest lists at their size whose
 * every piece verifies: files of an interrupted run are kept only when right. Links of any kind are removed, so
 * every folder a file is later placed in is a real directory. Returns the indexes of the files kept.
 */
export async function pruneWorkDir(workDir: string, m: PieceManifest, signal: AbortSignal): Promise<Set<number>> {
  const byPath = new Map(m.files.map((f, i) => [f.path, i]));
  const kept = new Set<number>();
  const entries = await readdir(workDir, { withFileTypes: true, recursive: true }).catch(() => []);
  for (const e of entries) {
    if (signal.aborted) throw cancelled(signal);
    const abs = join(e.parentPath, e.name);
    const rel = relative(workDir, abs).split(sep).join('/');
    if (rel === DOWNLOAD_DIR || rel.startsWith(`${DOWNLOAD_DIR}/`)) continue;
    const i = byPath.get(rel);
    if (e.isDirectory() && i === undefined) continue;
    const f = i === undefined ? undefined : m.files[i];
    const size = e.isFile()
      ? await stat(abs).then(
          (s) => s.size,
          () => -1,
        )
      : -1;
    const right =
      f !== undefined &&
      size === f.size &&
      (await verifiedPieces(abs, f, m.pieceSize, signal).catch(() => new Set())).size === f.pieces.length;
    if (right) kept.add(i!);
    else
      await rm(abs, { recursive: true, force: true }).catch((err: unknown) => {
        throw diskError(err, `removing '${rel.slice(0, 200)}'`);
      });
  }
  return kept;
}

/**
 * Creates (or reuses) the partial file of `file` at its full size; returns the pieces already verified in it
 * (none when it is new). Anything but a regular file in its place is removed first.
 */
export async function preparePartial(
  partial: string,
  file: ManifestFile,
  pieceSize: number,
  signal: AbortSignal,
): Promise<Set<number>> {
  const existing = await lstat(partial).catch(() => undefined);
  if (existing && !existing.isFile()) await rm(partial, { recursive: true, force: true });
  try {
    const fh = await open(partial, constants.O_RDWR | constants.O_CREAT | NOFOLLOW, 0o644);
    try {
      await fh.truncate(file.size);
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw diskError(err, `creating ${partial}`);
  }
  return existing?.isFile() ? verifiedPieces(partial, file, pieceSize, signal) : new Set();
}

/**
 * Removes partial files a failed copy leaves with nothing handed on. Best effort: the copy's own failure is what its
 * caller hears, and a partial file left behind is removed with `.download/` when the source's download ends.
 */
export async function removePartials(partials: readonly string[]): Promise<void> {
  await Promise.all(partials.map((p) => rm(p, { force: true }).catch(() => undefined)));
}

/** Writes a verified piece (the chunks it came in, `length` bytes) at `offset` of its partial file. */
export async function writePiece(partial: string, offset: number, chunks: readonly Buffer[], length: number) {
  try {
    const fh = await open(partial, constants.O_WRONLY | NOFOLLOW);
    try {
      await writeAll(fh, chunks, length, offset);
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw diskError(err, `writing ${partial}`);
  }
}

/** Moves a complete partial file (or, with `partial` undefined, a new empty file) to `path` in `workDir`. */
export async function placeFile(workDir: string, path: string, partial: string | undefined): Promise<void> {
  const dest = safeJoin(workDir, path);
  try {
    await mkdir(dirname(dest), { recursive: true });
    if (partial !== undefined) await rename(partial, dest);
    else await (await open(dest, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | NOFOLLOW, 0o644)).close();
  } catch (err) {
    throw fsFault(err, `storing '${path.slice(0, 200)}'`, 'UnsafeObjectName');
  }
}
