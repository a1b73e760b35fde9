import type { ManifestSummary, PieceManifest } from './protocol.ts';
import { countPieces, hasBit, pieceOffsets, UNKNOWN_HASH } from './protocol.ts';
import { ReceiverGate } from './spread.ts';

// Which piece a copy from peers asks of which peer next (fetch.ts runs the requests): the least loaded idle peer,
// this zone's first; the rarest piece it holds; in a live copy, pieces gated for first receivers (spread.ts).

/** Rarest first looks at this many queued pieces per pick (the queue's own random order does the rest). */
const RAREST_OF = 64;

/** A peer of one copy, as the fetch knows it. */
export interface Peer {
  node: string;
  base: URL | undefined;
  busy: boolean;
  /** Why it is not asked again for this model. */
  dropped?: string;
  consecutive: number;
  /** Not asked before this time (after a failure). */
  readyAt: number;
  bytes: number;
  /** Still copying the model: `have` says which pieces it holds, and a 404 for a piece is "not yet". */
  partial: boolean;
  summary: ManifestSummary | undefined;
  /**
   * Its piece hashes are taken (live copies): it fetches the model from its source itself (live 'origin'), or it
   * is complete and serves the manifest whose digest it published.
   */
  vouches: boolean;
  /** The pieces it holds as last heard (undefined: every piece, a complete copy). */
  have?: Uint8Array;
  /** When it is asked `have` next (ms); whether it is being asked now. */
  haveDue: number;
  asking: boolean;
  /** Bytes it reported having, as last heard (PeerRef.bytesDone). */
  reported: number;
  /** How many pieces its last answer to an ask said it holds (bits cleared here on a 404 do not count). */
  heard?: number;
  /** In another zone than this node (PeerRef.sameZone false): of a live copy, its pieces are gated (spread.ts). */
  crossZone: boolean;
}

/** A piece still to fetch. */
export interface Task {
  file: number;
  piece: number;
  /** Failed tries of this piece, by node. */
  fails: Map<string, number>;
}

/** Whether `p` fetches the model from its source itself and serves it meanwhile (a seed, live 'origin'). */
function seeding(p: Peer): boolean {
  return p.partial && p.vouches && p.summary?.live === 'origin';
}

/** Whether a live copy asks `p` for a piece at once only as a first receiver of it: a seed, or in another zone. */
function gated(p: Peer): boolean {
  return seeding(p) || p.crossZone;
}

export interface PickerOptions {
  manifest: PieceManifest;
  /** A live copy (of a seed still fetching from its source): hashes become known as it runs. */
  live: boolean;
  /** The copy's peers and queue, shared with the fetch, which changes them (and says so: holdersChanged, …). */
  peers: readonly Peer[];
  queue: readonly Task[];
  /** A piece a peer failed this many times is not asked of it again. */
  attempts: number;
  /** This node's name: of a live copy, it ranks first receivers (spread.ts); without it, nothing is gated. */
  self?: string;
  /** Tests only: RECEIVER_GRACE_MS (spread.ts). */
  receiverGraceMs?: number;
  /** When the copy began (ms): pieces whose hash was known then count from it (ReceiverGate). */
  startedAt: number;
}

/**
 * The fetch's choices of what to ask whom. It reads the peers and the queue as the fetch keeps them; the fetch tells
 * it when what peers hold changed (holdersChanged), when the copiers did (copiersChanged) and when a piece's hash
 * became known (learnt).
 */
export class PiecePicker {
  readonly #m: PieceManifest;
  readonly #peers: readonly Peer[];
  readonly #queue: readonly Task[];
  readonly #attempts: number;
  readonly #offsets: number[];
  readonly #count: number;
  /** In a live copy the seed's newest pieces are the rarest for every copier at once (see pick). */
  readonly #sample: number;
  /**
   * Spread (spread.ts): in a live copy, a new piece is asked for at once, from the seed or from a peer in another
   * zone, only by its first receivers among this zone's copiers; this node, when it is none, waits a grace from when
   * it learnt the piece's hash for a copier to offer it. So the seed's link and a zone's uplink each carry a piece
   * to a few nodes of a zone, and the zone's other nodes copy it from them.
   */
  readonly #gate: ReceiverGate | undefined;
  /** Peers still copying that hold each piece, by piece index (undefined: recounted when next needed). */
  #holders: Uint16Array | undefined;
  /** This zone's copiers, as the gate asks for them (once per ranking, not per piece looked at). */
  readonly #copiersNow = (): string[] => this.#copiers();

  constructor(o: PickerOptions) {
    this.#m = o.manifest;
    this.#peers = o.peers;
    this.#queue = o.queue;
    this.#attempts = o.attempts;
    this.#offsets = pieceOffsets(o.manifest);
    this.#count = countPieces(o.manifest);
    // There the queue's random order alone spreads them (p2p bench: 2.01× against 2.06–2.13× with rarity).
    this.#sample = o.live ? 1 : RAREST_OF;
    this.#gate =
      o.live && o.self !== undefined
        ? new ReceiverGate(o.self, this.#count, o.startedAt, o.receiverGraceMs)
        : undefined;
  }

  /** What some peer holds changed (an answer, a 404, a peer dropped or joined): rarity is counted again. */
  holdersChanged(): void {
    this.#holders = undefined;
  }

  /** A copier joined, left, was dropped, or started or stopped vouching: first receivers are ranked again. */
  copiersChanged(): void {
    this.#gate?.copiersChanged();
  }

  /** The hash of piece `i` (numbered across the manifest's files) became known at `at`. */
  learnt(i: number, at: number): void {
    this.#gate?.learnt(i, at);
  }

  /** The piece index of a task, across the manifest's files. */
  index(t: { file: number; piece: number }): number {
    return this.#offsets[t.file]! + t.piece;
  }

  /** Whether `p` holds `t` as last heard, with its hash known (a live copy asks for no piece before its hash). */
  holds(p: Peer, t: Task): boolean {
    return (
      this.#m.files[t.file]!.pieces[t.piece] !== UNKNOWN_HASH && (p.have === undefined || hasBit(p.have, this.index(t)))
    );
  }

  /**
   * The next piece (its place in the queue) for the least loaded idle peer, those in this node's zone first: of
   * those it holds that it has not failed, the one fewest peers still copying hold (rarest first: a complete peer's
   * upload goes to pieces nobody else can give yet), of the first `sample` in the queue's own random order (a pick
   * costs no more as the model grows); else one it failed fewer than `attempts` times.
   */
  pick(now: number): [Peer, number] | undefined {
    const idle = this.#peers
      .filter((p) => usable(p, now))
      .sort((a, b) => Number(a.crossZone) - Number(b.crossZone) || a.bytes - b.bytes);
    for (const p of idle) {
      const rare = (this.#holders ??= holderCounts(this.#peers, this.#count));
      const floor = p.have ? 1 : 0; // a peer still copying counts among the holders of what it holds
      let best = -1;
      let fewest = Number.POSITIVE_INFINITY;
      let fallback = -1;
      let seen = 0;
      for (let k = 0; k < this.#queue.length && fewest > floor && seen < this.#sample; k++) {
        const t = this.#queue[k]!;
        if (!this.holds(p, t) || this.#gatedUntil(p, t) > now) continue;
        const fails = t.fails.get(p.node) ?? 0;
        if (fails === 0) {
          seen++;
          const r = rare[this.index(t)]!;
          if (r < fewest) [best, fewest] = [k, r];
        } else if (fallback === -1 && fails < this.#attempts) fallback = k;
      }
      if (best !== -1) return [p, best];
      if (fallback !== -1) return [p, fallback];
    }
    return undefined;
  }

  /** When a gated peer may next be asked for a queued piece this node waits for its first receivers to offer. */
  gateOpens(now: number): number | undefined {
    if (!this.#gate) return undefined;
    let at: number | undefined;
    for (const p of this.#peers) {
      if (p.dropped || !gated(p)) continue;
      for (const t of this.#queue) {
        const until = this.#gatedUntil(p, t);
        if (until > now && this.holds(p, t) && (at === undefined || until < at)) at = until;
      }
    }
    return at;
  }

  /** When a peer now waiting out a failure may take a queued piece, if any may. */
  wakeAt(now: number): number | undefined {
    const waiting = this.#peers.filter(
      (p) =>
        !p.dropped &&
        !p.busy &&
        p.readyAt > now &&
        this.#queue.some((t) => this.holds(p, t) && (t.fails.get(p.node) ?? 0) < this.#attempts),
    );
    return waiting.length > 0 ? Math.min(...waiting.map((p) => p.readyAt)) : undefined;
  }

  /** Until when `p` is not asked for `t` (ms since the epoch; 0, no wait). */
  #gatedUntil(p: Peer, t: Task): number {
    return this.#gate && gated(p) ? this.#gate.until(this.index(t), this.#copiersNow) : 0;
  }

  /** This zone's copiers: peers still copying from peers (not vouching), not dropped, in this node's zone. */
  #copiers(): string[] {
    return this.#peers.filter((x) => !x.dropped && x.partial && !x.vouches && !x.crossZone).map((x) => x.node);
  }
}

function usable(p: Peer, now: number): boolean {
  return !p.dropped && !p.busy && p.readyAt <= now;
}

/** How many peers still copying (not dropped) hold each piece, by index over the whole manifest. */
function holderCounts(peers: readonly Peer[], count: number): Uint16Array {
  const out = new Uint16Array(count);
  for (const p of peers) {
    if (p.dropped || !p.have) continue;
    for (let k = 0; k < count; k++) if (hasBit(p.have, k)) out[k]!++;
  }
  return out;
}
