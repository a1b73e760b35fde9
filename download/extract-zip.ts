import type { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import yauzl from 'yauzl';
import { unsafe } from './containment.ts';
import { DownloadError, diskError } from './errors.ts';
import { ExtractTarget, type ByteBudget, type ExtractResult } from './extract-fs.ts';

const S_IFMT = 0o170000;

/**
 * Extracts a zip file (its directory is at the end, so only once it is all on disk) through an
 * ExtractTarget: the same containment, reserved names and budget as tar. Names are decoded and checked
 * here (a path escape is UnsafeArchive), every file's CRC-32 is checked (yauzl does not), symlinks are
 * refused, devices and FIFOs skipped. The zip file and every stream opened on it are closed on every path.
 */
export async function extractZip(
  file: string,
  root: string,
  budget: ByteBudget,
  signal?: AbortSignal,
): Promise<ExtractResult> {
  const zip = await new Promise<yauzl.ZipFile>((res, rej) =>
    yauzl.open(
      file,
      { lazyEntries: true, autoClose: false, decodeStrings: false, validateEntrySizes: true },
      (err, z) => (err ? rej(corrupt(err)) : res(z)),
    ),
  );
  const target = new ExtractTarget(root, budget);
  const entries = entryReader(zip);
  try {
    for (let entry = await entries.next(); entry; entry = await entries.next()) {
      if (signal?.aborted) throw new DownloadError('Cancelled', 'extraction cancelled', { cause: signal.reason });
      await writeEntry(zip, target, entry, signal);
    }
    return target.result();
  } finally {
    zip.close();
  }
}

/** One entry at a time from a lazy zip; a parse error (at any moment) is BadResponse, never an unhandled event. */
function entryReader(zip: yauzl.ZipFile): { next(): Promise<yauzl.Entry | undefined> } {
  let failure: DownloadError | undefined;
  let waiter: { res: (e: yauzl.Entry | undefined) => void; rej: (e: DownloadError) => void } | undefined;
  zip.on('entry', (e: yauzl.Entry) => waiter?.res(e));
  zip.on('end', () => waiter?.res(undefined));
  zip.on('error', (err: Error) => {
    failure ??= corrupt(err);
    waiter?.rej(failure);
  });
  return {
    next: () =>
      new Promise((res, rej) => {
        if (failure) return rej(failure);
        waiter = { res, rej };
        zip.readEntry();
      }),
  };
}

async function writeEntry(zip: yauzl.ZipFile, t: ExtractTarget, entry: yauzl.Entry, signal?: AbortSignal) {
  const raw = entry.fileName as unknown as Buffer;
  const name = yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, raw, entry.extraFields, false);
  const type = (entry.externalFileAttributes >>> 16) & S_IFMT;
  if (name.endsWith('/') || type === 0o040000) return t.dir(name);
  switch (type) {
    case 0:
    case 0o100000:
      break;
    case 0o120000:
      throw unsafe(name, 'symlinks in zip archives are not extracted');
    case 0o010000:
    case 0o020000:
    case 0o060000:
      return t.skip(name);
    default:
      throw unsafe(name, `unsupported file type ${type.toString(8)} in the zip archive`);
  }
  const stream = await new Promise<Readable>((res, rej) =>
    zip.openReadStream(entry, (err, s) => (err ? rej(corrupt(err, name)) : res(s))),
  );
  const stop = (): void => void stream.destroy(new DownloadError('Cancelled', 'extraction cancelled'));
  signal?.addEventListener('abort', stop, { once: true });
  try {
    await t.file(name, checked(stream, entry, name), entry.uncompressedSize);
  } finally {
    signal?.removeEventListener('abort', stop);
    stream.destroy();
  }
}

/** The entry's bytes with its CRC-32 checked at the end; a read failure is the archive's fault. */
async function* checked(stream: Readable, entry: yauzl.Entry, name: string): AsyncGenerator<Buffer> {
  let crc = 0;
  const it = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  for (;;) {
    let r: IteratorResult<Buffer>;
    try {
      r = await it.next();
    } catch (err) {
      throw corrupt(err, name);
    }
    if (r.done) break;
    crc = crc32(r.value, crc);
    yield r.value;
  }
  if (crc !== entry.crc32)
    throw new DownloadError('BadResponse', `CRC mismatch in entry '${name.slice(0, 200)}': the zip archive is corrupt`);
}

function corrupt(err: unknown, name?: string): DownloadError {
  if (err instanceof DownloadError) return err;
  const disk = diskError(err, 'reading the zip archive');
  if (disk instanceof DownloadError) return disk;
  const where = name === undefined ? '' : ` (entry '${name.slice(0, 200)}')`;
  return new DownloadError('BadResponse', `the zip archive is corrupt${where}: ${(err as Error).message}`, {
    cause: err,
  });
}
