import type { Logger } from 'pino';
import { recordPieces } from '../disk/atomic.ts';
import { readMarker } from '../disk/inventory.ts';
import { modelPaths } from '../disk/layout.ts';
import type { PeerTransfer } from './peer-copy.ts';

export interface CompleteModelDescriberOptions {
  root: string;
  log: Logger;
  peers: PeerTransfer;
  /** Ends every hashing (the daemon stops). */
  signal: AbortSignal;
  /** A model's summary was recorded: the status offers it now. */
  onDescribed: () => void;
  /** Every job started, until it ends (never rejects): the download manager waits for them when it stops. */
  track: (job: Promise<void>) => void;
}

/** How long a model whose hashing failed is not hashed again. */
const RETRY_MS = 60_000;

/**
 * Hashes complete models' folders into their piece manifests and records the summaries in their markers, so peers
 * can be offered them: in the background, one job at a time per key. A failure is logged and tried again on a later
 * pass after a minute (the plan asks while the marker has no summary); a model holding links never.
 */
export class CompleteModelDescriber {
  readonly #o: CompleteModelDescriberOptions;
  readonly #describing = new Set<string>();
  /** Complete models not to hash again before a time (ms): they hold links (never), or hashing failed (a minute). */
  readonly #notDescribed = new Map<string, { completedAt: string; until: number }>();

  constructor(o: CompleteModelDescriberOptions) {
    this.#o = o;
  }

  /** Whether a job for `key` runs (its folder is being read). */
  busy(key: string): boolean {
    return this.#describing.has(key);
  }

  /** Forgets what was learnt of `key`'s folder (it is removed). */
  forget(key: string): void {
    this.#notDescribed.delete(key);
  }

  describe(key: string): void {
    if (this.#describing.has(key)) return;
    this.#describing.add(key);
    const { root, log, peers } = this.#o;
    let completedAt = '';
    const job = (async () => {
      const marker = await readMarker(root, key);
      if (!marker || marker.pieces) return;
      completedAt = marker.completedAt;
      const held = this.#notDescribed.get(key);
      if (held && held.completedAt === completedAt && held.until > Date.now()) return;
      const pieces = await peers.describe(modelPaths(root, key).final, key, this.#o.signal);
      if (!pieces) {
        this.#notDescribed.set(key, { completedAt, until: Number.POSITIVE_INFINITY });
        return;
      }
      // Removed or replaced meanwhile: its marker is not ours to write any more.
      if ((await readMarker(root, key))?.completedAt !== marker.completedAt) return;
      await recordPieces(root, key, marker, pieces);
      this.#o.onDescribed();
      log.info(
        { storageKey: key, pieces: pieces.count },
        'piece manifest of a complete model written: offered to peers',
      );
    })()
      .catch((err: unknown) => {
        this.#notDescribed.set(key, { completedAt, until: Date.now() + RETRY_MS });
        log.warn({ storageKey: key, err: String(err) }, 'could not hash the model for peers; trying again in a minute');
      })
      .finally(() => this.#describing.delete(key));
    this.#o.track(job);
  }
}
