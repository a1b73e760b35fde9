import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent } from 'undici';
import { DOWNLOAD_DIR } from '../../disk/layout.ts';
import { DownloadError, diskError, IncompleteCopyError } from '../../download/errors.ts';
import { asDownloadError } from '../../download/failure-policy.ts';
import { cancelled } from '../../download/parallel.ts';
import type { KeptPieces } from '../../download/types.ts';
import { backoffDelay, sleep } from '../../ops/backoff.ts';
import type { Logger } from '../../ops/logger.ts';
import type { CopiesInProgress, CopyRecord } from './copies.ts';
import { MIN_PIECE_SIZE, parseManifest } from './manifest-check.ts';
import { peerGet, peerGetPiece, type PeerRefusal } from './peer-http.ts';
import { partialPath, placeFile, preparePartial, pruneWorkDir, removePartials, writePiece } from './piece-files.ts';
import { PiecePicker, type Peer, type Task } from './piece-picker.ts';
import {
  countBits,
  countPieces,
  decodeHave,
  digestOf,
  hasBit,
  havePath,
  liveSummary,
  manifestPath,
  pieceLength,
  pieceOffsets,
  piecePath,
  serializeManifest,
  UNKNOWN_HASH,
  waitQuery,
  type ManifestSummary,
  type PieceManifest,
} from './protocol.ts';

/** A node that holds the model (or copies it from peers itself), and where its daemon serves pieces. */
export interface PeerRef {
  node: string;
  /** Base URL, `http://host:port`. */
  url: string;
  /** It is still copying the model: which pieces it holds is asked (`have`), and a 404 for a piece means "not yet". */
  partial?: boolean;
  /** What it published of the model (its LocalModelNode status): which manifest it serves. */
  summary?: ManifestSummary;
  /** Still copying: the bytes it reported having. A vouching peer whose count grows is making progress, no stall. */
  bytesDone?: number;
  /** False: it is in another zone than this node (topology.kubernetes.io/zone); unset, the same. */
  sameZone?: boolean;
}

export interface PeerFetchRequest {
  storageKey: string;
  /** The staging folder, owned by the caller: files end at their paths in it. */
  workDir: string;
  /** Most bytes the model may hold (modelSize plus tolerance). */
  limitBytes: number;
  /** What the serving nodes published: the manifest is accepted only with exactly this digest. */
  summary: ManifestSummary;
  peers: readonly PeerRef[];
  /** This node's name: of a live copy, its peers' too rank it among the first receivers of each piece (spread.ts). */
  self?: string;
  /** Tests only: RECEIVER_GRACE_MS (spread.ts). */
  receiverGraceMs?: number;
  /** Peers offering the model now (polled while the fetch runs): those not known yet join it. */
  morePeers?: () => readonly PeerRef[];
  /** Where this copy is recorded while it runs, so this node's peer server serves the pieces verified so far. */
  copies?: CopiesInProgress;
  /**
   * How long after an answer with no news a peer still copying is asked again which pieces it holds. Default 1 s.
   * After an answer with news the next ask follows ASK_AGAIN_MS later (long-polled: answered once the peer holds
   * more than it said).
   */
  haveRefreshMs?: number;
  /** The bearer token, read again for every request (tokens rotate). */
  token: () => Promise<string>;
  signal: AbortSignal;
  /** Peers asked at once (one request each at a time): the number of pieces in flight. Default 4. */
  maxPeers?: number;
  /** Failures in a row after which a peer is not asked again, and tries of one piece on one peer. Default 3. */
  pieceAttempts?: number;
  /**
   * Longest wait for an answer's headers, or between two chunks of its body; and for a peer still copying to hold
   * a piece no other peer has, before the fetch gives up on them.
   */
  stallTimeoutMs: number;
  /** Wait before a peer that failed is asked again (its Retry-After when longer, capped at maxMs). */
  backoff?: { baseMs: number; maxMs: number };
  /** Bytes of a verified piece written, the node they came from, and whether it is in this node's zone. */
  onBytes?: (n: number, fromNode: string, zone: 'same' | 'cross') => void;
  /** `node` served a piece that does not verify: it is not asked again for this model. */
  onBadPiece?: (node: string) => void;
  log: Logger;
  /** Tests only: accept pieces smaller than a real manifest may use (1 MiB). */
  minPieceSize?: number;
  /**
   * A live copy (summary.live): how long, once every piece is written, a complete peer may take to publish the
   * digest of the manifest assembled (the seed finishing); nothing is committed before. Default 60 s.
   */
  anchorTimeoutMs?: number;
}

export interface PeerFetchResult {
  /** Bytes of the model (kept from an earlier run or fetched now). */
  bytes: number;
  files: number;
  /** Bytes fetched in this run, by node. */
  byPeer: Map<string, number>;
  /** The manifest's exact bytes as published: the caller writes them beside the model to serve it alike. */
  manifest: Buffer;
  /** What this node publishes of it once complete (of a live copy: the summary the anchoring peer published). */
  summary: ManifestSummary;
}

/** Most bytes a manifest may have: a peer that sends more is not read further. */
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;
const DEFAULT_BACKOFF = { baseMs: 250, maxMs: 5000 };
const HAVE_REFRESH_MS = 1000;
/** Longest a long-polled ask waits for news (protocol.ts waitQuery); at most half the stall timeout. */
const LONG_POLL_MS = 10_000;
/** After an answer with news, the next ask of that peer waits this long, and a millisecond per KiB answered. */
const ASK_AGAIN_MS = 50;
const ANCHOR_TIMEOUT_MS = 60_000;
const ANCHOR_POLL_MS = 50;
/**
 * Fetches a model's pieces from peers into `req.workDir`, each verified against the manifest before a byte
 * of it is written. Why: nodes that hold a model spare the origin. Failures end in a DownloadError
 * (SourceUnavailable when no usable peer is left) on which the caller falls back to the origin; verified
 * pieces stay in `.download/` for the next attempt.
 */
export async function fetchFromPeers(req: PeerFetchRequest): Promise<PeerFetchResult> {
  const agent = new Agent({ connect: { timeout: req.stallTimeoutMs } });
  try {
    return await run(req, agent);
  } catch (err) {
    if (req.signal.aborted) throw cancelled(req.signal);
    throw asDownloadError(err, `fetching ${req.storageKey} from peers`);
  } finally {
    await agent.destroy();
  }
}

async function run(req: PeerFetchRequest, agent: Agent): Promise<PeerFetchResult> {
  // Complete copies first: the manifest is asked of them before peers that may not serve it yet.
  const peers = req.peers.map(toPeer).sort((a, b) => Number(a.partial) - Number(b.partial));
  const { manifest: m, bytes: manifest } = await getManifest(req, agent, peers);
  const live = req.summary.live !== undefined;
  const kept = await pruneWorkDir(req.workDir, m, req.signal);
  await mkdir(join(req.workDir, DOWNLOAD_DIR), { recursive: true }).catch((err: unknown) => {
    throw diskError(err, `creating ${DOWNLOAD_DIR} in ${req.workDir}`);
  });
  const copy = req.copies?.begin(req.storageKey, req.workDir, m, live ? {} : { bytes: manifest });
  /** Verified pieces by file, of files not placed yet: handed to the source's download when the copy fails. */
  const done = new Map<number, Set<number>>();
  try {
    const queue: Task[] = [];
    for (const [i, f] of m.files.entries()) {
      if (req.signal.aborted) throw cancelled(req.signal);
      if (kept.has(i)) {
        copy?.verifiedFile(i);
        continue;
      }
      if (f.size === 0) {
        await placeFile(req.workDir, f.path, undefined);
        continue;
      }
      const partial = partialPath(req.workDir, f.path);
      const verified = await preparePartial(partial, f, m.pieceSize, req.signal);
      for (const piece of verified) copy?.verified({ file: i, piece });
      if (verified.size === f.pieces.length && !live) await placeFile(req.workDir, f.path, partial);
      else done.set(i, verified);
      for (let p = 0; p < f.pieces.length; p++)
        if (!verified.has(p)) queue.push({ file: i, piece: p, fails: new Map() });
    }
    // In an order of its own: nodes copying at once then hold different pieces, which they trade.
    for (let i = queue.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [queue[i], queue[j]] = [queue[j]!, queue[i]!];
    }
    let byPeer: Map<string, number>;
    let summary: ManifestSummary;
    try {
      byPeer = await fetchPieces(req, agent, m, peers, queue, done, copy);
      if (live) req.log.debug({ storageKey: req.storageKey }, 'every piece written: the copy waits for its anchor');
      summary = live ? await anchored(req, m) : req.summary;
    } catch (err) {
      if (req.signal.aborted) throw err;
      const e = asDownloadError(err, `fetching ${req.storageKey} from peers`);
      // Hashes that changed under the copy (the seed's source changed): its pieces are likely of another version.
      const kept = e.code === 'IntegrityMismatch' ? [] : keptPieces(req, m, done);
      // Partial files that hold no piece handed on hold only zeros: gone now, not when the source's download ends.
      const handed = new Set(kept.map((k) => k.file));
      await removePartials(
        [...done.keys()].map((i) => partialPath(req.workDir, m.files[i]!.path)).filter((f) => !handed.has(f)),
      );
      throw new IncompleteCopyError(e, kept);
    }
    for (const i of done.keys())
      await placeFile(req.workDir, m.files[i]!.path, partialPath(req.workDir, m.files[i]!.path));
    await rm(join(req.workDir, DOWNLOAD_DIR), { recursive: true, force: true });
    const bytes = live ? serializeManifest(m) : manifest;
    return { bytes: m.files.reduce((a, f) => a + f.size, 0), files: m.files.length, byPeer, manifest: bytes, summary };
  } finally {
    copy?.end();
  }
}

/** The verified pieces of files not placed, as the source's download may keep them (KeptPieces). */
function keptPieces(req: PeerFetchRequest, m: PieceManifest, done: Map<number, Set<number>>): KeptPieces[] {
  return [...done]
    .filter(([, pieces]) => pieces.size > 0)
    .map(([i, pieces]) => ({
      path: m.files[i]!.path,
      size: m.files[i]!.size,
      file: partialPath(req.workDir, m.files[i]!.path),
      pieceSize: m.pieceSize,
      pieces: [...pieces].sort((a, b) => a - b),
    }));
}

function toPeer(ref: PeerRef): Peer {
  let base: URL | undefined;
  try {
    base = new URL(ref.url);
  } catch {
    base = undefined;
  }
  const ok = base !== undefined && (base.protocol === 'http:' || base.protocol === 'https:');
  return {
    node: ref.node,
    base: ok ? base : undefined,
    busy: false,
    consecutive: 0,
    readyAt: 0,
    bytes: 0,
    partial: ref.partial === true,
    summary: ref.summary,
    vouches: vouches(ref),
    haveDue: 0,
    asking: false,
    reported: ref.bytesDone ?? 0,
    crossZone: ref.sameZone === false,
    ...(ok ? {} : { dropped: `its URL '${ref.url.slice(0, 200)}' is no http(s) URL` }),
  };
}

/** Whether a live copy takes `ref`'s hashes: it fetches from the source itself, or is complete (see Peer.vouches). */
function vouches(ref: PeerRef): boolean {
  return ref.summary !== undefined && (ref.summary.live === undefined ? !ref.partial : ref.summary.live === 'origin');
}

async function token(req: PeerFetchRequest): Promise<string> {
  try {
    return await req.token();
  } catch (err) {
    throw new DownloadError('AccessDenied', `could not read the token for peers: ${(err as Error)?.message}`, {
      cause: err,
    });
  }
}

/** The manifest from the first peer that serves exactly the published bytes; a peer serving others is dropped. */
async function getManifest(
  req: PeerFetchRequest,
  agent: Agent,
  peers: Peer[],
): Promise<{ manifest: PieceManifest; bytes: Buffer }> {
  const key = req.storageKey;
  const failures: string[] = [];
  let mismatch = false;
  for (const p of peers) {
    if (req.signal.aborted) throw cancelled(req.signal);
    if (p.dropped || !p.base || (req.summary.live && !p.vouches)) continue;
    const a = await peerGet(agent, new URL(manifestPath(key), p.base), {
      token: await token(req),
      signal: req.signal,
      timeoutMs: req.stallTimeoutMs,
      maxBytes: MAX_MANIFEST_BYTES,
    });
    if (req.signal.aborted) throw cancelled(req.signal);
    if (!a.ok) {
      failures.push(`${p.node}: ${a.why}`);
      continue;
    }
    try {
      return { manifest: acceptManifest(req, p, a.bytes), bytes: a.bytes };
    } catch (err) {
      // Other bytes than published: that peer is stale or lies; the next may serve the right ones. Any other
      // fault is in the published bytes themselves, which every peer serves alike.
      if (!(err instanceof DownloadError) || err.code !== 'IntegrityMismatch') throw err;
      mismatch = true;
      p.dropped = 'served another manifest than published';
      req.log.warn({ node: p.node, storageKey: key }, 'peer served another manifest than published; not used');
      failures.push(`${p.node}: ${err.message}`);
    }
  }
  const why = failures.length > 0 ? failures.slice(0, 5).join('; ') : 'no peer to ask';
  throw new DownloadError(
    mismatch ? 'IntegrityMismatch' : 'SourceUnavailable',
    `no peer served the manifest of ${key} (${why})`,
  );
}

/**
 * The manifest `p` served, parsed and checked: against the summary the fetch follows, and, of a complete peer in a
 * live copy, against the digest that peer published too (its hashes are taken, so they must be the ones it vouches
 * for). IntegrityMismatch when the bytes are not what was published.
 */
function acceptManifest(req: PeerFetchRequest, p: Peer, bytes: Buffer): PieceManifest {
  const min = req.minPieceSize ?? MIN_PIECE_SIZE;
  const own = req.summary.live && p.summary && !p.summary.live ? p.summary : req.summary;
  const m = parseManifest(bytes, own, req.storageKey, req.limitBytes, min);
  if (own !== req.summary && liveSummary(m, 'origin').digest !== req.summary.digest)
    throw new DownloadError(
      'IntegrityMismatch',
      `the manifest ${p.node} published (${own.digest}) lists other files than the live one (${req.summary.digest})`,
    );
  return m;
}

/**
 * A live copy whose every piece is written: waits until a complete peer publishes the digest of the manifest it
 * assembled (the seed that vouched for the hashes, once done) and returns that peer's summary. SourceUnavailable
 * when none does in time: the pieces stay for the next attempt.
 */
async function anchored(req: PeerFetchRequest, m: PieceManifest): Promise<ManifestSummary> {
  const digest = digestOf(serializeManifest(m));
  const wait = req.anchorTimeoutMs ?? ANCHOR_TIMEOUT_MS;
  const start = Date.now();
  let deadline = start + wait;
  for (;;) {
    const refs = req.morePeers?.() ?? req.peers; // who offers the model now
    // A seed still at work (hashing what it kept from an earlier run, committing) is waited for, up to 10 times as
    // long; one that is gone is not.
    if (refs.some((r) => r.partial && r.summary?.live === 'origin'))
      deadline = Math.min(start + 10 * wait, Math.max(deadline, Date.now() + wait));
    const published = refs.map((r) => (r.partial ? undefined : r.summary));
    const anchor = published.find((s) => s && !s.live && s.digest === digest);
    if (anchor) return anchor;
    if (Date.now() > deadline)
      throw new DownloadError(
        'SourceUnavailable',
        `${req.storageKey}: every piece verified against the live manifest, but no complete peer published its ` +
          `digest ${digest} (published: ${[...new Set(published.filter((s) => s && !s.live).map((s) => s!.digest))].join(', ') || 'none'}); ` +
          'the pieces are kept',
      );
    await sleep(ANCHOR_POLL_MS, req.signal);
  }
}

/**
 * Fetches every queued piece: one request per peer at a time, at most `maxPeers` at once, the least loaded
 * peer first, a piece that failed tried on another peer first. A peer still copying the model is asked only for
 * pieces it said it holds (`have`, long-polled; see haveRefreshMs), and its 404 means "not yet", no failure;
 * peers that join meanwhile (`morePeers`) are asked too. Each piece written is recorded in `copy` (served from
 * here). Returns bytes fetched by node once every piece is written and every complete file placed; throws once
 * nothing is in flight and no peer is left, or only peers still copying that held no missing piece for
 * `stallTimeoutMs`.
 */
async function fetchPieces(
  req: PeerFetchRequest,
  agent: Agent,
  m: PieceManifest,
  peers: Peer[],
  queue: Task[],
  done: Map<number, Set<number>>,
  copy: CopyRecord | undefined,
): Promise<Map<string, number>> {
  const maxPeers = Math.max(1, req.maxPeers ?? 4);
  const attempts = Math.max(1, req.pieceAttempts ?? 3);
  const backoff = req.backoff ?? DEFAULT_BACKOFF;
  const refreshMs = Math.max(1, req.haveRefreshMs ?? HAVE_REFRESH_MS);
  const total = queue.length;
  const offsets = pieceOffsets(m);
  const count = countPieces(m);
  const stop = new AbortController();
  const signal = AbortSignal.any([req.signal, stop.signal]);
  /** Ends the asks still waiting for news once every piece is in. */
  const asked = new AbortController();
  const askSignal = AbortSignal.any([signal, asked.signal]);
  const waitMs = Math.max(1, Math.min(LONG_POLL_MS, Math.floor(req.stallTimeoutMs / 2)));
  const inflight = new Set<Promise<void>>();
  const asks = new Set<Promise<void>>();
  const byPeer = new Map<string, number>();
  let fatal: unknown;
  /** When the fetch last moved: a piece written, a peer heard to hold more, a peer joined. */
  let movedAt = Date.now();

  const live = req.summary.live !== undefined;
  /** Pieces whose hash is not known yet (a live copy): not asked for until it is. */
  let unknown = live ? m.files.reduce((n, f) => n + f.pieces.filter((h) => h === UNKNOWN_HASH).length, 0) : 0;
  const picker = new PiecePicker({
    manifest: m,
    live,
    peers,
    queue,
    attempts,
    ...(req.self !== undefined ? { self: req.self } : {}),
    ...(req.receiverGraceMs !== undefined ? { receiverGraceMs: req.receiverGraceMs } : {}),
    startedAt: Date.now(),
  });
  const known = new Set(peers.map((p) => p.node));
  const join = (): void => {
    for (const ref of req.morePeers?.() ?? []) {
      const p = peers.find((x) => x.node === ref.node);
      // A seed still fetching from the source reports its bytes: while they grow, waiting for it is no stall.
      if (p && p.vouches && ref.bytesDone !== undefined && ref.bytesDone > p.reported) {
        p.reported = ref.bytesDone;
        movedAt = Date.now();
      }
      if (p) {
        // Its standing as it publishes it now: a seed that completed holds every piece, one whose download failed
        // and copies from peers vouches for no hash any more.
        p.summary = ref.summary;
        // Its zone as known now (a Node not seen yet when it was first offered counts as in another zone).
        if (p.crossZone !== (ref.sameZone === false)) {
          p.crossZone = ref.sameZone === false;
          picker.copiersChanged();
        }
        if (p.vouches !== vouches(ref)) picker.copiersChanged();
        p.vouches = vouches(ref);
        if (p.partial !== (ref.partial === true)) {
          p.partial = ref.partial === true;
          delete p.have;
          delete p.heard;
          picker.holdersChanged();
          picker.copiersChanged();
        }
      }
      if (known.has(ref.node)) continue;
      known.add(ref.node);
      peers.push(toPeer(ref));
      picker.copiersChanged();
      movedAt = Date.now();
    }
    for (const p of peers)
      if (p.partial && !p.have) {
        p.have = new Uint8Array(Math.ceil(count / 8));
        picker.holdersChanged();
      }
  };
  /**
   * Peers still copying, not dropped: they may come to hold what is missing; of a live copy whose hashes are not
   * all known, the complete peers that vouch for hashes too.
   */
  const copying = (): Peer[] => peers.filter((p) => !p.dropped && p.base && (p.partial || (unknown > 0 && p.vouches)));

  /**
   * Takes the hashes a vouching peer's live manifest knows that this copy does not (a changed hash is fatal: that
   * peer's source changed under it) and returns the pieces it holds: those it has hashes for, or all when complete.
   */
  const learn = (p: Peer, theirs: PieceManifest): Uint8Array | undefined => {
    for (const [i, f] of theirs.files.entries())
      for (const [j, h] of f.pieces.entries()) {
        const mine = m.files[i]!.pieces[j]!;
        if (h !== UNKNOWN_HASH && mine !== UNKNOWN_HASH && mine !== h)
          throw new DownloadError(
            'IntegrityMismatch',
            `${p.node} lists another hash for piece ${j} of '${f.path.slice(0, 200)}' of ${req.storageKey}`,
          );
      }
    const bits = new Uint8Array(Math.ceil(count / 8));
    for (const [i, f] of theirs.files.entries())
      for (const [j, h] of f.pieces.entries()) {
        if (h === UNKNOWN_HASH) continue;
        const mine = m.files[i]!.pieces;
        if (mine[j] === UNKNOWN_HASH) {
          mine[j] = h;
          unknown--;
          picker.learnt(offsets[i]! + j, Date.now());
        }
        const k = offsets[i]! + j;
        bits[k >> 3]! |= 0x80 >> (k & 7);
      }
    return p.partial ? bits : undefined;
  };

  /**
   * Asks `p` which pieces it holds (of a live copy, a vouching peer's manifest: the hashes it knows, which are the
   * pieces it holds); a 404 is none, trouble keeps what was heard (its pieces' answers tell).
   */
  const ask = async (p: Peer): Promise<void> => {
    /** The pieces it held as last heard: asked with them, the answer waits until it holds more. */
    const heard = p.heard;
    let answered: number | undefined;
    try {
      const hashes = live && p.vouches;
      const path = (hashes ? manifestPath : havePath)(req.storageKey);
      const query = heard === undefined ? '' : waitQuery(heard, waitMs);
      const a = await peerGet(agent, new URL(path + query, p.base), {
        token: await token(req),
        signal: askSignal,
        timeoutMs: req.stallTimeoutMs + (heard === undefined ? 0 : waitMs),
        maxBytes: hashes ? MAX_MANIFEST_BYTES : Math.ceil(count / 6) + 256,
      });
      if (askSignal.aborted) return;
      // A long-polled answer may come long after the ask: hashes only from a peer that still vouches for them now.
      join();
      if (hashes && !p.vouches) return;
      if (a.ok) answered = a.bytes.length;
      let bits: Uint8Array | undefined;
      const before = p.have;
      const unknownBefore = unknown;
      if (a.ok && hashes) {
        try {
          bits = learn(p, acceptManifest(req, p, a.bytes));
        } catch (err) {
          // A complete peer with another manifest (another version of the model) is only not asked again; the seed
          // itself changing its hashes ends the copy.
          if (!(err instanceof DownloadError) || err.code !== 'IntegrityMismatch' || p.summary?.live === 'origin')
            throw err;
          p.dropped = err.message;
          req.log.warn({ node: p.node, storageKey: req.storageKey, why: err.message }, 'peer not used for hashes');
          return;
        }
        const wrote = a.progress !== undefined && a.progress > p.reported;
        if (wrote) p.reported = a.progress!;
        if (unknown < unknownBefore || wrote) movedAt = Date.now();
        if (!before || !bits || !sameBits(before, bits)) picker.holdersChanged();
        p.have = bits;
        p.heard = bits ? countBits(bits) : undefined;
        return;
      } else if (a.ok) {
        try {
          bits = decodeHave(JSON.parse(a.bytes.toString('utf8')), count);
        } catch {
          bits = undefined;
        }
        if (!bits) req.log.debug({ node: p.node, storageKey: req.storageKey }, 'peer sent no valid have; not used');
      } else if (a.status === 404) bits = new Uint8Array(Math.ceil(count / 8));
      if (!bits) return;
      if (before && bits.some((b, i) => (b & ~before[i]!) !== 0)) movedAt = Date.now();
      if (!before || !sameBits(before, bits)) picker.holdersChanged();
      p.have = bits;
      p.heard = countBits(bits);
    } catch (err) {
      fatal ??= err;
      stop.abort(err);
    } finally {
      p.asking = false;
      // News (more pieces than heard): asked again soon, a wait for the next; none: after refreshMs.
      const news = answered !== undefined && (heard === undefined || (p.heard ?? 0) > heard);
      p.haveDue = Date.now() + (news ? ASK_AGAIN_MS + Math.ceil(answered! / 1024) : refreshMs);
    }
  };

  const failed = (p: Peer, t: Task, a: PeerRefusal): void => {
    t.fails.set(p.node, (t.fails.get(p.node) ?? 0) + 1);
    p.consecutive++;
    const where = { node: p.node, storageKey: req.storageKey, file: m.files[t.file]!.path, piece: t.piece };
    if (p.consecutive >= attempts) {
      p.dropped = `${attempts} failures in a row, the last: ${a.why}`;
      picker.holdersChanged();
      picker.copiersChanged();
      req.log.warn({ ...where, why: a.why }, 'peer failed too often; not asked again for this model');
    } else {
      const delay = Math.max(a.retryAfterMs ?? 0, backoffDelay(p.consecutive, backoff));
      p.readyAt = Date.now() + Math.min(backoff.maxMs, delay);
      req.log.debug({ ...where, why: a.why }, 'piece failed; asking another peer');
    }
  };
  const lied = (p: Peer, t: Task, why: string): void => {
    p.dropped = `served a bad piece (${why})`;
    picker.holdersChanged();
    picker.copiersChanged();
    const where = { node: p.node, storageKey: req.storageKey, file: m.files[t.file]!.path, piece: t.piece };
    req.log.warn({ ...where, why }, 'peer served a piece that does not verify; not asked again for this model');
    req.onBadPiece?.(p.node);
  };

  const fetchOne = async (p: Peer, t: Task): Promise<void> => {
    const f = m.files[t.file]!;
    const len = pieceLength(f.size, m.pieceSize, t.piece);
    try {
      const a = await peerGetPiece(agent, new URL(piecePath(req.storageKey, t), p.base), {
        token: await token(req),
        signal,
        timeoutMs: req.stallTimeoutMs,
        maxBytes: len,
      });
      if (signal.aborted) return;
      if (!a.ok && a.status === 404 && p.partial && p.have) {
        // Not there yet (or no longer in staging: it is being committed): asked again once `have` says so.
        const i = offsets[t.file]! + t.piece;
        p.have[i >> 3]! &= ~(0x80 >> (i & 7));
        picker.holdersChanged();
        queue.unshift(t);
        return;
      }
      const bad = a.ok ? verdict(a, len, f.pieces[t.piece]!) : a.lied ? a.why : undefined;
      if (bad !== undefined) lied(p, t, bad);
      else if (!a.ok) failed(p, t, a);
      if (bad !== undefined || !a.ok) {
        queue.unshift(t); // first in line again, for another peer
        return;
      }
      const partial = partialPath(req.workDir, f.path);
      await writePiece(partial, t.piece * m.pieceSize, a.chunks, len);
      copy?.verified(t);
      movedAt = Date.now();
      p.consecutive = 0;
      p.bytes += len;
      byPeer.set(p.node, (byPeer.get(p.node) ?? 0) + len);
      req.onBytes?.(len, p.node, p.crossZone ? 'cross' : 'same');
      const verified = done.get(t.file)!;
      verified.add(t.piece);
      // A live copy's files stay partial until its manifest is anchored (see run): a fallback to the source keeps
      // bytes verified only against a seed's hashes only where the source's own digest checks them (KeptPieces).
      if (verified.size === f.pieces.length && !live) {
        await placeFile(req.workDir, f.path, partial);
        done.delete(t.file);
      }
    } catch (err) {
      fatal ??= err;
      stop.abort(err);
    } finally {
      p.busy = false;
    }
  };

  while (fatal === undefined && !signal.aborted && (queue.length > 0 || inflight.size > 0)) {
    const now = Date.now();
    join();
    if (queue.length > 0)
      for (const p of copying()) {
        if (p.asking || p.haveDue > now) continue;
        p.asking = true;
        const job: Promise<void> = ask(p).finally(() => asks.delete(job));
        asks.add(job);
      }
    for (let next = picker.pick(now); next && inflight.size < maxPeers; next = picker.pick(now)) {
      const [p, k] = next;
      const t = queue.splice(k, 1)[0]!;
      p.busy = true;
      const job: Promise<void> = fetchOne(p, t).finally(() => inflight.delete(job));
      inflight.add(job);
    }
    const times: number[] = [];
    const wake = picker.wakeAt(now);
    if (wake !== undefined) times.push(wake);
    const opens = picker.gateOpens(now);
    if (opens !== undefined) times.push(opens);
    if (inflight.size === 0 && wake === undefined) {
      // Nobody to ask now: only peers still copying may come to hold the rest, and not forever.
      const waiting = copying();
      if (waiting.length === 0 || now - movedAt > req.stallTimeoutMs) break;
      times.push(movedAt + req.stallTimeoutMs + 1, ...waiting.filter((p) => !p.asking).map((p) => p.haveDue));
    } else if (queue.length > 0)
      times.push(
        ...copying()
          .filter((p) => !p.asking)
          .map((p) => p.haveDue),
      );
    const until = times.length > 0 ? Math.max(0, Math.min(...times) - now) : undefined;
    await waitForAny(new Set([...inflight, ...asks]), until, signal);
  }
  asked.abort();
  await Promise.allSettled([...inflight, ...asks]); // nothing keeps running (or writing) after this returns
  if (req.signal.aborted) throw cancelled(req.signal);
  if (fatal !== undefined) throw fatal;
  if (queue.length > 0) {
    const why = peers
      .map(
        (p) =>
          `${p.node}: ${p.dropped ?? (p.partial ? 'still copying it, without the missing pieces' : 'failed every missing piece')}`,
      )
      .slice(0, 8);
    throw new DownloadError(
      'SourceUnavailable',
      `${req.storageKey}: ${queue.length} of ${total} pieces still missing and no peer left to ask ` +
        `(${why.join('; ')}); the pieces that verified are kept`,
    );
  }
  return byPeer;
}

function sameBits(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Why a piece's bytes are refused (its length, then its hash), or undefined when they verify. */
function verdict(a: { length: number; sha256: string }, len: number, hash: string): string | undefined {
  if (a.length !== len) return `${a.length} bytes, ${len} expected`;
  return a.sha256 === hash ? undefined : `sha256 ${a.sha256}, ${hash} listed`;
}

/** Until one job ends, `ms` pass (when given) or `signal` aborts. */
async function waitForAny(jobs: Set<Promise<void>>, ms: number | undefined, signal: AbortSignal): Promise<void> {
  const done = new AbortController();
  const timer = ms === undefined ? [] : [sleep(ms, AbortSignal.any([signal, done.signal])).catch(() => undefined)];
  try {
    await Promise.race([...jobs, ...timer]);
  } finally {
    done.abort();
  }
}
