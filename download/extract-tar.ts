import { PassThrough, pipeline, type Writable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { extract as tarExtract, type Header } from 'tar-stream';
import { unsafe } from './containment.ts';
import { DownloadError, diskError } from './errors.ts';
import { entryError, ExtractTarget, type ByteBudget, type ExtractResult } from './extract-fs.ts';

/** A streaming extraction: bytes go in, `done` settles exactly once, `abort` tears it down. */
export interface Extractor {
  /** Where the archive's bytes go. Destroyed (without an error event) when extraction fails or is aborted. */
  input: Writable;
  /** The result after the last entry, or the first failure as a DownloadError — only once every file is closed. */
  done: Promise<ExtractResult>;
  /** Stops the extraction: `done` rejects with `reason` when it is a DownloadError, else with Cancelled. */
  abort(reason?: unknown): void;
}

const SPARSE = 'sparse tar entries are not supported: re-create the archive without --sparse';

/**
 * A writable that extracts a tar (gunzipping first for tar.gz) into `root` as bytes arrive, through an
 * ExtractTarget (containment by construction). Corrupt data is BadResponse, a full disk
 * InsufficientCapacity, a hostile or unsupported entry UnsafeArchive; any of them ends everything it opened.
 */
export function tarExtractor(root: string, kind: 'tar' | 'tar.gz', budget: ByteBudget): Extractor {
  const target = new ExtractTarget(root, budget);
  const input = new PassThrough({ highWaterMark: 256 * 1024 });
  // zlib's default 16 KiB output chunks mean a write per 16 KiB; 256 KiB chunks extract ~1.6x faster.
  const gunzip = kind === 'tar.gz' ? createGunzip({ chunkSize: 256 * 1024 }) : undefined;
  const ex = tarExtract();
  let settled = false;
  let current: { destroy(): void } | undefined;
  let busy: Promise<void> = Promise.resolve();
  let resolveDone!: (r: ExtractResult) => void;
  let rejectDone!: (e: DownloadError) => void;
  const done = new Promise<ExtractResult>((res, rej) => {
    resolveDone = res;
    rejectDone = rej;
  });
  done.catch(() => undefined); // never an unhandled rejection, whoever forgets to await it

  const fail = (err: DownloadError): void => {
    if (settled) return;
    settled = true;
    current?.destroy();
    input.destroy();
    gunzip?.destroy();
    ex.destroy();
    // The entry being written closes its file when its stream ends; only then is the failure reported.
    void busy.then(() => rejectDone(err));
  };

  ex.on('entry', (h, stream, next) => {
    // Its errors reach `fail` through ex's; until the entry is read, nothing else listens.
    stream.on('error', () => undefined);
    current = stream;
    busy = writeEntry(target, h, stream as AsyncIterable<Buffer>).then(
      () => {
        current = undefined;
        if (!settled) next();
      },
      (err: unknown) => {
        current = undefined;
        fail(entryError(err, h.name));
      },
    );
  });
  ex.on('finish', () => {
    if (settled) return;
    settled = true;
    resolveDone(target.result());
  });
  ex.on('error', (err: Error) => fail(corrupt(kind, err)));
  ex.on('close', () => fail(new DownloadError('BadResponse', `the ${kind} archive ended before its last entry`)));
  gunzip?.on('error', (err: Error) => fail(corrupt(kind, err)));
  input.on('error', (err: Error) => fail(stopped(err)));
  input.on('close', () => {
    if (!input.writableFinished) fail(new DownloadError('Cancelled', 'the archive stopped arriving before its end'));
  });
  const stages: Writable[] = gunzip ? [input, gunzip, ex as unknown as Writable] : [input, ex as unknown as Writable];
  // Errors are classified by the listeners above (the first one wins); the pipeline only moves bytes.
  pipeline(stages, () => undefined);
  return { input, done, abort: (reason?: unknown) => fail(stopped(reason)) };
}

async function writeEntry(t: ExtractTarget, h: Header, stream: AsyncIterable<Buffer>): Promise<void> {
  const pax = h.pax as Record<string, string> | null | undefined;
  if (pax && Object.keys(pax).some((k) => k.startsWith('GNU.sparse.'))) throw unsafe(h.name, SPARSE);
  // Old tars mark a folder as a file whose name ends in '/' (tar-stream keeps the type 'file').
  const type = h.type === 'file' && h.name.endsWith('/') ? 'directory' : h.type;
  switch (type) {
    case 'directory':
      await t.dir(h.name);
      break;
    case 'file':
    case 'contiguous-file':
      await t.file(h.name, chunksOf(stream, h.name), h.size);
      return;
    case 'symlink':
      await t.symlink(h.name, h.linkname ?? '');
      break;
    case 'link':
      await t.hardlink(h.name, h.linkname ?? '');
      break;
    case 'block-device':
    case 'character-device':
    case 'fifo':
      await t.skip(h.name);
      break;
    default:
      // tar-stream consumes the header types itself; null is a type it does not know (GNU 'S' sparse, 'V', 'M'…).
      throw unsafe(h.name, `its entry type is not extracted (${SPARSE}; volume labels and multi-volume parts neither)`);
  }
  for await (const _ of chunksOf(stream, h.name)); // link and folder entries carry no data worth keeping
}

/**
 * An entry's bytes; a failure reading them is the archive's (corrupt, truncated), not the disk's. A
 * consumer that stops early leaves the stream as it is: ending it would destroy the whole tar stream
 * with a vaguer error before the consumer's own is reported. `fail` destroys it.
 */
async function* chunksOf(stream: AsyncIterable<Buffer>, name: string): AsyncGenerator<Buffer> {
  const it = stream[Symbol.asyncIterator]();
  for (;;) {
    let r: IteratorResult<Buffer>;
    try {
      r = await it.next();
    } catch (err) {
      throw new DownloadError('BadResponse', `archive entry '${name.slice(0, 200)}' is corrupt or cut short`, {
        cause: err,
      });
    }
    if (r.done) return;
    yield r.value;
  }
}

function corrupt(kind: string, err: Error): DownloadError {
  if (err instanceof DownloadError) return err;
  return new DownloadError('BadResponse', `the ${kind} archive is corrupt or not a tar archive: ${err.message}`, {
    cause: err,
  });
}

/** Why a caller stopped the extraction, as a DownloadError. */
function stopped(reason: unknown): DownloadError {
  if (reason instanceof DownloadError) return reason;
  const disk = diskError(reason, 'reading the archive');
  if (disk instanceof DownloadError) return disk;
  const why = reason instanceof Error ? reason.message : String(reason ?? 'aborted');
  return new DownloadError('Cancelled', `extraction stopped: ${why}`, { cause: reason });
}
