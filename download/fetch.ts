import { DownloadError } from './errors.ts';
import { HttpClient } from './http-client.ts';
import { DEFAULT_DOWNLOAD_OPTIONS, type DownloadOptions, type DownloadRequest, type DownloadResult } from './types.ts';

type Source = (req: DownloadRequest, opts: DownloadOptions, http: HttpClient) => Promise<DownloadResult>;

/**
 * One source per URI scheme, loaded on first use: a node that only ever sees https:// does not
 * pay for the S3 signer, the XML parser or the archive readers in memory.
 */
const SOURCES: Record<string, () => Promise<Source>> = {
  'http:': async () => (await import('./sources/http.ts')).downloadHttp,
  'https:': async () => (await import('./sources/http.ts')).downloadHttp,
  'file:': async () => (await import('./sources/file.ts')).downloadFile,
  's3:': async () => (await import('./sources/s3.ts')).downloadS3,
  'gs:': async () => (await import('./sources/gcs.ts')).downloadGcs,
  'hf:': async () => (await import('./sources/hf.ts')).downloadHf,
};

/** Downloads `req.uri` into `req.workDir` (the one entry point the daemon uses). */
export async function downloadModel(req: DownloadRequest): Promise<DownloadResult> {
  let scheme: string;
  try {
    scheme = new URL(req.uri).protocol;
  } catch {
    throw new DownloadError('InvalidUri', `sourceModelUri '${req.uri}' is not a valid URI`);
  }
  const load = SOURCES[scheme];
  if (!load)
    throw new DownloadError(
      'UnsupportedScheme',
      `${scheme}// sources are not supported by this daemon yet (supported: ${Object.keys(SOURCES).join(', ')})`,
    );
  const source = await load();
  const o = { ...DEFAULT_DOWNLOAD_OPTIONS, ...req.options };
  const http = new HttpClient(o);
  try {
    return await source(req, o, http);
  } finally {
    await http.close();
  }
}

export type { DownloadRequest, DownloadResult, DownloadOptions } from './types.ts';
