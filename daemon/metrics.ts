import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The node daemon's Prometheus metrics, on a registry of its own. */
export class DaemonMetrics {
  readonly registry = new Registry();
  readonly bytes: Counter<'scheme' | 'outcome' | 'source' | 'zone'>;
  readonly downloads: Counter<'outcome' | 'reason'>;
  readonly duration: Histogram<'outcome'>;
  readonly inFlight: Gauge;
  readonly cacheUsed: Gauge;
  readonly cacheCapacity: Gauge;
  readonly paused: Gauge;
  readonly removalsHeld: Gauge;
  readonly peerServed: Counter;
  readonly peerUploads: Gauge;
  readonly peerPieceFailures: Counter<'peer'>;

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'modelcache_daemon_' });
    const registers = [this.registry];
    this.bytes = new Counter({
      name: 'modelcache_daemon_downloaded_bytes_total',
      help:
        'Bytes received, by source (origin or peer), zone of the peer (same or cross; none for the origin), ' +
        'URI scheme (peer for peers) and outcome of the download.',
      labelNames: ['scheme', 'outcome', 'source', 'zone'],
      registers,
    });
    this.downloads = new Counter({
      name: 'modelcache_daemon_downloads_total',
      help: 'Finished downloads by outcome (success, error, cancelled) and reason code.',
      labelNames: ['outcome', 'reason'],
      registers,
    });
    this.duration = new Histogram({
      name: 'modelcache_daemon_download_duration_seconds',
      help: 'Time from start to end of a download.',
      labelNames: ['outcome'],
      buckets: [1, 5, 15, 60, 300, 900, 3600, 10800],
      registers,
    });
    this.inFlight = new Gauge({
      name: 'modelcache_daemon_downloads_in_flight',
      help: 'Downloads running now.',
      registers,
    });
    this.cacheUsed = new Gauge({
      name: 'modelcache_daemon_cache_bytes_used',
      help: 'Bytes of complete models on this node.',
      registers,
    });
    this.cacheCapacity = new Gauge({
      name: 'modelcache_daemon_cache_bytes_capacity',
      help: 'Free plus used bytes on the cache filesystem.',
      registers,
    });
    this.paused = new Gauge({
      name: 'modelcache_daemon_new_downloads_paused',
      help: '1 while this node is being removed (autoscaler taint or deletion) and no new download starts.',
      registers,
    });
    this.removalsHeld = new Gauge({
      name: 'modelcache_daemon_removals_held',
      help: "1 while this node's LocalModelNode is absent and cached files are kept for the grace period.",
      registers,
    });
    this.peerServed = new Counter({
      name: 'modelcache_daemon_peer_served_bytes_total',
      help: 'Bytes of verified pieces served to peer nodes.',
      registers,
    });
    this.peerUploads = new Gauge({
      name: 'modelcache_daemon_peer_uploads',
      help: 'Requests of peer nodes (pieces, manifests) being answered now.',
      registers,
    });
    this.peerPieceFailures = new Counter({
      name: 'modelcache_daemon_peer_piece_failures_total',
      help: 'Pieces from a peer that failed their hash (that peer is then avoided for the model), by peer node.',
      labelNames: ['peer'],
      registers,
    });
  }
}
