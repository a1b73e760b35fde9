import { hasBit, pieceOffsets, type PieceId, type PieceManifest } from './protocol.ts';

/** What the peer server may read of a copy still being fetched from peers: never written through this view. */
export interface CopyView {
  /** The staging folder the copy is written into (where its partial and placed files are). */
  readonly workDir: string;
  readonly manifest: PieceManifest;
  /** The manifest's exact bytes, as verified against the digest its peers published. */
  readonly bytes: Buffer;
  /** Whether piece `id` is written and verified. */
  has(id: PieceId): boolean;
  /** A copy of the bitmap of verified pieces (see protocol.ts Have), `count` pieces. */
  have(): { count: number; bits: Uint8Array };
}

/** A copy in progress as its fetch holds it: it records each piece once written and verified, and ends. */
export interface CopyRecord extends CopyView {
  verified(id: PieceId): void;
  /** Every piece of file `file` is verified (a file kept whole from an earlier run). */
  verifiedFile(file: number): void;
  /** The copy is not served any more (the fetch ended, however it ended). */
  end(): void;
}

/**
 * The copies this node is fetching from peers, by storage key, so its peer server serves the pieces verified so
 * far (a fan-out tree instead of every node on the one seed). Created in main.ts: the fetch writes, the server reads.
 */
export class CopiesInProgress {
  readonly #copies = new Map<string, CopyRecord>();

  /** Starts serving the copy of `storageKey` the fetch into `workDir` makes; it holds no piece yet. */
  begin(storageKey: string, workDir: string, manifest: PieceManifest, bytes: Buffer): CopyRecord {
    const offsets = pieceOffsets(manifest);
    const count = manifest.files.reduce((n, f) => n + f.pieces.length, 0);
    const bits = new Uint8Array(Math.ceil(count / 8));
    const set = (i: number): void => void (bits[i >> 3]! |= 0x80 >> (i & 7));
    const copies = this.#copies;
    const record: CopyRecord = {
      workDir,
      manifest,
      bytes,
      has: ({ file, piece }) => {
        const f = manifest.files[file];
        return f !== undefined && piece < f.pieces.length && hasBit(bits, offsets[file]! + piece);
      },
      have: () => ({ count, bits: bits.slice() }),
      verified: ({ file, piece }) => set(offsets[file]! + piece),
      verifiedFile: (file) => {
        for (let p = 0; p < manifest.files[file]!.pieces.length; p++) set(offsets[file]! + p);
      },
      end: () => {
        if (copies.get(storageKey) === record) copies.delete(storageKey);
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
