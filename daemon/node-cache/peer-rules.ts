import { createHash } from 'node:crypto';
import type { LocalModelInfo } from '../../api/types.ts';
import type { PiecesSummary } from '../../disk/layout.ts';
import type { NodeAction, NodeObservation, PeerOffer } from './plan.ts';

// The node plan's peer-to-peer rules: who fetches a model from its source for its zone (the seed), who waits,
// and which peers a copy is taken from. Pure, like the plan that calls them.

/** Where seeds are chosen (--peer-seeds): one per zone, or one for the whole cluster. */
export type SeedScope = 'zone' | 'cluster';

/** The reason a model's entry gives while this node waits for its zone's seed (other nodes read it). */
export const WAITING_FOR_SEED = 'WaitingForSeed';

/** The reason of a download queued behind others that is to copy from peers: no seed (other nodes read it). */
export const COPY_QUEUED = 'CopyFromPeersQueued';

/**
 * How long a model newly wanted here waits before this node decides it seeds it: the controller writes the nodes'
 * specs one after the other, and their daemons report them a moment later; deciding at once would see no one else.
 */
export const SEED_SETTLE_MS = 2000;

/**
 * The settle time ends after this much once every other node seen wanting the model has reported it (then nobody is
 * left to wait for; specs written a moment later meet a seed that started, and wait for it). Settling nodes look
 * again this often.
 */
export const SEED_SETTLE_MIN_MS = 500;

/** How often a node waiting for its zone's seed looks again (events from the seed's status wake it sooner). */
export const SEED_RECHECK_MS = 5000;

/**
 * The node that fetches a model from its source for its zone: the highest rendezvous score (sha256 of key and
 * node name) among the candidates and `self`. Every node computes the same answer from the same statuses, and
 * when the seed drops out only the models it seeded move. Pure.
 */
export function seedOf(key: string, self: string, candidates: readonly string[]): string {
  let best = self;
  let bestScore = '';
  for (const node of new Set([self, ...candidates])) {
    const score = createHash('sha256').update(`${key}\0${node}`).digest('hex');
    if (score > bestScore || (score === bestScore && node < best)) [best, bestScore] = [node, score];
  }
  return best;
}

/**
 * The seed this node waits for before it copies a model from peers, or undefined when it fetches now: peers off,
 * a peer offers it already, a folder to adopt is here, or this node is the seed.
 */
export function waitsForSeed(m: LocalModelInfo, o: NodeObservation): string | undefined {
  const key = m.storageKey;
  if (
    !o.seedCandidates ||
    o.self === undefined ||
    o.disk.unmarked?.has(key) ||
    o.unshareable?.has(key) ||
    usableGroups(offersFor(key, o)).length > 0
  )
    return undefined;
  if (o.seedSettling?.has(key)) return SETTLING;
  // A seed this node's copy failed with is not copied from while its status stays the same, but it stays the seed
  // until it is no candidate (stalled for the stall time, or NotReady): it may only be slow to report.
  const started = [...(o.seedsFetching?.get(key) ?? [])].sort();
  if (started.length > 0) return started[0];
  const seed = seedOf(key, o.self, o.seedCandidates.get(key) ?? []);
  if (seed !== o.self) return seed;
  const back = o.handedBack?.get(key);
  return back && o.now - back.at < SEED_SETTLE_MS ? SETTLING : undefined;
}

/** What an offer says of its node's copy: when it is the same as when a copy from it failed, it is not taken. */
export function offerSeen(p: PeerOffer): string {
  return `${p.inProgress ? 'copying' : 'complete'}/${p.pieces.live ?? ''}/${p.pieces.digest}/${p.bytesDone ?? ''}`;
}

/** Whether `p` stands as it did when a copy of `key` from it failed (HandBack.avoided). */
function avoided(key: string, p: PeerOffer, o: NodeObservation): boolean {
  return o.handedBack?.get(key)?.avoided.get(p.node) === offerSeen(p);
}

/**
 * The offers of `key` a copy may be taken from: complete copies anywhere, and copies still in progress in this
 * node's zone (each zone fetches from the source through its own seed, so no zone's cold fan-out waits on another's
 * and the zones' uplinks carry nothing of it), or in any zone when seeds are chosen for the cluster; those a failed
 * copy met are not, until they change.
 */
export function offersFor(key: string, o: NodeObservation): PeerOffer[] | undefined {
  const anyZone = o.seedScope === 'cluster';
  return o.peers?.get(key)?.filter((p) => (anyZone || p.sameZone || !p.inProgress) && !avoided(key, p, o));
}

/** waitsForSeed's answer while the seed cannot be chosen yet (a value no node name can be). */
export const SETTLING = '';

/**
 * Where a model's bytes come from: the peers that offer the manifest most of them agree on (ties: the lower
 * digest), manifests offered in this node's zone first (a zone copies from its own seed, not across, while that
 * seed runs), then complete manifests before live ones (those of a seed still fetching from the source: taken only
 * with that seed among them, which vouches for the hashes), in node-name order; the origin when no peer offers it.
 * Peers that fail fall back to the origin.
 */
export function downloadFrom(m: LocalModelInfo, offers: readonly PeerOffer[] | undefined): NodeAction {
  const live = (g: PeerOffer[]): boolean => g[0]!.pieces.live !== undefined;
  const away = (g: PeerOffer[]): boolean => !g.some((p) => p.sameZone);
  const best = usableGroups(offers).sort(
    (a, b) =>
      Number(away(a)) - Number(away(b)) ||
      Number(live(a)) - Number(live(b)) ||
      b.length - a.length ||
      (a[0]!.pieces.digest < b[0]!.pieces.digest ? -1 : 1),
  )[0];
  if (!best) return { kind: 'download', model: m, from: 'origin' };
  const seed = best.find((p) => p.pieces.live === 'origin');
  return { kind: 'download', model: m, from: 'peers', pieces: (seed ?? best[0]!).pieces, peers: nearestFirst(best) };
}

/** Offers by the manifest they serve, without live ones whose seed is not among them (nobody vouches for those). */
function usableGroups(offers: readonly PeerOffer[] | undefined): PeerOffer[][] {
  const byDigest = new Map<string, PeerOffer[]>();
  for (const p of offers ?? []) byDigest.set(p.pieces.digest, [...(byDigest.get(p.pieces.digest) ?? []), p]);
  return [...byDigest.values()].filter((g) => !g[0]!.pieces.live || g.some((p) => p.pieces.live === 'origin'));
}

/**
 * The peers a running copy from peers takes pieces from now: those offering its manifest; of a live copy, the
 * complete ones too (the seed once done: it anchors the manifest the copy assembled).
 */
export function copySources(pieces: PiecesSummary, offers: readonly PeerOffer[] | undefined): PeerOffer[] {
  return nearestFirst(
    (offers ?? []).filter((p) => p.pieces.digest === pieces.digest || (pieces.live && !p.inProgress && !p.pieces.live)),
  );
}

/** Peers in this node's zone first (cross-zone traffic is slower and often billed), then by name. */
function nearestFirst(peers: readonly PeerOffer[]): PeerOffer[] {
  return [...peers].sort(
    (a, b) => Number(b.sameZone) - Number(a.sameZone) || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0),
  );
}
