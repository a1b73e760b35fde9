import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { storageKeyFor } from '../../api/storage-key.ts';
import {
  LOCAL_MODEL_CACHES,
  LOCAL_MODEL_NODE_GROUPS,
  LOCAL_MODEL_NODES,
  type LocalModelNode,
} from '../../api/types.ts';
import { CacheController } from '../../controller/controller.ts';
import { seedOf } from '../../daemon/node-cache/peer-rules.ts';
import { MANIFEST_FILE } from '../../daemon/peers/protocol.ts';
import { requestToken } from '../../kube/token-review.ts';
import { ZONE_LABEL } from '../../kube/node-facts.ts';
import { NAMESPACES, SERVICE_ACCOUNTS } from '../../kube/resources.ts';
import { ControlPlane } from '../../localcluster/control-plane.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { startModelcache, type ModelcacheProcess } from '../../localcluster/modelcache-process.ts';
import { Origin, generated, toBuffer } from '../../localcluster/origin.ts';
import { makeTar } from '../../localcluster/archives.ts';
import { freePort, Reaper } from '../../localcluster/processes.ts';
import { createLogger } from '../../ops/logger.ts';
import { useControlPlane, uniqueName } from '../helpers/cluster.ts';
import { HfHub } from '../helpers/hf-hub.ts';
import { createNode, grantShippedRbac, installShippedCrds } from '../helpers/kube-fixtures.ts';
import { TestPeer } from '../helpers/test-peer.ts';

// Peer-to-peer between real daemon processes on one machine (loopback, one port each): correctness, trust and
// fallback. How much it saves over real links (network namespaces, tc) is `npm run bench -- p2p`'s business.

const stop = new AbortController();
let running: Promise<void> | undefined;
let origin: Origin;
/** A second origin: its LFS files have sha256 digests, which check pieces a failed copy kept. */
let hub: HfHub;
let work: string;
let reaper: Reaper;
let daemonKubeconfig: string;
let tokenFile: string;
const ns = uniqueName('p2p-system');
const group = uniqueName('p2p');
const nodes = [1, 2, 3, 4, 5, 6].map((i) => `${group}-n${i}`);
const daemons = new Map<string, ModelcacheProcess>();
const MiB = 1024 * 1024;

const cluster = useControlPlane({
  controllerManager: false,
  setup: async (c) => {
    await installShippedCrds(c.client);
    await grantShippedRbac(c.client, 'daemon', ControlPlane.username('tester-2'));
    daemonKubeconfig = await c.cp.kubeconfigFor('tester-2');
    origin = await Origin.start();
    hub = await HfHub.start();
    work = await mkdtemp(join(tmpdir(), 'modelcache-p2p-'));
    reaper = new Reaper();
    // The daemons' peer identity: a token of the modelcache-daemon service account with the peer audience,
    // as the DaemonSet's projected volume gives each pod.
    await c.client.create(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    await c.client.create(SERVICE_ACCOUNTS, {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'modelcache-daemon', namespace: ns },
    });
    tokenFile = join(work, 'peer-token');
    await writeFile(tokenFile, await requestToken(c.client, ns, 'modelcache-daemon', ['modelcache-peer'], 3600));
    const quiet = new Writable({ write: (_c, _e, cb) => cb() });
    const controller = new CacheController({ client: c.client, log: createLogger('controller', 'warn', quiet) });
    controller.start(stop.signal);
    running = controller.run(stop.signal);
    await c.client.create(LOCAL_MODEL_NODE_GROUPS, {
      apiVersion: 'serving.kserve.io/v1alpha1',
      kind: 'LocalModelNodeGroup',
      metadata: { name: group },
      spec: { nodeSelector: { matchLabels: { [`${group}/cache`]: 'yes' } }, storageLimit: '10Gi' },
    });
    // n6 is in another zone than the others: what it copies from them counts as cross-zone.
    for (const n of nodes)
      await createNode(c.client, n, { [`${group}/cache`]: 'yes', [ZONE_LABEL]: n === nodes[5] ? 'zone-b' : 'zone-a' });
  },
  teardown: async () => {
    stop.abort();
    await running?.catch(() => undefined);
    await Promise.all([...daemons.values()].map((d) => d.stop('SIGKILL')));
    reaper.close();
    await origin.close();
    await hub.close();
    await rm(work, { recursive: true, force: true });
  },
});

const rootOf = (node: string): string => join(work, node);

async function startDaemon(node: string): Promise<ModelcacheProcess> {
  const port = await freePort();
  const d = await startModelcache(
    `daemon-${node}`,
    [
      'daemon',
      '--kubeconfig',
      daemonKubeconfig,
      '--node-name',
      node,
      '--root',
      rootOf(node),
      '--namespace',
      ns,
      '--listen',
      '127.0.0.1:0',
      '--peer-listen',
      `127.0.0.1:${port}`,
      '--peer-token-file',
      tokenFile,
      '--progress-interval-ms',
      '200',
      '--safety-margin',
      '0',
      '--stall-timeout-seconds',
      '2',
    ],
    work,
    reaper,
    { ...process.env, HF_ENDPOINT: hub.endpoint },
  );
  daemons.set(node, d);
  return d;
}

const sha = (b: Buffer | Uint8Array): string => createHash('sha256').update(b).digest('hex');
const lmnOf = (n: string): Promise<LocalModelNode | undefined> =>
  cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, n);

async function waitNodeDownloaded(node: string, model: string, timeoutMs = 90_000): Promise<LocalModelNode> {
  return eventually(
    async () => {
      const lmn = await lmnOf(node);
      assert.equal(lmn?.status?.modelStatus?.[model], 'ModelDownloaded', JSON.stringify(lmn?.status));
      return lmn!;
    },
    { timeoutMs },
  );
}

/** Every file of a model folder (the marker and the manifest aside) by path, as sha256. */
async function folderHashes(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile() || e.name.startsWith('.modelcache.json')) continue;
    const abs = join(e.parentPath, e.name);
    out[abs.slice(dir.length + 1)] = sha(await readFile(abs));
  }
  return out;
}

async function metric(d: ModelcacheProcess, line: RegExp): Promise<number> {
  const text = await (await fetch(`${d.opsUrl}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => line.test(l))
    .reduce((s, l) => s + Number(l.split(' ').pop()), 0);
}

test('the first node fetches from the origin; the others fill from it: identical bytes, the origin sends each once', async () => {
  const tar = await makeTar([
    { name: 'config.json', content: '{"arch":"p2p"}' },
    { name: 'weights/a.bin', content: toBuffer(generated(40 * MiB + 17, 5)) },
    { name: 'weights/b.bin', content: toBuffer(generated(3 * MiB, 6)) },
    { name: 'empty.txt', content: '' },
  ]);
  origin.set('/m/p2p.tar', tar);
  const uri = origin.url('/m/p2p.tar');
  const key = storageKeyFor(uri);
  const [n1, n2, n3, n4] = nodes as [string, string, string, string];
  // Only n1 runs at first: it is the one that goes to the origin.
  await startDaemon(n1);
  await cluster.client.create(LOCAL_MODEL_CACHES, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelCache',
    metadata: { name: 'p2p' },
    spec: { sourceModelUri: uri, modelSize: '64Mi', nodeGroups: [group] },
  });
  const first = await waitNodeDownloaded(n1, 'p2p');
  const pieces = first.status?.models?.p2p?.pieces;
  assert.ok(pieces, 'n1 publishes the manifest of its copy');
  assert.match(pieces.digest, /^sha256:[0-9a-f]{64}$/);
  assert.equal(pieces.count, 3 + 1 + 0 + 1, 'pieces of 16 MiB: 3 for a.bin, 1 for b.bin, 1 for config.json');
  assert.match(String(first.status?.peer?.address), /^127\.0\.0\.1:\d+$/);
  assert.equal(sha(await readFile(join(rootOf(n1), 'models', key, MANIFEST_FILE))), pieces.digest.slice(7));
  assert.equal(origin.bytesSent.get('/m/p2p.tar'), tar.length);

  await Promise.all([n2, n3, n4].map((n) => startDaemon(n)));
  const want = await folderHashes(join(rootOf(n1), 'models', key));
  assert.equal(Object.keys(want).length, 4);
  for (const n of [n2, n3, n4]) {
    const lmn = await waitNodeDownloaded(n, 'p2p');
    assert.deepEqual(await folderHashes(join(rootOf(n), 'models', key)), want, `${n} holds the same bytes`);
    assert.deepEqual(lmn.status?.models?.p2p?.pieces, pieces, `${n} serves the same manifest`);
    assert.equal(lmn.status?.models?.p2p?.bytesFromPeers, lmn.status?.models?.p2p?.bytesDone, 'all from peers');
  }
  assert.equal(origin.bytesSent.get('/m/p2p.tar'), tar.length, 'the origin sent the model once, to n1 only');
  const fromPeers = await Promise.all(
    [n2, n3, n4].map((n) =>
      metric(daemons.get(n)!, /^modelcache_daemon_downloaded_bytes_total\{.*source="peer",zone="same"/),
    ),
  );
  for (const b of fromPeers) assert.ok(b >= 43 * MiB, `peer bytes counted: ${b}`);
  const served = await metric(daemons.get(n1)!, /^modelcache_daemon_peer_served_bytes_total/);
  assert.ok(served > 0, 'n1 counts the bytes it served');
  await eventually(async () =>
    assert.equal((await lmnOf(n1))?.status?.peer?.bytesServed, served, 'and its status says as much'),
  );
});

test('a peer that flips bits is caught by the piece hashes and avoided: nothing bad is committed', async () => {
  const [n1, , , , n5] = nodes as [string, string, string, string, string];
  const uri = origin.url('/m/p2p.tar');
  const key = storageKeyFor(uri);
  const good = await lmnOf(n1);
  const pieces = good?.status?.models?.p2p?.pieces;
  assert.ok(pieces);
  // A node that lies: it publishes the right manifest digest (anyone can copy a status) but corrupt pieces.
  const dir = join(rootOf(n1), 'models', key);
  const liar = await TestPeer.start(dir, key, await readFile(join(dir, MANIFEST_FILE)));
  liar.always = { flipBits: true };
  const liarNode = `${group}-liar`;
  await createNode(cluster.client, liarNode, { [`${group}/cache`]: 'yes', [ZONE_LABEL]: 'zone-a' });
  // It is in the group: the controller gives it a LocalModelNode like the others'.
  await eventually(async () => assert.equal((await lmnOf(liarNode))?.spec.localModels[0]?.storageKey, key));
  await cluster.client.patchStatus<LocalModelNode>(LOCAL_MODEL_NODES, liarNode, {
    peer: { address: liar.url.replace('http://', '') },
    modelStatus: { p2p: 'ModelDownloaded' },
    models: { p2p: { storageKey: key, pieces } },
  });
  const originBefore = origin.bytesSent.get('/m/p2p.tar') ?? 0;
  try {
    const d5 = await startDaemon(n5);
    await waitNodeDownloaded(n5, 'p2p');
    assert.deepEqual(
      await folderHashes(join(rootOf(n5), 'models', key)),
      await folderHashes(join(rootOf(n1), 'models', key)),
      'only verified pieces were written',
    );
    const bad = await metric(d5, /^modelcache_daemon_peer_piece_failures_total\{.*peer="[^"]*-liar"/);
    assert.ok(
      bad >= 1,
      `the corrupt piece is counted against the liar: ${JSON.stringify(liar.requests)} ${JSON.stringify(
        (await d5.logs()).filter((l) => /peer/.test(String(l.msg))),
      )}`,
    );
    const asked = liar.pieceRequests().length;
    assert.ok(asked >= 1 && asked <= 2, `the liar is asked once, then avoided (asked ${asked} times)`);
    assert.equal(origin.bytesSent.get('/m/p2p.tar') ?? 0, originBefore, 'the honest peers gave the rest');
  } finally {
    await liar.close();
  }
});

test('a cold model wanted by every node at once: one seed per zone fetches it from the origin, the rest copy it', async () => {
  const size = 36 * MiB + 5;
  const body = generated(size, 9);
  origin.set('/m/fanout.bin', body);
  const uri = origin.url('/m/fanout.bin');
  const key = storageKeyFor(uri);
  // n6 has no daemon yet: it wants the model too but never reports it, and is passed over as a seed.
  const running = nodes.filter((n) => daemons.has(n));
  assert.equal(running.length, 5);
  await cluster.client.create(LOCAL_MODEL_CACHES, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelCache',
    metadata: { name: 'fanout' },
    spec: { sourceModelUri: uri, modelSize: '40Mi', nodeGroups: [group] },
  });
  const statuses = await Promise.all(running.map((n) => waitNodeDownloaded(n, 'fanout')));
  const want = sha(toBuffer(body));
  for (const n of running) assert.equal(sha(await readFile(join(rootOf(n), 'models', key, 'fanout.bin'))), want);
  assert.equal(
    origin.bytesSent.get('/m/fanout.bin'),
    size,
    `the origin sent the model once: ${JSON.stringify(
      await Promise.all(
        running.map(async (n) =>
          (await daemons.get(n)!.logs()).filter((l) => /seed|peer/.test(String(l.msg)) && l.model === 'fanout'),
        ),
      ),
    )}`,
  );
  const seeds = statuses.filter((s) => !s.status?.models?.fanout?.bytesFromPeers).map((s) => s.metadata.name);
  assert.equal(seeds.length, 1, `exactly one node fetched from the origin: ${seeds.join(', ')}`);
});

test("two zones: each fetches the model from the origin through its own seed, though the other's seed offers it", async () => {
  const zg = uniqueName('p2p-zones');
  const [c1, c2, d1, d2] = ['c1', 'c2', 'd1', 'd2'].map((s) => `${zg}-${s}`) as [string, string, string, string];
  await cluster.client.create(LOCAL_MODEL_NODE_GROUPS, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelNodeGroup',
    metadata: { name: zg },
    spec: { nodeSelector: { matchLabels: { [`${zg}/cache`]: 'yes' } }, storageLimit: '10Gi' },
  });
  for (const n of [c1, c2, d1, d2])
    await createNode(cluster.client, n, {
      [`${zg}/cache`]: 'yes',
      [ZONE_LABEL]: [c1, c2].includes(n) ? 'zone-c' : 'zone-d',
    });
  const size = 24 * MiB + 3;
  const body = generated(size, 11);
  origin.set('/m/zones.bin', body, { rate: 6 * MiB }); // about 4 s from the origin
  await Promise.all([c1, c2].map((n) => startDaemon(n)));
  await cluster.client.create(LOCAL_MODEL_CACHES, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelCache',
    metadata: { name: 'zones' },
    spec: { sourceModelUri: origin.url('/m/zones.bin'), modelSize: '30Mi', nodeGroups: [zg] },
  });
  // Zone d's daemons start once zone c's seed offers its download live: they could copy it across, but seed.
  await eventually(async () => {
    const live = await Promise.all([c1, c2].map(async (n) => (await lmnOf(n))?.status?.models?.zones?.pieces?.live));
    assert.ok(live.includes('origin'), `zone c's seed offers it: ${JSON.stringify(live)}`);
  });
  await Promise.all([d1, d2].map((n) => startDaemon(n)));
  const statuses = await Promise.all([c1, c2, d1, d2].map((n) => waitNodeDownloaded(n, 'zones')));
  try {
    const want = sha(toBuffer(body));
    const key = storageKeyFor(origin.url('/m/zones.bin'));
    for (const n of [c1, c2, d1, d2])
      assert.equal(sha(await readFile(join(rootOf(n), 'models', key, 'zones.bin'))), want, n);
    assert.equal(origin.bytesSent.get('/m/zones.bin'), 2 * size, 'the origin sent the model once per zone');
    const seeds = statuses.filter((s) => !s.status?.models?.zones?.bytesFromPeers).map((s) => s.metadata.name);
    assert.equal(seeds.filter((n) => n === c1 || n === c2).length, 1, `one seed in zone c: ${seeds.join(', ')}`);
    assert.equal(seeds.filter((n) => n === d1 || n === d2).length, 1, `one seed in zone d: ${seeds.join(', ')}`);
    const copier = seeds.includes(c1) ? c2 : c1;
    const d = daemons.get(copier)!;
    const cross = await metric(d, /^modelcache_daemon_downloaded_bytes_total\{.*source="peer",zone="cross"/);
    const same = await metric(d, /^modelcache_daemon_downloaded_bytes_total\{.*source="peer",zone="same"/);
    assert.deepEqual({ same, cross }, { same: size, cross: 0 }, `${copier} copied from its own zone's seed`);
  } finally {
    for (const n of [c1, c2, d1, d2]) {
      await daemons.get(n)?.stop();
      daemons.delete(n);
    }
  }
});

test('a seed serves its origin download while it runs: the others copy pieces before it is done', async () => {
  const size = 64 * MiB + 3;
  const body = generated(size, 11);
  origin.set('/m/live.bin', body, { rate: 8 * MiB }); // about 8 s from the origin
  const uri = origin.url('/m/live.bin');
  const key = storageKeyFor(uri);
  const running = nodes.filter((n) => daemons.has(n));
  await cluster.client.create(LOCAL_MODEL_CACHES, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelCache',
    metadata: { name: 'live' },
    spec: { sourceModelUri: uri, modelSize: '65Mi', nodeGroups: [group] },
  });
  // Watched as it happens: some node holds bytes from peers while the seed still downloads, live.
  const seen: string[] = [];
  await eventually(
    async () => {
      const lmns = await Promise.all(running.map((n) => lmnOf(n)));
      const seeding = lmns.find((l) => l?.status?.models?.live?.pieces?.live === 'origin');
      const copying = lmns.filter((l) => (l?.status?.models?.live?.bytesFromPeers ?? 0) > 0);
      if (seeding && seeding.status?.modelStatus?.live === 'ModelDownloading' && copying.length > 0)
        seen.push(`${seeding.metadata.name}: ${copying.map((l) => l!.metadata.name).join(', ')}`);
      assert.ok(
        lmns.every((l) => l?.status?.modelStatus?.live === 'ModelDownloaded'),
        'every node has it',
      );
    },
    { timeoutMs: 90_000, intervalMs: 100 },
  );
  const logs = async (): Promise<string> =>
    JSON.stringify(
      await Promise.all(
        running.map(async (n) =>
          (await daemons.get(n)!.logs()).filter(
            (l) => (l.model === 'live' || l.storageKey === key) && Number(l.level) >= 30,
          ),
        ),
      ),
    );
  assert.ok(
    seen.length > 0,
    `a node copied from the seed while the seed was still downloading from the origin: ${await logs()}`,
  );
  assert.equal(origin.bytesSent.get('/m/live.bin'), size, `the origin sent the model once: ${await logs()}`);
  const want = sha(toBuffer(generated(size, 11)));
  const digests = new Set<string>();
  for (const n of running) {
    assert.equal(sha(await readFile(join(rootOf(n), 'models', key, 'live.bin'))), want, `${n} holds the bytes`);
    const pieces = (await lmnOf(n))?.status?.models?.live?.pieces;
    assert.ok(pieces && pieces.live === undefined, `${n} publishes a complete manifest`);
    digests.add(pieces.digest);
  }
  assert.equal(digests.size, 1, 'every node serves the one manifest the seed published');
});

test('a seed killed halfway: the next node by hash takes over from the origin, the others copy from it', async (t) => {
  const PIECE = 16 * MiB;
  const weights = toBuffer(generated(8 * PIECE + 9, 13));
  hub.addRepo('org/takeover', {
    revisions: { main: 'feed000000000000000000000000000000000000' },
    files: { 'weights.bin': weights, 'config.json': Buffer.from('{"arch":"takeover"}') },
  });
  hub.rate = 4 * MiB; // per request: 4 parts at once, the first 4 pieces in about 4 s
  const sent = (): number => hub.cdnBytesSent.get(sha(weights)) ?? 0;
  const zoneA = nodes.filter((n) => daemons.has(n) && n !== nodes[5]);
  assert.equal(zoneA.length, 5);
  await cluster.client.create(LOCAL_MODEL_CACHES, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelCache',
    metadata: { name: 'takeover' },
    spec: { sourceModelUri: 'hf://org/takeover', modelSize: '130Mi', nodeGroups: [group] },
  });
  // The seed is killed once the others hold its first 4 pieces; from its first 4 pieces on, the origin is slow, so
  // that the seed is still far from done then.
  const seed = await eventually(
    async () => {
      const lmns = await Promise.all(zoneA.map((n) => lmnOf(n)));
      const s = lmns.find((l) => l?.status?.models?.takeover?.pieces?.live === 'origin');
      assert.ok(s && s.status?.modelStatus?.takeover === 'ModelDownloading', 'a seed fetches it from the origin');
      if ((s.status.models?.takeover?.bytesDone ?? 0) >= 4 * PIECE) hub.rate = 256 * 1024;
      const others = lmns.filter((l) => l !== s);
      assert.ok(
        others.every((l) => (l?.status?.models?.takeover?.bytesFromPeers ?? 0) >= 4 * PIECE),
        `the others copied its first pieces: ${others.map((l) => l?.status?.models?.takeover?.bytesFromPeers)}`,
      );
      const name = s.metadata.name;
      assert.ok(name);
      return name;
    },
    { timeoutMs: 60_000, intervalMs: 100 },
  );
  await daemons.get(seed)!.stop('SIGKILL');
  const atDeath = sent();
  assert.ok(atDeath < weights.length, `the seed had not fetched it all (${atDeath} bytes)`);
  hub.rate = 4 * MiB;
  const rest = zoneA.filter((n) => n !== seed);
  const logs = async (): Promise<string> =>
    JSON.stringify(
      await Promise.all(
        rest.map(async (n) =>
          (await daemons.get(n)!.logs()).filter((l) => l.model === 'takeover' && Number(l.level) >= 30),
        ),
      ),
    );
  const statuses = await Promise.all(rest.map((n) => waitNodeDownloaded(n, 'takeover', 120_000)));
  const key = storageKeyFor('hf://org/takeover');
  for (const n of rest)
    assert.equal(sha(await readFile(join(rootOf(n), 'models', key, 'weights.bin'))), sha(weights), `${n}'s bytes`);
  // After the kill, the survivors lacked the same half of the model (what the seed had not hashed yet). With a
  // takeover the origin sends it once, to the new seed; without one each of the 4 fetched it (twice the model).
  const after = sent() - atDeath;
  t.diagnostic(`the origin sent ${(after / weights.length).toFixed(2)} times the model after the kill`);
  assert.ok(after <= 0.75 * weights.length, `after the kill the origin sent ${after} bytes: ${await logs()}`);
  // The next node by rendezvous hash among the survivors took over; every other one copied every byte from peers.
  const next = seedOf(key, rest[0]!, rest);
  const fromOrigin = statuses
    .filter((s) => s.status?.models?.takeover?.bytesFromPeers !== s.status?.models?.takeover?.bytesDone)
    .map((s) => s.metadata.name);
  assert.deepEqual(fromOrigin, [next], `only ${next} fetched from the origin: ${await logs()}`);
  // The killed seed comes back and copies the model, as it is wanted there too.
  await startDaemon(seed);
  await waitNodeDownloaded(seed, 'takeover', 120_000);
});

test('peers that are gone (killed before or during the transfer) are skipped: the others finish the copy', async () => {
  const [n1, n2, n3, , , n6] = nodes as [string, string, string, string, string, string];
  const before = { p2p: origin.bytesSent.get('/m/p2p.tar'), fanout: origin.bytesSent.get('/m/fanout.bin') };
  // Their statuses still offer both models at addresses where nothing listens any more.
  await Promise.all([n1, n2].map((n) => daemons.get(n)!.stop('SIGKILL')));
  await startDaemon(n6);
  await daemons.get(n3)!.stop('SIGKILL'); // most likely while n6 is fetching from it
  for (const [model, file] of [
    ['p2p', 'weights/a.bin'],
    ['fanout', 'fanout.bin'],
  ] as const) {
    await waitNodeDownloaded(n6, model);
    const key = storageKeyFor(origin.url(model === 'p2p' ? '/m/p2p.tar' : '/m/fanout.bin'));
    assert.equal(
      sha(await readFile(join(rootOf(n6), 'models', key, file))),
      sha(await readFile(join(rootOf(n1), 'models', key, file))),
    );
  }
  assert.deepEqual(
    { p2p: origin.bytesSent.get('/m/p2p.tar'), fanout: origin.bytesSent.get('/m/fanout.bin') },
    before,
    'the live peers gave every byte',
  );
  const d6 = daemons.get(n6)!;
  const cross = await metric(d6, /^modelcache_daemon_downloaded_bytes_total\{.*source="peer",zone="cross"/);
  const same = await metric(d6, /^modelcache_daemon_downloaded_bytes_total\{.*source="peer",zone="same"/);
  assert.ok(cross >= 2 * 36 * MiB && same === 0, `n6 is in another zone: ${cross} bytes cross-zone, ${same} same`);
});
