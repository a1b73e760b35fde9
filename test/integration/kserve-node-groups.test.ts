// KServe's LocalModelNodeGroups accepted as KServe writes them, against a real apiserver and the controller.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import {
  LOCAL_MODEL_CACHES,
  LOCAL_MODEL_NODE_GROUPS,
  LOCAL_MODEL_NODES,
  type LocalModelCache,
  type LocalModelNode,
  type LocalModelNodeGroup,
} from '../../api/types.ts';
import { CacheController } from '../../controller/controller.ts';
import { KubeApiError, KubeClient } from '../../kube/client.ts';
import type { KubeObject } from '../../kube/types.ts';
import { createLogger } from '../../ops/logger.ts';
import { useControlPlane, uniqueName } from '../helpers/cluster.ts';
import { ControlPlane } from '../../localcluster/control-plane.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { cache as cacheObj } from '../helpers/fixtures.ts';
import { installKserveCrds } from '../helpers/kserve-crds.ts';
import { createNode, grantControllerRbac, installShippedCrds, reportModel } from '../helpers/kube-fixtures.ts';

let controllerClient: KubeClient;
const stop = new AbortController();
let running: Promise<void>;

const cluster = useControlPlane({
  setup: async () => {
    await installShippedCrds(cluster.client);
    await installKserveCrds(cluster.client);
    await grantControllerRbac(cluster.client, ControlPlane.username('tester-1'));
    controllerClient = KubeClient.fromKubeconfig({ kubeconfig: await cluster.cp.kubeconfigFor('tester-1') });
    const quiet = new Writable({ write: (_c, _e, cb) => cb() });
    const controller = new CacheController({
      client: controllerClient,
      log: createLogger('controller', 'info', quiet),
      workers: 4,
      crdPollMs: 200,
    });
    controller.start(stop.signal);
    running = controller.run(stop.signal);
  },
  teardown: async () => {
    stop.abort();
    await running?.catch(() => undefined);
    await controllerClient?.close();
  },
});

/** KServe's node group exactly as its e2e test writes it (../shared/kserve-reference.md), for the given hosts. */
function kserveGroup(name: string, hosts: string[]): LocalModelNodeGroup {
  return {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelNodeGroup',
    metadata: { name },
    spec: {
      storageLimit: '1Gi',
      persistentVolumeSpec: {
        accessModes: ['ReadWriteOnce'],
        storageClassName: 'standard',
        capacity: { storage: '1Gi' },
        local: { path: '/models' },
        persistentVolumeReclaimPolicy: 'Delete',
        nodeAffinity: {
          required: {
            nodeSelectorTerms: [
              { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: hosts }] },
            ],
          },
        },
      },
      persistentVolumeClaimSpec: {
        accessModes: ['ReadWriteOnce'],
        resources: { requests: { storage: '1Gi' } },
        storageClassName: 'standard',
      },
    },
  };
}

/** Creates with strict field validation: an unknown or pruned field is an error, as `kubectl apply` shows it. */
async function createStrict(obj: KubeObject & { spec?: unknown }, rt = LOCAL_MODEL_NODE_GROUPS): Promise<void> {
  await cluster.client.request('POST', cluster.client.path(rt), {
    body: obj,
    query: { fieldValidation: 'Strict', fieldManager: 'kserve-groups-test' },
  });
}

async function rejection(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof KubeApiError, String(err));
    assert.equal(err.status, 422, err.message);
    return err.message;
  }
  assert.fail('accepted');
}

const getLmn = (name: string) => cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, name);
const modelsOn = async (node: string) => (await getLmn(node))?.spec.localModels.map((m) => m.modelName) ?? [];
const getCache = (name: string) => cluster.client.get<LocalModelCache>(LOCAL_MODEL_CACHES, name);

async function createCache(name: string, uri: string, size: string, groups: string[]): Promise<void> {
  await cluster.client.create(LOCAL_MODEL_CACHES, { ...cacheObj(name, uri, size, groups), metadata: { name } });
}

test("KServe's node-group manifest is accepted unchanged; a cache on it goes to exactly the nodes its affinity names", async () => {
  const s = uniqueName('ks');
  const [a, b, c] = [`${s}-node-a`, `${s}-node-b`, `${s}-node-c`];
  for (const n of [a, b, c]) await createNode(cluster.client, n, {});
  const group = kserveGroup(`${s}-workers`, [a, b]);
  await createStrict(group);
  const stored = await cluster.client.get<LocalModelNodeGroup>(LOCAL_MODEL_NODE_GROUPS, `${s}-workers`);
  assert.deepEqual(stored?.spec, group.spec, 'every field kept as written, nothing pruned or defaulted');

  const name = `${s}-llama`;
  await createCache(name, `s3://models/${s}/llama`, '100Mi', [`${s}-workers`]);
  await eventually(async () => {
    assert.deepEqual(await modelsOn(a), [name]);
    assert.deepEqual(await modelsOn(b), [name]);
  });
  const model = (await getLmn(a))?.spec.localModels[0];
  assert.equal(model?.storagePath, '/models', "the model goes under the PV's local.path");
  assert.equal(model?.nodeGroup, `${s}-workers`);
  assert.equal(await getLmn(c), undefined, 'a node the affinity does not name holds nothing');
  await eventually(async () => {
    const cache = await getCache(name);
    assert.deepEqual(Object.keys(cache?.status?.nodeStatus ?? {}).sort(), [a, b].sort());
    const g = await cluster.client.get<LocalModelNodeGroup>(LOCAL_MODEL_NODE_GROUPS, `${s}-workers`);
    assert.deepEqual(g?.status?.nodes, [a, b].sort());
  });
});

test('a group must say which nodes and which host directory: rejected with messages naming the fields', async () => {
  const s = uniqueName('ksbad');
  const base = kserveGroup(`${s}-g`, [`${s}-nowhere`]);
  const { nodeAffinity: _affinity, ...noAffinity } = base.spec.persistentVolumeSpec ?? {};
  const neither = { ...base, spec: { ...base.spec, persistentVolumeSpec: noAffinity } };
  assert.match(
    await rejection(() => createStrict(neither)),
    /set nodeSelector \(a label selector\) or persistentVolumeSpec\.nodeAffinity\.required/,
  );
  const { local: _local, ...noPath } = base.spec.persistentVolumeSpec ?? {};
  const pathless = { ...base, spec: { ...base.spec, persistentVolumeSpec: noPath } };
  assert.match(
    await rejection(() => createStrict(pathless)),
    /set storagePath, persistentVolumeSpec\.local\.path or persistentVolumeSpec\.hostPath\.path/,
  );
  const badGt = structuredClone(base);
  badGt.spec.persistentVolumeSpec!.nodeAffinity!.required!.nodeSelectorTerms = [
    { matchExpressions: [{ key: 'gpus', operator: 'Gt', values: ['1', '2'] }] },
  ];
  assert.match(await rejection(() => createStrict(badGt)), /one integer for Gt and Lt/);

  await createStrict(base);
  assert.match(
    await rejection(() =>
      cluster.client.mergePatch(LOCAL_MODEL_NODE_GROUPS, `${s}-g`, {
        spec: { persistentVolumeSpec: { local: { path: '/elsewhere' } } },
      }),
    ),
    /the storage path \(storagePath, else persistentVolumeSpec\.local\.path.*\) is immutable/,
  );
  // Our own shape, with no PV spec and no storagePath, still works (the daemon's default root).
  await createStrict({
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelNodeGroup',
    metadata: { name: `${s}-ours` },
    spec: { nodeSelector: { matchLabels: { [`${s}/pool`]: 'a' } }, storageLimit: '1Gi' },
  });
});

test('editing nodeGroups moves placement; a modelSize below a downloaded copy is reported with the sizes', async () => {
  const s = uniqueName('ksedit');
  const [a, b] = [`${s}-a`, `${s}-b`];
  for (const n of [a, b]) await createNode(cluster.client, n, {});
  await createStrict(kserveGroup(`${s}-ga`, [a]));
  await createStrict(kserveGroup(`${s}-gb`, [b]));
  const name = `${s}-m`;
  await createCache(name, `s3://models/${s}/m`, '100Mi', [`${s}-ga`]);
  await eventually(async () => assert.deepEqual(await modelsOn(a), [name]));
  assert.deepEqual(await modelsOn(b), []);

  await cluster.client.mergePatch(LOCAL_MODEL_CACHES, name, { spec: { nodeGroups: [`${s}-gb`] } });
  await eventually(async () => {
    assert.deepEqual(await modelsOn(b), [name], 'the new group gets the model');
    assert.deepEqual(await modelsOn(a), [], "the removed group's node is asked to drop it");
  });

  await reportModel(cluster.client, b, name, 'ModelDownloaded', {
    bytesDone: 100 * 2 ** 20,
    bytesTotal: 100 * 2 ** 20,
  });
  await cluster.client.mergePatch(LOCAL_MODEL_CACHES, name, { spec: { modelSize: '50Mi' } });
  await eventually(async () => {
    const cache = await getCache(name);
    const fits = cache?.status?.conditions?.find((x) => x.type === 'SizeFits');
    assert.equal(fits?.status, 'False');
    assert.match(fits?.message ?? '', new RegExp(`modelSize 50Mi .* ${b} holds 100Mi`));
    assert.equal(cache?.status?.nodeStatus?.[b], 'NodeDownloaded', 'the copy is kept, not truncated');
  });
  assert.match(
    await rejection(() =>
      cluster.client.mergePatch(LOCAL_MODEL_CACHES, name, { spec: { sourceModelUri: `s3://models/${s}/other` } }),
    ),
    /sourceModelUri is immutable/,
  );
});
