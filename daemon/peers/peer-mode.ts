import type { Logger } from 'pino';
import type { KubeClient } from '../../kube/client.ts';
import { reviewToken } from '../../kube/token-review.ts';
import { parseAddr } from '../../ops/server.ts';
import type { DaemonMetrics } from '../metrics.ts';
import { PeerAuthenticator } from './auth.ts';
import type { CopiesInProgress } from './copies.ts';
import { PEER_AUDIENCE } from './protocol.ts';
import { peerRoutes, startPeerServer } from './server.ts';

export interface PeerModeOptions {
  /** --peer-listen. */
  listen: string;
  /** --peer-advertise: what peers dial; else $POD_IP with the listening port, else the listening address. */
  advertise?: string | undefined;
  podIp?: string | undefined;
  root: string;
  client: KubeClient;
  /** Service-account users whose tokens may fetch pieces. */
  allowed: readonly string[];
  maxUploads: number;
  /** Copies this node is fetching from peers: their verified pieces are served too. */
  copies: CopiesInProgress;
  metrics: DaemonMetrics;
  log: Logger;
  /** A piece was sent (the status reports the bytes served). */
  onServed?: () => void;
}

/** The peer server, listening, and the address this node publishes for it. */
export interface PeerMode {
  address: string;
  /** Bytes of pieces sent to peers since it started. */
  bytesServed(): number;
  close(): Promise<void>;
}

/**
 * Starts serving verified pieces to peers: every request's token is checked by TokenReview (audience
 * modelcache-peer) against the allowed service accounts, uploads are capped, served bytes counted.
 */
export async function startPeerMode(o: PeerModeOptions): Promise<PeerMode> {
  const { metrics, log } = o;
  let served = 0;
  const auth = new PeerAuthenticator({
    review: (token, signal) => reviewToken(o.client, token, [PEER_AUDIENCE], signal),
    allowed: o.allowed,
  });
  const routes = peerRoutes(o.root, {
    auth,
    maxUploads: o.maxUploads,
    copies: o.copies,
    log,
    onServed: (bytes) => {
      served += bytes;
      metrics.peerServed.inc(bytes);
      o.onServed?.();
    },
  });
  const server = await startPeerServer(o.listen, async (req, res) => {
    metrics.peerUploads.inc();
    res.once('close', () => metrics.peerUploads.dec());
    return routes(req, res);
  });
  const address = advertised(o, server.port);
  log.info({ peerListen: server.url, peerAddress: address, allowed: o.allowed }, 'serving pieces to peers');
  return { address, bytesServed: () => served, close: () => server.close() };
}

/** host:port peers dial: --peer-advertise, else $POD_IP and the bound port, else the listening host. */
function advertised(o: PeerModeOptions, port: number): string {
  if (o.advertise) return o.advertise;
  const { host } = parseAddr(o.listen, 'peer-listen');
  const ip = o.podIp || (host === '0.0.0.0' || host === '::' || host === '' ? undefined : host);
  if (!ip)
    throw new Error(
      `--peer-listen ${o.listen} listens on every interface: set --peer-advertise (or $POD_IP from the downward API) ` +
        'to the address other nodes reach this daemon at',
    );
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}
