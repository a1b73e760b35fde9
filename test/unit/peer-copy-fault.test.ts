// Whose fault a failed copy from peers is (daemon/peer-copy.ts): the peers' (the plan chooses again without them)
// or this node's own (its disk: other peers would not do better, the download goes to the origin). Real peers
// (TestPeer), a real transfer, and for the disk a real tmpfs too small for the model.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LocalModelInfo } from '../../api/types.ts';
import { DaemonMetrics } from '../../daemon/metrics.ts';
import { copyFromPeers } from '../../daemon/peer-copy.ts';
import { buildManifest } from '../../daemon/peers/manifest.ts';
import { peerTransfer } from '../../daemon/peers/transfer.ts';
import { createLogger } from '../../ops/logger.ts';
import { TestPeer } from '../helpers/test-peer.ts';
import { smallTmpfs } from '../helpers/tmpfs.ts';

const MiB = 2 ** 20;
const KEY = 'fault-model';
const log = createLogger('peer-copy-fault-test', 'silent');

/** Two complete peers of a 40 MiB model (three 16 MiB pieces), and a copy request from them into `staging`. */
async function setUp(
  t: TestContext,
): Promise<{ peers: TestPeer[]; copy: (staging: string) => ReturnType<typeof copyFromPeers>; metrics: DaemonMetrics }> {
  const base = await mkdtemp(join(tmpdir(), 'mc-copy-fault-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  const src = join(base, 'src');
  await mkdir(src);
  await writeFile(join(src, 'model.bin'), randomBytes(40 * MiB));
  const built = await buildManifest(src, KEY, AbortSignal.timeout(10_000));
  const peers = await Promise.all([0, 1].map(() => TestPeer.start(src, KEY, built.bytes)));
  t.after(() => Promise.all(peers.map((p) => p.close())));
  const tokenFile = join(base, 'token');
  await writeFile(tokenFile, 'daemon-token');
  const metrics = new DaemonMetrics();
  const model: LocalModelInfo = {
    sourceModelUri: 'https://origin.example/model.bin',
    modelName: 'm',
    modelSize: 40 * MiB,
    storagePath: '/mnt/models',
    storageKey: KEY,
  };
  const offers = peers.map((p, i) => ({
    node: `node-${i}`,
    address: new URL(p.url).host,
    pieces: built.summary,
    sameZone: true,
  }));
  const copy = (staging: string): ReturnType<typeof copyFromPeers> =>
    copyFromPeers({
      peers: peerTransfer({ tokenFile, stallTimeoutMs: 2000, metrics, log }),
      model,
      from: { pieces: built.summary, peers: offers },
      staging,
      signal: AbortSignal.timeout(30_000),
      limitBytes: 41 * MiB,
      log,
      metrics,
      offers: () => offers,
      onBytes: () => undefined,
    });
  return { peers, copy, metrics };
}

test("a copy that fills this node's disk is its own fault: the peers it copied from are not blamed", async (t) => {
  const small = await smallTmpfs(t, '24m');
  if (!small) return;
  const { copy, peers } = await setUp(t);
  const staging = join(small, 'staging');
  await mkdir(staging);
  const r = await copy(staging);
  assert.ok('peersFailed' in r, 'the copy did not complete');
  assert.equal(r.peersFailed, false, 'no space here: other peers would not do better');
  assert.ok(
    peers.some((p) => p.bytesServed > 0),
    'the peers did serve',
  );
  assert.deepEqual(await readdir(staging).then((e) => e.filter((n) => n === 'model.bin')), [], 'nothing committed');
});

test('a copy whose peers serve bad bytes is their fault: the plan chooses again without them', async (t) => {
  const { copy, peers } = await setUp(t);
  for (const p of peers) p.always = { flipBits: true };
  const staging = await mkdtemp(join(tmpdir(), 'mc-copy-fault-staging-'));
  t.after(() => rm(staging, { recursive: true, force: true }));
  const r = await copy(staging);
  assert.ok('peersFailed' in r, 'the copy did not complete');
  assert.equal(r.peersFailed, true);
  assert.deepEqual(r.kept, [], 'no piece verified, none kept');
});
