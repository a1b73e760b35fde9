import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { PiecesSummary } from '../../disk/layout.ts';
import type { DaemonMetrics } from '../metrics.ts';
import type { PeerTransfer } from '../peer-copy.ts';
import type { PeerOffer } from '../node-cache/plan.ts';
import { CopiesInProgress } from './copies.ts';
import { LiveSeed } from './live-seed.ts';
import { PIECE_SIZE } from './protocol.ts';
import { fetchFromPeers, type PeerRef } from './fetch.ts';
import { buildManifest, writeManifest } from './manifest.ts';

export interface PeerTransferOptions {
  /** This node's name (a live copy's first receivers are ranked by it, spread.ts). */
  node?: string;
  /** The projected service-account token this daemon shows its peers; read again for every request. */
  tokenFile: string;
  stallTimeoutMs: number;
  metrics: DaemonMetrics;
  log: Logger;
  /** Where copies fetched from peers are recorded while they run (this node's peer server serves them). */
  copies?: CopiesInProgress;
}

function peerRef(p: PeerOffer): PeerRef {
  return {
    node: p.node,
    url: `http://${p.address}`,
    summary: p.pieces,
    sameZone: p.sameZone,
    ...(p.inProgress ? { partial: true } : {}),
    ...(p.bytesDone !== undefined ? { bytesDone: p.bytesDone } : {}),
  };
}

/**
 * What the download manager does with peers: fetch a model's verified pieces from the nodes that offer it
 * (serving those verified so far meanwhile, and writing the manifest they published beside it, so this node
 * serves the same once complete), and hash a folder the origin filled into the manifest it will serve.
 */
export function peerTransfer(o: PeerTransferOptions): PeerTransfer {
  return {
    async fetch(req) {
      const r = await fetchFromPeers({
        storageKey: req.model.storageKey,
        workDir: req.workDir,
        limitBytes: req.limitBytes,
        summary: req.from.pieces,
        peers: req.from.peers.map(peerRef),
        ...(o.node !== undefined ? { self: o.node } : {}),
        morePeers: () => req.offers().map(peerRef),
        ...(o.copies ? { copies: o.copies } : {}),
        token: async () => (await readFile(o.tokenFile, 'utf8')).trim(),
        signal: req.signal,
        stallTimeoutMs: o.stallTimeoutMs,
        onBytes: (n, _node, zone) => req.onBytes(n, zone),
        onBadPiece: (node) => {
          o.metrics.peerPieceFailures.inc({ peer: node });
          o.log.warn(
            { model: req.model.modelName, storageKey: req.model.storageKey, peer: node },
            'a piece from a peer failed its hash: that peer is not used again for this model',
          );
        },
        log: o.log,
      });
      await writeManifest(req.workDir, r.manifest);
      return { bytes: r.bytes, files: r.files, pieces: r.summary, byNode: Object.fromEntries(r.byPeer) };
    },
    seed: ({ storageKey, workDir, onOffer }) =>
      new LiveSeed({ storageKey, workDir, copies: o.copies ?? new CopiesInProgress(), log: o.log, onOffer }),
    async describe(dir, storageKey, signal, seeding): Promise<PiecesSummary | undefined> {
      const known = seeding instanceof LiveSeed ? await seeding.known() : undefined;
      const built = await buildManifest(dir, storageKey, signal, PIECE_SIZE, known);
      if (built.unlisted.length > 0) {
        o.log.warn(
          { storageKey, links: built.unlisted.slice(0, 20), count: built.unlisted.length },
          'model holds links (or other entries that are not files): peers cannot copy it, it is not offered to them',
        );
        return undefined;
      }
      await writeManifest(dir, built.bytes);
      return built.summary;
    },
  };
}
