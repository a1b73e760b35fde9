import { backoffDelay } from '../ops/backoff.ts';
import { CapacityError } from '../disk/capacity.ts';
import { DownloadError, diskError, type DownloadErrorCode } from './errors.ts';

/** What a failure with one code means for the download that had it. */
export interface FailureRule {
  /** Worth another try inside the same attempt (network trouble heals in seconds). */
  retryWithinAttempt: boolean;
  /** When the model is tried again after the attempt failed: soon, later, or not until its spec changes. */
  later: 'soon' | 'later' | 'never';
  /** The bytes on disk are worthless (or harmful) after this: the partial data is removed. */
  discardPartial: boolean;
}

/**
 * The one failure policy, by code. Reasons for the less obvious rows:
 * - SourceUnavailable, DiskError: may heal by themselves (an outage, a remount); the bytes received are good.
 * - InsufficientCapacity: soon, and the partial data is KEPT. The ledger reserves only what is still to
 *   come (modelSize minus what is on disk) before a byte is fetched, so what filled the disk is someone
 *   else's; our own bytes can only outgrow modelSize as SizeExceeded, which discards. Throwing the bytes
 *   away would only download them again once space frees. (A source whose own writes hit ENOSPC frees what
 *   it wrote before it reports this: a full disk hurts every workload on the node.)
 * - Content faults (BadResponse, UnsafeArchive, UnsafeObjectName, SizeExceeded, IntegrityMismatch): the
 *   source sent something wrong; what it sent is not kept, and it is tried again later in case it changed.
 * - InvalidUri, UnsupportedScheme: the spec is wrong; nothing changes until it does (a new URI is a new
 *   storage key, so a fixed spec is a new download at once).
 * - AccessDenied, SourceNotFound, SourceEmpty: someone must fix the source or its credentials: later.
 * - Internal: a bug in modelcache; later (another attempt may not hit it), and the bytes are kept.
 * - Cancelled: not a failure; partial data is kept for a resume.
 */
export const FAILURE_POLICY: Readonly<Record<DownloadErrorCode, FailureRule>> = {
  SourceUnavailable: { retryWithinAttempt: true, later: 'soon', discardPartial: false },
  InsufficientCapacity: { retryWithinAttempt: false, later: 'soon', discardPartial: false },
  DiskError: { retryWithinAttempt: false, later: 'soon', discardPartial: false },
  BadResponse: { retryWithinAttempt: false, later: 'later', discardPartial: true },
  UnsafeArchive: { retryWithinAttempt: false, later: 'later', discardPartial: true },
  UnsafeObjectName: { retryWithinAttempt: false, later: 'later', discardPartial: true },
  SizeExceeded: { retryWithinAttempt: false, later: 'later', discardPartial: true },
  IntegrityMismatch: { retryWithinAttempt: true, later: 'later', discardPartial: true },
  InvalidUri: { retryWithinAttempt: false, later: 'never', discardPartial: true },
  UnsupportedScheme: { retryWithinAttempt: false, later: 'never', discardPartial: true },
  AccessDenied: { retryWithinAttempt: false, later: 'later', discardPartial: false },
  SourceNotFound: { retryWithinAttempt: false, later: 'later', discardPartial: false },
  SourceEmpty: { retryWithinAttempt: false, later: 'later', discardPartial: false },
  Internal: { retryWithinAttempt: false, later: 'later', discardPartial: false },
  Cancelled: { retryWithinAttempt: false, later: 'soon', discardPartial: false },
};

/** Backoff ranges [first, largest] in ms for failures retried soon and later. */
export interface RetryDelays {
  soonMs: readonly [number, number];
  laterMs: readonly [number, number];
  /** Random source in [0,1) for the jitter; tests pass a fixed one. */
  random?: () => number;
}

export const DEFAULT_RETRY_DELAYS: RetryDelays = { soonMs: [10_000, 300_000], laterMs: [60_000, 3_600_000] };

/**
 * After the `attempts`-th failed attempt with `code` (1-based): when to try again (undefined: not
 * until the spec changes) and whether to remove the partial data. Pure: `now` is passed in.
 */
export function retryPlan(
  code: DownloadErrorCode,
  attempts: number,
  delays: RetryDelays,
  now: number,
): { retryAt: number | undefined; discard: boolean } {
  const rule = FAILURE_POLICY[code];
  if (rule.later === 'never') return { retryAt: undefined, discard: rule.discardPartial };
  const [baseMs, maxMs] = rule.later === 'soon' ? delays.soonMs : delays.laterMs;
  const delay = backoffDelay(attempts, { baseMs, maxMs, ...(delays.random ? { random: delays.random } : {}) });
  return { retryAt: now + delay, discard: rule.discardPartial };
}

/**
 * Any failure as a DownloadError: the ledger's refusal as InsufficientCapacity (same message), disk errors
 * by their errno (ENOSPC → InsufficientCapacity, EIO… → DiskError), and anything else that is not already
 * coded as `Internal` — a bug, never a disk error.
 */
export function asDownloadError(err: unknown, what: string): DownloadError {
  if (err instanceof DownloadError) return err;
  if (err instanceof CapacityError) return new DownloadError(err.code, err.message, { cause: err });
  const disk = diskError(err, what);
  if (disk instanceof DownloadError) return disk;
  const text = err instanceof Error ? err.message : String(err);
  return new DownloadError(
    'Internal',
    `a bug in modelcache while ${what}: ${text} (please report it; the download is retried later)`,
    { cause: err },
  );
}
