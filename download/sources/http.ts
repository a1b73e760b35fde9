import { createHash } from 'node:crypto';
import { mkdir, open, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DOWNLOAD_DIR } from '../../disk/layout.ts';
import { BatchWriter } from '../batch-writer.ts';
import { discard, header, type HttpClient, type HttpResponse } from '../http-client.ts';
import { CONTENT_FAULTS, classify, contentRange, fsFault, statusError } from '../http-status.ts';
import { backoffDelay, sleep } from '../../ops/backoff.ts';
import {
  clearExtracted,
  archiveKindFor,
  extractOrPlace,
  namedLikeArchive,
  placedResult,
  sizeBudget,
  tarExtractor,
  type ByteBudget,
  type Extractor,
} from '../archive.ts';
import { DownloadError, redactUrl } from '../errors.ts';
import { resumeMismatch, resumePoint, saveResumeMeta, type ResumeMeta } from '../resume-state.ts';
import { sizeLimit, type DownloadOptions, type DownloadRequest, type DownloadResult } from '../types.ts';

/** Longest file name most filesystems store (bytes). */
const NAME_MAX = 255;

/** File name for a single-file download: the URL's last path segment, made safe. */
export function fileNameFromUrl(url: string): string {
  const raw = new URL(url).pathname.split('/').filter(Boolean).pop() ?? '';
  let seg: string;
  try {
    seg = decodeURIComponent(raw);
  } catch {
    seg = raw; // not valid percent-encoding (say /%E0%A4%A): kept as it is written
  }
  const clean = seg.replace(/[/\\\0]/g, '_');
  if (!clean || clean === '.' || clean === '..') return 'model';
  const name = clean.startsWith('.') ? `_${clean}` : clean;
  if (Buffer.byteLength(name) > NAME_MAX)
    throw new DownloadError(
      'InvalidUri',
      `the file name at the end of ${redactUrl(url)} is ${Buffer.byteLength(name)} bytes long, more than the ${NAME_MAX} a file name may have`,
    );
  return name;
}

/**
 * Downloads one HTTP(S) object into req.workDir, resuming from bytes already on disk (Range +
 * If-Range, only when the first answer had a validator, and never splicing two objects), retrying
 * 5xx/429/resets/stalls with capped backoff, stopping at the size limit, and extracting tar/tar.gz/zip
 * archives (by name and bytes). An archive that fails while it streams ends the attempt at once.
 */
export async function downloadHttp(
  req: DownloadRequest,
  o: DownloadOptions,
  http: HttpClient,
): Promise<DownloadResult> {
  const { uri: url, workDir, signal } = req;
  const limit = sizeLimit(req.maxBytes, o);
  const name = fileNameFromUrl(url);
  const dl = join(workDir, DOWNLOAD_DIR);
  await mkdir(dl, { recursive: true }).catch((err: unknown) => {
    throw fsFault(err, `creating ${dl}`, 'InvalidUri');
  });
  // The partial's own name stays short whatever the file's name is.
  const base = Buffer.byteLength(name) > 200 ? createHash('sha256').update(name).digest('hex').slice(0, 32) : name;
  const partial = join(dl, `${base}.partial`);
  const metaPath = `${partial}.json`;
  let streamed: Extractor | undefined;
  let lastError: unknown;
  let done = false;
  // A file kept as it is, of a size the first answer gives: the observer hears of its bytes as they land.
  let observed: number | undefined;
  const observer = namedLikeArchive(name) ? undefined : req.observer;

  for (let attempt = 1; attempt <= o.attempts && !done; attempt++) {
    if (signal.aborted) throw new DownloadError('Cancelled', 'download cancelled', { cause: signal.reason });
    const start = await resumePoint(partial, metaPath, url);
    if (start.complete) {
      done = true;
      break;
    }
    let offset = start.offset;
    const validator = start.meta?.etag ?? start.meta?.lastModified;
    const headers: Record<string, string> =
      offset > 0 ? { range: `bytes=${offset}-`, ...(validator ? { 'if-range': validator } : {}) } : {};
    const attemptAbort = new AbortController();
    const attemptSignal = AbortSignal.any([signal, attemptAbort.signal]);
    let stall: NodeJS.Timeout | undefined;
    let res: HttpResponse | undefined;
    let extractor: Extractor | undefined;
    let extractFailure: DownloadError | undefined;
    try {
      res = await http.get(url, headers, attemptSignal);
      const answer = await checkAnswer(res, offset, start.meta, { url, partial, metaPath, maxMs: o.backoffMaxMs });
      offset = answer.offset;
      const total = answer.total;
      if (total !== undefined && total > limit)
        throw new DownloadError(
          'SizeExceeded',
          `${redactUrl(url)} is ${total} bytes, more than modelSize allows (${limit} bytes)`,
        );
      const etag = header(res.headers, 'etag');
      const lastModified = header(res.headers, 'last-modified');
      await saveResumeMeta(metaPath, { url, etag, lastModified, total });
      if (observer && observed === undefined && total !== undefined) {
        observed = total;
        observer.listed([{ path: name, size: total, partial }]);
        if (offset > 0) observer.written(name, 0, offset);
      } else if (observed !== undefined && (offset === 0 || total !== observed)) observer?.reset(name);
      const observing = observed !== undefined && total === observed;
      let at = offset;
      let received = 0;
      let head: Buffer | undefined = offset === 0 ? Buffer.alloc(0) : undefined;
      let lastProgress = 0;
      const budget = sizeBudget(limit);
      const fh = await open(partial, offset === 0 ? 'w' : 'r+');
      const out = new BatchWriter(
        fh,
        offset,
        (n) => {
          if (observing) observer?.written(name, at, n);
          at += n;
        },
        name,
      );
      stall = setTimeout(() => attemptAbort.abort(new Error(`no bytes for ${o.stallTimeoutMs} ms`)), o.stallTimeoutMs);
      try {
        for await (const chunk of res.body) {
          stall.refresh();
          received += chunk.length;
          if (offset + received > limit)
            throw new DownloadError(
              'SizeExceeded',
              `${redactUrl(url)} sent more than modelSize allows (${limit} bytes)`,
            );
          if (total !== undefined && offset + received > total)
            throw new DownloadError('IntegrityMismatch', `body longer than the announced ${total} bytes`);
          const now = Date.now();
          if (now - lastProgress >= 100) {
            lastProgress = now;
            req.onProgress?.({ bytesDone: offset + received, ...(total !== undefined ? { bytesTotal: total } : {}) });
          }
          // Archives are extracted while they stream, when this attempt starts from the first byte.
          if (head !== undefined) {
            head = Buffer.concat([head, chunk]);
            if (head.length >= 262 || (total !== undefined && head.length >= total)) {
              const kind = archiveKindFor(name, head);
              if (kind === 'tar' || kind === 'tar.gz') {
                await clearExtracted(workDir);
                const ex = tarExtractor(workDir, kind, budget);
                extractor = ex;
                // A failed extraction ends the attempt now: no more body read, no wait on a dead input.
                ex.done.catch((err: unknown) => {
                  if (attemptSignal.aborted) return; // torn down because the attempt ended otherwise
                  extractFailure ??= asExtractionError(err);
                  attemptAbort.abort(extractFailure);
                });
                await feed(ex.input, head, attemptSignal);
              }
              head = undefined;
            }
          } else if (extractor) {
            await feed(extractor.input, chunk, attemptSignal);
          }
          await out.push(chunk);
        }
        await out.drain();
        extractor?.input.end();
      } finally {
        await out.drain().catch(() => undefined); // bytes received before a failure are kept for the resume
        await fh.close();
      }
      if (total !== undefined && offset + received < total) {
        throw new DownloadError('IntegrityMismatch', `body ended after ${offset + received} of ${total} bytes`, {
          retryable: true,
        });
      }
      if (extractor) streamed = extractor;
      done = true;
    } catch (err) {
      discard(res);
      const failure = extractFailure;
      if (extractor) await stopExtractor(extractor);
      const e =
        failure ??
        (signal.aborted
          ? new DownloadError('Cancelled', 'download cancelled', { cause: signal.reason })
          : classify(fsFault(err, `writing ${name}`, 'InvalidUri')));
      if (!e.retryable) {
        // What a content fault left is worthless; a disk this download filled is freed at once, so that
        // the node's other users (kubelet, image pulls) get their space back.
        if (CONTENT_FAULTS.has(e.code) || e.code === 'InsufficientCapacity')
          await rm(dl, { recursive: true, force: true });
        throw e;
      }
      lastError = e;
      if (attempt < o.attempts) {
        const wait =
          (e as { retryAfterMs?: number }).retryAfterMs ??
          backoffDelay(attempt, { baseMs: o.backoffBaseMs, maxMs: o.backoffMaxMs });
        await sleep(wait, signal).catch(() => undefined);
      }
    } finally {
      if (stall) clearTimeout(stall);
    }
  }
  if (!done) {
    if (signal.aborted) throw new DownloadError('Cancelled', 'download cancelled', { cause: signal.reason });
    const last = lastError as DownloadError | undefined;
    if (last?.code === 'IntegrityMismatch') {
      await rm(dl, { recursive: true, force: true });
      throw new DownloadError('IntegrityMismatch', `${last.message} (after ${o.attempts} attempts)`);
    }
    throw new DownloadError(
      'SourceUnavailable',
      `${redactUrl(url)} failed after ${o.attempts} attempts: ${last?.message ?? 'unknown error'}`,
      { cause: last },
    );
  }
  return finish({ workDir, dl, partial, name, signal }, streamed, sizeBudget(limit));
}

/**
 * The answer's status and size: where its bytes start and the object's total. A resumed answer of
 * another object (another total, ETag or Last-Modified than the first answer's, or a 416) removes
 * the partial file and fails the attempt, so the next one starts from the first byte.
 */
async function checkAnswer(
  res: HttpResponse,
  offset: number,
  meta: ResumeMeta | undefined,
  at: { url: string; partial: string; metaPath: string; maxMs: number },
): Promise<{ offset: number; total?: number }> {
  const changed = async (why: string): Promise<never> => {
    await rm(at.partial, { force: true });
    await rm(at.metaPath, { force: true });
    throw new DownloadError(
      'IntegrityMismatch',
      `${redactUrl(at.url)} changed between attempts (${why}): starting again from the first byte`,
      { retryable: true },
    );
  };
  if (res.statusCode === 416 && offset > 0) return changed(`it has no byte ${offset} any more`);
  if (res.statusCode !== 200 && res.statusCode !== 206) throw statusError(res, at.url, at.maxMs);
  if (res.statusCode === 200) return { offset: 0, total: sizeHeader(header(res.headers, 'content-length')) };
  const { total } = contentRange(res, offset);
  if (offset > 0 && meta) {
    const now = { total, etag: header(res.headers, 'etag'), lastModified: header(res.headers, 'last-modified') };
    const why = resumeMismatch(meta, now);
    if (why) return changed(why);
  }
  return { offset, ...(total !== undefined ? { total } : {}) };
}

function sizeHeader(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d+$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** After the bytes are all on disk: archives extracted (if not already while streaming), a plain file moved into place. */
async function finish(
  at: { workDir: string; dl: string; partial: string; name: string; signal: AbortSignal },
  streamed: Extractor | undefined,
  budget: ByteBudget,
): Promise<DownloadResult> {
  const stop = (): void => streamed?.abort(new DownloadError('Cancelled', 'download cancelled'));
  at.signal.addEventListener('abort', stop, { once: true });
  try {
    const bytes = (await stat(at.partial)).size;
    const placed = await (streamed?.done ??
      extractOrPlace(at.partial, at.workDir, at.name, budget, { signal: at.signal }));
    await rm(at.dl, { recursive: true, force: true });
    return placedResult(bytes, placed);
  } catch (err) {
    const e = fsFault(err, `placing ${at.name}`, 'InvalidUri');
    // A complete partial that cannot be extracted is never extracted again on the next attempt.
    if (e instanceof DownloadError && CONTENT_FAULTS.has(e.code)) await rm(at.dl, { recursive: true, force: true });
    throw e;
  } finally {
    at.signal.removeEventListener('abort', stop);
  }
}

/** An extractor's failure as a DownloadError (its contract; anything else is a bug). */
function asExtractionError(err: unknown): DownloadError {
  if (err instanceof DownloadError) return err;
  return new DownloadError('Internal', `archive extraction failed unexpectedly (a bug in modelcache): ${String(err)}`, {
    cause: err,
  });
}

/** Tears down an extraction this attempt started and waits until it closed its last file. */
async function stopExtractor(ex: Extractor): Promise<void> {
  ex.abort(new DownloadError('Cancelled', 'the download attempt ended'));
  await ex.done.catch(() => undefined);
}

/**
 * Writes to an extractor's input, waiting for room; the wait also ends when the input fails or
 * closes, and rejects when the attempt is aborted (cancel, stall, a failed extraction).
 */
function feed(target: NodeJS.WritableStream, chunk: Buffer, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  if (target.write(chunk)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      target.off('drain', done).off('close', done).off('error', done);
      signal.removeEventListener('abort', aborted);
    };
    const done = (): void => {
      cleanup();
      resolve();
    };
    const aborted = (): void => {
      cleanup();
      reject(signal.reason as Error);
    };
    target.once('drain', done).once('close', done).once('error', done);
    signal.addEventListener('abort', aborted, { once: true });
  });
}
