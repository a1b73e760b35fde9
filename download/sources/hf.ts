import { DownloadError } from '../errors.ts';
import type { HttpClient } from '../http-client.ts';
import { downloadObjects, listingGuard, type ListedObject, type ObjectListing, type ObjectSource } from '../objects.ts';
import type { ListRequest, SourceModule } from '../registry.ts';
import { getText, parseJson, type Authorize } from '../request.ts';
import type { DownloadOptions, SourceCredentials } from '../types.ts';

/** `hf://org/model[:revision]` → repository and revision ('main' when none is given). */
export function parseHfUri(uri: string): { repo: string; revision: string } {
  const m = /^hf:\/\/([\w.-]+\/[\w.-]+)(?::([^\s]+))?\/?$/.exec(uri);
  if (!m)
    throw new DownloadError(
      'InvalidUri',
      `'${uri}' is not a Hugging Face URI: use hf://org/model or hf://org/model:revision`,
    );
  return { repo: m[1]!, revision: m[2] ?? 'main' };
}

interface TreeEntry {
  type: 'file' | 'directory';
  path: string;
  size: number;
  lfs?: { oid: string; size: number };
}

/** Files are encoded segment by segment; a revision like refs/pr/1 is one segment. */
const encodePath = (p: string): string => p.split('/').map(encodeURIComponent).join('/');

/** The next page of a paginated listing, from its Link header. */
function nextLink(link: string | string[] | undefined, base: string): string | undefined {
  const m = /<([^>]+)>;\s*rel="next"/.exec(Array.isArray(link) ? link.join(',') : (link ?? ''));
  if (!m) return undefined;
  try {
    return new URL(m[1]!, base).toString();
  } catch {
    throw new DownloadError('BadResponse', `the hub's Link header names an invalid next page: ${m[1]!.slice(0, 200)}`);
  }
}

function isTreeEntry(e: unknown): e is TreeEntry {
  const x = e as Partial<TreeEntry> | null;
  if (typeof x !== 'object' || x === null || typeof x.path !== 'string') return false;
  if (x.type !== 'file') return true; // folders (and kinds the hub may add) are skipped
  const size = (n: unknown): boolean => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
  return size(x.size) && (x.lfs === undefined || (typeof x.lfs.oid === 'string' && size(x.lfs.size)));
}

function hfErrorDetail(body: string): string | undefined {
  try {
    return (JSON.parse(body) as { error?: string }).error;
  } catch {
    return undefined;
  }
}

async function listHf(
  endpoint: string,
  repo: string,
  revision: string,
  authorize: Authorize,
  o: DownloadOptions,
  http: HttpClient,
  signal: AbortSignal,
): Promise<ObjectListing> {
  // Pin the revision to its commit first: every file (and every part) then comes from one commit.
  const info = parseJson(
    (
      await getText({
        url: `${endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}`,
        http,
        authorize,
        o,
        signal,
        errorDetail: hfErrorDetail,
      })
    ).body,
    `hf://${repo}: the revision info`,
  ) as { sha?: unknown } | null;
  if (typeof info?.sha !== 'string' || !/^[0-9a-f]{40,64}$/.test(info.sha))
    throw new DownloadError('BadResponse', `hf://${repo}: the hub did not name the commit of revision ${revision}`);
  const sha = info.sha;
  const files: TreeEntry[] = [];
  let url: string | undefined = `${endpoint}/api/models/${repo}/tree/${sha}?recursive=true&expand=false`;
  const guard = listingGuard(`hf://${repo}`);
  guard.next(url);
  while (url) {
    const page = await getText({ url, http, authorize, o, signal, errorDetail: hfErrorDetail });
    const entries = parseJson(page.body, `hf://${repo}: a tree page`);
    if (!Array.isArray(entries) || !entries.every(isTreeEntry))
      throw new DownloadError('BadResponse', `hf://${repo}: a tree page is not a list of files and folders`);
    guard.page(entries.length);
    files.push(...entries.filter((e) => e.type === 'file'));
    url = nextLink(page.headers['link'], endpoint);
    if (url) guard.next(url);
  }
  const objects = files.map((f): ListedObject => ({
    path: f.path,
    url: `${endpoint}/${repo}/resolve/${sha}/${encodePath(f.path)}`,
    size: f.lfs?.size ?? f.size,
    // LFS files carry their sha256: checked before the file is accepted.
    ...(f.lfs ? { digest: { algorithm: 'sha256' as const, hex: f.lfs.oid } } : {}),
  }));
  return { single: false, objects };
}

/** The token only goes to the hub itself; redirects to its CDN carry their own signature. */
function hfAuthorize(endpoint: string, c: SourceCredentials): Authorize {
  const token = c.HF_TOKEN || c.HUGGING_FACE_HUB_TOKEN;
  const origin = new URL(endpoint).origin;
  return (url, headers) =>
    token && new URL(url).origin === origin ? { ...headers, authorization: `Bearer ${token}` } : headers;
}

/** The repository and revision a URI names, with the hub's address and its token. */
function openHf(req: ListRequest, o: DownloadOptions, http: HttpClient): ObjectSource {
  const { repo, revision } = parseHfUri(req.uri);
  const c = req.credentials ?? {};
  const endpoint = (c.HF_ENDPOINT || 'https://huggingface.co').replace(/\/$/, '');
  const authorize = hfAuthorize(endpoint, c);
  return { list: (signal) => listHf(endpoint, repo, revision, authorize, o, http, signal), authorize };
}

/** Every file of a Hugging Face model repository at a revision, through the hub's resolve endpoint. */
export const hfSource: SourceModule = {
  download: async (req, o, http) => downloadObjects(req, o, openHf(req, o, http), http),
  list: async (req, o, http) => openHf(req, o, http).list(req.signal),
};
