import { createHash } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { DOWNLOAD_DIR } from '../disk/layout.ts';
import { extractOrPlace, placedResult, sizeBudget } from './archive.ts';
import { entryParts, reservedComponent, safeJoin } from './containment.ts';
import { DownloadError } from './errors.ts';
import { CONTENT_FAULTS, fsFault } from './http-status.ts';
import { runAll } from './parallel.ts';
import type { HttpClient } from './http-client.ts';
import { fetchObject, type RemoteObject } from './ranged.ts';
import type { Authorize } from './request.ts';
import {
  sizeLimit,
  type DownloadOptions,
  type DownloadRequest,
  type DownloadResult,
  type KeptPieces,
} from './types.ts';

/** An object and where it goes in the model folder ('/'-separated, relative). */
export interface ListedObject extends RemoteObject {
  path: string;
}

export interface ObjectListing {
  objects: ListedObject[];
  /** The URI named one object (not a folder): archives are extracted, as for an HTTP URL. */
  single: boolean;
}

/** What a store source provides: its listing and how to authorize a request. */
export interface ObjectSource {
  list(signal: AbortSignal): Promise<ObjectListing>;
  authorize: Authorize;
}

/**
 * What a store URI names, from a listing by its key prefix: the one object whose key equals the
 * prefix (when nothing sits below `prefix/`), or every object below `prefix/` at its relative
 * path. `models/llama` never picks up `models/llama-2/…`; folder markers (keys ending in '/') are skipped.
 */
export function underPrefix<T>(
  all: readonly T[],
  keyOf: (x: T) => string,
  prefix: string,
  toObject: (x: T, path: string) => ListedObject,
): ObjectListing {
  const dir = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
  const under = all.filter((x) => keyOf(x).startsWith(dir) && !keyOf(x).endsWith('/'));
  const exact = dir !== prefix ? all.find((x) => keyOf(x) === prefix) : undefined;
  if (exact && under.length === 0) return { single: true, objects: [toObject(exact, prefix.split('/').pop()!)] };
  return { single: false, objects: under.map((x) => toObject(x, keyOf(x).slice(dir.length))) };
}

/** Most pages one listing may have: a store that pages forever must fail, not grow memory until the OOM killer. */
export const MAX_LIST_PAGES = 10_000;
/** Most objects one listing may name. */
export const MAX_LIST_OBJECTS = 1_000_000;

/** Counts a paginated listing's pages and objects, and refuses a page token seen before (a loop). */
export interface ListingGuard {
  /** One page arrived with `count` entries: BadResponse past the caps. */
  page(count: number): void;
  /** The token (or next URL) the page names: BadResponse when it was seen before. */
  next(token: string): void;
}

/** A ListingGuard for the listing of `what` (a URI, for messages). */
export function listingGuard(what: string, caps = { pages: MAX_LIST_PAGES, objects: MAX_LIST_OBJECTS }): ListingGuard {
  const seen = new Set<string>(); // hashes: a hostile store's tokens may be huge
  let pages = 0;
  let objects = 0;
  return {
    page(count) {
      pages++;
      objects += count;
      if (pages > caps.pages)
        throw new DownloadError('BadResponse', `${what}: the listing has more than ${caps.pages} pages; it never ends`);
      if (objects > caps.objects)
        throw new DownloadError(
          'BadResponse',
          `${what}: the listing names more than ${caps.objects} objects, more than a model may hold`,
        );
    },
    next(token) {
      const h = createHash('sha256').update(token).digest('hex');
      if (seen.has(h))
        throw new DownloadError(
          'BadResponse',
          `${what}: the listing repeats a page it already gave (page ${pages + 1} points back to an earlier one); the store's pagination loops`,
        );
      seen.add(h);
    },
  };
}

/**
 * Relative paths checked for escapes, for names the cache reserves ('.modelcache.json…', '.download',
 * '.staging', '.trash' at any depth) and for a file that is also a folder ('a' and 'a/b').
 */
function checkPaths(objects: ListedObject[], uri: string): void {
  const files = new Set<string>();
  for (const obj of objects) {
    let parts: string[];
    try {
      safeJoin('/', obj.path);
      parts = entryParts(obj.path);
    } catch {
      throw new DownloadError(
        'UnsafeObjectName',
        `${uri}: object '${obj.path.slice(0, 200)}' would be written outside the model folder; rename it in the store`,
      );
    }
    const reserved = reservedComponent(parts);
    if (reserved)
      throw new DownloadError(
        'UnsafeObjectName',
        `${uri}: object '${obj.path.slice(0, 200)}' uses '${reserved}', a name the cache keeps for its own state; rename it in the store`,
      );
    if (files.has(obj.path))
      throw new DownloadError('UnsafeObjectName', `${uri}: object '${obj.path}' is listed twice`);
    files.add(obj.path);
  }
  for (const p of files) {
    for (let d = dirname(p); d !== '.' && d !== '/'; d = dirname(d)) {
      if (files.has(d))
        throw new DownloadError(
          'UnsafeObjectName',
          `${uri}: '${d}' is both an object and a folder of '${p}'; a model folder cannot hold both`,
        );
    }
  }
}

/** Removes files an earlier attempt left that the listing no longer has (or has at another size). */
async function pruneStale(workDir: string, wanted: Map<string, ListedObject>): Promise<Set<string>> {
  const kept = new Set<string>();
  for (const e of await readdir(workDir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    const abs = join(e.parentPath, e.name);
    const rel = relative(workDir, abs).split(sep).join('/');
    if (rel === DOWNLOAD_DIR || rel.startsWith(`${DOWNLOAD_DIR}/`) || !e.isFile()) continue;
    const obj = wanted.get(rel);
    const size = await stat(abs).then(
      (s) => s.size,
      () => -1,
    );
    if (obj && obj.size !== undefined && obj.size === size) kept.add(rel);
    else await rm(abs, { force: true });
  }
  return kept;
}

/**
 * Downloads what a store lists for req.uri into req.workDir: every object to its relative path
 * (a few at once), each through `fetchObject` (parallel ranges for big ones, resumable), or,
 * when the URI named a single object, that object with archives extracted.
 */
export async function downloadObjects(
  req: DownloadRequest,
  o: DownloadOptions,
  source: ObjectSource,
  http: HttpClient,
): Promise<DownloadResult> {
  const limit = sizeLimit(req.maxBytes, o);
  const { objects, single } = await source.list(req.signal);
  if (objects.length === 0)
    throw new DownloadError('SourceEmpty', `${req.uri} holds no objects: check the bucket, prefix or revision`);
  checkPaths(objects, req.uri);
  const listed = objects.reduce((a, x) => a + (x.size ?? 0), 0);
  if (listed > limit)
    throw new DownloadError(
      'SizeExceeded',
      `${req.uri} holds ${listed} bytes in ${objects.length} objects, more than modelSize allows (${limit} bytes)`,
    );
  const bytesTotal = objects.every((x) => x.size !== undefined) ? listed : undefined;

  const dl = join(req.workDir, DOWNLOAD_DIR);
  await mkdir(dl, { recursive: true });
  const wanted = new Map(objects.map((x) => [x.path, x]));
  const kept = single ? new Set<string>() : await pruneStale(req.workDir, wanted);

  let done = 0;
  let lastProgress = 0;
  const onBytes = (n: number): void => {
    done += n;
    const now = Date.now();
    if (now - lastProgress < 100) return;
    lastProgress = now;
    req.onProgress?.({ bytesDone: done, ...(bytesTotal !== undefined ? { bytesTotal } : {}) });
  };
  for (const p of kept) onBytes(wanted.get(p)!.size!);
  const partialOf = (x: ListedObject): string =>
    join(dl, createHash('sha256').update(x.path).digest('hex').slice(0, 32));
  const ctx = { o, http, authorize: source.authorize, onBytes, limit };
  // Files placed as listed, every size known: the observer may serve their bytes as they land.
  const observer = !single && bytesTotal !== undefined ? req.observer : undefined;
  observer?.listed(objects.map((x) => ({ path: x.path, size: x.size!, partial: partialOf(x) })));
  for (const p of kept) observer?.written(p, 0, wanted.get(p)!.size!);

  if (single) {
    await keptPiecesFor([], req.kept); // a single object may be an archive, whose files are not its pieces
    const obj = objects[0]!;
    const partial = partialOf(obj);
    const bytes = await fetchObject(obj, partial, { ...ctx, signal: req.signal });
    try {
      const placed = await extractOrPlace(partial, req.workDir, obj.path, sizeBudget(limit), {
        signal: req.signal,
      });
      await rm(dl, { recursive: true, force: true });
      return placedResult(bytes, placed);
    } catch (err) {
      const e = fsFault(err, `storing '${obj.path.slice(0, 200)}'`, 'UnsafeObjectName');
      // An object that cannot be extracted is fetched again next time, never extracted again blindly.
      if (e instanceof DownloadError && CONTENT_FAULTS.has(e.code)) await rm(dl, { recursive: true, force: true });
      throw e;
    }
  }

  const toFetch = objects.filter((x) => !kept.has(x.path));
  const pieces = await keptPiecesFor(toFetch, req.kept);
  let keptBytes = 0;
  await runAll(toFetch, o.fileConcurrency, req.signal, async (obj, signal) => {
    const partial = partialOf(obj);
    const mine = pieces.get(obj.path);
    const bytes = await fetchObject(obj, partial, {
      ...ctx,
      signal,
      limit: limit - (listed - (obj.size ?? 0)),
      ...(mine ? { kept: mine, onKept: (n: number) => (keptBytes += n) } : {}),
      ...(observer
        ? { onWritten: (at, n) => observer.written(obj.path, at, n), onReset: () => observer.reset(obj.path) }
        : {}),
    });
    if (done > limit)
      throw new DownloadError('SizeExceeded', `${req.uri} sent more than modelSize allows (${limit} bytes)`);
    const dest = join(req.workDir, ...obj.path.split('/'));
    try {
      await mkdir(dirname(dest), { recursive: true });
      await rename(partial, dest);
    } catch (err) {
      throw fsFault(err, `storing '${obj.path.slice(0, 200)}'`, 'UnsafeObjectName');
    }
    obj.size ??= bytes;
  });
  await rm(dl, { recursive: true, force: true });
  req.onProgress?.({ bytesDone: done, bytesTotal: done });
  return {
    bytes: objects.reduce((a, x) => a + (x.size ?? 0), 0),
    files: objects.length,
    ...(keptBytes > 0 ? { keptBytes } : {}),
  };
}

/**
 * The kept pieces (DownloadRequest.kept) of each object still to fetch, by path; those of no such object are removed
 * at once, so their bytes never sit beside a second copy of the file.
 */
async function keptPiecesFor(
  toFetch: readonly ListedObject[],
  kept: readonly KeptPieces[] | undefined,
): Promise<Map<string, KeptPieces>> {
  const paths = new Set(toFetch.map((x) => x.path));
  const out = new Map<string, KeptPieces>();
  for (const k of kept ?? []) {
    if (paths.has(k.path) && !out.has(k.path)) out.set(k.path, k);
    else await rm(k.file, { force: true });
  }
  return out;
}
