import aws4 from 'aws4';
import { XMLParser } from 'fast-xml-parser';
import { DownloadError } from '../errors.ts';
import type { HttpClient } from '../http-client.ts';
import {
  downloadObjects,
  listingGuard,
  underPrefix,
  type ListedObject,
  type ObjectListing,
  type ObjectSource,
} from '../objects.ts';
import type { ListRequest, SourceModule } from '../registry.ts';
import { getText, type Authorize } from '../request.ts';
import type { DownloadOptions, SourceCredentials } from '../types.ts';

/** Where and how to reach a bucket, from the credentials map (the AWS CLI's variable names). */
export interface S3Config {
  endpoint: URL;
  region: string;
  pathStyle: boolean;
  keys?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

export function s3Config(c: SourceCredentials, bucket: string): S3Config {
  const region = c.AWS_REGION || c.AWS_DEFAULT_REGION || 'us-east-1';
  // KServe's S3_ENDPOINT is host[:port] with S3_USE_HTTPS; AWS_ENDPOINT_URL is a full URL.
  const raw =
    c.AWS_ENDPOINT_URL_S3 ||
    c.AWS_ENDPOINT_URL ||
    (c.S3_ENDPOINT &&
      (/^https?:\/\//.test(c.S3_ENDPOINT)
        ? c.S3_ENDPOINT
        : `${c.S3_USE_HTTPS === '0' ? 'http' : 'https'}://${c.S3_ENDPOINT}`));
  let endpoint: URL;
  try {
    endpoint = new URL(raw || `https://s3.${region}.amazonaws.com`);
  } catch {
    throw new DownloadError(
      'InvalidUri',
      `S3 endpoint '${raw}' (AWS_ENDPOINT_URL / S3_ENDPOINT) is not a URL; use e.g. http://minio.storage:9000`,
    );
  }
  const style = (c.S3_ADDRESSING_STYLE || '').toLowerCase();
  const pathStyle =
    style === 'path' ||
    c.AWS_S3_FORCE_PATH_STYLE === 'true' ||
    (style !== 'virtual' && (Boolean(raw) || bucket.includes('.')));
  const id = c.AWS_ACCESS_KEY_ID;
  const secret = c.AWS_SECRET_ACCESS_KEY;
  if (Boolean(id) !== Boolean(secret)) {
    throw new DownloadError(
      'AccessDenied',
      `S3 credentials need both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; only ${id ? 'AWS_ACCESS_KEY_ID' : 'AWS_SECRET_ACCESS_KEY'} is set`,
    );
  }
  const keys =
    id && secret
      ? {
          accessKeyId: id,
          secretAccessKey: secret,
          ...(c.AWS_SESSION_TOKEN ? { sessionToken: c.AWS_SESSION_TOKEN } : {}),
        }
      : undefined;
  return { endpoint, region, pathStyle, ...(keys ? { keys } : {}) };
}

/** `s3://bucket/key/prefix` → bucket and key ('' for the whole bucket). */
export function parseS3Uri(uri: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (!m || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(m[1]!)) {
    throw new DownloadError(
      'InvalidUri',
      `'${uri}' is not an S3 URI: use s3://bucket/prefix (bucket names are 3-63 lower-case letters, digits, '.' and '-')`,
    );
  }
  return { bucket: m[1]!, key: m[2]! };
}

/** Each '/'-separated segment percent-encoded as SigV4 wants (RFC 3986 unreserved kept). */
function encodeKey(key: string): string {
  return key
    .split('/')
    .map((s) => encodeURIComponent(s).replace(/[!'()*]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`))
    .join('/');
}

/** The bucket's address: https://host/bucket (path style) or https://bucket.host/ (virtual host). */
function bucketUrl(cfg: S3Config, bucket: string): string {
  if (!cfg.pathStyle) return `${cfg.endpoint.protocol}//${bucket}.${cfg.endpoint.host}/`;
  return `${cfg.endpoint.origin}${cfg.endpoint.pathname.replace(/\/$/, '')}/${bucket}`;
}

export function objectUrl(cfg: S3Config, bucket: string, key: string): string {
  const b = bucketUrl(cfg, bucket);
  return `${b}${b.endsWith('/') ? '' : '/'}${encodeKey(key)}`;
}

/** SigV4 over every request (Range and If-Match included), or unsigned when no keys are set. */
export function s3Authorize(cfg: S3Config): Authorize {
  return (url, headers) => {
    if (!cfg.keys) return headers;
    const u = new URL(url);
    const signed = aws4.sign(
      {
        host: u.host,
        path: u.pathname + u.search,
        service: 's3',
        region: cfg.region,
        method: 'GET',
        headers: { ...headers },
      },
      cfg.keys,
    );
    return Object.fromEntries(Object.entries(signed.headers ?? {}).map(([k, v]) => [k, String(v)]));
  };
}

const xml = new XMLParser({ parseTagValue: false, isArray: (name) => name === 'Contents' });

interface ListPage {
  ListBucketResult?: {
    Contents?: Array<{ Key: string; Size: string; ETag?: string }>;
    IsTruncated?: string;
    NextContinuationToken?: string;
  };
}

/** S3's own error code from an error body (NoSuchBucket, SignatureDoesNotMatch…). */
function s3ErrorCode(body: string): string | undefined {
  try {
    return (xml.parse(body) as { Error?: { Code?: string } }).Error?.Code;
  } catch {
    return undefined;
  }
}

async function listS3(
  cfg: S3Config,
  bucket: string,
  key: string,
  authorize: Authorize,
  o: DownloadOptions,
  http: HttpClient,
  signal: AbortSignal,
): Promise<ObjectListing> {
  const all: Array<{ key: string; size: number; etag?: string }> = [];
  let token: string | undefined;
  const guard = listingGuard(`s3://${bucket}/${key}`);
  do {
    const q = new URLSearchParams({ 'list-type': '2', prefix: key, ...(token ? { 'continuation-token': token } : {}) });
    const url = `${bucketUrl(cfg, bucket)}?${q}`;
    const { body } = await getText({ url, http, authorize, o, signal, errorDetail: s3ErrorCode });
    const page = (xml.parse(body) as ListPage).ListBucketResult;
    if (!page) throw new DownloadError('BadResponse', `s3://${bucket}: the listing is not a ListBucketResult`);
    for (const c of page.Contents ?? []) {
      const etag = c.ETag?.trim();
      all.push({ key: c.Key, size: Number(c.Size), ...(etag ? { etag } : {}) });
    }
    guard.page(page.Contents?.length ?? 0);
    token = page.IsTruncated === 'true' ? page.NextContinuationToken : undefined;
    if (page.IsTruncated === 'true' && !token)
      throw new DownloadError('BadResponse', `s3://${bucket}: a truncated listing page without NextContinuationToken`);
    if (token) guard.next(token);
  } while (token);

  const toObject = (x: { key: string; size: number; etag?: string }, path: string): ListedObject => ({
    path,
    url: objectUrl(cfg, bucket, x.key),
    size: x.size,
    ...(x.etag ? { etag: x.etag } : {}),
  });
  return underPrefix(all, (x) => x.key, key, toObject);
}

/** The bucket and prefix a URI names, with its endpoint, keys and signer. */
function openS3(req: ListRequest, o: DownloadOptions, http: HttpClient): ObjectSource {
  const { bucket, key } = parseS3Uri(req.uri);
  const cfg = s3Config(req.credentials ?? {}, bucket);
  const authorize = s3Authorize(cfg);
  return { list: (signal) => listS3(cfg, bucket, key, authorize, o, http, signal), authorize };
}

/**
 * A single-part upload's ETag is the MD5 of its bytes; multipart ones ("…-N") name none, SSE-KMS ones
 * another (the folder then does not verify). The quotes may come as XML character references.
 */
function etagDigest(obj: ListedObject): ListedObject {
  const m = /^(?:"|&#34;|&quot;)?([0-9a-f]{32})(?:"|&#34;|&quot;)?$/i.exec(obj.etag ?? '');
  return m ? { ...obj, digest: { algorithm: 'md5', hex: m[1]!.toLowerCase() } } : obj;
}

/**
 * Every object under an s3:// prefix (or the one object it names), SigV4-signed. The listing names
 * each single-part object's MD5 (its ETag) for checking a folder; downloads use the ETag as If-Match.
 */
export const s3Source: SourceModule = {
  download: async (req, o, http) => downloadObjects(req, o, openS3(req, o, http), http),
  list: async (req, o, http) => {
    const listing = await openS3(req, o, http).list(req.signal);
    return { ...listing, objects: listing.objects.map(etagDigest) };
  },
};
