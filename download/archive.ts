import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, link, mkdir, open, readdir, rename, rm, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract as tarExtract, type Header } from 'tar-stream';
import yauzl from 'yauzl';
import { DownloadError } from './errors.ts';
import { assertNoSymlinkOnPath, safeJoin, safeLinkTarget } from './containment.ts';

export type ArchiveKind = 'tar' | 'tar.gz' | 'zip' | 'none';

/** Recognises an archive by its first bytes (≥ 262 for tar), never by name or Content-Type. */
export function detectArchive(head: Uint8Array): ArchiveKind {
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

/** Counts extracted bytes against the model's size limit. */
export interface ByteBudget {
  add(n: number): void;
}

/**
 * A writable that extracts a tar (gunzipping first for tar.gz) into `root` as bytes arrive.
 * Entries escaping `root` — absolute, '..', links pointing out, writes through links — are refused
 * before anything is created for them.
 */
export function tarExtractor(
  root: string,
  kind: 'tar' | 'tar.gz',
  budget: ByteBudget,
): { input: NodeJS.WritableStream; done: Promise<{ files: number }> } {
  const ex = tarExtract();
  let files = 0;
  ex.on('entry', (header: Header, stream, next) => {
    writeEntry(root, header, stream as unknown as NodeJS.ReadableStream, budget).then(
      (wrote) => {
        files += wrote;
        next();
      },
      (err: unknown) => {
        stream.resume();
        ex.destroy(err as Error);
      },
    );
  });
  // zlib's default 16 KiB output chunks mean a write per 16 KiB; 256 KiB chunks extract ~1.6x faster.
  const gunzip = kind === 'tar.gz' ? createGunzip({ chunkSize: 256 * 1024 }) : undefined;
  const done = (
    gunzip
      ? pipeline(gunzip, ex as unknown as NodeJS.WritableStream)
      : new Promise<void>((res, rej) => {
          ex.on('finish', res);
          ex.on('error', rej);
        })
  )
    .then(() => ({ files }))
    .catch((err: unknown) => {
      if (err instanceof DownloadError) throw err;
      throw new DownloadError(
        'BadResponse',
        `the ${kind} archive is corrupt or not a tar archive: ${(err as Error).message}`,
        { cause: err },
      );
    });
  return { input: gunzip ?? (ex as unknown as NodeJS.WritableStream), done };
}

async function writeEntry(root: string, h: Header, stream: NodeJS.ReadableStream, budget: ByteBudget): Promise<number> {
  const dest = safeJoin(root, h.name);
  await assertNoSymlinkOnPath(root, dest, h.name);
  switch (h.type) {
    case 'directory':
      await mkdir(dest, { recursive: true });
      stream.resume();
      return 0;
    case 'file':
    case 'contiguous-file': {
      await mkdir(dirname(dest), { recursive: true });
      await pipeline(stream, countingTransform(budget), createWriteStream(dest, { mode: 0o644 }));
      return 1;
    }
    case 'symlink': {
      safeLinkTarget(root, dest, h.linkname ?? '', h.name, 'symlink');
      await mkdir(dirname(dest), { recursive: true });
      await symlink(h.linkname ?? '', dest);
      stream.resume();
      return 0;
    }
    case 'link': {
      const target = safeLinkTarget(
        root,
        dest,
        safeJoin(root, h.linkname ?? '').slice(root.length + 1),
        h.name,
        'hardlink',
      );
      await assertNoSymlinkOnPath(root, target, h.linkname ?? '');
      await mkdir(dirname(dest), { recursive: true });
      await link(target, dest);
      stream.resume();
      return 1;
    }
    case 'block-device':
    case 'character-device':
    case 'fifo':
    default:
      stream.resume(); // devices, fifos, pax headers: nothing to write
      return 0;
  }
}

function countingTransform(budget: ByteBudget): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      try {
        budget.add(chunk.length);
        cb(null, chunk);
      } catch (err) {
        cb(err as Error);
      }
    },
  });
}

/** Extracts a zip file (its directory is at the end, so only after the download) with the same containment rules. */
export async function extractZip(file: string, root: string, budget: ByteBudget): Promise<{ files: number }> {
  const zip = await new Promise<yauzl.ZipFile>((res, rej) =>
    yauzl.open(
      file,
      { lazyEntries: true, autoClose: true, strictFileNames: false, validateEntrySizes: true },
      (err, z) => (err ? rej(err) : res(z)),
    ),
  );
  let files = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      zip.on('error', reject);
      zip.on('end', resolve);
      zip.on('entry', (entry: yauzl.Entry) => {
        void (async () => {
          const dest = safeJoin(root, entry.fileName);
          await assertNoSymlinkOnPath(root, dest, entry.fileName);
          const mode = (entry.externalFileAttributes >>> 16) & 0o170000;
          if (mode === 0o120000)
            throw new DownloadError(
              'UnsafeArchive',
              `archive entry '${entry.fileName}' refused: symlinks in zip archives are not extracted`,
            );
          if (entry.fileName.endsWith('/')) {
            await mkdir(dest, { recursive: true });
          } else {
            await mkdir(dirname(dest), { recursive: true });
            const rs = await new Promise<NodeJS.ReadableStream>((res, rej) =>
              zip.openReadStream(entry, (err, s) => (err ? rej(err) : res(s))),
            );
            await pipeline(rs, countingTransform(budget), createWriteStream(dest, { mode: 0o644 }));
            files++;
          }
          zip.readEntry();
        })().catch(reject);
      });
      zip.readEntry();
    });
  } catch (err) {
    zip.close();
    if (err instanceof DownloadError) throw err;
    throw new DownloadError('BadResponse', `the zip archive is corrupt: ${(err as Error).message}`, { cause: err });
  }
  return { files };
}

/** A budget that throws SizeExceeded once more than `limit` bytes were counted. */
export function sizeBudget(limit: number): ByteBudget {
  let used = 0;
  return {
    add(n: number) {
      used += n;
      if (used > limit)
        throw new DownloadError('SizeExceeded', `contents exceed what modelSize allows (${limit} bytes)`);
    },
  };
}

/** Removes what an earlier, interrupted extraction left in workDir (everything but .download). */
export async function clearExtracted(workDir: string): Promise<void> {
  for (const e of await readdir(workDir))
    if (e !== '.download') await rm(join(workDir, e), { recursive: true, force: true });
}

/**
 * A complete file on disk: an archive (recognised by its bytes) is extracted into workDir, anything
 * else is moved (or, with `copy`, copied) to workDir/name.
 */
export async function extractOrPlace(
  file: string,
  workDir: string,
  name: string,
  budget: ByteBudget,
  opts: { copy?: boolean } = {},
): Promise<{ files: number }> {
  const fh = await open(file, 'r');
  const head = Buffer.alloc(512);
  const { bytesRead } = await fh.read(head, 0, 512, 0);
  await fh.close();
  const kind = detectArchive(head.subarray(0, bytesRead));
  if (kind !== 'none') await clearExtracted(workDir);
  if (kind === 'zip') return extractZip(file, workDir, budget);
  if (kind === 'tar' || kind === 'tar.gz') {
    const ex = tarExtractor(workDir, kind, budget);
    await pipeline(createReadStream(file), ex.input);
    return ex.done;
  }
  if (opts.copy) await copyFile(file, join(workDir, name));
  else await rename(file, join(workDir, name));
  return { files: 1 };
}
