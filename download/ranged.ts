import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { BatchWriter } from './batch-writer.ts';
import { DownloadError, diskError, redactUrl } from './errors.ts';
import { discard, header, type HttpClient } from './http-client.ts';
import { classify, contentRange, statusError } from './http-status.ts';
import { runAll, withRetries } from './parallel.ts';
import type { Authorize } from './request.ts';
import { loadPartState, partLength, partStateSaver, type PartState, type StateSaver } from './resume-state.ts';
import type { DownloadOptions, KeptPieces } from './types.ts';

/** One object in a store, as a listing describes it. */
export interface RemoteObject {
  /** GET address of the bytes. */
  url: string;
  /** Bytes, when the listing says (needed for parallel ranges). */
  size?: number;
  /** Sent as If-Match on every ranged request, so parts of two versions are never mixed. */
  etag?: string;
  /** Checked over the whole file before it is accepted. */
  digest?: { algorithm: 'md5' | 'sha256'; hex: string };
}

export interface FetchContext {
  o: DownloadOptions;
  http: HttpClient;
  signal: AbortSignal;
  authorize: Authorize;
  /** Bytes arrived (negative when a restart drops bytes already counted). */
  onBytes: (n: number) => void;
  /** Most bytes this object may have (modelSize plus tolerance, minus what other files use). */
  limit: number;
  /** Bytes [start, start + length) of the object are written (DownloadObserver.written, for this object). */
  onWritten?: (start: number, length: number) => void;
  /** What was written is void: the object is written again from its first byte. */
  onReset?: () => void;
  /** Verified pieces of this object from a copy that failed (DownloadRequest.kept): kept when they can be checked. */
  kept?: KeptPieces;
  /** Bytes of `kept` taken instead of fetched, once the object is complete (and checked). */
  onKept?: (n: number) => void;
}

function planParts(obj: RemoteObject, o: DownloadOptions): { partSize: number; count: number } {
  const size = obj.size;
  if (size === undefined || o.partParallelism <= 1 || size < 2 * o.partSizeBytes)
    return { partSize: size ?? 0, count: 1 };
  return { partSize: o.partSizeBytes, count: Math.ceil(size / o.partSizeBytes) };
}

/**
 * Fetches one object into `partial`: parallel ranged GETs for large objects (each part retried on
 * its own, resumed from its last written byte after a crash), one stream otherwise. Returns the
 * byte count once every byte is written and, when the store gave a digest, verified.
 */
export async function fetchObject(obj: RemoteObject, partial: string, ctx: FetchContext): Promise<number> {
  const { o } = ctx;
  if (obj.size !== undefined && obj.size > ctx.limit)
    throw new DownloadError(
      'SizeExceeded',
      `${redactUrl(obj.url)} is ${obj.size} bytes, more than modelSize allows (${ctx.limit} bytes)`,
    );
  const { partSize, count } = planParts(obj, o);
  const statePath = `${partial}.state.json`;
  const saved = await loadPartState(statePath, obj, partSize, count);
  const state = saved ?? {
    url: obj.url,
    etag: obj.etag,
    size: obj.size,
    partSize,
    done: await takeKept(obj, partial, partSize, count, ctx),
  };
  // This object's own resume state wins over pieces kept from elsewhere.
  if (saved && ctx.kept) await rm(ctx.kept.file, { force: true });
  let taken = saved ? 0 : state.done.reduce((a, b) => a + b, 0);
  let fh: FileHandle;
  try {
    fh = await open(partial, state.done.every((d) => d === 0) ? 'w' : 'r+').catch(() => {
      state.done.fill(0); // the state outlived its file: start over
      taken = 0;
      return open(partial, 'w');
    });
  } catch (err) {
    throw diskError(err, `creating ${partial}`);
  }
  const saver = partStateSaver(statePath, state);
  if (taken > 0) saver.touch(true); // kept pieces survive a crash before a write
  let worthless = false;
  try {
    ctx.onBytes(state.done.reduce((a, b) => a + b, 0));
    for (const [i, d] of state.done.entries()) if (d > 0) ctx.onWritten?.(i * state.partSize, d);
    const pending = state.done.map((_, i) => i).filter((i) => !partComplete(state, i));
    await runAll(pending, o.partParallelism, ctx.signal, (i, signal) =>
      withRetries(`${redactUrl(obj.url)}${count > 1 ? ` part ${i + 1}/${count}` : ''}`, o, signal, () =>
        fetchPart(obj, fh, state, i, { ...ctx, signal }, saver),
      ),
    );
  } catch (err) {
    // Bytes of another version (or that never completed): the next try starts from zero, never splices.
    worthless = err instanceof DownloadError && (err.code === 'IntegrityMismatch' || err.code === 'SizeExceeded');
    throw err;
  } finally {
    await saver.flush(); // a cancelled download keeps what it has for the next attempt
    await fh.close();
    if (worthless) {
      await rm(statePath, { force: true });
      await rm(partial, { force: true });
    }
  }
  const bytes = state.size ?? state.done[0]!;
  if (obj.digest) {
    try {
      await verifyDigest(partial, obj.digest, obj.url);
    } catch (err) {
      if (taken === 0) throw err;
      // Kept pieces of another version of the file (or of a lying copy): this object once more, whole, from the source.
      await rm(statePath, { force: true });
      await rm(partial, { force: true });
      ctx.onBytes(-bytes);
      ctx.onReset?.();
      const { kept: _kept, ...fresh } = ctx;
      return fetchObject(obj, partial, fresh);
    }
  }
  await rm(statePath, { force: true });
  if (taken > 0) ctx.onKept?.(taken); // reported once they are part of a complete, checked object
  return bytes;
}

/**
 * The parts' bytes done from `ctx.kept` (moved to `partial`), or none: kept pieces are taken only for an object of
 * their size with a digest to check the whole file against, and only as whole parts of this part plan (of a single
 * stream, the pieces from the first byte on without a gap). Kept pieces not taken are removed.
 */
async function takeKept(
  obj: RemoteObject,
  partial: string,
  partSize: number,
  count: number,
  ctx: FetchContext,
): Promise<number[]> {
  const done = new Array<number>(count).fill(0);
  const kept = ctx.kept;
  if (!kept) return done;
  const size = obj.size;
  const have = new Set(kept.pieces);
  if (size === kept.size && obj.digest && kept.pieceSize > 0) {
    const state: PartState = { url: obj.url, size, partSize, done };
    if (count === 1) {
      let k = 0;
      while (have.has(k)) k++;
      done[0] = Math.min(size, k * kept.pieceSize);
    } else if (partSize === kept.pieceSize)
      for (let i = 0; i < count; i++) if (have.has(i)) done[i] = partLength(state, i);
  }
  const taken = done.reduce((a, b) => a + b, 0);
  try {
    if (taken > 0) await rename(kept.file, partial);
    else await rm(kept.file, { force: true });
  } catch (err) {
    throw diskError(err, `taking the verified pieces in ${kept.file}`);
  }
  return done;
}

function partComplete(s: PartState, i: number): boolean {
  return s.size !== undefined && s.done[i] === partLength(s, i);
}

/** One attempt at one part: from its first missing byte to its end. */
async function fetchPart(
  obj: RemoteObject,
  fh: FileHandle,
  state: PartState,
  i: number,
  ctx: FetchContext,
  saver: StateSaver,
): Promise<void> {
  const { o } = ctx;
  const base = i * state.partSize;
  const len = partLength(state, i);
  let start = base + state.done[i]!;
  const whole = state.done.length === 1 && start === 0;
  const headers: Record<string, string> = {};
  if (!whole) headers.range = `bytes=${start}-${Number.isFinite(len) ? base + len - 1 : ''}`;
  if (obj.etag && !whole) headers['if-match'] = obj.etag;
  const attempt = new AbortController();
  let stall: NodeJS.Timeout | undefined;
  let flush = async (): Promise<void> => undefined;
  let res: Awaited<ReturnType<HttpClient['get']>> | undefined;
  try {
    res = await ctx.http.get(
      obj.url,
      await ctx.authorize(obj.url, headers),
      AbortSignal.any([ctx.signal, attempt.signal]),
    );
    if (res.statusCode === 416)
      throw new DownloadError(
        'IntegrityMismatch',
        `${redactUrl(obj.url)} has no byte ${start}: it is shorter than the ${obj.size ?? start} bytes expected`,
      );
    if (res.statusCode === 412)
      throw new DownloadError(
        'IntegrityMismatch',
        `${redactUrl(obj.url)} changed while it was being downloaded (ETag no longer ${obj.etag})`,
      );
    if (res.statusCode === 200 && !whole) {
      // The server ignored Range: only a single-stream download can use a full body.
      if (state.done.length > 1)
        throw new DownloadError(
          'BadResponse',
          `${redactUrl(obj.url)} ignores Range requests; set --parallel-parts 1 for this source`,
        );
      ctx.onBytes(-state.done[0]!);
      state.done[0] = 0;
      start = 0;
      ctx.onReset?.();
    } else if (res.statusCode === 206) {
      const { total } = contentRange(res, start);
      const etag = header(res.headers, 'etag');
      if (total !== undefined && state.size !== undefined && total !== state.size)
        throw changed(obj, `${total} bytes now, ${state.size} expected`);
      if (obj.etag !== undefined && etag !== undefined && bareEtag(etag) !== bareEtag(obj.etag))
        throw changed(obj, `ETag ${etag} now, ${obj.etag} expected`);
    } else if (res.statusCode !== 200) {
      throw statusError(res, obj.url, o.backoffMaxMs);
    }
    const end = Number.isFinite(len) ? base + len : undefined;
    stall = setTimeout(() => attempt.abort(new Error(`no bytes for ${o.stallTimeoutMs} ms`)), o.stallTimeoutMs);
    let at = start;
    const out = new BatchWriter(
      fh,
      start,
      (n) => {
        state.done[i]! += n; // counted once written (page cache): what a resume may skip
        ctx.onBytes(n);
        ctx.onWritten?.(at, n);
        at += n;
        saver.touch();
      },
      redactUrl(obj.url),
    );
    flush = () => out.drain();
    for await (const chunk of res.body) {
      stall.refresh();
      const after = out.position + out.pending + chunk.length;
      if (end !== undefined && after > end)
        throw new DownloadError(
          'IntegrityMismatch',
          `${redactUrl(obj.url)} sent more bytes than its ${obj.size === undefined ? 'range' : `size (${obj.size})`}`,
        );
      if (after > ctx.limit)
        throw new DownloadError(
          'SizeExceeded',
          `${redactUrl(obj.url)} sent more than modelSize allows (${ctx.limit} bytes)`,
        );
      await out.push(chunk);
    }
    await out.drain();
    const pos = out.position;
    if (end !== undefined && pos < end)
      throw new DownloadError('IntegrityMismatch', `${redactUrl(obj.url)} body ended at byte ${pos} of ${end}`, {
        retryable: true,
      });
    if (state.size === undefined) state.size = pos;
    saver.touch(true);
  } catch (err) {
    discard(res);
    const e = classify(err);
    // Bytes that arrived before a reset or stall are good: keep them, so the retry starts after them
    // (and no write is left running behind this attempt).
    await flush().catch(() => undefined);
    // A stall aborts only this attempt: it is network trouble, worth another try.
    if (e.code === 'Cancelled' || !attempt.signal.aborted || ctx.signal.aborted) throw e;
    throw new DownloadError('SourceUnavailable', `${redactUrl(obj.url)}: no bytes for ${o.stallTimeoutMs} ms`, {
      retryable: true,
    });
  } finally {
    if (stall) clearTimeout(stall);
  }
}

/** `W/"x"`, `"x"` and `x` are one ETag for comparing a part's answer with the listing. */
function bareEtag(e: string): string {
  return e.replace(/^W\//, '').replace(/^"|"$/g, '');
}

function changed(obj: RemoteObject, why: string): DownloadError {
  return new DownloadError(
    'IntegrityMismatch',
    `${redactUrl(obj.url)} changed while it was being downloaded (${why}); its parts are never spliced`,
  );
}

async function verifyDigest(file: string, digest: NonNullable<RemoteObject['digest']>, url: string): Promise<void> {
  const h = createHash(digest.algorithm);
  await pipeline(createReadStream(file, { highWaterMark: 1024 * 1024 }), h);
  const got = h.digest('hex');
  if (got !== digest.hex.toLowerCase()) {
    throw new DownloadError(
      'IntegrityMismatch',
      `${redactUrl(url)}: ${digest.algorithm} of the downloaded bytes is ${got}, the store says ${digest.hex}`,
    );
  }
}
