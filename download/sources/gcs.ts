import { DownloadError } from '../errors.ts';
import { discard, type HttpClient } from '../http-client.ts';
import {
  downloadObjects,
  listingGuard,
  underPrefix,
  type ListedObject,
  type ObjectListing,
  type ObjectSource,
} from '../objects.ts';
import type { ListRequest, SourceModule } from '../registry.ts';
import { getText, parseJson, type Authorize } from '../request.ts';
import type { DownloadOptions, SourceCredentials } from '../types.ts';

/** `gs://bucket/prefix` → bucket and object prefix ('' for the whole bucket). */
export function parseGsUri(uri: string): { bucket: string; prefix: string } {
  const m = /^gs:\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (!m || !/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(m[1]!)) {
    throw new DownloadError(
      'InvalidUri',
      `'${uri}' is not a GCS URI: use gs://bucket/prefix (bucket names are lower-case letters, digits, '.', '_' and '-')`,
    );
  }
  return { bucket: m[1]!, prefix: m[2]! };
}

/** The JSON API base: STORAGE_EMULATOR_HOST (as the Google client libraries read it) or Google's. */
function apiBase(c: SourceCredentials): { base: string; emulator: boolean } {
  const emu = c.STORAGE_EMULATOR_HOST;
  if (emu) return { base: (/^https?:\/\//.test(emu) ? emu : `http://${emu}`).replace(/\/$/, ''), emulator: true };
  return { base: 'https://storage.googleapis.com', emulator: false };
}

/** Where KServe's GCS Secrets and Google's tools put a service-account key. */
const SA_KEY_NAMES = ['gcloud-application-credentials.json', 'GOOGLE_APPLICATION_CREDENTIALS'];

/**
 * Bearer tokens: none for an emulator; GOOGLE_OAUTH_ACCESS_TOKEN when set; otherwise the GCE/GKE
 * metadata server's token for the node's (or workload identity's) service account, refreshed
 * before it expires; anonymous (public buckets) when there is no metadata server.
 */
function gcsAuthorize(c: SourceCredentials, emulator: boolean, o: DownloadOptions, http: HttpClient): Authorize {
  if (emulator) return (_url, headers) => headers;
  const fixed = c.GOOGLE_OAUTH_ACCESS_TOKEN;
  if (fixed) return (_url, headers) => ({ ...headers, authorization: `Bearer ${fixed}` });
  // A key was given on purpose (KServe's GCS Secret): never fall back to another identity silently.
  if (SA_KEY_NAMES.some((k) => c[k])) {
    throw new DownloadError(
      'AccessDenied',
      `service-account JSON keys (${SA_KEY_NAMES.filter((k) => c[k]).join(', ')}) are not read yet: give GOOGLE_OAUTH_ACCESS_TOKEN, or use workload identity (the node's metadata server) and remove the key`,
    );
  }
  const host = c.GCE_METADATA_HOST || 'metadata.google.internal';
  let token: { value?: string; expires: number } | undefined;
  return async (_url, headers) => {
    if (!token || Date.now() > token.expires - 60_000) {
      try {
        const res = await http.get(
          `http://${host}/computeMetadata/v1/instance/service-accounts/default/token`,
          { 'metadata-flavor': 'Google' },
          AbortSignal.timeout(Math.min(o.connectTimeoutMs, 2000)),
        );
        if (res.statusCode !== 200) {
          discard(res);
          throw new Error(`metadata server answered ${res.statusCode}`);
        }
        const r = (await res.body.json()) as { access_token: string; expires_in: number };
        token = { value: r.access_token, expires: Date.now() + r.expires_in * 1000 };
      } catch {
        token = { expires: Date.now() + 5 * 60_000 }; // no metadata server: anonymous, asked again later
      }
    }
    return token.value ? { ...headers, authorization: `Bearer ${token.value}` } : headers;
  };
}

interface GcsObject {
  name: string;
  size: string;
  md5Hash?: string;
  generation: string;
}

function gcsErrorDetail(body: string): string | undefined {
  try {
    return (JSON.parse(body) as { error?: { message?: string } }).error?.message;
  } catch {
    return undefined;
  }
}

async function listGcs(
  base: string,
  bucket: string,
  prefix: string,
  authorize: Authorize,
  o: DownloadOptions,
  http: HttpClient,
  signal: AbortSignal,
): Promise<ObjectListing> {
  const all: GcsObject[] = [];
  let pageToken: string | undefined;
  const guard = listingGuard(`gs://${bucket}/${prefix}`);
  do {
    const q = new URLSearchParams({
      prefix,
      fields: 'items(name,size,md5Hash,generation),nextPageToken',
      ...(pageToken ? { pageToken } : {}),
    });
    const url = `${base}/storage/v1/b/${encodeURIComponent(bucket)}/o?${q}`;
    const page = parseJson(
      (await getText({ url, http, authorize, o, signal, errorDetail: gcsErrorDetail })).body,
      `gs://${bucket}: a listing page`,
    ) as { items?: GcsObject[]; nextPageToken?: string } | null;
    if (typeof page !== 'object' || page === null || (page.items !== undefined && !Array.isArray(page.items)))
      throw new DownloadError('BadResponse', `gs://${bucket}: a listing page is not an object list`);
    guard.page(page.items?.length ?? 0);
    all.push(...(page.items ?? []));
    pageToken = typeof page.nextPageToken === 'string' && page.nextPageToken !== '' ? page.nextPageToken : undefined;
    if (pageToken) guard.next(pageToken);
  } while (pageToken);

  // The generation pins the version: every ranged part reads the same bytes, or fails with 404.
  const toObject = (x: GcsObject, path: string): ListedObject => ({
    path,
    url: `${base}/storage/v1/b/${encodeURIComponent(bucket)}/o/${encodeURIComponent(x.name)}?alt=media&generation=${x.generation}`,
    size: Number(x.size),
    ...(x.md5Hash
      ? { digest: { algorithm: 'md5' as const, hex: Buffer.from(x.md5Hash, 'base64').toString('hex') } }
      : {}),
  });
  return underPrefix(all, (x) => x.name, prefix, toObject);
}

/** The bucket and prefix a URI names, with the API base and its tokens. */
function openGcs(req: ListRequest, o: DownloadOptions, http: HttpClient): ObjectSource {
  const { bucket, prefix } = parseGsUri(req.uri);
  const c = req.credentials ?? {};
  const { base, emulator } = apiBase(c);
  const authorize = gcsAuthorize(c, emulator, o, http);
  return { list: (signal) => listGcs(base, bucket, prefix, authorize, o, http, signal), authorize };
}

/** Every object under a gs:// prefix (or the one object it names), through the JSON API. */
export const gcsSource: SourceModule = {
  download: async (req, o, http) => downloadObjects(req, o, openGcs(req, o, http), http),
  list: async (req, o, http) => openGcs(req, o, http).list(req.signal),
};
