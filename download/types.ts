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
  /** Objects of at least twice this size are fetched as parallel ranged GETs of this size. */
  partSizeBytes: number;
  /** Ranged GETs in flight per object (1: one stream per object). */
  partParallelism: number;
  /** Objects fetched at once when a source names many (s3/gs prefixes, hf repositories). */
  fileConcurrency: number;
}

/** Most bytes a model of `maxBytes` (its modelSize) may have: the size plus the tolerance. */
export function sizeLimit(maxBytes: number, o: Pick<DownloadOptions, 'sizeTolerance'>): number {
  return Math.floor(maxBytes * (1 + o.sizeTolerance));
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
  partSizeBytes: 16 * 1024 * 1024,
  partParallelism: 4,
  fileConcurrency: 4,
};

/**
 * Settings and secrets for a source, by the environment-variable names the stores' own tools use
 * (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, HF_TOKEN, STORAGE_EMULATOR_HOST…): the data of the node
 * group's Secret over the daemon's environment. Never logged, never put in a status.
 */
export type SourceCredentials = Readonly<Record<string, string | undefined>>;

interface Progress {
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
  credentials?: SourceCredentials;
  /** Nearer places holding the same bytes, tried in order before the source (the node cache; peers next). */
  alternatives?: readonly AlternativeLocation[];
  /** Hears where the bytes land as they are written, so they can be served before the download ends. */
  observer?: DownloadObserver;
  /** Pieces of files verified before this download (a copy from peers that could not finish): see KeptPieces. */
  kept?: readonly KeptPieces[];
}

/**
 * Pieces of one file that a copy from peers verified before it failed, at their offsets in `file` (in the staging
 * folder's `.download/`). A ranged download of the same path and size keeps them and fetches only the rest, when the
 * source gives a whole-file digest: that digest then checks the kept bytes and the new ones together, so bytes of two
 * versions of the file are never committed. `file` is the download's to move or remove.
 */
export interface KeptPieces {
  path: string;
  size: number;
  file: string;
  pieceSize: number;
  /** Indexes of the verified pieces: bytes [i × pieceSize, (i + 1) × pieceSize) of the file. */
  pieces: readonly number[];
}

/** A file of a download as an observer hears of it: its path in the model folder, its size, its partial file. */
export interface ObservedFile {
  path: string;
  size: number;
  /** Where its bytes are written until the file is moved to its path (then read from there). */
  partial: string;
}

/**
 * What a download tells of its bytes as they are written (a peer-to-peer seed hashes and serves them meanwhile).
 * Told only of downloads whose files are placed as they are (no archive) with every size known from the source
 * before the first byte; `written` ranges of one file never overlap until `reset`.
 */
export interface DownloadObserver {
  /** Every file the download places, once, before any `written`. */
  listed(files: readonly ObservedFile[]): void;
  /** Bytes [start, start + length) of `path` are written (in its partial file, or the file is in place whole). */
  written(path: string, start: number, length: number): void;
  /** What was written of `path` is void: the download writes it again from its first byte. */
  reset(path: string): void;
}

/** Another place that may hold the bytes of a source URI: the node cache for the agent today, peers next. */
export interface AlternativeLocation {
  /** Puts the model of req.uri into req.workDir, or answers undefined when it does not hold it (then the source). */
  fetch(req: DownloadRequest): Promise<DownloadResult | undefined>;
}

export interface DownloadResult {
  bytes: number;
  files: number;
  /** Archive entries skipped on purpose (devices, FIFOs), by name in the archive; absent when none were. */
  skipped?: string[];
  /** Bytes of `kept` pieces the download took instead of fetching them; absent when none. */
  keptBytes?: number;
}
