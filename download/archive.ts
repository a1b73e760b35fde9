import { createReadStream, constants as fsc } from 'node:fs';
import { copyFile, open, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { DOWNLOAD_DIR, isReservedInModel } from '../disk/layout.ts';
import { safeJoin } from './containment.ts';
import { DownloadError, diskError } from './errors.ts';
import type { ByteBudget, ExtractResult } from './extract-fs.ts';
import { tarExtractor } from './extract-tar.ts';
import { extractZip } from './extract-zip.ts';
import type { DownloadResult } from './types.ts';

export type { ByteBudget, ExtractResult } from './extract-fs.ts';
export { tarExtractor, type Extractor } from './extract-tar.ts';
export { extractZip } from './extract-zip.ts';

export type ArchiveKind = 'tar' | 'tar.gz' | 'zip' | 'none';

/** Recognises an archive by its first bytes (≥ 262 for tar), never by name or Content-Type. */
function detectArchive(head: Uint8Array): ArchiveKind {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'tar.gz';
  if (
    head.length >= 4 &&
    head[0] === 0x50 &&
    head[1] === 0x4b &&
    ((head[2] === 3 && head[3] === 4) || (head[2] === 5 && head[3] === 6))
  )
    return 'zip';
  if (head.length >= 262 && Buffer.from(head.subarray(257, 262)).toString('latin1') === 'ustar') return 'tar';
  return 'none';
}

/** Whether a file of this name may be unpacked (archiveKindFor then looks at its bytes); if not, it is kept as it is. */
export function namedLikeArchive(name: string): boolean {
  return /\.(zip|tar|tgz|tar\.gz)$/i.test(name);
}

/**
 * What KServe's storage initializer unpacks: a name ending .tar, .tgz, .tar.gz or .zip whose bytes
 * confirm it. Anything else (a .pt or .keras that is a zip inside, a gzipped checkpoint) is kept as it is.
 */
export function archiveKindFor(name: string, head: Uint8Array): ArchiveKind {
  if (!namedLikeArchive(name)) return 'none';
  const lower = name.toLowerCase();
  const bytes = detectArchive(head);
  if (lower.endsWith('.zip')) return bytes === 'zip' ? 'zip' : 'none';
  if (lower.endsWith('.tar') || lower.endsWith('.tgz') || lower.endsWith('.tar.gz')) {
    return bytes === 'tar' || bytes === 'tar.gz' ? bytes : 'none';
  }
  return 'none';
}

/**
 * A budget that throws SizeExceeded once more than `limit` bytes were counted, or more entries than a
 * model of that size may hold: one per 512 bytes (a tar header's worth), at least 1000. Every entry
 * is an inode; an archive of empty files must not fill the node's inode table.
 */
export function sizeBudget(limit: number): ByteBudget {
  const maxEntries = Math.max(1000, Math.floor(limit / 512));
  let used = 0;
  let entries = 0;
  return {
    add(n: number) {
      used += n;
      if (used > limit)
        throw new DownloadError('SizeExceeded', `contents exceed what modelSize allows (${limit} bytes)`);
    },
    entry() {
      entries++;
      if (entries > maxEntries)
        throw new DownloadError(
          'SizeExceeded',
          `the archive holds more than ${maxEntries} entries, more than a model of ${limit} bytes may ` +
            '(one per 512 bytes, at least 1000): raise modelSize or pack the model in fewer files',
        );
    },
  };
}

/** A download's result: the bytes fetched and what placing them made (`skipped` only when entries were). */
export function placedResult(bytes: number, placed: ExtractResult): DownloadResult {
  return { bytes, files: placed.files, ...(placed.skipped.length > 0 ? { skipped: placed.skipped } : {}) };
}

/** Removes what an earlier, interrupted extraction left in workDir (everything but the download folder). */
export async function clearExtracted(workDir: string): Promise<void> {
  for (const e of await readdir(workDir))
    if (e !== DOWNLOAD_DIR) await rm(join(workDir, e), { recursive: true, force: true });
}

/**
 * A complete file on disk: an archive (by name and bytes, see archiveKindFor) is extracted into
 * workDir, anything else is moved (or, with `copy`, copied) to workDir/name. Always settles with an
 * ExtractResult or a DownloadError; `signal` stops an extraction under way.
 */
export async function extractOrPlace(
  file: string,
  workDir: string,
  name: string,
  budget: ByteBudget,
  opts: { copy?: boolean; signal?: AbortSignal } = {},
): Promise<ExtractResult> {
  const kind = archiveKindFor(name, await readHead(file));
  if (kind === 'none') return place(file, workDir, name, opts.copy === true);
  await clearExtracted(workDir);
  if (kind === 'zip') return extractZip(file, workDir, budget, opts.signal);
  const ex = tarExtractor(workDir, kind, budget);
  const stop = (): void => ex.abort(new DownloadError('Cancelled', 'extraction cancelled'));
  opts.signal?.addEventListener('abort', stop, { once: true });
  if (opts.signal?.aborted) stop();
  try {
    // A read failure destroys the input with its error, so `done` reports it; `done` is the one answer.
    await pipeline(createReadStream(file), ex.input).catch(() => undefined);
    return await ex.done;
  } finally {
    opts.signal?.removeEventListener('abort', stop);
  }
}

/** The first 512 bytes of a file (fewer if it is shorter): enough to recognise any archive. */
async function readHead(file: string): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const head = Buffer.alloc(512);
    const { bytesRead } = await fh.read(head, 0, 512, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** A file that is not an archive, at workDir/name: replacing whatever was there, never writing through it. */
async function place(file: string, workDir: string, name: string, copy: boolean): Promise<ExtractResult> {
  if (isReservedInModel(name))
    throw new DownloadError(
      'UnsafeObjectName',
      `a model file cannot be named '${name.slice(0, 200)}': the cache keeps its own state under that name; rename it`,
    );
  const dest = safeJoin(workDir, name);
  try {
    await rm(dest, { recursive: true, force: true });
    if (copy) await copyFile(file, dest, fsc.COPYFILE_EXCL);
    else await rename(file, dest);
  } catch (err) {
    throw diskError(err, `placing ${name.slice(0, 200)} in the model folder`);
  }
  return { files: 1, skipped: [] };
}
