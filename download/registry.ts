import { SOURCE_SCHEMES, type SourceScheme } from '../api/uri-schemes.ts';
import type { HttpClient } from './http-client.ts';
import type { ObjectListing } from './objects.ts';
import type { DownloadOptions, DownloadRequest, DownloadResult } from './types.ts';

/** What listing a URI's objects needs: the URI, the source's credentials, and when to give up. */
export type ListRequest = Pick<DownloadRequest, 'uri' | 'signal' | 'credentials'>;

/** A source's code, loaded when the first URI of its scheme comes. */
export interface SourceModule {
  download(req: DownloadRequest, o: DownloadOptions, http: HttpClient): Promise<DownloadResult>;
  /**
   * What the URI names, object by object, with the sizes and checksums the store gives (sources that
   * list objects: s3, gs, hf). Reads the listing only, never an object's bytes.
   */
  list?(req: ListRequest, o: DownloadOptions, http: HttpClient): Promise<ObjectListing>;
}

/** One type of entry of KServe's storage-config Secret, as the variables the source reads. */
export interface StorageConfigMapping {
  /** The entry's `type` field. */
  type: string;
  /** JSON field → variable. */
  fields: Readonly<Record<string, string>>;
  /** Variables set to '' when the entry says `anonymous: true` (unsigned requests). */
  anonymous: readonly string[];
}

/** Everything the rest of the code needs to know about a source, declared once. */
export interface SourceEntry {
  /** URI schemes (no colon) it serves; together the entries cover api/uri-schemes.ts exactly. */
  schemes: readonly SourceScheme[];
  /** Lazy: a node that only ever sees https:// never loads the S3 signer or the XML parser. */
  load(): Promise<SourceModule>;
  /** Variables it reads from the daemon's and the agent's environment, by exact name and by prefix. */
  environment: { names?: readonly string[]; prefixes?: readonly string[] };
  /** KServe's Secret annotations (service-account Secrets) → variables. */
  secretAnnotations?: Readonly<Record<string, string>>;
  /** KServe's storage-config entries (spec.storage) of this source. */
  storageConfig?: StorageConfigMapping;
}

/** The download sources: a new one is its file under sources/ plus one entry here. */
export const SOURCE_REGISTRY: readonly SourceEntry[] = [
  {
    schemes: ['http', 'https'],
    load: async () => ({ download: (await import('./sources/http.ts')).downloadHttp }),
    environment: {},
  },
  {
    schemes: ['file'],
    load: async () => ({ download: (await import('./sources/file.ts')).downloadFile }),
    environment: {},
  },
  {
    schemes: ['s3'],
    load: async () => (await import('./sources/s3.ts')).s3Source,
    // The AWS CLI's names (AWS_ENDPOINT_URL, AWS_REGION…) and KServe's (S3_ENDPOINT, S3_USE_HTTPS…).
    environment: { prefixes: ['AWS_', 'S3_'] },
    secretAnnotations: {
      'serving.kserve.io/s3-endpoint': 'S3_ENDPOINT',
      'serving.kserve.io/s3-usehttps': 'S3_USE_HTTPS',
      'serving.kserve.io/s3-region': 'AWS_REGION',
    },
    storageConfig: {
      type: 's3',
      fields: {
        access_key_id: 'AWS_ACCESS_KEY_ID',
        secret_access_key: 'AWS_SECRET_ACCESS_KEY',
        endpoint_url: 'AWS_ENDPOINT_URL',
        region: 'AWS_REGION',
      },
      anonymous: ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'],
    },
  },
  {
    schemes: ['gs'],
    load: async () => (await import('./sources/gcs.ts')).gcsSource,
    environment: { names: ['STORAGE_EMULATOR_HOST', 'GOOGLE_OAUTH_ACCESS_TOKEN', 'GCE_METADATA_HOST'] },
  },
  {
    schemes: ['hf'],
    load: async () => (await import('./sources/hf.ts')).hfSource,
    environment: { names: ['HUGGING_FACE_HUB_TOKEN'], prefixes: ['HF_'] },
  },
];

/** Scheme (no colon) → its entry; throws at load when the registry and api/uri-schemes.ts disagree. */
function byScheme(entries: readonly SourceEntry[]): ReadonlyMap<string, SourceEntry> {
  const out = new Map<string, SourceEntry>();
  for (const e of entries) {
    for (const s of e.schemes) {
      if (out.has(s)) throw new Error(`download/registry.ts: two sources for ${s}://`);
      out.set(s, e);
    }
  }
  const missing = SOURCE_SCHEMES.filter((s) => !out.has(s));
  if (missing.length > 0 || out.size !== SOURCE_SCHEMES.length)
    throw new Error(
      `download/registry.ts and api/uri-schemes.ts disagree: the schema lists ${SOURCE_SCHEMES.join(', ')}; ` +
        `the registry has ${[...out.keys()].join(', ')}`,
    );
  return out;
}

const BY_SCHEME = byScheme(SOURCE_REGISTRY);

/** The source of a URI scheme (no colon, as api/uri-schemes.ts writes it), if there is one. */
export function sourceFor(scheme: string): SourceEntry | undefined {
  return BY_SCHEME.get(scheme);
}
