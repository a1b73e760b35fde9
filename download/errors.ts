import type { KeptPieces } from './types.ts';

/** Stable reason codes: what goes to a LocalModelNode's status `reason`. */
export type DownloadErrorCode =
  | 'InvalidUri'
  | 'UnsupportedScheme'
  | 'AccessDenied'
  | 'SourceNotFound'
  | 'SourceEmpty'
  | 'SourceUnavailable'
  | 'BadResponse'
  | 'IntegrityMismatch'
  | 'SizeExceeded'
  | 'UnsafeArchive'
  | 'UnsafeObjectName'
  | 'InsufficientCapacity'
  | 'Cancelled'
  | 'DiskError'
  /** A bug in modelcache, not a fault of the source, its content or the disk. */
  | 'Internal';

/** A download failure with a stable code (for status) and a message for humans, with the numbers. */
export class DownloadError extends Error {
  readonly code: DownloadErrorCode;
  /** Worth another attempt inside the same download (network trouble), as opposed to a final answer. */
  readonly retryable: boolean;
  constructor(code: DownloadErrorCode, message: string, opts: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'DownloadError';
    this.code = code;
    this.retryable = opts.retryable ?? false;
  }
}

/** A failed copy that leaves verified pieces behind: the download from the source that follows may keep them. */
export class IncompleteCopyError extends DownloadError {
  readonly kept: readonly KeptPieces[];
  constructor(e: DownloadError, kept: readonly KeptPieces[]) {
    super(e.code, e.message, { retryable: e.retryable, cause: e.cause });
    this.kept = kept;
  }
}

/** A URL as it may appear in messages: no credentials, no query (signed URLs carry secrets there). */
export function redactUrl(uri: string): string {
  try {
    const u = new URL(uri);
    u.username = '';
    u.password = '';
    u.search = '';
    return u.toString();
  } catch {
    return '(invalid URL)';
  }
}

/** Disk errors (ENOSPC, EDQUOT, EIO…) as DownloadErrors; others pass through. */
export function diskError(err: unknown, what: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT')
    return new DownloadError('InsufficientCapacity', `disk full while ${what}`, { cause: err });
  if (code === 'EIO' || code === 'EROFS' || code === 'EACCES')
    return new DownloadError('DiskError', `${code} while ${what}`, { cause: err });
  return err;
}
