import { SOURCE_SCHEMES } from '../api/uri-schemes.ts';
import { DownloadError } from './errors.ts';
import { HttpClient } from './http-client.ts';
import type { ObjectListing } from './objects.ts';
import { sourceFor, type ListRequest, type SourceEntry, type SourceModule } from './registry.ts';
import { DEFAULT_DOWNLOAD_OPTIONS, type DownloadOptions, type DownloadRequest, type DownloadResult } from './types.ts';

/** The registry's entry for a URI's scheme: InvalidUri when it does not parse, UnsupportedScheme when none serves it. */
function entryFor(uri: string): SourceEntry {
  let scheme: string;
  try {
    scheme = new URL(uri).protocol;
  } catch {
    throw new DownloadError('InvalidUri', `sourceModelUri '${uri}' is not a valid URI`);
  }
  const entry = sourceFor(scheme.slice(0, -1));
  if (!entry)
    throw new DownloadError(
      'UnsupportedScheme',
      `${scheme}// sources are not supported by this daemon yet (supported: ${SOURCE_SCHEMES.map((s) => `${s}:`).join(', ')})`,
    );
  return entry;
}

/** Runs `use` with the source's code and an HTTP client made for these options, closed afterwards. */
async function withSource<T>(
  uri: string,
  options: Partial<DownloadOptions> | undefined,
  use: (source: SourceModule, o: DownloadOptions, http: HttpClient) => Promise<T>,
): Promise<T> {
  const source = await entryFor(uri).load();
  const o = { ...DEFAULT_DOWNLOAD_OPTIONS, ...options };
  const http = new HttpClient(o);
  try {
    return await use(source, o, http);
  } finally {
    await http.close();
  }
}

/**
 * Downloads `req.uri` into `req.workDir` (the one entry point the daemon and the agent use): from the
 * first of `req.alternatives` that holds it, else from the source its scheme names.
 */
export async function downloadModel(req: DownloadRequest): Promise<DownloadResult> {
  for (const near of req.alternatives ?? []) {
    const result = await near.fetch(req);
    if (result) return result;
  }
  return withSource(req.uri, req.options, (source, o, http) => source.download(req, o, http));
}

/**
 * What a store URI names, object by object with sizes and the checksums the store gives, without
 * fetching any object; undefined for sources that do not list objects (http, file). For checking a
 * folder someone else downloaded against its source.
 */
export async function listModel(
  req: ListRequest & { options?: Partial<DownloadOptions> },
): Promise<ObjectListing | undefined> {
  return withSource(req.uri, req.options, async (source, o, http) =>
    source.list ? source.list(req, o, http) : undefined,
  );
}

/** Whether the URI's source lists objects (so listModel can describe it); false for an unknown scheme. */
export async function listsObjects(uri: string): Promise<boolean> {
  let entry: SourceEntry;
  try {
    entry = entryFor(uri);
  } catch {
    return false;
  }
  return (await entry.load()).list !== undefined;
}

export type { DownloadRequest, DownloadResult, DownloadOptions } from './types.ts';
