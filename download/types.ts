export interface DownloadOptions {
  /** Attempts per download, counting the first. */
  attempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** No bytes for this long aborts the attempt (and retries). */
  stallTimeoutMs: number;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
  /** Bytes may exceed maxBytes by this fraction before SizeExceeded. */
  sizeTolerance: number;
  /** Host directories file:// sources may read from; none means file:// is refused. */
  fileRoots: string[];
}

export const DEFAULT_DOWNLOAD_OPTIONS: DownloadOptions = {
  attempts: 6,
  backoffBaseMs: 500,
  backoffMaxMs: 30_000,
  stallTimeoutMs: 30_000,
  connectTimeoutMs: 10_000,
  responseTimeoutMs: 30_000,
  sizeTolerance: 0.01,
  fileRoots: [],
};

export interface Progress {
  bytesDone: number;
  bytesTotal?: number;
}

export interface DownloadRequest {
  uri: string;
  /** Staging directory owned by the caller; the model's files end up directly in it. */
  workDir: string;
  /** modelSize: the download stops past this (plus the tolerance). */
  maxBytes: number;
  signal: AbortSignal;
  onProgress?: (p: Progress) => void;
  options?: Partial<DownloadOptions>;
}

export interface DownloadResult {
  bytes: number;
  files: number;
}
