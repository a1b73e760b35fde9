import { partialPath } from './piece-files.ts';
import { countPieces, hasBit, pieceOffsets, serializeManifest, type PieceId, type PieceManifest } from './protocol.ts';

/** What the peer server may read of a copy still being made: never written through this view. */
export interface CopyView {
  /** The staging folder the copy is written into (where its partial and placed files are). */
  readonly workDir: string;
  readonly manifest: PieceManifest;
  /**
   * The manifest's exact bytes: as verified against the digest its peers published, or, of a live manifest (one
   * whose hashes are learnt as the copy runs), as it stands now.
   */
  manifestBytes(): Buffer;
  /** Where the partial file of `path` (a file of the manifest) is, until it is placed at its path in workDir. */
  partialOf(path: string): string;
  /** Of a seed: the bytes its origin download has written so far (protocol.ts PROGRESS_HEADER). */
  progress?(): number;
  /** Whether piece `id` is written and verified. */
  has(id: PieceId): boolean;
  /** A copy of the bitmap of verified pieces (see protocol.ts Have), `count` pieces. */
  have(): { count: number; bits: Uint8Array };
  /** How many pieces are verified. */
  held(): number;
  /** Resolves once another piece is verified or the copy ends, `ms` pass, or `signal` aborts: whichever is first. */
  changed(ms: number, signal: AbortSignal): Promise<void>;
}

/** A copy in progress as its fetch holds it: it records each piece once written and verified, and ends. */
export interface CopyRecord extends CopyView {
  verified(id: PieceId): void;
  /** Every piece of file `file` is verified (a file kept whole from an earlier run). */
  verifiedFile(file: number): void;
  /** The copy is not served any more (the fetch ended, however it ended). */
  end(): void;
}

/** How a copy's files are found and its manifest served (see CopiesInProgress.begin). */
export interface CopyLayout {
  /** The manifest's exact bytes when they are fixed; absent, a live manifest is serialized as it stands. */
  bytes?: Buffer;
  /** Where a file's partial is (default: a peer fetch's, piece-files.ts partialPath). */
  partialOf?: (path: string) => string;
  /** Of a seed: the bytes written so far. */
  progress?: () => number;
}

/**
 * The copies this node is making (from peers, or from the origin as a seed), by storage key, so its peer server
 * serves the pieces verified so far (a fan-out tree instead of every node on the one seed, and copies that start
 * before the seed is done). Created in main.ts: the fetch or the seed writes, the server reads.
 */
export class CopiesInProgress {
  readonly #copies = new Map<string, CopyRecord>();

  /**
   * Starts serving the copy of `storageKey` made into `workDir`; it holds no piece yet. A live `manifest` is the
   * fetch's own object: hashes it learns later are served with the pieces they verify.
   */
  begin(storageKey: string, workDir: string, manifest: PieceManifest, layout: CopyLayout = {}): CopyRecord {
    const offsets = pieceOffsets(manifest);
    const count = countPieces(manifest);
    const bits = new Uint8Array(Math.ceil(count / 8));
    let current = layout.bytes;
    let held = 0;
    /** Who waits for the next change (a peer's long-polled `have` or manifest). */
    const waiters = new Set<() => void>();
    const wake = (): void => {
      for (const w of [...waiters]) w();
    };
    const set = (i: number): void => {
      if (hasBit(bits, i)) return;
      bits[i >> 3]! |= 0x80 >> (i & 7);
      held++;
      if (!layout.bytes) current = undefined; // a hash was learnt with it: serialized again when asked
      wake();
    };
    const copies = this.#copies;
    const record: CopyRecord = {
      workDir,
      manifest,
      manifestBytes: () => (current ??= serializeManifest(manifest)),
      partialOf: layout.partialOf ?? ((path) => partialPath(workDir, path)),
      ...(layout.progress ? { progress: layout.progress } : {}),
      has: ({ file, piece }) => {
        const f = manifest.files[file];
        return f !== undefined && piece < f.pieces.length && hasBit(bits, offsets[file]! + piece);
      },
      have: () => ({ count, bits: bits.slice() }),
      held: () => held,
      changed: (ms, signal) =>
        new Promise<void>((resolve) => {
          const done = (): void => {
            clearTimeout(timer);
            signal.removeEventListener('abort', done);
            waiters.delete(done);
            resolve();
          };
          const timer = setTimeout(done, ms);
          signal.addEventListener('abort', done, { once: true });
          waiters.add(done);
          if (signal.aborted || copies.get(storageKey) !== record) done();
        }),
      verified: ({ file, piece }) => set(offsets[file]! + piece),
      verifiedFile: (file) => {
        for (let p = 0; p < manifest.files[file]!.pieces.length; p++) set(offsets[file]! + p);
      },
      end: () => {
        if (copies.get(storageKey) === record) copies.delete(storageKey);
        wake();
      },
    };
    copies.set(storageKey, record);
    return record;
  }

  /** The copy of `storageKey` being fetched now, if any. */
  get(storageKey: string): CopyView | undefined {
    return this.#copies.get(storageKey);
  }
}
