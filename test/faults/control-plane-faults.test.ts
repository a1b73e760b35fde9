// The fault suite in its small form: control-plane and controller failures while work is under way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installCrds } from '../../api/install.ts';
import { storageKeyFor } from '../../api/storage-key.ts';
import { LOCAL_MODEL_CACHES, LOCAL_MODEL_NODE_GROUPS, type LocalModelCache } from '../../api/types.ts';
import { useControlPlane, uniqueName } from '../helpers/cluster.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { createNode } from '../helpers/kube-fixtures.ts';
import { Origin, generated, toBuffer } from '../../localcluster/origin.ts';
import { Reaper } from '../../localcluster/processes.ts';
import { startModelcache, type ModelcacheProcess } from '../../localcluster/modelcache-process.ts';

let origin: Origin;
let work: string;
let reaper: Reaper;
let controller: ModelcacheProcess;
const group = uniqueName('flt');
const nodes = [`${group}-n1`, `${group}-n2`];
const procs: ModelcacheProcess[] = [];

const cluster = useControlPlane({
  controllerManager: false,
  setup: async (c) => {
    await installCrds(c.client);
    origin = await Origin.start();
    work = await mkdtemp(join(tmpdir(), 'modelcache-faults-'));
    reaper = new Reaper();
    controller = await startController();
    await c.client.create(LOCAL_MODEL_NODE_GROUPS, {
      apiVersion: 'serving.kserve.io/v1alpha1',
      kind: 'LocalModelNodeGroup',
      metadata: { name: group },
      spec: { nodeSelector: { matchLabels: { [`${group}/cache`]: 'yes' } }, storageLimit: '10Gi' },
    });
    for (const n of nodes) {
      await createNode(c.client, n, { [`${group}/cache`]: 'yes' });
      procs.push(
        await startModelcache(
          `daemon-${n}`,
          [
            'daemon',
            '--kubeconfig',
            c.cp.kubeconfig,
            '--node-name',
            n,
            '--root',
            join(work, n),
            '--listen',
            '127.0.0.1:0',
            '--progress-interval-ms',
            '200',
            '--safety-margin',
            '0',
          ],
          work,
          reaper,
        ),
      );
    }
  },
  teardown: async () => {
    await Promise.all([controller, ...procs].map((p) => p?.stop('SIGKILL')));
    reaper.close();
    await origin.close();
    await rm(work, { recursive: true, force: true });
  },
});

function startController(): Promise<ModelcacheProcess> {
  return startModelcache(
    'controller',
    ['controller', '--kubeconfig', cluster.cp.kubeconfig, '--metrics-addr', '127.0.0.1:0'],
    work,
    reaper,
  );
}
const create = (name: string, uri: string, size = '64Mi') =>
  cluster.client.create(LOCAL_MODEL_CACHES, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelCache',
    metadata: { name },
    spec: { sourceModelUri: uri, modelSize: size, nodeGroups: [group] },
  });
const available = async (name: string) =>
  (await cluster.client.get<LocalModelCache>(LOCAL_MODEL_CACHES, name))?.status?.copies?.available;

test('the apiserver restarts while daemons download and report progress: informers recover, final statuses and bytes are right', async () => {
  const body = generated(48_000_000, 77);
  origin.set('/f/during-restart.bin', body);
  origin.fault(
    '/f/during-restart.bin',
    { stallAfterBytes: 8_000_000, stallMs: 3000 },
    { stallAfterBytes: 8_000_000, stallMs: 3000 },
  );
  const name = `${group}-during-restart`;
  await create(name, origin.url('/f/during-restart.bin'));
  await eventually(async () => assert.ok(origin.requestsFor('/f/during-restart.bin').length >= 2));
  await cluster.cp.stopApiserver();
  await cluster.cp.startApiserver();
  await eventually(async () => assert.equal(await available(name), 2), { timeoutMs: 90_000 });
  const want = createHash('sha256').update(toBuffer(body)).digest('hex');
  for (const n of nodes) {
    const got = createHash('sha256')
      .update(
        await readFile(
          join(work, n, 'models', storageKeyFor(origin.url('/f/during-restart.bin')), 'during-restart.bin'),
        ),
      )
      .digest('hex');
    assert.equal(got, want, `${n} bytes`);
  }
});

test('the controller is killed and restarted while caches are created and deleted: it converges, no finalizer is stuck', async () => {
  const names = Array.from({ length: 5 }, (_, i) => `${group}-c${i}`);
  for (const [i, name] of names.entries()) {
    origin.set(`/f/c${i}.bin`, generated(200_000, i));
    await create(name, origin.url(`/f/c${i}.bin`), '1Mi');
    if (i === 2) await controller.stop('SIGKILL');
  }
  await cluster.client.delete(LOCAL_MODEL_CACHES, names[0] as string);
  controller = await startController();
  await cluster.client.delete(LOCAL_MODEL_CACHES, names[1] as string);
  await eventually(
    async () => {
      for (const name of names.slice(2)) assert.equal(await available(name), 2, name);
      for (const name of names.slice(0, 2))
        assert.equal(await cluster.client.get(LOCAL_MODEL_CACHES, name), undefined, `${name} still there`);
    },
    { timeoutMs: 60_000 },
  );
});
