import Bottleneck from 'bottleneck';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { LocalModelInfo } from '../api/types.ts';
import { backoffDelay } from '../kube/backoff.ts';
import { rfc3339Now } from '../kube/types.ts';
import { commitModel, removeModel } from '../disk/atomic.ts';
import type { CapacityLedger } from '../disk/capacity.ts';
import { modelPaths } from '../disk/layout.ts';
import { readMarker } from '../disk/inventory.ts';
import { DownloadError, type DownloadErrorCode } from '../download/errors.ts';
import { downloadModel, type DownloadOptions } from '../download/fetch.ts';
import type { SourceCredentials } from '../download/types.ts';
import type { DaemonMetrics } from './metrics.ts';
import type { Failure, InFlight } from './node-cache/plan.ts';

/** Errors that may heal soon (network, disk space) are retried sooner than answers about the source itself. */
const SOON: DownloadErrorCode[] = ['SourceUnavailable', 'InsufficientCapacity', 'DiskError'];
/** After these, partial data is worthless: it is removed. */
const DISCARD: DownloadErrorCode[] = [
  'SizeExceeded',
  'IntegrityMismatch',
  'UnsafeArchive',
  'InsufficientCapacity',
  'BadResponse',
];

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
  retry?: { soonMs: [number, number]; laterMs: [number, number] };
}

async function bytesUnder(dir: string): Promise<number> {
  let sum = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    // Blocks, not the apparent size: parallel parts leave sparse files until every part is in.
    if (e.isFile())
      sum += await stat(join(e.parentPath, e.name)).then(
        (s) => Math.min(s.size, s.blocks * 512),
        () => 0,
      );
  }
  return sum;
}

/**
 * Runs this node's downloads: at most N at once (bottleneck), each with a capacity reservation,
 * into a staging directory that is committed atomically; failures are remembered with a retry time.
 */
export class DownloadManager {
  readonly inFlight = new Map<string, InFlight & { abort: AbortController }>();
  readonly failures = new Map<string, Failure & { attempts: number }>();
  readonly #removing = new Set<string>();
  readonly #o: DownloadManagerOptions;
  readonly #limiter: Bottleneck;

  constructor(o: DownloadManagerOptions) {
    this.#o = o;
    this.#limiter = new Bottleneck({ maxConcurrent: o.maxConcurrent });
  }

  start(model: LocalModelInfo): void {
    const key = model.storageKey;
    if (this.inFlight.has(key) || this.#removing.has(key)) return;
    const entry = {
      modelName: model.modelName,
      uri: model.sourceModelUri,
      queued: true,
      bytesDone: 0,
      bytesTotal: model.modelSize,
      startedAt: '',
      abort: new AbortController(),
    };
    this.inFlight.set(key, entry);
    void this.#limiter
      .schedule(() => this.#run(model, entry))
      .finally(() => {
        this.inFlight.delete(key);
        this.#o.onChange();
      });
  }

  cancel(key: string): void {
    this.inFlight.get(key)?.abort.abort(new Error('no longer wanted on this node'));
  }

  /** Removes a model's files (complete or partial); no-op while a removal of the key runs. */
  remove(key: string): void {
    if (this.#removing.has(key) || this.inFlight.has(key)) return;
    this.#removing.add(key);
    void removeModel(this.#o.root, key)
      .then(() => this.#o.log.info({ storageKey: key }, 'model files removed'))
      .catch((err: unknown) => this.#o.log.error({ storageKey: key, err: String(err) }, 'could not remove model files'))
      .finally(() => {
        this.#removing.delete(key);
        this.failures.delete(key);
        this.#o.onChange();
      });
  }

  /** Cancels every download (partial data stays for a resume) and waits for them to stop. */
  async stop(): Promise<void> {
    for (const e of this.inFlight.values()) e.abort.abort(new Error('daemon shutting down'));
    await this.#limiter.stop({ dropWaitingJobs: true }).catch(() => undefined);
  }

  async #run(model: LocalModelInfo, entry: InFlight & { abort: AbortController }): Promise<void> {
    const { root, ledger, log, metrics } = this.#o;
    const key = model.storageKey;
    if (entry.abort.signal.aborted) return;
    // A plan made from an older look at the disk may ask again for a model that just completed:
    // downloading it again would replace the folder under its consumers' feet.
    const done = await readMarker(root, key);
    if (done?.uri === model.sourceModelUri) {
      log.debug({ model: model.modelName, storageKey: key }, 'already complete on disk; not downloaded again');
      return;
    }
    entry.queued = false;
    entry.startedAt = rfc3339Now();
    this.#o.onChange();
    const staging = modelPaths(root, key).staging;
    const scheme = new URL(model.sourceModelUri).protocol.replace(':', '');
    const t0 = performance.now();
    metrics.inFlight.inc();
    let received = 0;
    let lastNotice = 0;
    try {
      const already = await bytesUnder(staging);
      await ledger.reserve(key, Math.max(0, model.modelSize - already));
      log.info(
        { model: model.modelName, storageKey: key, uri: model.sourceModelUri, resumeFrom: already },
        already > 0 ? 'download resumed' : 'download started',
      );
      const credentials = (await this.#o.credentials?.(model, entry.abort.signal)) ?? {};
      const result = await downloadModel({
        uri: model.sourceModelUri,
        credentials,
        workDir: staging,
        maxBytes: model.modelSize,
        signal: entry.abort.signal,
        options: this.#o.download,
        onProgress: (p) => {
          received = p.bytesDone - already;
          entry.bytesDone = p.bytesDone;
          if (p.bytesTotal !== undefined) entry.bytesTotal = p.bytesTotal;
          // Progress wakes the reconcile (which reports it) at most once a second.
          if (Date.now() - lastNotice >= 1000) {
            lastNotice = Date.now();
            this.#o.onChange();
          }
        },
      });
      await commitModel(root, key, { uri: model.sourceModelUri, bytes: result.bytes, files: result.files });
      this.failures.delete(key);
      metrics.downloads.inc({ outcome: 'success', reason: '' });
      metrics.bytes.inc({ scheme, outcome: 'success' }, Math.max(0, result.bytes - already));
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
      const e =
        err instanceof DownloadError
          ? err
          : new DownloadError('DiskError', String((err as Error)?.message ?? err), { cause: err });
      metrics.bytes.inc({ scheme, outcome: e.code === 'Cancelled' ? 'cancelled' : 'error' }, Math.max(0, received));
      if (e.code === 'Cancelled') {
        metrics.downloads.inc({ outcome: 'cancelled', reason: 'Cancelled' });
        log.info({ model: model.modelName, storageKey: key }, 'download cancelled; partial data kept for a resume');
        return;
      }
      if (DISCARD.includes(e.code)) await removeModel(root, key).catch(() => undefined);
      const attempts = (this.failures.get(key)?.attempts ?? 0) + 1;
      const retry = this.#o.retry ?? { soonMs: [10_000, 300_000], laterMs: [60_000, 3_600_000] };
      const [baseMs, maxMs] = SOON.includes(e.code) ? retry.soonMs : retry.laterMs;
      const delay = backoffDelay(attempts, { baseMs, maxMs });
      this.failures.set(key, {
        uri: model.sourceModelUri,
        reason: e.code,
        message: e.message,
        retryAt: Date.now() + delay,
        startedAt: entry.startedAt,
        attempts,
      });
      metrics.downloads.inc({ outcome: 'error', reason: e.code });
      metrics.duration.observe({ outcome: 'error' }, (performance.now() - t0) / 1000);
      log.warn(
        {
          model: model.modelName,
          storageKey: key,
          reason: e.code,
          message: e.message,
          retryInS: Math.round(delay / 1000),
        },
        'download failed',
      );
    } finally {
      ledger.release(key);
      metrics.inFlight.dec();
    }
  }
}
