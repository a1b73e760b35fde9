import { DownloadError } from './errors.ts';
import { HttpClient } from './http-client.ts';
import { downloadFile } from './sources/file.ts';
import { downloadHf } from './sources/hf.ts';
import { downloadHttp } from './sources/http.ts';
import { downloadGcs } from './sources/gcs.ts';
import { downloadS3 } from './sources/s3.ts';
import { DEFAULT_DOWNLOAD_OPTIONS, type DownloadOptions, type DownloadRequest, type DownloadResult } from './types.ts';

type Source = (req: DownloadRequest, opts: DownloadOptions, http: HttpClient) => Promise<DownloadResult>;

/** One source per URI scheme. */
const SOURCES: Record<string, Source> = { 'http:': downloadHttp, 'https:': downloadHttp, 'file:': downloadFile, 's3:': downloadS3, 'gs:': downloadGcs, 'hf:': downloadHf };

/** Downloads `req.uri` into `req.workDir` (the one entry point the daemon uses). */
export async function downloadModel(req: DownloadRequest): Promise<DownloadResult> {
  let scheme: string;
  try {
    scheme = new URL(req.uri).protocol;
  } catch {
    throw new DownloadError('InvalidUri', `sourceModelUri '${req.uri}' is not a valid URI`);
  }
  const source = SOURCES[scheme];
  if (!source) throw new DownloadError('UnsupportedScheme', `${scheme}// sources are not supported by this daemon yet (supported: ${Object.keys(SOURCES).join(', ')})`);
  const o = { ...DEFAULT_DOWNLOAD_OPTIONS, ...req.options };
  const http = new HttpClient(o);
  try {
    return await source(req, o, http);
  } finally {
    await http.close();
  }
}

export type { DownloadRequest, DownloadResult, DownloadOptions } from './types.ts';
