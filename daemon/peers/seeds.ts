import type { LocalModelNode } from '../../api/types.ts';
import { isNodeReady, zoneOf } from '../../kube/node-facts.ts';
import type { Node } from '../../kube/types.ts';
import {
  COPY_QUEUED,
  SEED_SETTLE_MIN_MS,
  SEED_SETTLE_MS,
  WAITING_FOR_SEED,
  type SeedScope,
} from '../node-cache/peer-rules.ts';

/**
 * Which other nodes may seed each model this node wants, from their LocalModelNodes and Nodes: same zone (any, with
 * scope 'cluster'), serving peers (a peer address in their status), wanting the model and not holding it yet, Ready,
 * not failed, and not stalled: its bytesDone has not stayed the same for `stallMs` unless it waits for a seed itself
 * (a copy that stopped moving, one queued behind other downloads, a daemon that never reported the model). Keeps,
 * between passes, when each node's progress last moved and when this node first wanted each model.
 */
export class SeedCandidates {
  readonly #stallMs: number;
  readonly #scope: SeedScope;
  /** `node/key` → the state and bytesDone last seen, and when either last changed (ms). */
  #progress = new Map<string, { seen: string; since: number }>();
  /** Storage key → when this node first wanted it (ms). */
  #wantedSince = new Map<string, number>();

  constructor(stallMs: number, scope: SeedScope = 'zone') {
    this.#stallMs = stallMs;
    this.#scope = scope;
  }

  /**
   * The candidates by storage key for the models in `wanted` (keys this node wants), seen at `now`; those of them
   * already fetching it from the source (Downloading not from peers, or Pending neither waiting for a seed nor queued
   * to copy); and the keys wanted too recently to decide (see SEED_SETTLE_MS).
   */
  observe(
    lmns: readonly LocalModelNode[],
    nodeOf: (name: string) => Node | undefined,
    self: string,
    wanted: ReadonlySet<string>,
    now: number,
  ): {
    candidates: Map<string, string[]>;
    fetching: Map<string, string[]>;
    settling: Set<string>;
    unshareable: Set<string>;
  } {
    const zone = zoneOf(nodeOf(self));
    const out = new Map<string, string[]>();
    const fetching = new Map<string, string[]>();
    const unshareable = new Set<string>();
    const progress = new Map<string, { seen: string; since: number }>();
    /** Storage key → whether every other node seen wanting it has reported it in its status. */
    const reported = new Map<string, boolean>();
    for (const lmn of lmns) {
      const name = lmn.metadata.name;
      if (!name || name === self || !lmn.status?.peer?.address) continue;
      const node = nodeOf(name);
      if (!node || !isNodeReady(node) || (this.#scope === 'zone' && zoneOf(node) !== zone)) continue;
      for (const m of lmn.spec?.localModels ?? []) {
        const key = m.storageKey;
        if (!wanted.has(key)) continue;
        const state = lmn.status.modelStatus?.[m.modelName];
        const detail = lmn.status.models?.[m.modelName];
        reported.set(key, (reported.get(key) ?? true) && detail !== undefined);
        // A peer-serving node that holds it complete without a manifest cannot share it (it holds links).
        if (state === 'ModelDownloaded' && !detail?.pieces) unshareable.add(key);
        if (state === 'ModelDownloaded' || state === 'ModelDownloadError') continue;
        const waiting = state === 'ModelDownloadPending' && detail?.reason === WAITING_FOR_SEED;
        // A node that stops waiting and starts fetching is fresh: the stall clock counts from that change.
        const seen = `${state ?? 'unreported'}/${waiting}/${detail?.bytesDone ?? 0}`;
        const last = this.#progress.get(`${name}/${key}`);
        const since = last && last.seen === seen ? last.since : now;
        progress.set(`${name}/${key}`, { seen, since });
        if (!waiting && now - since > this.#stallMs) continue;
        out.set(key, [...(out.get(key) ?? []), name]);
        // Fetching from the source: not copying from peers (which publishes the copy's manifest meanwhile, or says
        // it is queued to).
        const copying =
          (detail?.pieces !== undefined && detail.pieces.live !== 'origin') || detail?.reason === COPY_QUEUED;
        if (!waiting && !copying && state !== undefined) fetching.set(key, [...(fetching.get(key) ?? []), name]);
      }
    }
    this.#progress = progress;
    const wantedSince = new Map<string, number>();
    const settling = new Set<string>();
    for (const key of wanted) {
      const since = this.#wantedSince.get(key) ?? now;
      wantedSince.set(key, since);
      const age = now - since;
      // Alone so far: the whole settle time (others may not be seen yet); else until all others reported it.
      if (age < SEED_SETTLE_MS && !(age >= SEED_SETTLE_MIN_MS && reported.get(key) === true)) settling.add(key);
    }
    this.#wantedSince = wantedSince;
    return { candidates: out, fetching, settling, unshareable };
  }
}
