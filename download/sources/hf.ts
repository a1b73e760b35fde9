import { DownloadError } from '../errors.ts';
import type { HttpClient } from '../http-client.ts';
import { downloadObjects, type ListedObject, type ObjectListing } from '../objects.ts';
import { getText, type Authorize } from '../request.ts';
import type { DownloadOptions, DownloadRequest, DownloadResult, SourceCredentials } from '../types.ts';

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
  return m ? new URL(m[1]!, base).toString() : undefined;
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
  const info = JSON.parse(
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
  ) as { sha?: string };
  if (!info.sha)
    throw new DownloadError('BadResponse', `hf://${repo}: the hub did not name the commit of revision ${revision}`);
  const files: TreeEntry[] = [];
  let url: string | undefined = `${endpoint}/api/models/${repo}/tree/${info.sha}?recursive=true&expand=false`;
  while (url) {
    const page = await getText({ url, http, authorize, o, signal, errorDetail: hfErrorDetail });
    files.push(...(JSON.parse(page.body) as TreeEntry[]).filter((e) => e.type === 'file'));
    url = nextLink(page.headers['link'], endpoint);
  }
  const objects = files.map((f): ListedObject => ({
    path: f.path,
    url: `${endpoint}/${repo}/resolve/${info.sha}/${encodePath(f.path)}`,
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

/** Every file of a Hugging Face model repository at a revision, through the hub's resolve endpoint. */
export async function downloadHf(req: DownloadRequest, o: DownloadOptions, http: HttpClient): Promise<DownloadResult> {
  const { repo, revision } = parseHfUri(req.uri);
  const c = req.credentials ?? {};
  const endpoint = (c.HF_ENDPOINT || 'https://huggingface.co').replace(/\/$/, '');
  const authorize = hfAuthorize(endpoint, c);
  return downloadObjects(
    req,
    o,
    { list: (signal) => listHf(endpoint, repo, revision, authorize, o, http, signal), authorize },
    http,
  );
}
