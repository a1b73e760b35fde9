// Which copiers of a live copy take each new piece from the seed itself. Every copier learns of a seed's new piece at
// once (long-polled manifests), and all asking the seed for it would cost its link one upload per copier. Instead a
// rendezvous hash of node and piece names a few first receivers per piece; the others copy it from them, and ask
// the seed only when no copier offered it in time (the first receivers are slow, gone or not copying yet). Ranks are
// per zone: a node ranks only its zone's copiers, and asks peers in other zones for a piece at once only when it is a
// first receiver of it, so a zone's uplink carries each piece to a few of its nodes. Pure.

/** Copiers that take each new piece from the seed itself. */
export const FIRST_RECEIVERS = 2;

/** How long after a piece's hash is known a copier that is no first receiver of it waits before asking the seed. */
const RECEIVER_GRACE_MS = 1500;

/**
 * For each of `count` pieces (numbered across the manifest's files), 1 when `self` is among the `receivers` copiers
 * of `copiers` (self counted whether listed or not) that rank highest for it, else 0. Every copier that sees the
 * same copiers computes the same ranks.
 */
export function firstReceiverOf(
  self: string,
  copiers: readonly string[],
  count: number,
  receivers: number = FIRST_RECEIVERS,
): Uint8Array {
  const others = [...new Set(copiers)].filter((c) => c !== self).map(nameHash);
  const mine = nameHash(self);
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const own = score(mine, i);
    let above = 0;
    for (const o of others) if (score(o, i) > own && ++above >= receivers) break;
    out[i] = above < receivers ? 1 : 0;
  }
  return out;
}

/** FNV-1a of a node's name (32 bits). */
function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** A node's rank for piece `i`: its name hash and the piece number mixed (murmur3's finalizer), 32 bits. */
function score(node: number, i: number): number {
  let h = (node ^ Math.imul(i + 1, 0x9e3779b9)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * When this node may ask a seed still fetching from its source for each piece: at once for the pieces it is a first
 * receiver of, else `graceMs` after it learnt the piece's hash (pieces known when the copy began count from then).
 * Ranks are computed when first asked for, and again after the copiers changed. Time is given, never read.
 */
export class ReceiverGate {
  readonly #self: string;
  readonly #count: number;
  readonly #graceMs: number;
  /** When each piece's hash became known here (ms since the epoch). */
  readonly #knownAt: Float64Array;
  #firsts: Uint8Array | undefined;

  constructor(self: string, count: number, startedAt: number, graceMs: number = RECEIVER_GRACE_MS) {
    this.#self = self;
    this.#count = count;
    this.#graceMs = graceMs;
    this.#knownAt = new Float64Array(count).fill(startedAt);
  }

  /** The hash of piece `i` became known at `at`. */
  learnt(i: number, at: number): void {
    this.#knownAt[i] = at;
  }

  /** The copiers changed (one joined, left, or was dropped): ranks are computed again when next needed. */
  copiersChanged(): void {
    this.#firsts = undefined;
  }

  /** Until when (ms since the epoch) the seed is not asked for piece `i`; 0 for a piece this node is first for. */
  until(i: number, copiers: () => readonly string[]): number {
    this.#firsts ??= firstReceiverOf(this.#self, copiers(), this.#count);
    return this.#firsts[i] ? 0 : this.#knownAt[i]! + this.#graceMs;
  }
}
