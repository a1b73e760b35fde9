import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
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
import { createLogger } from '../../ops/logger.ts';
import { ControlPlane } from '../helpers/control-plane.ts';
import { useControlPlane, uniqueName } from '../helpers/cluster.ts';
import { eventually } from '../helpers/eventually.ts';
import { createNode, grantShippedRbac, installShippedCrds } from '../helpers/kube-fixtures.ts';
import { Origin, generated, toBuffer } from '../helpers/origin.ts';
import { Reaper } from '../helpers/processes.ts';
import { startModelcache, type ModelcacheProcess } from '../helpers/modelcache-process.ts';

const stop = new AbortController();
let running: Promise<void> | undefined;
let origin: Origin;
let work: string;
let reaper: Reaper;
let daemon: ModelcacheProcess | undefined;
const group = uniqueName('lay');
const node = `${group}-n1`;
const root = (): string => join(work, 'host', 'models-disk');
const legacy = { path: '/legacy/m.bin', body: toBuffer(generated(400_000, 21)) };
const kserve = { path: '/kserve/m.bin', body: toBuffer(generated(300_000, 22)) };

const cluster = useControlPlane({
  controllerManager: false,
  setup: async (c) => {
    await installShippedCrds(c.client);
    await grantShippedRbac(c.client, 'daemon', ControlPlane.username('tester-2'));
    const kubeconfig = await c.cp.kubeconfigFor('tester-2');
    origin = await Origin.start();
    work = await mkdtemp(join(tmpdir(), 'modelcache-layout-'));
    reaper = new Reaper();
    const quiet = new Writable({ write: (_c, _e, cb) => cb() });
    const controller = new CacheController({ client: c.client, log: createLogger('controller', 'warn', quiet) });
    controller.start(stop.signal);
    running = controller.run(stop.signal);
    origin.set(legacy.path, legacy.body);
    origin.set(kserve.path, kserve.body);
    // Left by a daemon of the earlier layout: <root>/<key> with its marker.
    const lkey = storageKeyFor(origin.url(legacy.path));
    await mkdir(join(root(), lkey), { recursive: true });
    await writeFile(join(root(), lkey, 'm.bin'), legacy.body);
    await writeFile(
      join(root(), lkey, '.modelcache.json'),
      JSON.stringify({
        uri: origin.url(legacy.path),
        storageKey: lkey,
        bytes: legacy.body.length,
        files: 1,
        completedAt: '2026-11-01T00:00:00Z',
      }),
    );
    // Downloaded by KServe's own agent: <root>/models/<key>/ without a marker.
    const kkey = storageKeyFor(origin.url(kserve.path));
    await mkdir(join(root(), 'models', kkey), { recursive: true });
    await writeFile(join(root(), 'models', kkey, 'm.bin'), kserve.body);
    for (const [name, storagePath] of [
      [group, root()],
      [`${group}-elsewhere`, '/mnt/not-mounted'],
    ] as const) {
      await c.client.create(LOCAL_MODEL_NODE_GROUPS, {
        apiVersion: 'serving.kserve.io/v1alpha1',
        kind: 'LocalModelNodeGroup',
        metadata: { name },
        spec: { nodeSelector: { matchLabels: { [`${group}/cache`]: 'yes' } }, storageLimit: '1Gi', storagePath },
      });
    }
    await createNode(c.client, node, { [`${group}/cache`]: 'yes' });
    daemon = await startModelcache(
      `daemon-${node}`,
      [
        'daemon',
        ...['--kubeconfig', kubeconfig, '--node-name', node, '--root', root(), '--host-root', root()],
        ...['--listen', '127.0.0.1:0', '--progress-interval-ms', '200', '--safety-margin', '0'],
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

async function createCache(name: string, uri: string, groups: string[]): Promise<void> {
  await cluster.client.create(LOCAL_MODEL_CACHES, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelCache',
    metadata: { name },
    spec: { sourceModelUri: uri, modelSize: '1Mi', nodeGroups: groups },
  });
}

const statusOf = async (model: string) =>
  (await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, node))?.status?.models?.[model];

test('a model of the earlier layout is moved under models/ at start and served without one origin request', async () => {
  const uri = origin.url(legacy.path);
  await createCache(`${group}-legacy`, uri, [group]);
  await eventually(async () => assert.ok((await statusOf(`${group}-legacy`))?.completedAt === '2026-11-01T00:00:00Z'));
  assert.deepEqual(await readFile(join(root(), 'models', storageKeyFor(uri), 'm.bin')), legacy.body);
  assert.equal(await stat(join(root(), storageKeyFor(uri))).catch(() => 'moved'), 'moved');
  assert.equal(origin.requestsFor(legacy.path).length, 0);
});

test("a folder KServe's agent downloaded is adopted after a HEAD, not downloaded", async () => {
  const uri = origin.url(kserve.path);
  await createCache(`${group}-kserve`, uri, [group]);
  await eventually(async () => {
    const lmn = await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, node);
    assert.equal(lmn?.status?.modelStatus?.[`${group}-kserve`], 'ModelDownloaded');
  });
  assert.deepEqual(
    origin.requestsFor(kserve.path).map((r) => r.method),
    ['HEAD'],
  );
  await stat(join(root(), 'models', storageKeyFor(uri), '.modelcache.json'));
});

test('a group whose path is not the host path of the daemon root is reported StoragePathMismatch, nothing cached', async () => {
  origin.set('/elsewhere/m.bin', generated(1000, 23));
  const uri = origin.url('/elsewhere/m.bin');
  await createCache(`${group}-elsewhere`, uri, [`${group}-elsewhere`]);
  await eventually(async () => {
    const s = await statusOf(`${group}-elsewhere`);
    assert.equal(s?.reason, 'StoragePathMismatch');
    assert.ok(s?.message?.includes('/mnt/not-mounted') && s.message.includes(root()), s?.message);
  });
  assert.equal(origin.requestsFor('/elsewhere/m.bin').length, 0);
  assert.equal(await stat(join(root(), 'models', storageKeyFor(uri))).catch(() => 'absent'), 'absent');
});
