import checkDiskSpaceImport from 'check-disk-space';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { formatBytes } from '../api/quantity.ts';
import { DownloadError } from '../download/errors.ts';

// The package's types describe its CommonJS shape; under ESM its default export is the function itself.
const checkDiskSpace = checkDiskSpaceImport as unknown as (path: string) => Promise<{ free: number; size: number }>;

/**
 * Free space bookkeeping for one cache root: a download may start only if free space, minus what
 * downloads in flight have reserved but not yet written, minus a safety margin, covers its size.
 */
export class CapacityLedger {
  readonly #root: string;
  readonly #marginBytes: number;
  readonly #reserved = new Map<string, number>();
  readonly #free: (path: string) => Promise<number>;

  constructor(root: string, marginBytes: number, free?: (path: string) => Promise<number>) {
    this.#root = root;
    this.#marginBytes = marginBytes;
    this.#free = free ?? (async (p) => (await checkDiskSpace(p)).free);
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

  /**
   * Reserves `bytes` (what is still to be written) for `key`, or throws InsufficientCapacity with the numbers.
   * Reservations of other keys count against free space; the key's own earlier reservation is replaced.
   */
  async reserve(key: string, bytes: number): Promise<void> {
    const free = await this.free();
    const others = this.reservedBytes - (this.#reserved.get(key) ?? 0);
    const available = free - others - this.#marginBytes;
    if (bytes > available) {
      throw new DownloadError(
        'InsufficientCapacity',
        `needs ${formatBytes(bytes)} but only ${formatBytes(Math.max(0, available))} is available on ${this.#root} ` +
          `(${formatBytes(free)} free, ${formatBytes(others)} reserved by downloads in flight, ${formatBytes(this.#marginBytes)} safety margin)`,
      );
    }
    this.#reserved.set(key, bytes);
  }

  release(key: string): void {
    this.#reserved.delete(key);
  }
}

/** Bytes really written under a directory (what a resume starts from), 0 when it does not exist. */
export async function bytesWritten(dir: string): Promise<number> {
  let sum = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    // Blocks, not the apparent size: parallel parts leave sparse files until every part is in.
    if (e.isFile())
      sum += await stat(join(e.parentPath, e.name)).then(
        (s) => Math.min(s.size, s.blocks * 512),
        () => 0,
      );
  }
  return sum;
}
