import { readdir, stat, statfs } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { formatBytes } from '../api/quantity.ts';

/** The free-space figures a download is measured against, read at one moment. */
export interface CapacityView {
  /** The cache root whose filesystem this is (named in messages). */
  path: string;
  /** Free bytes on the filesystem. */
  freeBytes: number;
  /** Bytes downloads in flight have reserved but may not have written yet. */
  reservedBytes: number;
  /** Free space always left on the disk. */
  marginBytes: number;
}

/** Bytes a new download may still take: free, minus what is reserved, minus the margin (may be negative). */
export function availableBytes(v: CapacityView): number {
  return v.freeBytes - v.reservedBytes - v.marginBytes;
}

/**
 * A reservation the free space does not cover. disk/ knows nothing of downloads: download/'s failure policy
 * maps it to the InsufficientCapacity download code, with this message.
 */
export class CapacityError extends Error {
  readonly code = 'InsufficientCapacity';
  constructor(message: string) {
    super(message);
    this.name = 'CapacityError';
  }
}

/** Why a download of `bytes` does not fit, with the numbers (status message and InsufficientCapacity error). */
export function insufficientCapacityMessage(bytes: number, v: CapacityView): string {
  return (
    `needs ${formatBytes(bytes)} but only ${formatBytes(Math.max(0, availableBytes(v)))} is available on ${v.path} ` +
    `(${formatBytes(v.freeBytes)} free, ${formatBytes(v.reservedBytes)} reserved by downloads in flight, ` +
    `${formatBytes(v.marginBytes)} safety margin)`
  );
}

/** Free bytes an unprivileged writer may use on the filesystem of `path` or its first existing parent (statfs). */
async function freeBytesOf(path: string): Promise<number> {
  for (let p = path; ; p = dirname(p)) {
    try {
      const s = await statfs(p);
      return s.bavail * s.bsize;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || dirname(p) === p) throw err;
    }
  }
}

/**
 * Free space bookkeeping for one cache root: a download may start only if free space, minus what
 * downloads in flight have reserved but not yet written, minus a safety margin, covers its size.
 * The node's plan decides with view(); reserve() is the safety net when the download really starts.
 */
export class CapacityLedger {
  readonly #root: string;
  readonly #marginBytes: number;
  readonly #reserved = new Map<string, number>();
  readonly #free: (path: string) => Promise<number>;

  constructor(root: string, marginBytes: number, free?: (path: string) => Promise<number>) {
    this.#root = root;
    this.#marginBytes = marginBytes;
    this.#free = free ?? freeBytesOf;
  }

  get reservedBytes(): number {
    let sum = 0;
    for (const v of this.#reserved.values()) sum += v;
    return sum;
  }

  /** Free bytes on the root's filesystem now. */
  free(): Promise<number> {
    return this.#free(this.#root);
  }

  /** Free, reserved and margin bytes now: what the node's plan decides new downloads with. */
  async view(): Promise<CapacityView> {
    const freeBytes = await this.free();
    return { path: this.#root, freeBytes, reservedBytes: this.reservedBytes, marginBytes: this.#marginBytes };
  }

  /**
   * Reserves `bytes` (what is still to be written) for `key`, or throws a CapacityError with the numbers.
   * Reservations of other keys count against free space; the key's own earlier reservation is replaced.
   */
  async reserve(key: string, bytes: number): Promise<void> {
    const freeBytes = await this.free();
    const others = this.reservedBytes - (this.#reserved.get(key) ?? 0);
    const view = { path: this.#root, freeBytes, reservedBytes: others, marginBytes: this.#marginBytes };
    if (bytes > availableBytes(view)) throw new CapacityError(insufficientCapacityMessage(bytes, view));
    this.#reserved.set(key, bytes);
  }

  release(key: string): void {
    this.#reserved.delete(key);
  }
}

/**
 * Bytes really written under a directory (what a resume starts from), 0 when it does not exist; files whose path
 * (relative to `dir`, with `/`) `except` matches are not counted.
 */
export async function bytesWritten(dir: string, except?: (path: string) => boolean): Promise<number> {
  let sum = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    // Blocks, not the apparent size: parallel parts leave sparse files until every part is in.
    if (e.isFile() && !except?.(relative(dir, join(e.parentPath, e.name)).split(sep).join('/')))
      sum += await stat(join(e.parentPath, e.name)).then(
        (s) => Math.min(s.size, s.blocks * 512),
        () => 0,
      );
  }
  return sum;
}
