import Bottleneck from 'bottleneck';
import type { Logger } from 'pino';
import type { LocalModelInfo } from '../api/types.ts';
import { rfc3339Now } from '../ops/time.ts';
import { lstat } from 'node:fs/promises';
import { adoptModel, commitModel, removeModel } from '../disk/atomic.ts';
import { bytesWritten, type CapacityLedger } from '../disk/capacity.ts';
import { DOWNLOAD_DIR, modelPaths, PEER_PARTIAL_PREFIX, type PiecesSummary } from '../disk/layout.ts';
import { markerIsFor, readMarker, uriSha256 } from '../disk/inventory.ts';
import { DownloadError } from '../download/errors.ts';
import {
  asDownloadError,
  DEFAULT_RETRY_DELAYS,
  FAILURE_POLICY,
  retryPlan,
  type RetryDelays,
} from '../download/failure-policy.ts';
import { downloadModel, type DownloadOptions } from '../download/fetch.ts';
import { DEFAULT_DOWNLOAD_OPTIONS, sizeLimit, type KeptPieces, type SourceCredentials } from '../download/types.ts';
import { expectationFor, verifyFolder } from './adopt.ts';
import type { DaemonMetrics } from './metrics.ts';
import type { Failure, HandBack, InFlight, PeerOffer } from './node-cache/plan.ts';
import { CompleteModelDescriber } from './describe-complete.ts';
import { offerSeen } from './node-cache/peer-rules.ts';
import { copyFromPeers, type FromPeers, type PeerTransfer, type Seeding } from './peer-copy.ts';
import { checkSourceUri, scrubUri, shownUri } from './source-uri.ts';

export interface DownloadManagerOptions {
  root: string;
  ledger: CapacityLedger;
  maxConcurrent: number;
  log: Logger;
  metrics: DaemonMetrics;
  /** Called whenever anything changed that status or the plan depends on. */
  onChange: () => void;
  download?: Partial<DownloadOptions>;
  /** The source's settings and secrets for a model (env + its group's Secret). */
  credentials?: (model: LocalModelInfo, signal: AbortSignal) => Promise<SourceCredentials>;
  retry?: RetryDelays;
  /** Peer-to-peer, when on: fetching from peers, and the manifest every copy this node makes is served with. */
  peers?: PeerTransfer;
  /**
   * Peer-to-peer on: a model's offers as the informer holds them now (the plan may have seen them a moment before).
   * A copy that fails records its peers' offers from here: a dead node's last status is the one it keeps showing.
   */
  offersNow?: (storageKey: string) => readonly PeerOffer[];
}

/** A download in flight as the manager keeps it: what the plan reads, how to stop it, its peers' latest offers. */
type Running = InFlight & { abort: AbortController; offers?: readonly PeerOffer[] };

/**
 * A model whose copy from peers failed for want of peers, handed back to the plan (which chooses again, without
 * those peers while their offers stay the same): what the plan reads of it, the pieces it verified, and how often
 * that happened.
 */
interface HandedBack extends HandBack {
  kept: readonly KeptPieces[];
  times: number;
}

/**
 * Copies from peers of one model handed back to the plan, at most (a peer that stays reachable for the plan but not
 * for this node would make it choose that peer again and again); after that a failed copy goes to the origin.
 */
const MAX_HAND_BACKS = 3;

/**
 * Runs this node's downloads: at most N at once (bottleneck), each with a capacity reservation,
 * into a staging directory that is committed atomically; failures are remembered with a retry time.
 */
export class DownloadManager {
  readonly #inFlight = new Map<string, Running>();
  readonly #failures = new Map<string, Failure & { attempts: number }>();
  readonly #removing = new Set<string>();
  /** By storage key: copies from peers that failed, handed back to the plan until the download completes. */
  readonly #handedBack = new Map<string, HandedBack>();
  /** Hashes complete models for peers (peer-to-peer on). */
  readonly #describer: CompleteModelDescriber | undefined;
  /** Every scheduled download until it has ended (never rejects): stop() waits for them. */
  readonly #jobs = new Set<Promise<void>>();
  /** Downloads whose bytes are all in staging but whose commit failed: committed without downloading again. */
  readonly #downloaded = new Map<
    string,
    { uriSha256: string; bytes: number; files: number; pieces?: PiecesSummary; bytesFromPeers?: number }
  >();
  readonly #o: DownloadManagerOptions;
  readonly #limiter: Bottleneck;
  /** Aborted by stop(): ends work that belongs to no download (hashing a complete model). */
  readonly #stopping = new AbortController();

  constructor(o: DownloadManagerOptions) {
    this.#o = o;
    this.#limiter = new Bottleneck({ maxConcurrent: o.maxConcurrent });
    if (o.peers)
      this.#describer = new CompleteModelDescriber({
        root: o.root,
        log: o.log,
        peers: o.peers,
        signal: this.#stopping.signal,
        onDescribed: () => this.#notify(),
        track: (job) => {
          this.#jobs.add(job);
          void job.finally(() => this.#jobs.delete(job));
        },
      });
  }

  /**
   * What runs and what failed, as copies taken now: the plan reads them, and nothing outside changes them.
   * Read it before the disk: a download that completes meanwhile is then in flight here or on disk there.
   */
  snapshot(): {
    inFlight: ReadonlyMap<string, InFlight>;
    failures: ReadonlyMap<string, Failure>;
    handedBack: ReadonlyMap<string, HandBack>;
  } {
    const inFlight = new Map<string, InFlight>();
    for (const [key, { abort: _abort, offers: _offers, ...e }] of this.#inFlight) inFlight.set(key, e);
    const failures = new Map<string, Failure>();
    for (const [key, { attempts: _attempts, ...f }] of this.#failures) failures.set(key, f);
    const handedBack = new Map<string, HandBack>();
    for (const [key, b] of this.#handedBack) handedBack.set(key, { avoided: new Map(b.avoided), at: b.at });
    return { inFlight, failures, handedBack };
  }

  /** Starts (queues) a model's download unless one runs or its files are being removed. */
  start(model: LocalModelInfo, from?: FromPeers): void {
    const key = model.storageKey;
    if (this.#inFlight.has(key) || this.#removing.has(key)) return;
    const entry: Running = {
      modelName: model.modelName,
      uri: model.sourceModelUri,
      queued: true,
      bytesDone: 0,
      bytesTotal: model.modelSize,
      startedAt: '',
      abort: new AbortController(),
      ...(from ? { copyQueued: true as const } : {}),
    };
    this.#inFlight.set(key, entry);
    const job = this.#schedule(model, entry, from);
    this.#jobs.add(job);
    void job.finally(() => this.#jobs.delete(job));
  }

  /** Runs one download in its slot; never rejects (a job dropped by stop() is logged, not thrown). */
  async #schedule(model: LocalModelInfo, entry: Running, from?: FromPeers): Promise<void> {
    const key = model.storageKey;
    // The run itself, once it started: stop() drops even running jobs from the limiter, but the
    // entry stays in flight until the run has really ended (its files are closed, its bytes counted).
    let run: Promise<void> | undefined;
    try {
      await this.#limiter.schedule(() => (run = this.#run(model, entry, from)));
    } catch (err) {
      if (entry.abort.signal.aborted)
        this.#o.log.info({ model: model.modelName, storageKey: key }, 'download stopped: the daemon is shutting down');
      else this.#o.log.error({ model: model.modelName, storageKey: key, err: String(err) }, 'download not run');
    } finally {
      await run?.catch((err: unknown) =>
        this.#o.log.error({ model: model.modelName, storageKey: key, err: String(err) }, 'download run failed'),
      );
      this.#inFlight.delete(key);
      this.#notify();
    }
  }

  /** onChange, which must not turn a finished download into an exception. */
  #notify(): void {
    try {
      this.#o.onChange();
    } catch (err) {
      this.#o.log.error({ err: String(err) }, 'change notification failed');
    }
  }

  /** Forgets failures of models no longer asked for (they would be tried afresh if asked again). */
  forgetFailuresExcept(wanted: ReadonlySet<string>): void {
    for (const key of this.#failures.keys()) if (!wanted.has(key)) this.#failures.delete(key);
    for (const key of this.#downloaded.keys()) if (!wanted.has(key)) this.#downloaded.delete(key);
    for (const key of this.#handedBack.keys()) if (!wanted.has(key)) this.#handedBack.delete(key);
  }

  /** The peers offering a running peer download's manifest now: the fetch asks those that joined, too. */
  offer(key: string, peers: readonly PeerOffer[]): void {
    const e = this.#inFlight.get(key);
    if (e?.pieces) e.offers = peers;
  }

  cancel(key: string): void {
    this.#inFlight.get(key)?.abort.abort(new Error('no longer wanted on this node'));
  }

  /** Hashes a complete model's folder for peers in the background (see CompleteModelDescriber). */
  describe(key: string): void {
    if (this.#describer && !this.#removing.has(key) && !this.#inFlight.has(key)) this.#describer.describe(key);
  }

  /** Removes a model's files (complete or partial); no-op while a removal of the key runs. */
  remove(key: string): void {
    if (this.#removing.has(key) || this.#inFlight.has(key) || this.#describer?.busy(key)) return;
    this.#removing.add(key);
    this.#downloaded.delete(key);
    this.#handedBack.delete(key);
    this.#describer?.forget(key);
    void removeModel(this.#o.root, key)
      .then(() => this.#o.log.info({ storageKey: key }, 'model files removed'))
      .catch((err: unknown) => this.#o.log.error({ storageKey: key, err: String(err) }, 'could not remove model files'))
      .finally(() => {
        this.#removing.delete(key);
        this.#failures.delete(key);
        this.#notify();
      });
  }

  /** Cancels every download (partial data stays for a resume) and waits for them to stop. */
  async stop(): Promise<void> {
    for (const e of this.#inFlight.values()) e.abort.abort(new Error('daemon shutting down'));
    this.#stopping.abort(new Error('daemon shutting down'));
    await this.#limiter.stop({ dropWaitingJobs: true }).catch(() => undefined);
    await Promise.all([...this.#jobs]);
  }

  async #run(model: LocalModelInfo, entry: Running, from?: FromPeers): Promise<void> {
    const { root, ledger, log, metrics } = this.#o;
    const key = model.storageKey;
    const uri = model.sourceModelUri;
    if (entry.abort.signal.aborted) return;
    const t0 = performance.now();
    let scheme = 'invalid';
    let running = false;
    let received = 0;
    let lastNotice = 0;
    let seeding: Seeding | undefined;
    try {
      scheme = checkSourceUri(uri);
      const staging = stagingFor(root, key);
      // A plan made from an older look at the disk may ask again for a model that just completed:
      // downloading it again would replace the folder under its consumers' feet.
      const done = await readMarker(root, key);
      if (done && markerIsFor(done, uri)) {
        this.#handedBack.delete(key);
        log.debug({ model: model.modelName, storageKey: key }, 'already complete on disk; not downloaded again');
        return;
      }
      entry.queued = false;
      entry.startedAt = rfc3339Now();
      // Published while the copy runs: peers fetch from it (a live manifest copied as such).
      if (from && this.#o.peers) entry.pieces = from.pieces.live ? { ...from.pieces, live: 'peers' } : from.pieces;
      this.#notify();
      metrics.inFlight.inc();
      running = true;
      if (await this.#adopted(model, entry.abort.signal)) {
        this.#handedBack.delete(key);
        return;
      }
      const already = await bytesWritten(staging);
      const kept = this.#downloaded.get(key);
      let result: {
        bytes: number;
        files: number;
        skipped?: string[];
        pieces?: PiecesSummary;
        bytesFromPeers?: number;
        keptBytes?: number;
      };
      if (kept?.uriSha256 === uriSha256(uri) && already > 0) {
        log.info({ model: model.modelName, storageKey: key }, 'download complete in staging; committing it again');
        result = kept;
      } else {
        this.#downloaded.delete(key);
        await ledger.reserve(key, Math.max(0, model.modelSize - already));
        log.info(
          { model: model.modelName, storageKey: key, uri: shownUri(uri), resumeFrom: already },
          already > 0 ? 'download resumed' : 'download started',
        );
        // Progress wakes the reconcile (which reports it) at most once a second.
        const progressed = (): void => {
          if (Date.now() - lastNotice < 1000) return;
          lastNotice = Date.now();
          this.#notify();
        };
        const peers = this.#o.peers;
        const back = this.#handedBack.get(key);
        const fromPeers =
          from && peers
            ? await copyFromPeers({
                peers,
                model,
                from,
                staging,
                signal: entry.abort.signal,
                limitBytes: sizeLimit(model.modelSize, { ...DEFAULT_DOWNLOAD_OPTIONS, ...this.#o.download }),
                log,
                metrics,
                offers: () => entry.offers ?? from.peers,
                ...(back?.kept.length ? { earlier: back.kept } : {}),
                onBytes: (n) => {
                  entry.bytesDone += n;
                  entry.bytesFromPeers = (entry.bytesFromPeers ?? 0) + n;
                  progressed();
                },
              })
            : undefined;
        if (fromPeers && 'kept' in fromPeers) {
          if (fromPeers.peersFailed && (back?.times ?? 0) < MAX_HAND_BACKS) {
            this.#handBack(model, fromPeers.kept, entry.offers ?? from?.peers ?? [], back);
            return;
          }
          entry.bytesDone = 0;
          delete entry.pieces; // the origin's bytes: no manifest is offered until they are hashed
          delete entry.offers;
        }
        if (fromPeers && !('kept' in fromPeers)) {
          // Pieces it found verified in staging came from peers too, when an earlier copy handed back left them.
          const found = Math.min(fromPeers.bytes - fromPeers.bytesFromPeers, keptBytes(back?.kept ?? []));
          result = { ...fromPeers, bytesFromPeers: fromPeers.bytesFromPeers + found };
        } else {
          const keep = fromPeers ? fromPeers.kept : (back?.kept ?? []);
          if (back) this.#handedBack.set(key, { ...back, kept: [] }); // the origin download takes them or removes them
          /** Bytes an origin download resumes from (a copy's verified pieces are counted as kept, not as resumed). */
          const resumed = await bytesWritten(staging, (p) => p.startsWith(`${DOWNLOAD_DIR}/${PEER_PARTIAL_PREFIX}`));
          const offered = keptBytes(keep);
          const credentials = (await this.#o.credentials?.(model, entry.abort.signal)) ?? {};
          seeding = this.#o.peers?.seed({
            storageKey: key,
            workDir: staging,
            onOffer: (pieces) => {
              if (pieces) entry.pieces = pieces;
              else delete entry.pieces;
              this.#notify();
            },
          });
          const origin: typeof result = await downloadModel({
            uri,
            credentials,
            workDir: staging,
            maxBytes: model.modelSize,
            signal: entry.abort.signal,
            options: this.#o.download,
            ...(seeding ? { observer: seeding } : {}),
            ...(keep.length ? { kept: keep } : {}),
            onProgress: (p) => {
              // Less what kept pieces may have given (an origin download that fails does not say what it took).
              received = p.bytesDone - resumed - offered;
              entry.bytesDone = p.bytesDone;
              if (p.bytesTotal !== undefined) entry.bytesTotal = p.bytesTotal;
              progressed();
            },
          });
          const kept = origin.keptBytes ?? 0;
          metrics.bytes.inc(
            { scheme, outcome: 'success', source: 'origin' },
            Math.max(0, origin.bytes - resumed - kept),
          );
          if (kept > 0) origin.bytesFromPeers = kept;
          logSkipped(log, model.modelName, key, origin);
          const pieces = await this.#o.peers?.describe(staging, key, entry.abort.signal, seeding);
          if (pieces) origin.pieces = pieces;
          result = origin;
        }
      }
      await this.#commit(key, uri, result);
      this.#failures.delete(key);
      this.#handedBack.delete(key);
      metrics.downloads.inc({ outcome: 'success', reason: '' });
      metrics.duration.observe({ outcome: 'success' }, (performance.now() - t0) / 1000);
      log.info(
        {
          model: model.modelName,
          storageKey: key,
          bytes: result.bytes,
          files: result.files,
          seconds: Math.round((performance.now() - t0) / 100) / 10,
        },
        'model downloaded',
      );
    } catch (err) {
      const e = entry.abort.signal.aborted
        ? new DownloadError('Cancelled', 'download cancelled', { cause: err })
        : asDownloadError(err, `downloading ${model.modelName}`);
      if (running)
        metrics.bytes.inc(
          { scheme, outcome: e.code === 'Cancelled' ? 'cancelled' : 'error', source: 'origin' },
          Math.max(0, received),
        );
      if (e.code === 'Cancelled') {
        metrics.downloads.inc({ outcome: 'cancelled', reason: 'Cancelled' });
        log.info({ model: model.modelName, storageKey: key }, 'download cancelled; partial data kept for a resume');
        return;
      }
      await this.#failed(model, entry, e, (performance.now() - t0) / 1000);
    } finally {
      seeding?.end(); // after the commit: peers read its pieces from staging until the folder is in place
      if (running) {
        ledger.release(key);
        metrics.inFlight.dec();
      }
    }
  }

  /**
   * Hands a copy that failed for want of peers back to the plan, which chooses again (another peer, the next seed:
   * this node, or one it then copies from; the origin): `tried` are avoided while their offers, as the informer
   * shows them now, stay the same.
   */
  #handBack(model: LocalModelInfo, kept: readonly KeptPieces[], tried: readonly PeerOffer[], back?: HandedBack): void {
    const key = model.storageKey;
    const avoided = new Map(back?.avoided);
    const now = this.#o.offersNow?.(key) ?? tried;
    for (const p of tried) {
      const seen = now.find((o) => o.node === p.node);
      if (seen) avoided.set(p.node, offerSeen(seen));
    }
    this.#handedBack.set(key, { kept, avoided, times: (back?.times ?? 0) + 1, at: Date.now() });
    this.#o.log.info(
      { model: model.modelName, storageKey: key, avoided: [...avoided.keys()] },
      'copy from peers handed back: where the rest comes from is chosen again, without the peers that failed',
    );
  }

  /**
   * A folder at the model's place without a marker (KServe's own agent downloaded it) is adopted when
   * it verifies against the source (see daemon/adopt.ts): the marker is written, nothing is fetched.
   * Otherwise the download goes ahead into staging and the commit replaces the folder.
   */
  async #adopted(model: LocalModelInfo, signal: AbortSignal): Promise<boolean> {
    const { root, log } = this.#o;
    const key = model.storageKey;
    const dir = modelPaths(root, key).final;
    const found = await lstat(dir).then(
      (st) => st.isDirectory(),
      () => false,
    );
    if (!found) return false;
    let reason: string;
    try {
      const expected = await expectationFor(model.sourceModelUri, signal, {
        credentials: (await this.#o.credentials?.(model, signal)) ?? {},
        ...(this.#o.download ? { options: this.#o.download } : {}),
      });
      const verdict = await verifyFolder(dir, expected, signal);
      if (verdict.verified) {
        const uri = model.sourceModelUri;
        const { bytes, files } = verdict;
        await adoptModel(root, key, { uri: shownUri(uri), uriSha256: uriSha256(uri), bytes, files });
        log.info(
          { model: model.modelName, storageKey: key, bytes: verdict.bytes, files: verdict.files },
          'model folder found without a marker verified against its source: adopted, not downloaded',
        );
        return true;
      }
      reason = verdict.reason;
    } catch (err) {
      if (signal.aborted) throw err;
      reason = `it could not be checked: ${scrubUri((err as Error)?.message ?? String(err), model.sourceModelUri)}`;
    }
    log.info(
      { model: model.modelName, storageKey: key, folder: dir, reason },
      'model folder found without a marker does not verify against its source: downloading it again',
    );
    return false;
  }

  /**
   * Publishes a download whose bytes are all in staging. A failure here never costs the bytes: they
   * stay in staging and the next attempt commits them without downloading again.
   */
  async #commit(
    key: string,
    uri: string,
    result: { bytes: number; files: number; pieces?: PiecesSummary; bytesFromPeers?: number },
  ): Promise<void> {
    const marker = {
      uri: shownUri(uri),
      uriSha256: uriSha256(uri),
      bytes: result.bytes,
      files: result.files,
      ...(result.pieces ? { pieces: result.pieces } : {}),
      ...(result.bytesFromPeers ? { bytesFromPeers: result.bytesFromPeers } : {}),
    };
    try {
      await commitModel(this.#o.root, key, marker);
      this.#downloaded.delete(key);
    } catch (err) {
      const e = asDownloadError(err, `publishing the model in ${modelPaths(this.#o.root, key).final}`);
      if (FAILURE_POLICY[e.code].discardPartial) throw e; // the content itself is refused: not kept
      this.#downloaded.set(key, { ...result, uriSha256: marker.uriSha256 });
      throw new DownloadError(
        e.code === 'Internal' ? 'DiskError' : e.code,
        `downloaded, but could not be published in ${modelPaths(this.#o.root, key).final}: ` +
          `${(err as Error)?.message ?? String(err)}; the data is kept and published on the next attempt`,
        { cause: err },
      );
    }
  }

  /** Records a failed attempt by the failure policy: when to try again, and whether the bytes are kept. */
  async #failed(model: LocalModelInfo, entry: Running, e: DownloadError, seconds: number): Promise<void> {
    const { root, log, metrics } = this.#o;
    const key = model.storageKey;
    const attempts = (this.#failures.get(key)?.attempts ?? 0) + 1;
    const plan = retryPlan(e.code, attempts, this.#o.retry ?? DEFAULT_RETRY_DELAYS, Date.now());
    if (plan.discard) {
      await removeModel(root, key).catch((err: unknown) =>
        log.error({ storageKey: key, err: String(err) }, 'could not remove partial data'),
      );
    }
    const message = scrubUri(e.message, model.sourceModelUri);
    this.#failures.set(key, {
      uri: model.sourceModelUri,
      reason: e.code,
      message,
      retryAt: plan.retryAt,
      startedAt: entry.startedAt,
      attempts,
    });
    metrics.downloads.inc({ outcome: 'error', reason: e.code });
    metrics.duration.observe({ outcome: 'error' }, seconds);
    log.warn(
      {
        model: model.modelName,
        storageKey: key,
        reason: e.code,
        message,
        retryInS: plan.retryAt === undefined ? null : Math.round((plan.retryAt - Date.now()) / 1000),
      },
      plan.retryAt === undefined ? 'download failed; not retried until the spec changes' : 'download failed',
    );
  }
}

/** Bytes of the verified pieces `kept` lists (a file's last piece ends with the file). */
function keptBytes(kept: readonly KeptPieces[]): number {
  let n = 0;
  for (const k of kept) for (const i of k.pieces) n += Math.max(0, Math.min(k.pieceSize, k.size - i * k.pieceSize));
  return n;
}

/** Most names of skipped archive entries one log line shows. */
const SKIPPED_SHOWN = 20;

/** One line per model naming the archive entries extraction skipped on purpose (devices, FIFOs), if any. */
function logSkipped(log: Logger, modelName: string, storageKey: string, result: { skipped?: string[] }): void {
  const skipped = result.skipped ?? [];
  if (skipped.length === 0) return;
  log.warn(
    {
      model: modelName,
      storageKey,
      skipped: skipped.slice(0, SKIPPED_SHOWN).map((n) => n.slice(0, 200)),
      skippedCount: skipped.length,
    },
    'archive entries that are devices or FIFOs were skipped: a model never holds them',
  );
}

/** The staging folder of a key; a key the spec should never have allowed is a bug, not a disk error. */
function stagingFor(root: string, key: string): string {
  try {
    return modelPaths(root, key).staging;
  } catch (err) {
    throw new DownloadError('Internal', `storageKey '${key}' is not a folder name: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
