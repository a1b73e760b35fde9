import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { DOWNLOAD_DIR, MARKER_FILE } from '../disk/layout.ts';
import { redactUrl } from '../download/errors.ts';
import { listModel, listsObjects } from '../download/fetch.ts';
import { fileNameFromUrl } from '../download/sources/http.ts';
import type { DownloadOptions, SourceCredentials } from '../download/types.ts';

/** A file the source says a model folder holds, with what can be checked about it. */
interface ExpectedFile {
  /** '/'-separated, relative to the model folder. */
  path: string;
  size: number;
  /** A checksum the source publishes for the bytes. */
  digest?: { algorithm: 'md5' | 'sha256'; hex: string };
}

/** What the source says a folder must hold to be adopted, or why it cannot say. */
export type Expectation = { files: ExpectedFile[] } | { unverifiable: string };

/** The outcome of checking a folder: adopt it with these counts, or download again for this reason. */
export type Verdict = { verified: true; bytes: number; files: number } | { verified: false; reason: string };

/** How long the source may take to describe the model before the folder counts as not verifiable. */
const DESCRIBE_TIMEOUT_MS = 30_000;

/** What describing a store's model needs: its credentials and the download options (timeouts, retries). */
interface DescribeWith {
  credentials?: SourceCredentials;
  options?: Partial<DownloadOptions>;
}

/**
 * What a model folder downloaded by someone else (KServe's own agent: no `.modelcache.json`) must
 * hold to count as the source's model, per scheme:
 * - http(s): the one file the URL names (its last path segment, as the http source names it) of the
 *   HEAD's Content-Length bytes and nothing else; when the HEAD carries a checksum (Content-MD5,
 *   Repr-Digest or Digest sha-256/md5, x-goog-hash md5) it must match too. An archive that was
 *   extracted leaves other files: not verified, downloaded again.
 * - s3, gs, hf, given the model's credentials: every object the source lists (download/fetch.ts
 *   listModel: the listing only, no object's bytes), at its path and size, with the checksum the store
 *   gives (S3 single-part ETag = MD5, GCS md5Hash, HF LFS sha256). As for http(s), a URI naming one
 *   archive verifies only when the folder holds that file as it is.
 * - anything else (file://): downloaded again.
 */
export async function expectationFor(uri: string, signal: AbortSignal, source?: DescribeWith): Promise<Expectation> {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return { unverifiable: 'the source URI does not parse' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return listedExpectation(uri, signal, source);
  let res: Response;
  try {
    res = await fetch(uri, {
      method: 'HEAD',
      redirect: 'follow',
      signal: AbortSignal.any([signal, AbortSignal.timeout(DESCRIBE_TIMEOUT_MS)]),
    });
  } catch (err) {
    if (signal.aborted) throw err;
    return { unverifiable: `HEAD ${redactUrl(uri)} failed: ${(err as Error).message}` };
  }
  if (!res.ok) return { unverifiable: `HEAD ${redactUrl(uri)} answered ${res.status}` };
  const length = res.headers.get('content-length');
  if (length === null || !/^\d+$/.test(length))
    return { unverifiable: `HEAD ${redactUrl(uri)} gave no Content-Length` };
  const digest = headerDigest(res.headers);
  return { files: [{ path: fileNameFromUrl(uri), size: Number(length), ...(digest ? { digest } : {}) }] };
}

/** A store's listing as the files a folder must hold; a source that does not list cannot say. */
async function listedExpectation(uri: string, signal: AbortSignal, source?: DescribeWith): Promise<Expectation> {
  const scheme = new URL(uri).protocol;
  if (!(await listsObjects(uri)))
    return { unverifiable: `${scheme}// folders are not checked against their source by this daemon` };
  // Without the model's credentials a listing would go out unsigned (or to the public endpoint) and fail slowly.
  if (!source?.credentials)
    return { unverifiable: `${scheme}// folders are checked only with the model's credentials` };
  let listing: Awaited<ReturnType<typeof listModel>>;
  try {
    listing = await listModel({
      uri,
      signal: AbortSignal.any([signal, AbortSignal.timeout(DESCRIBE_TIMEOUT_MS)]),
      credentials: source.credentials,
      ...(source.options ? { options: source.options } : {}),
    });
  } catch (err) {
    if (signal.aborted) throw err;
    return { unverifiable: `listing ${redactUrl(uri)} failed: ${(err as Error).message}` };
  }
  if (!listing || listing.objects.length === 0) return { unverifiable: `${redactUrl(uri)} lists no objects` };
  const files: ExpectedFile[] = [];
  for (const o of listing.objects) {
    if (o.size === undefined) return { unverifiable: `the source does not give the size of ${o.path}` };
    files.push({ path: o.path, size: o.size, ...(o.digest ? { digest: o.digest } : {}) });
  }
  return { files };
}

/** A checksum of the whole body from response headers, if the server gives one we can check. */
function headerDigest(h: Headers): ExpectedFile['digest'] {
  const hex = (b64: string): string | undefined => {
    const buf = Buffer.from(b64.trim(), 'base64');
    return buf.length === 16 || buf.length === 32 ? buf.toString('hex') : undefined;
  };
  const pick = (algorithm: 'md5' | 'sha256', b64: string | undefined): ExpectedFile['digest'] => {
    const h = b64 === undefined ? undefined : hex(b64);
    return h && h.length === (algorithm === 'md5' ? 32 : 64) ? { algorithm, hex: h } : undefined;
  };
  // RFC 9530 Repr-Digest / RFC 3230 Digest: "sha-256=:b64:" or "sha-256=b64", comma separated.
  for (const name of ['repr-digest', 'digest']) {
    for (const part of (h.get(name) ?? '').split(',')) {
      const m = /^\s*(sha-256|md5)=:?([A-Za-z0-9+/=]+):?\s*$/i.exec(part);
      const d = m && pick(m[1]!.toLowerCase() === 'md5' ? 'md5' : 'sha256', m[2]);
      if (d) return d;
    }
  }
  const goog = /(?:^|,)\s*md5=([A-Za-z0-9+/=]+)/.exec(h.get('x-goog-hash') ?? '');
  return pick('md5', h.get('content-md5') ?? goog?.[1]);
}

async function hashFile(path: string, algorithm: 'md5' | 'sha256', signal: AbortSignal): Promise<string> {
  const hash = createHash(algorithm);
  await pipeline(createReadStream(path), hash, { signal });
  return hash.digest('hex');
}

/**
 * Checks a folder against what the source says it holds: exactly those regular files (no links, no
 * others), each of its size, each checksum given matching. Reads the folder only.
 */
export async function verifyFolder(dir: string, expected: Expectation, signal: AbortSignal): Promise<Verdict> {
  if ('unverifiable' in expected) return { verified: false, reason: expected.unverifiable };
  const want = new Map(expected.files.map((f) => [f.path, f]));
  const seen = new Set<string>();
  let bytes = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const abs = join(e.parentPath, e.name);
    const rel = relative(dir, abs).split(sep).join('/');
    if (e.isDirectory()) continue;
    if (rel === MARKER_FILE || rel.startsWith(`${MARKER_FILE}.`) || rel.split('/').includes(DOWNLOAD_DIR))
      return { verified: false, reason: `it holds ${rel}, a name the cache writes itself` };
    const f = want.get(rel);
    if (!f) return { verified: false, reason: `it holds ${rel}, which the source does not list` };
    const st = await lstat(abs);
    if (!st.isFile()) return { verified: false, reason: `${rel} is not a regular file` };
    if (st.size !== f.size) return { verified: false, reason: `${rel} is ${st.size} bytes, the source's is ${f.size}` };
    if (f.digest && (await hashFile(abs, f.digest.algorithm, signal)) !== f.digest.hex)
      return { verified: false, reason: `${rel} does not match the source's ${f.digest.algorithm}` };
    seen.add(rel);
    bytes += st.size;
  }
  const missing = [...want.keys()].find((p) => !seen.has(p));
  if (missing !== undefined) return { verified: false, reason: `${missing} is missing` };
  return { verified: true, bytes, files: seen.size };
}
