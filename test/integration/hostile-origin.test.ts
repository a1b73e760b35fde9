// One real daemon process against an origin serving every hostile archive the hostile-input issue
// found, one cache each: the daemon must still be the same process at the end, answering /healthz,
// each hostile model in NodeDownloadError with its reason, and nothing outside a model folder changed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { storageKeyFor } from '../../api/storage-key.ts';
import {
  LOCAL_MODEL_CACHES,
  LOCAL_MODEL_NODE_GROUPS,
  LOCAL_MODEL_NODES,
  type LocalModelNode,
} from '../../api/types.ts';
import { CacheController } from '../../controller/controller.ts';
import { createLogger } from '../../ops/logger.ts';
import { makeTar, makeZip, type TarEntry } from '../../localcluster/archives.ts';
import { useControlPlane, uniqueName } from '../helpers/cluster.ts';
import { ControlPlane } from '../../localcluster/control-plane.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { createNode, grantShippedRbac, installShippedCrds } from '../helpers/kube-fixtures.ts';
import { startModelcache, type ModelcacheProcess } from '../../localcluster/modelcache-process.ts';
import { Origin, generated, toBuffer } from '../../localcluster/origin.ts';
import { Reaper } from '../../localcluster/processes.ts';

const stop = new AbortController();
let running: Promise<void> | undefined;
let origin: Origin;
let work: string;
let reaper: Reaper;
let daemon: ModelcacheProcess;
const group = uniqueName('hostile');
const node = `${group}-n1`;
const victimWeights = toBuffer(generated(64 * 1024, 9));
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const root = (): string => join(work, 'root');
const hostFiles = (): string => join(work, 'host-models');
const dotUri = (): string => origin.url('/good/dot.tar.gz');

const cluster = useControlPlane({
  controllerManager: false,
  setup: async (c) => {
    await installShippedCrds(c.client);
    await grantShippedRbac(c.client, 'daemon', ControlPlane.username('tester-2'));
    const kubeconfig = await c.cp.kubeconfigFor('tester-2');
    origin = await Origin.start();
    work = await mkdtemp(join(tmpdir(), 'modelcache-hostile-'));
    reaper = new Reaper();
    await mkdir(hostFiles(), { recursive: true });
    // Corrupt markers on disk before the daemon starts: one in a folder no cache wants, one where a
    // wanted model goes. Neither may stop the start, a reconcile, or that model's download.
    await mkdir(join(root(), 'models', 'abandoned-model'), { recursive: true });
    await writeFile(join(root(), 'models', 'abandoned-model', '.modelcache.json'), '{"uri": "not json');
    await mkdir(join(root(), 'models', storageKeyFor(dotUri())), { recursive: true });
    await writeFile(join(root(), 'models', storageKeyFor(dotUri()), '.modelcache.json'), '[1, 2');
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
    await createNode(c.client, node, { [`${group}/cache`]: 'yes' });
    daemon = await startModelcache(
      `daemon-${node}`,
      [
        'daemon',
        ...['--kubeconfig', kubeconfig, '--node-name', node, '--root', root(), '--listen', '127.0.0.1:0'],
        ...['--progress-interval-ms', '200', '--safety-margin', '0', '--stall-timeout-seconds', '2'],
        ...['--max-concurrent', '4', '--allow-file-root', hostFiles()],
      ],
      work,
      reaper,
    );
  },
  teardown: async () => {
    stop.abort();
    await running?.catch(() => undefined);
    await daemon?.stop('SIGKILL');
    reaper.close();
    await origin.close();
    await rm(work, { recursive: true, force: true });
  },
});

/** The LocalModelCache this test calls `short`: cluster-scoped, so its name carries the test's prefix. */
const cacheName = (short: string): string => `${group}-${short}`;

async function createCache(short: string, uri: string, size: string): Promise<void> {
  await cluster.client.create(LOCAL_MODEL_CACHES, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelCache',
    metadata: { name: cacheName(short) },
    spec: { sourceModelUri: uri, modelSize: size, nodeGroups: [group] },
  });
}

async function modelState(short: string): Promise<{ state?: string; reason?: string; message?: string }> {
  const lmn = await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, node);
  const name = cacheName(short);
  return { state: lmn?.status?.modelStatus?.[name], ...lmn?.status?.models?.[name] };
}

/** Links that climb out of a staging folder while every target looks inside by name (see the issue). */
function escapingLinks(): TarEntry[] {
  return [
    { name: 'x/', type: 'directory' },
    { name: 'x/y/', type: 'directory' },
    { name: 'x/y/up', type: 'symlink', linkname: '..' }, // → x
    { name: 'x/y/up2', type: 'symlink', linkname: 'up/../..' }, // by name → x; on disk → the folder's parent
    { name: '..x', type: 'symlink', linkname: 'x/y/up2/..' }, // by name → x/y; on disk → the cache root
  ];
}

test('a daemon fed every hostile archive stays up, reports each one, and nothing outside a model changes', async () => {
  const victimUri = origin.url('/good/victim.tar.gz');
  origin.set('/good/victim.tar.gz', await makeTar([{ name: 'weights.bin', content: victimWeights }], true));
  await createCache('victim', victimUri, '1Mi');
  await eventually(async () => assert.equal((await modelState('victim')).state, 'ModelDownloaded'), {
    timeoutMs: 60_000,
  });
  const victimKey = storageKeyFor(victimUri);
  const victimFile = join(root(), 'models', victimKey, 'weights.bin');

  // `tar -C model -czf dot.tar.gz .`: the most common archive of all, its first entry './'.
  const dotEntries: TarEntry[] = [
    { name: './', type: 'directory' },
    { name: './config.json', content: '{"ok":true}' },
    { name: './sub/', type: 'directory' },
    { name: './sub/w.bin', content: victimWeights },
  ];
  origin.set('/good/dot.tar.gz', await makeTar(dotEntries, true));

  const garbageGzip = Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), toBuffer(generated(4096, 3))]);
  await writeFile(join(hostFiles(), 'corrupt.tar.gz'), garbageGzip);
  const unsafeFirst = await makeTar(
    [
      { name: '../evil.txt', content: 'x' },
      { name: 'padding.bin', content: toBuffer(generated(4 * 1024 * 1024, 4)) },
    ],
    true,
  );
  const hostile: Array<{ name: string; path: string; body: Buffer; size: string; reason: string; rate?: number }> = [
    {
      name: 'chain',
      path: '/hostile/chain.tar.gz',
      body: await makeTar([...escapingLinks(), { name: `..x/${victimKey}/weights.bin`, content: 'overwritten' }], true),
      size: '1Mi',
      reason: 'UnsafeArchive',
    },
    {
      name: 'marker',
      path: '/hostile/marker.tar.gz',
      body: await makeTar(
        [
          ...escapingLinks().slice(0, 4),
          { name: '.modelcache.json.tmp', type: 'symlink', linkname: `x/y/up2/../${victimKey}/weights.bin` },
          { name: 'model.bin', content: 'weights' },
        ],
        true,
      ),
      size: '1Mi',
      reason: 'UnsafeArchive',
    },
    {
      name: 'resumed-corrupt',
      path: '/hostile/resumed.tar.gz',
      body: garbageGzip,
      size: '1Mi',
      reason: 'BadResponse',
    },
    // Refused at its first entry while 4 MiB still arrive slowly: the attempt must end, not hang.
    {
      name: 'unsafe-slow',
      path: '/hostile/slow.tar.gz',
      body: unsafeFirst,
      size: '8Mi',
      reason: 'UnsafeArchive',
      rate: 64 * 1024,
    },
    {
      name: 'gzip-bomb',
      path: '/hostile/bomb.tar.gz',
      body: await makeTar([{ name: 'zeros.bin', content: Buffer.alloc(64 * 1024 * 1024) }], true),
      size: '1Mi',
      reason: 'SizeExceeded',
    },
    {
      name: 'inode-bomb',
      path: '/hostile/inodes.tar.gz',
      body: await makeTar(
        Array.from({ length: 20_000 }, (_, i) => ({ name: `f/${i}`, content: '' })),
        true,
      ),
      size: '1Ki',
      reason: 'SizeExceeded',
    },
    {
      name: 'zip-escape',
      path: '/hostile/escape.zip',
      body: makeZip({ 'ok.txt': 'fine', '../../escape.txt': 'out' }),
      size: '1Mi',
      reason: 'UnsafeArchive',
    },
  ];
  origin.fault('/hostile/resumed.tar.gz', { resetAfterBytes: 100 }); // too few bytes to sniff: the resumed attempt extracts from the file
  for (const h of hostile) origin.set(h.path, h.body, h.rate ? { rate: h.rate } : {});
  for (const h of hostile) await createCache(h.name, origin.url(h.path), h.size);
  await createCache('file-corrupt', pathToFileURL(join(hostFiles(), 'corrupt.tar.gz')).href, '1Mi');
  await createCache('dot', dotUri(), '1Mi');

  const expected: Array<[string, string]> = [...hostile.map((h): [string, string] => [h.name, h.reason])];
  expected.push(['file-corrupt', 'BadResponse']);
  for (const [name, reason] of expected) {
    await eventually(
      async () => {
        const s = await modelState(name);
        assert.equal(s.state, 'ModelDownloadError', `${name}: ${JSON.stringify(s)}`);
        assert.equal(s.reason, reason, `${name}: ${JSON.stringify(s)}`);
      },
      { timeoutMs: 60_000 },
    );
  }
  await eventually(async () => assert.equal((await modelState('dot')).state, 'ModelDownloaded'), { timeoutMs: 60_000 });
  const dotDir = join(root(), 'models', storageKeyFor(dotUri()));
  assert.equal(await readFile(join(dotDir, 'config.json'), 'utf8'), '{"ok":true}');
  assert.equal(sha(await readFile(join(dotDir, 'sub', 'w.bin'))), sha(victimWeights));

  assert.equal(daemon.managed.child.exitCode, null, 'the daemon is still running');
  assert.equal(daemon.managed.child.signalCode, null, 'the daemon is still running');
  assert.equal((await fetch(`${daemon.opsUrl}/healthz`)).status, 200);
  assert.equal(sha(await readFile(victimFile)), sha(victimWeights), "another model's weights are untouched");
  assert.equal((await modelState('victim')).state, 'ModelDownloaded');
  await assert.rejects(readFile(join(work, 'evil.txt')));
  await assert.rejects(readFile(join(root(), 'escape.txt')));
  const starts = (await daemon.logs()).filter((l) => l.msg === 'inventory taken');
  assert.equal(starts.length, 1, 'one start: the daemon never restarted');
});
