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
  type LocalModelCache,
  type LocalModelNode,
} from '../../api/types.ts';
import { EVENTS } from '../../kube/resources.ts';
import type { KubeObject } from '../../kube/types.ts';
import { CacheController } from '../../controller/controller.ts';
import { createLogger } from '../../ops/logger.ts';
import { ControlPlane } from '../../localcluster/control-plane.ts';
import { useControlPlane, uniqueName } from '../helpers/cluster.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { createNode, grantShippedRbac, installShippedCrds } from '../helpers/kube-fixtures.ts';
import { Origin, generated, toBuffer } from '../../localcluster/origin.ts';
import { Reaper } from '../../localcluster/processes.ts';
import { startModelcache, type ModelcacheProcess } from '../../localcluster/modelcache-process.ts';

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
  // The node says so in a condition naming the group, both paths and the fix…
  await eventually(async () => {
    const lmn = await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, node);
    const c = lmn?.status?.conditions?.find((x) => x.type === 'StoragePathMatches');
    assert.equal(c?.status, 'False');
    assert.equal(c?.reason, 'StoragePathMismatch');
    assert.ok(c?.message.includes(`node group ${group}-elsewhere`), c?.message);
    assert.ok(c?.message.includes('/mnt/not-mounted') && c.message.includes(root()), c?.message);
    assert.ok(c?.message.includes("set the group's storage path to"), c?.message);
  });
  // …and the controller puts one Warning Event on the group (edge-triggered: once, not once per daemon pass).
  const mismatchEvents = async () =>
    (
      await cluster.client.list<
        KubeObject & {
          type?: string;
          reason?: string;
          count?: number;
          message?: string;
          involvedObject?: { kind?: string; name?: string };
        }
      >(EVENTS, { namespace: 'default' })
    ).items.filter(
      (e) =>
        e.reason === 'StoragePathMismatch' &&
        e.involvedObject?.kind === 'LocalModelNodeGroup' &&
        e.involvedObject.name === `${group}-elsewhere`,
    );
  await eventually(async () => {
    const events = await mismatchEvents();
    assert.equal(events.length, 1);
    assert.equal(events[0]?.type, 'Warning');
    assert.ok(events[0]?.message?.includes(`node ${node}`) && events[0].message.includes('/mnt/not-mounted'));
  });
  // A status write of the node (a model added) wakes the controller again; the same mismatch is not reported again.
  origin.set('/elsewhere/m2.bin', generated(1000, 24));
  await createCache(`${group}-elsewhere2`, origin.url('/elsewhere/m2.bin'), [`${group}-elsewhere`]);
  await eventually(async () => assert.equal((await statusOf(`${group}-elsewhere2`))?.reason, 'StoragePathMismatch'));
  // The cache controller has seen that status write (it shares the node controller's queue and event).
  await eventually(async () => {
    const c = await cluster.client.get<LocalModelCache>(LOCAL_MODEL_CACHES, `${group}-elsewhere2`);
    assert.equal(c?.status?.nodeStatus?.[node], 'NodeDownloadError');
  });
  const again = await mismatchEvents();
  assert.equal(again.length, 1);
  assert.equal(again[0]?.count ?? 1, 1, 'the Event is not repeated on every pass');
  assert.equal(origin.requestsFor('/elsewhere/m.bin').length, 0);
  assert.equal(await stat(join(root(), 'models', storageKeyFor(uri))).catch(() => 'absent'), 'absent');
});
