// A copy from peers that cannot finish is handed back to the plan with the pieces it verified, and the peers it failed
// with (3 times at most; then it goes to the source itself, which fetches only the rest: download/types.ts
// KeptPieces). Real parts throughout: a LiveSeed whose origin download stops halfway (its daemon stalled), this
// process's peer server serving what it hashed, a DownloadManager with the real peer transfer copying from it, and a
// local Hugging Face hub as the source, whose LFS sha256 checks the kept bytes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { storageKeyFor } from '../../api/storage-key.ts';
import type { LocalModelInfo } from '../../api/types.ts';
import { DownloadManager } from '../../daemon/downloads.ts';
import { DaemonMetrics } from '../../daemon/metrics.ts';
import { CopiesInProgress } from '../../daemon/peers/copies.ts';
import { offerSeen } from '../../daemon/node-cache/peer-rules.ts';
import { LiveSeed } from '../../daemon/peers/live-seed.ts';
import type { ManifestSummary } from '../../daemon/peers/protocol.ts';
import type { PeerServer } from '../../daemon/peers/server.ts';
import { peerTransfer } from '../../daemon/peers/transfer.ts';
import { CapacityLedger } from '../../disk/capacity.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { generated, toBuffer } from '../../localcluster/origin.ts';
import { createLogger } from '../../ops/logger.ts';
import { HfHub } from '../helpers/hf-hub.ts';
import { startTablePeerServer } from '../helpers/test-peer.ts';

const MiB = 1024 * 1024;
const PIECE = 16 * MiB;
const TOKEN = 'daemon-token';
const WEIGHTS = toBuffer(generated(3 * PIECE + 4321, 21));
const CONFIG = Buffer.from('{"arch":"kept"}');
const quiet = new Writable({ write: (_c, _e, cb) => cb() });
const log = createLogger('peer-kept-pieces-test', 'warn', quiet);

let base: string;
let hub: HfHub;
let server: PeerServer;
const copies = new CopiesInProgress();
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'modelcache-kept-'));
  hub = await HfHub.start();
  hub.addRepo('org/kept', {
    revisions: { main: 'c0ffee0000000000000000000000000000000000' },
    files: { 'weights.bin': WEIGHTS, 'config.json': CONFIG },
  });
  server = await startTablePeerServer(join(base, 'seed-root'), copies, TOKEN, log);
});
after(async () => {
  await server?.close();
  await hub?.close();
  await rm(base, { recursive: true, force: true });
});

/** Bytes the hub's CDN sent for ranged requests of `body` (LFS files are served there), from its request log. */
function cdnBytes(body: Buffer): number {
  const blob = `/blobs/${createHash('sha256').update(body).digest('hex')}`;
  return hub.requests
    .filter((r) => r.server === 'cdn' && r.path === blob)
    .reduce((n, r) => {
      const m = /^bytes=(\d+)-(\d*)$/.exec(r.range ?? '');
      if (!m) return n + body.length;
      const end = m[2] === '' ? body.length - 1 : Math.min(body.length - 1, Number(m[2]));
      return n + end - Number(m[1]) + 1;
    }, 0);
}

test('a copy whose seed stops halfway is handed back (3 times), then the source sends only the rest', async () => {
  const uri = 'hf://org/kept';
  const key = storageKeyFor(uri);
  // The seed: its origin download wrote the first two pieces of weights.bin, then stopped (its daemon stalled).
  const seedDir = join(base, 'seed');
  await mkdir(join(seedDir, '.download'), { recursive: true });
  const partial = join(seedDir, '.download', 'weights.bin');
  const fh = await open(partial, 'w');
  await fh.write(WEIGHTS, 0, 2 * PIECE, 0);
  await fh.close();
  const offers: (ManifestSummary | undefined)[] = [];
  const seed = new LiveSeed({ storageKey: key, workDir: seedDir, copies, log, onOffer: (s) => offers.push(s) });
  await writeFile(join(seedDir, '.download', 'config.json'), '');
  seed.listed([
    { path: 'weights.bin', size: WEIGHTS.length, partial },
    { path: 'config.json', size: CONFIG.length, partial: join(seedDir, '.download', 'config.json') },
  ]);
  seed.written('weights.bin', 0, 2 * PIECE);
  const live = offers[0]!;
  assert.equal(live.live, 'origin');

  const root = join(base, 'copier');
  const tokenFile = join(base, 'token');
  await writeFile(tokenFile, TOKEN);
  const metrics = new DaemonMetrics();
  const dm = new DownloadManager({
    root,
    ledger: new CapacityLedger(root, 0),
    maxConcurrent: 1,
    log,
    metrics,
    onChange: () => undefined,
    credentials: () => Promise.resolve({ HF_ENDPOINT: hub.endpoint }),
    download: { partSizeBytes: PIECE, stallTimeoutMs: 2000, backoffBaseMs: 10, backoffMaxMs: 50 },
    peers: peerTransfer({ tokenFile, stallTimeoutMs: 1000, metrics, log }),
  });
  try {
    const model: LocalModelInfo = {
      sourceModelUri: uri,
      modelName: 'kept',
      modelSize: WEIGHTS.length + CONFIG.length,
      storagePath: root,
      storageKey: key,
    };
    const offer = {
      node: 'seed',
      address: new URL(server.url).host,
      pieces: live,
      sameZone: true,
      inProgress: true as const,
      bytesDone: 2 * PIECE,
    };
    // Each copy fails once the seed has nothing more: it is handed back for the plan to choose again (the seed not
    // to be taken while its offer stays the same), and nothing is asked of the source meanwhile. After 3 hand-backs
    // the next copy that fails goes to the source itself (the plan chose that seed again and again).
    for (let i = 0; i < 3; i++) {
      dm.start(model, { pieces: live, peers: [offer] });
      await eventually(
        () => {
          const s = dm.snapshot();
          assert.equal(s.inFlight.has(key), false, 'the copy ended');
          assert.deepEqual(s.handedBack.get(key)?.avoided, new Map([['seed', offerSeen(offer)]]));
        },
        { timeoutMs: 30_000 },
      );
      assert.equal(dm.snapshot().failures.has(key), false, 'no failure is reported for it');
      assert.equal(cdnBytes(WEIGHTS), 0, `the source was not asked (hand-back ${i + 1})`);
    }
    dm.start(model, { pieces: live, peers: [offer] });
    const markerPath = join(root, 'models', key, '.modelcache.json');
    await eventually(async () => assert.ok(await stat(markerPath).catch(() => undefined), 'committed'), {
      timeoutMs: 60_000,
    });
    const dir = join(root, 'models', key);
    assert.ok((await readFile(join(dir, 'weights.bin'))).equals(WEIGHTS), 'the bytes are the model’s');
    assert.ok((await readFile(join(dir, 'config.json'))).equals(CONFIG));
    assert.equal(cdnBytes(WEIGHTS), WEIGHTS.length - 2 * PIECE, 'the source sent only the pieces the seed lacked');
    const marker = JSON.parse(await readFile(markerPath, 'utf8')) as { bytesFromPeers?: number };
    assert.equal(marker.bytesFromPeers, 2 * PIECE, 'the kept bytes count as from peers');
    assert.deepEqual(
      await stat(join(dir, '.download')).catch(() => 'gone'),
      'gone',
      'no partial file is left where consumers look',
    );
    assert.equal(dm.snapshot().handedBack.has(key), false, 'once complete, no peer is avoided for it any more');
    const origin = await metrics.registry.getSingleMetricAsString('modelcache_daemon_downloaded_bytes_total');
    const sent = /source="origin"[^}]*\} (\d+)/.exec(origin)?.[1];
    assert.equal(Number(sent), WEIGHTS.length - 2 * PIECE + CONFIG.length, `origin bytes counted: ${origin}`);
  } finally {
    seed.end();
    await dm.stop();
  }
});
