import { mkdir, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BatchWriter } from '../batch-writer.ts';
import { discard, header, type HttpClient, type HttpResponse } from '../http-client.ts';
import { classify, contentRange, statusError } from '../http-status.ts';
import { backoffDelay, sleep } from '../../kube/backoff.ts';
import {
  clearExtracted,
  detectArchive,
  extractOrPlace,
  sizeBudget,
  tarExtractor,
  type ByteBudget,
} from '../archive.ts';
import { DownloadError, diskError, redactUrl } from '../errors.ts';
import type { DownloadOptions, DownloadRequest, DownloadResult } from '../types.ts';

interface ResumeMeta {
  url: string;
  etag?: string;
  lastModified?: string;
  total?: number;
}

/** File name for a single-file download: the URL's last path segment, made safe. */
export function fileNameFromUrl(url: string): string {
  const seg = decodeURIComponent(new URL(url).pathname.split('/').filter(Boolean).pop() ?? '');
  const clean = seg.replace(/[/\\\0]/g, '_');
  if (!clean || clean === '.' || clean === '..') return 'model';
  return clean.startsWith('.') ? `_${clean}` : clean;
}

/**
 * Downloads one HTTP(S) object into req.workDir, resuming from bytes already on disk (Range +
 * If-Range), retrying 5xx/429/resets/stalls with capped backoff, stopping at the size limit,
 * and extracting tar/tar.gz/zip archives recognised by their bytes.
 */
export async function downloadHttp(
  req: DownloadRequest,
  o: DownloadOptions,
  http: HttpClient,
): Promise<DownloadResult> {
  const { uri: url, workDir, signal } = req;
  const limit = Math.floor(req.maxBytes * (1 + o.sizeTolerance));
  const dl = join(workDir, '.download');
  await mkdir(dl, { recursive: true });
  const name = fileNameFromUrl(url);
  const partial = join(dl, `${name}.partial`);
  const metaPath = `${partial}.json`;
  let streamed: Promise<{ files: number }> | undefined;
  let lastError: unknown;
  let done = false;

  for (let attempt = 1; attempt <= o.attempts && !done; attempt++) {
    if (signal.aborted) throw new DownloadError('Cancelled', 'download cancelled', { cause: signal.reason });
    const meta = await readFile(metaPath, 'utf8').then(
      (t) => JSON.parse(t) as ResumeMeta,
      () => undefined,
    );
    let offset = await stat(partial).then(
      (s) => s.size,
      () => 0,
    );
    if (offset > 0 && meta?.url !== url) offset = 0;
    if (offset > 0 && meta?.total !== undefined && offset === meta.total) {
      done = true;
      break;
    }
    const validator = meta?.etag ?? meta?.lastModified;
    const headers: Record<string, string> =
      offset > 0 ? { range: `bytes=${offset}-`, ...(validator ? { 'if-range': validator } : {}) } : {};
    const attemptAbort = new AbortController();
    let stall: NodeJS.Timeout | undefined;
    let res: HttpResponse | undefined;
    try {
      res = await http.get(url, headers, AbortSignal.any([signal, attemptAbort.signal]));
      if (res.statusCode === 416 && offset > 0)
        throw new DownloadError('IntegrityMismatch', 'resume position beyond the object', { retryable: true });
      if (res.statusCode !== 200 && res.statusCode !== 206) throw statusError(res, url, o.backoffMaxMs);
      let total: number | undefined;
      if (res.statusCode === 206) {
        total = contentRange(res, offset).total;
      } else {
        offset = 0;
        const cl = header(res.headers, 'content-length');
        total = cl === undefined ? undefined : Number(cl);
      }
      if (total !== undefined && total > limit)
        throw new DownloadError(
          'SizeExceeded',
          `${redactUrl(url)} is ${total} bytes, more than modelSize allows (${limit} bytes)`,
        );
      await writeFile(
        metaPath,
        JSON.stringify({
          url,
          etag: header(res.headers, 'etag'),
          lastModified: header(res.headers, 'last-modified'),
          total,
        } satisfies ResumeMeta),
      );
      let received = 0;
      let head: Buffer | undefined = offset === 0 ? Buffer.alloc(0) : undefined;
      let extractor: ReturnType<typeof tarExtractor> | undefined;
      let lastProgress = 0;
      const budget = sizeBudget(limit);
      const fh = await open(partial, offset === 0 ? 'w' : 'r+');
      const out = new BatchWriter(fh, offset, () => undefined, name);
      stall = setTimeout(() => attemptAbort.abort(new Error('stalled')), o.stallTimeoutMs);
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
              const kind = detectArchive(head);
              if (kind === 'tar' || kind === 'tar.gz') {
                await clearExtracted(workDir);
                extractor = tarExtractor(workDir, kind, budget);
                extractor.done.catch(() => undefined);
                await feed(extractor.input, head);
              }
              head = undefined;
            }
          } else if (extractor) {
            await feed(extractor.input, chunk);
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
      if (extractor) streamed = extractor.done;
      done = true;
    } catch (err) {
      discard(res);
      const e = signal.aborted
        ? new DownloadError('Cancelled', 'download cancelled', { cause: signal.reason })
        : classify(diskError(err, `writing ${name}`));
      if (!e.retryable) {
        if (e.code === 'SizeExceeded' || e.code === 'IntegrityMismatch' || e.code === 'InsufficientCapacity')
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
  return finish(workDir, dl, partial, name, streamed, sizeBudget(limit));
}

/** After the bytes are all on disk: archives extracted (if not already while streaming), a plain file moved into place. */
async function finish(
  workDir: string,
  dl: string,
  partial: string,
  name: string,
  streamed: Promise<{ files: number }> | undefined,
  budget: ByteBudget,
): Promise<DownloadResult> {
  const bytes = (await stat(partial)).size;
  const files = streamed ? (await streamed).files : (await extractOrPlace(partial, workDir, name, budget)).files;
  await rm(dl, { recursive: true, force: true });
  return { bytes, files };
}

/** Writes to an extractor's input, waiting for room; an input that fails or closes ends the wait too. */
function feed(target: NodeJS.WritableStream, chunk: Buffer): Promise<void> {
  if (target.write(chunk)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      target.off('drain', done).off('close', done).off('error', done);
      resolve();
    };
    target.once('drain', done).once('close', done).once('error', done);
  });
}
