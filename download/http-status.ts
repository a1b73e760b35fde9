import { header, type Headers } from './http-client.ts';
import { DownloadError, diskError, redactUrl } from './errors.ts';

/**
 * A 206 answer's Content-Range, checked to start where it was asked to; the object's total size
 * (undefined when the server says `*`). A range starting elsewhere is IntegrityMismatch (retried).
 */
export function contentRange(res: StatusLike, start: number): { total?: number } {
  const range = header(res.headers, 'content-range') ?? '';
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(range);
  if (!m || Number(m[1]) !== start)
    throw new DownloadError('IntegrityMismatch', `bad Content-Range '${range}' for a request from byte ${start}`, {
      retryable: true,
    });
  return m[3] === '*' ? {} : { total: Number(m[3]) };
}

/** A DownloadError that may carry the server's Retry-After. */
export type RetryableError = DownloadError & { retryAfterMs?: number };

/** What statusError needs of an answer. */
export interface StatusLike {
  statusCode: number;
  headers: Headers;
}

function retryAfterMs(res: StatusLike, maxMs: number): number | undefined {
  const h = header(res.headers, 'retry-after');
  if (!h) return undefined;
  const secs = Number(h);
  const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(h) - Date.now();
  return Number.isFinite(ms) ? Math.min(Math.max(0, ms), maxMs) : undefined;
}

/**
 * An HTTP error status as a reason: 401/403 AccessDenied, 404/410 SourceNotFound, 429/5xx retryable
 * SourceUnavailable (with Retry-After, capped), anything else BadResponse. `detail` (a store's own
 * error code, say) is added to the message; URLs are shown without their query.
 */
export function statusError(res: StatusLike, url: string, maxMs: number, detail?: string): RetryableError {
  const s = res.statusCode;
  const where = `${redactUrl(url)} answered HTTP ${s}${detail ? ` (${detail})` : ''}`;
  if (s === 401 || s === 403)
    return new DownloadError('AccessDenied', `${where}: check the credentials for this source`);
  if (s === 404 || s === 410) return new DownloadError('SourceNotFound', `${where}: check sourceModelUri`);
  if (s === 429 || s >= 500)
    return Object.assign(new DownloadError('SourceUnavailable', where, { retryable: true }), {
      retryAfterMs: retryAfterMs(res, maxMs),
    });
  return new DownloadError('BadResponse', where);
}

/** Any failure as a DownloadError; network trouble (resets, timeouts, stalls, refused connections) is retryable. */
export function classify(err: unknown): DownloadError {
  if (err instanceof DownloadError) return err;
  const msg = (err as Error)?.message ?? String(err);
  // The connection closed before the announced length (undici: "other side closed").
  if ((err as { code?: string })?.code === 'UND_ERR_SOCKET' && /other side closed/i.test(msg))
    return new DownloadError('IntegrityMismatch', `body shorter than its Content-Length (${msg})`, {
      retryable: true,
      cause: err,
    });
  return new DownloadError('SourceUnavailable', msg, { retryable: true, cause: err });
}

/** Failures caused by what the source sent: partial bytes of it are worthless, never resumed or extracted again. */
export const CONTENT_FAULTS: ReadonlySet<string> = new Set([
  'BadResponse',
  'UnsafeArchive',
  'UnsafeObjectName',
  'SizeExceeded',
  'IntegrityMismatch',
]);

/** fs errors a name chosen by the source causes: too long, a folder or a file already in its way, a loop. */
const NAME_FAULTS = new Set(['ENAMETOOLONG', 'EISDIR', 'ENOTDIR', 'EEXIST', 'ELOOP', 'EINVAL', 'EILSEQ']);

/**
 * A raw fs error as a DownloadError: disk full InsufficientCapacity, EIO and the like DiskError (as
 * diskError), and errors caused by the name the content gave (ENAMETOOLONG, EISDIR…) the content's
 * fault `contentCode`, never a disk error. Anything else passes through.
 */
export function fsFault(
  err: unknown,
  what: string,
  contentCode: 'UnsafeObjectName' | 'InvalidUri' | 'BadResponse',
): unknown {
  if (err instanceof DownloadError) return err;
  const disk = diskError(err, what);
  if (disk !== err) return disk;
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code !== undefined && NAME_FAULTS.has(code))
    return new DownloadError(contentCode, `${what} failed (${code}): this name cannot be stored on the node`, {
      cause: err,
    });
  return err;
}
