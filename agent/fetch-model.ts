import { mkdir, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { uriSha256 } from '../disk/inventory.ts';
import { safeJoin } from '../download/containment.ts';
import { downloadModel } from '../download/fetch.ts';
import type { HttpClient } from '../download/http-client.ts';
import { fetchObject } from '../download/ranged.ts';
import { DEFAULT_DOWNLOAD_OPTIONS } from '../download/types.ts';
import { subpathUnder } from '../serving/cache-uri.ts';
import type { AlternativeLocation, DownloadOptions, DownloadResult, SourceCredentials } from '../download/types.ts';
import { installFolder, STAGING, SUCCESS_PREFIX } from './folders.ts';
import type { DesiredModel } from './plan.ts';

/** An entry of the daemon's /v1/models. */
interface CachedModel {
  key: string;
  /** The source URI as the daemon shows it: without userinfo and query when it sends `uriSha256`. */
  uri: string;
  /** sha256 (hex) of the exact source URI; an older daemon sends none, and then `uri` is the exact one. */
  uriSha256?: string;
}

export interface FetchDeps {
  modelDir: string;
  /** The node daemon's artifact server; none: always from the source. */
  cacheUrl?: string;
  maxModelBytes: number;
  credentials: SourceCredentials;
  download?: Partial<DownloadOptions>;
  /** For the artifact server. */
  http: HttpClient;
}

/**
 * The cached model that serves a URI (KServe's subpath rule), and the path below it. A shown URI that
 * is not the exact one (credentials or query taken out) is never compared as text: two revisions of a
 * model differ only in their query. Such an entry serves the URI when its `uriSha256` is the hash of
 * the URI or of a folder above it (with or without a trailing '/').
 */
function cacheMatch(models: CachedModel[], uri: string): { model: CachedModel; subpath: string } | undefined {
  const above = foldersAbove(uri);
  for (const model of models) {
    const hash = model.uriSha256;
    const exact = hash === undefined || hash === uriSha256(model.uri);
    const subpath = exact ? subpathUnder(uri, model.uri) : above.get(hash);
    if (subpath !== undefined) return { model, subpath };
  }
  return undefined;
}

/** sha256 of every URI whose cache serves `uri` by the subpath rule (itself, the folders above it) → the subpath. */
function foldersAbove(uri: string): Map<string, string> {
  const m = uri.replace(/\/+$/, '');
  const out = new Map<string, string>([[uriSha256(uri), '']]);
  for (let i = m.length; i > 0; i = m.lastIndexOf('/', i - 1)) {
    const folder = m.slice(0, i);
    const subpath = m.slice(i + 1);
    for (const h of [uriSha256(folder), uriSha256(`${folder}/`)]) if (!out.has(h)) out.set(h, subpath);
  }
  return out;
}

async function getJson<T>(http: HttpClient, url: string, signal: AbortSignal): Promise<T> {
  const res = await http.get(url, {}, signal, 10_000);
  if (res.statusCode !== 200) {
    await res.body.text().catch(() => undefined);
    throw new Error(`${url} answered HTTP ${res.statusCode}`);
  }
  return (await res.body.json()) as T;
}

async function listCache(http: HttpClient, cacheUrl: string, signal: AbortSignal): Promise<CachedModel[]> {
  try {
    return await getJson<CachedModel[]>(http, `${cacheUrl}/v1/models`, signal);
  } catch {
    return []; // no daemon on this node (or not reachable): the source is the fallback
  }
}

/** Copies a cached model (or the part under `subpath`) from the artifact server into `dest`. */
async function copyFromCache(
  http: HttpClient,
  cacheUrl: string,
  key: string,
  subpath: string,
  dest: string,
  signal: AbortSignal,
): Promise<DownloadResult> {
  const base = `${cacheUrl}/v1/models/${encodeURIComponent(key)}/files`;
  const files = await getJson<Array<{ path: string; size: number }>>(http, base, signal);
  const wanted = files.filter((f) => !subpath || f.path === subpath || f.path.startsWith(`${subpath}/`));
  if (wanted.length === 0) throw new Error(`the node cache holds ${key} but nothing under '${subpath}'`);
  for (const f of wanted) {
    // Below the subpath; a subpath naming one file keeps that file's name.
    const rel = !subpath ? f.path : f.path === subpath ? basename(f.path) : f.path.slice(subpath.length + 1);
    const out = safeJoin(dest, rel);
    await mkdir(dirname(out), { recursive: true });
    // The same resumable, size-checked fetch as any source (the node cache is just a near one).
    await fetchObject({ url: `${base}/${f.path.split('/').map(encodeURIComponent).join('/')}`, size: f.size }, out, {
      o: DEFAULT_DOWNLOAD_OPTIONS,
      http,
      signal,
      authorize: (_u, h) => h,
      onBytes: () => undefined,
      limit: f.size,
    });
  }
  return { bytes: wanted.reduce((a, f) => a + f.size, 0), files: wanted.length };
}

/** The node daemon's cache as a nearer location of a source URI's bytes (no origin traffic when it holds them). */
function nodeCache(http: HttpClient, cacheUrl: string, onHit: () => void): AlternativeLocation {
  return {
    fetch: async (req) => {
      const hit = cacheMatch(await listCache(http, cacheUrl, req.signal), req.uri);
      if (!hit) return undefined;
      const result = await copyFromCache(http, cacheUrl, hit.model.key, hit.subpath, req.workDir, req.signal);
      onHit();
      return result;
    },
  };
}

/**
 * Puts a model's files in `<modelDir>/<name>/` with a `SUCCESS.<hash>` marker, atomically
 * (staging folder renamed into place): from the node cache when it holds the URI (no origin
 * traffic), else from the source itself. A folder of that name the agent did not make is never replaced.
 */
export async function fetchModel(
  m: DesiredModel,
  d: FetchDeps,
  signal: AbortSignal,
): Promise<{ from: 'cache' | 'source' }> {
  const staging = join(d.modelDir, STAGING, `${m.name}-${m.hash.slice(0, 12)}`);
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  try {
    let from: 'cache' | 'source' = 'source';
    await downloadModel({
      uri: m.spec.storageUri,
      workDir: staging,
      maxBytes: d.maxModelBytes,
      signal,
      credentials: d.credentials,
      ...(d.download ? { options: d.download } : {}),
      alternatives: d.cacheUrl ? [nodeCache(d.http, d.cacheUrl, () => (from = 'cache'))] : [],
    });
    // Created exclusively: a marker-named entry from the model's content is never taken for the agent's own.
    await writeFile(join(staging, `${SUCCESS_PREFIX}${m.hash}`), '', { flag: 'wx' });
    await installFolder(d.modelDir, m.name, staging);
    return { from };
  } catch (err) {
    // A failed attempt keeps nothing: its half-fetched files would hold disk space until the next attempt.
    await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
}
