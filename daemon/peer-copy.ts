import type { Logger } from 'pino';
import type { LocalModelInfo } from '../api/types.ts';
import type { PiecesSummary } from '../disk/layout.ts';
import { IncompleteCopyError, type DownloadErrorCode } from '../download/errors.ts';
import { asDownloadError } from '../download/failure-policy.ts';
import type { DownloadObserver, KeptPieces } from '../download/types.ts';
import type { DaemonMetrics } from './metrics.ts';
import type { PeerOffer } from './node-cache/plan.ts';

// What the download manager needs of peer-to-peer (daemon/peers implements it, main.ts wires it), and one copy of a
// model from peers as the manager runs it: bytes counted by zone, and what a failed copy leaves for the origin.

/** Where the plan said a model's bytes come from, when that is peers (absent: the origin). */
export interface FromPeers {
  pieces: PiecesSummary;
  peers: readonly PeerOffer[];
}

/** What the download manager needs of peer-to-peer (daemon/peers, wired in main.ts). */
export interface PeerTransfer {
  /**
   * Puts the model into `workDir` from the offering peers, every piece verified against the manifest whose
   * digest they published, and writes that manifest beside it (so this node serves the same). Throws when
   * the peers cannot provide it all: an IncompleteCopyError lists the verified pieces left in `workDir`.
   */
  fetch(req: {
    model: LocalModelInfo;
    workDir: string;
    limitBytes: number;
    from: FromPeers;
    signal: AbortSignal;
    /** Bytes of verified pieces written, and whether the peer they came from is in this node's zone. */
    onBytes: (n: number, zone: 'same' | 'cross') => void;
    /** The peers that offer the same manifest now (as the latest plan saw them): new ones join the fetch. */
    offers: () => readonly PeerOffer[];
  }): Promise<{ bytes: number; files: number; pieces: PiecesSummary; byNode: Readonly<Record<string, number>> }>;
  /**
   * An origin download into `workDir` as a seed: its pieces are hashed as they are written and served to peers
   * while it runs; `onOffer` hears the live summary to publish meanwhile (undefined: none any more).
   */
  seed(req: { storageKey: string; workDir: string; onOffer: (pieces: PiecesSummary | undefined) => void }): Seeding;
  /**
   * Hashes a folder the origin filled into its manifest (with the hashes `seeding` took as it was written, without
   * reading those files again), writes it in the folder, and returns its summary; undefined when the folder holds
   * what a manifest cannot describe (links): such a model is not offered to peers.
   */
  describe(dir: string, storageKey: string, signal: AbortSignal, seeding?: Seeding): Promise<PiecesSummary | undefined>;
}

/** An origin download served to peers while it runs (PeerTransfer.seed). */
export interface Seeding extends DownloadObserver {
  /** It is not served any more: the download ended (committed, failed or cancelled). */
  end(): void;
}

/** One copy from peers as the download manager asks for it. */
export interface PeerCopyRequest {
  peers: PeerTransfer;
  model: LocalModelInfo;
  from: FromPeers;
  staging: string;
  signal: AbortSignal;
  limitBytes: number;
  log: Logger;
  metrics: DaemonMetrics;
  /** The peers that offer the manifest now (PeerTransfer.fetch's `offers`). */
  offers: () => readonly PeerOffer[];
  /** Bytes of verified pieces written. */
  onBytes: (n: number) => void;
  /** Pieces an earlier copy of the model kept in `staging` (they stay there: a copy writes only verified pieces). */
  earlier?: readonly KeptPieces[];
}

/** Failures of a copy that are this node's own (its disk, a bug): other peers would not do better. */
const OWN_FAULTS: ReadonlySet<DownloadErrorCode> = new Set(['DiskError', 'InsufficientCapacity', 'Internal']);

/**
 * The model from peers, or, when they could not provide all of it, the pieces they did (kept in the same staging
 * folder: the origin keeps complete files of the right size and the verified pieces it can check, and fetches the
 * rest; a copy from other peers finds them by their hashes), and whether the peers were at fault (`peersFailed`:
 * the plan then chooses again without them) or this node was. A cancel is not a peer failure: it ends the download
 * (throws).
 */
export async function copyFromPeers(
  req: PeerCopyRequest,
): Promise<
  | { bytes: number; files: number; pieces: PiecesSummary; bytesFromPeers: number }
  | { kept: readonly KeptPieces[]; peersFailed: boolean }
> {
  const { log, metrics, model, from, signal } = req;
  const key = model.storageKey;
  const byZone = { same: 0, cross: 0 };
  const got = (): number => byZone.same + byZone.cross;
  const count = (outcome: string): void => {
    for (const zone of ['same', 'cross'] as const)
      if (byZone[zone] > 0) metrics.bytes.inc({ scheme: 'peer', outcome, source: 'peer', zone }, byZone[zone]);
  };
  try {
    const r = await req.peers.fetch({
      model,
      workDir: req.staging,
      limitBytes: req.limitBytes,
      from,
      signal,
      offers: req.offers,
      onBytes: (n, zone) => {
        byZone[zone] += n;
        req.onBytes(n);
      },
    });
    count('success');
    log.info(
      {
        model: model.modelName,
        storageKey: key,
        bytes: r.bytes,
        fromPeers: got(),
        fromOtherZones: byZone.cross,
        byNode: r.byNode,
      },
      'model fetched from peers',
    );
    return { bytes: r.bytes, files: r.files, pieces: r.pieces, bytesFromPeers: got() };
  } catch (err) {
    count(signal.aborted ? 'cancelled' : 'error');
    if (signal.aborted) throw err;
    const code = asDownloadError(err, `copying ${key} from peers`).code;
    // Hashes that changed under the copy (its source changed): no piece of either copy is likely the version wanted.
    const kept =
      code === 'IntegrityMismatch'
        ? []
        : mergeKept(req.earlier ?? [], err instanceof IncompleteCopyError ? err.kept : []);
    const peersFailed = !OWN_FAULTS.has(code);
    log.warn(
      {
        model: model.modelName,
        storageKey: key,
        err: (err as Error)?.message ?? String(err),
        fromPeers: got(),
        keptPieces: kept.reduce((n, k) => n + k.pieces.length, 0),
        peers: from.peers.map((p) => p.node),
      },
      'peers could not provide the whole model: the verified pieces are kept for the rest',
    );
    return { kept, peersFailed };
  }
}

/**
 * The pieces of both lists, file by file; of a file listed with another size or piece size, `later`'s (the earlier
 * pieces belong to another version of the file, and its partial file now holds the later's bytes).
 */
export function mergeKept(earlier: readonly KeptPieces[], later: readonly KeptPieces[]): KeptPieces[] {
  const byFile = new Map(earlier.map((k) => [k.file, k]));
  for (const k of later) {
    const e = byFile.get(k.file);
    const same = e && e.size === k.size && e.pieceSize === k.pieceSize;
    byFile.set(k.file, same ? { ...k, pieces: [...new Set([...e.pieces, ...k.pieces])].sort((a, b) => a - b) } : k);
  }
  return [...byFile.values()];
}
