import { DownloadError } from '../download/errors.ts';
import { SOURCE_REGISTRY, type StorageConfigMapping } from '../download/registry.ts';
import type { SourceCredentials } from '../download/types.ts';
import { checkSourceUri } from './source-uri.ts';

/** KServe's storage-config Secret: one JSON entry per key; a cache picks one with spec.storage. */
export const STORAGE_CONFIG_SECRET = 'storage-config';

/** The entry a cache means: spec.storage.key, else KServe's default for the URI's scheme (default_s3). */
export function storageConfigKey(key: string | undefined, uri: string): string {
  return key || `default_${checkSourceUri(uri)}`;
}

/** The storage-config entry types the sources read (the registry's mappings), by `type`. */
const MAPPINGS: ReadonlyMap<string, StorageConfigMapping> = new Map(
  SOURCE_REGISTRY.flatMap((s) => (s.storageConfig ? [[s.storageConfig.type, s.storageConfig] as const] : [])),
);

/**
 * One storage-config entry (JSON) with spec.storage.parameters laid over it, as source variables.
 * Entry types no source maps (download/registry.ts) are refused with what to use instead. Pure.
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
  const mapping = typeof entry.type === 'string' ? MAPPINGS.get(entry.type) : undefined;
  if (!mapping) {
    throw new DownloadError(
      'AccessDenied',
      `${where} has type '${String(entry.type)}': only ${[...MAPPINGS.keys()].join(', ')} entries are read; for other sources attach a Secret to spec.serviceAccountName or name one in the node group`,
    );
  }
  const out: Record<string, string> = {};
  for (const [field, name] of Object.entries(mapping.fields))
    if (typeof entry[field] === 'string' && entry[field]) out[name] = entry[field];
  if (String(entry.anonymous).toLowerCase() === 'true') for (const name of mapping.anonymous) out[name] = '';
  return out;
}
