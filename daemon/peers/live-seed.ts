import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { DOWNLOAD_DIR } from '../../disk/layout.ts';
import type { DownloadObserver, ObservedFile } from '../../download/types.ts';
import type { CopiesInProgress, CopyRecord } from './copies.ts';
import { isPlainPath } from './manifest.ts';
import {
  liveSummary,
  PIECE_SIZE,
  pieceCount,
  pieceLength,
  UNKNOWN_HASH,
  type ManifestFile,
  type ManifestSummary,
  type PieceManifest,
} from './protocol.ts';

export interface LiveSeedOptions {
  storageKey: string;
  /** The staging folder the origin download fills. */
  workDir: string;
  copies: CopiesInProgress;
  log: Logger;
  /** The live summary to publish while the download runs; undefined: none any more (its bytes were void). */
  onOffer: (summary: ManifestSummary | undefined) => void;
  pieceSize?: number;
}

/**
 * An origin download seen as a seed (protocol.ts, live manifests): every piece is hashed once all its bytes are
 * written (read back while in the page cache, one piece at a time), and served to peers from then on, while the
 * download still runs. The hashes are the manifest's: once the download ends, the folder is not read again to
 * make it. A download that writes bytes of a piece again (its source restarted it) is no seed any more.
 */
export class LiveSeed implements DownloadObserver {
  readonly #o: LiveSeedOptions;
  readonly #pieceSize: number;
  #manifest: PieceManifest | undefined;
  #record: CopyRecord | undefined;
  readonly #files = new Map<string, { index: number; partial: string }>();
  /** Bytes written so far of each piece, by file index. */
  #covered: number[][] = [];
  #hashing: Promise<void> = Promise.resolve();
  #void = false;
  #ended = false;
  #buffer: Buffer | undefined;
  /** Bytes written so far, all files. */
  #written = 0;
  /** Per file index: how often its bytes were made void (reset); a hash read before a reset is dropped. */
  #generation: number[] = [];

  constructor(o: LiveSeedOptions) {
    this.#o = o;
    this.#pieceSize = o.pieceSize ?? PIECE_SIZE;
  }

  listed(files: readonly ObservedFile[]): void {
    if (this.#manifest || this.#ended) return;
    // Paths as a manifest writes them ('a/b'); a listing with others ('a//b', './a') is not offered while it runs.
    if (files.some((f) => !isPlainPath(f.path))) return;
    const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)); // as buildManifest
    const ps = this.#pieceSize;
    const manifest: PieceManifest = {
      version: 1,
      storageKey: this.#o.storageKey,
      pieceSize: ps,
      files: sorted.map((f) => ({
        path: f.path,
        size: f.size,
        pieces: new Array<string>(pieceCount(f.size, ps)).fill(UNKNOWN_HASH),
      })),
    };
    for (const [index, f] of sorted.entries()) this.#files.set(f.path, { index, partial: f.partial });
    this.#covered = manifest.files.map((f) => new Array<number>(f.pieces.length).fill(0));
    this.#generation = manifest.files.map(() => 0);
    this.#manifest = manifest;
    this.#record = this.#o.copies.begin(this.#o.storageKey, this.#o.workDir, manifest, {
      partialOf: (path) => this.#files.get(path)?.partial ?? join(this.#o.workDir, DOWNLOAD_DIR, 'unlisted'),
      progress: () => this.#written,
    });
    const summary = liveSummary(manifest, 'origin');
    this.#o.log.info(
      { storageKey: this.#o.storageKey, pieces: summary.count },
      'fetching from the source as a seed: pieces are served to peers as they are written',
    );
    this.#o.onOffer(summary);
  }

  written(path: string, start: number, length: number): void {
    const at = this.#files.get(path);
    const m = this.#manifest;
    if (!at || !m || this.#void || this.#ended || length <= 0) return;
    this.#written += length;
    const f = m.files[at.index]!;
    const ps = this.#pieceSize;
    const end = Math.min(start + length, f.size);
    for (let p = Math.floor(start / ps); p < f.pieces.length && p * ps < end; p++) {
      const covered = (this.#covered[at.index]![p]! += Math.min(end, (p + 1) * ps) - Math.max(start, p * ps));
      const want = pieceLength(f.size, ps, p);
      if (covered > want) return this.#withdraw(`bytes of piece ${p} of '${path.slice(0, 200)}' were written twice`);
      if (covered === want) this.#hash(at.index, at.partial, p);
    }
  }

  reset(path: string): void {
    const at = this.#files.get(path);
    if (!at || !this.#manifest || this.#void) return;
    const f = this.#manifest.files[at.index]!;
    const whole = (p: number): boolean => this.#covered[at.index]![p] === pieceLength(f.size, this.#pieceSize, p);
    // A piece hashed, or all written and waiting to be hashed, may have been served (or is about to be).
    if (f.pieces.some((h, p) => h !== UNKNOWN_HASH || whole(p)))
      return this.#withdraw(`the source restarted '${path.slice(0, 200)}' after pieces of it were served`);
    this.#generation[at.index]!++;
    this.#covered[at.index]!.fill(0);
  }

  /** The hashes of the files whose every piece was hashed, by path, once hashing is done (none when withdrawn). */
  async known(): Promise<ReadonlyMap<string, ManifestFile>> {
    await this.#hashing;
    const out = new Map<string, ManifestFile>();
    if (this.#void || !this.#manifest) return out;
    for (const f of this.#manifest.files)
      if (f.pieces.every((h) => h !== UNKNOWN_HASH)) out.set(f.path, { ...f, pieces: [...f.pieces] });
    return out;
  }

  /** Stops serving (the download ended: committed, failed or cancelled). */
  end(): void {
    this.#ended = true;
    this.#record?.end();
  }

  #withdraw(why: string): void {
    this.#void = true;
    this.#record?.end();
    this.#o.log.warn({ storageKey: this.#o.storageKey, why }, 'no longer serving this download to peers while it runs');
    this.#o.onOffer(undefined);
  }

  #hash(index: number, partial: string, piece: number): void {
    const generation = this.#generation[index]!;
    this.#hashing = this.#hashing
      .then(() => this.#hashPiece(index, partial, piece, generation))
      .catch((err: unknown) => this.#withdraw(`hashing a piece failed: ${(err as Error)?.message ?? String(err)}`));
  }

  async #hashPiece(index: number, partial: string, piece: number, generation: number): Promise<void> {
    const m = this.#manifest!;
    const f = m.files[index]!;
    if (this.#void || this.#ended || generation !== this.#generation[index]) return;
    const len = pieceLength(f.size, this.#pieceSize, piece);
    const buf = (this.#buffer ??= Buffer.allocUnsafe(this.#pieceSize)).subarray(0, len);
    // The partial, or the file once the download moved it to its place (a rename: one of the two is there).
    const read =
      (await readExactly(partial, buf, piece * this.#pieceSize)) ||
      (await readExactly(join(this.#o.workDir, ...f.path.split('/')), buf, piece * this.#pieceSize));
    if (!read || this.#void || generation !== this.#generation[index]) {
      this.#o.log.debug({ storageKey: this.#o.storageKey, file: f.path, piece }, 'piece not readable to hash');
      return;
    }
    f.pieces[piece] = createHash('sha256').update(buf).digest('hex');
    this.#record?.verified({ file: index, piece });
  }
}

/** Whether `buf.length` bytes at `offset` of the regular file `abs` (never followed) were read into `buf`. */
async function readExactly(abs: string, buf: Buffer, offset: number): Promise<boolean> {
  const fh = await open(abs, constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => undefined);
  if (!fh) return false;
  try {
    if (!(await fh.stat()).isFile()) return false;
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, offset + got);
      if (bytesRead === 0) return false;
      got += bytesRead;
    }
    return true;
  } catch {
    return false;
  } finally {
    await fh.close();
  }
}
