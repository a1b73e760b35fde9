import { DownloadError } from '../download/errors.ts';
import type { SourceCredentials } from '../download/types.ts';
import { checkSourceUri } from './source-uri.ts';

/** KServe's storage-config Secret: one JSON entry per key; a cache picks one with spec.storage. */
export const STORAGE_CONFIG_SECRET = 'storage-config';

/** The entry a cache means: spec.storage.key, else KServe's default for the URI's scheme (default_s3). */
export function storageConfigKey(key: string | undefined, uri: string): string {
  return key || `default_${checkSourceUri(uri)}`;
}

/** S3 fields of an entry, as the variables our S3 source reads. */
const S3_FIELDS: Record<string, string> = {
  access_key_id: 'AWS_ACCESS_KEY_ID',
  secret_access_key: 'AWS_SECRET_ACCESS_KEY',
  endpoint_url: 'AWS_ENDPOINT_URL',
  region: 'AWS_REGION',
};

/**
 * One storage-config entry (JSON) with spec.storage.parameters laid over it, as source variables.
 * Only `type: s3` entries exist for now; anything else is refused with what to use instead. Pure.
 */
export function storageConfigValues(
  entryJson: string,
  parameters: Record<string, string> | undefined,
  where: string,
): SourceCredentials {
  let entry: Record<string, unknown>;
  try {
    entry = { ...(JSON.parse(entryJson) as Record<string, unknown>), ...parameters };
  } catch {
    throw new DownloadError(
      'AccessDenied',
      `${where} is not JSON: write it as KServe does, e.g. {"type": "s3", "access_key_id": …, "secret_access_key": …, "endpoint_url": …}`,
    );
  }
  if (entry.type !== 's3') {
    throw new DownloadError(
      'AccessDenied',
      `${where} has type '${String(entry.type)}': only s3 entries are read; for other sources attach a Secret to spec.serviceAccountName or name one in the node group`,
    );
  }
  const out: Record<string, string> = {};
  for (const [field, name] of Object.entries(S3_FIELDS))
    if (typeof entry[field] === 'string' && entry[field]) out[name] = entry[field];
  if (String(entry.anonymous).toLowerCase() === 'true') {
    out.AWS_ACCESS_KEY_ID = '';
    out.AWS_SECRET_ACCESS_KEY = '';
    out.AWS_SESSION_TOKEN = '';
  }
  return out;
}
