import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CACHE_FINALIZER,
  LOCAL_MODEL_CACHES,
  LOCAL_MODEL_NODE_GROUPS,
  LOCAL_MODEL_NODES,
  type LocalModelCache,
  type LocalModelNode,
  type LocalModelNodeGroup,
} from '../../api/types.ts';
import { KubeClient, KubeApiError } from '../../kube/client.ts';
import { EVENTS, NAMESPACES, NODES, SECRETS } from '../../kube/resources.ts';
import type { KubeObject } from '../../kube/types.ts';
import { CacheController } from '../../controller/controller.ts';
import { ControlPlane } from '../../localcluster/control-plane.ts';
import { useControlPlane, uniqueName } from '../helpers/cluster.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { cache as cacheObj, group as groupObj } from '../helpers/fixtures.ts';
import {
  createNode,
  grantControllerRbac,
  installShippedCrds,
  reportModel,
  setNodeReady,
} from '../helpers/kube-fixtures.ts';
import { createLogger } from '../../ops/logger.ts';
import { installKserveCrds } from '../helpers/kserve-crds.ts';
import { INFERENCE_SERVICES, TRAINED_MODELS } from '../../api/kserve.ts';
import { Writable } from 'node:stream';

let controllerClient: KubeClient;
let controller: CacheController;
const stop = new AbortController();
let running: Promise<void>;

const cluster = useControlPlane({ setup: startController, teardown: stopController });

async function startController(): Promise<void> {
  await installShippedCrds(cluster.client);
  await installKserveCrds(cluster.client);
  await grantControllerRbac(cluster.client, ControlPlane.username('tester-1'));
  controllerClient = KubeClient.fromKubeconfig({ kubeconfig: await cluster.cp.kubeconfigFor('tester-1') });
  const quiet = new Writable({ write: (_c, _e, cb) => cb() });
  controller = new CacheController({
    client: controllerClient,
    log: createLogger('controller', 'info', quiet),
    workers: 4,
    crdPollMs: 200,
  });
  controller.start(stop.signal);
  running = controller.run(stop.signal);
}

async function stopController(): Promise<void> {
  stop.abort();
  await running?.catch(() => undefined);
  await controllerClient?.close();
}

const getCache = (name: string) => cluster.client.get<LocalModelCache>(LOCAL_MODEL_CACHES, name);
const getLmn = (name: string) => cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, name);
const modelsOn = async (node: string) => (await getLmn(node))?.spec.localModels.map((m) => m.modelName) ?? [];
const condition = (c: LocalModelCache | undefined, type: string) => c?.status?.conditions?.find((x) => x.type === type);

async function createCache(name: string, uri: string, size: string, groups: string[]): Promise<void> {
  const c = cacheObj(name, uri, size, groups);
  await cluster.client.create(LOCAL_MODEL_CACHES, { ...c, metadata: { name } });
}

async function createGroup(name: string, labels: Record<string, string>, limit: string): Promise<void> {
  await cluster.client.create(LOCAL_MODEL_NODE_GROUPS, { ...groupObj(name, labels, limit), metadata: { name } });
}

/** Deletes a cache and plays the daemon: once a node's spec no longer lists it, the node reports the files gone. */
async function deleteCacheAsDaemonsWould(name: string, nodes: string[]): Promise<void> {
  await cluster.client.delete(LOCAL_MODEL_CACHES, name);
  for (const n of nodes) {
    await eventually(async () => assert.ok(!(await modelsOn(n)).includes(name), `${n} still asked to hold ${name}`));
    if ((await getLmn(n))?.status?.modelStatus?.[name]) await reportModel(cluster.client, n, name, null);
  }
  await eventually(async () => assert.equal(await getCache(name), undefined));
}

test('a cache goes to every node of any of its groups; copies follow node reports; NotReady, relabel and deletion prune', async () => {
  const s = uniqueName('fan');
  const [ga, gb] = [`${s}-ga`, `${s}-gb`];
  await createGroup(ga, { [`${s}/a`]: 'yes' }, '100Gi');
  await createGroup(gb, { [`${s}/b`]: 'yes' }, '100Gi');
  const nodes = { a1: `${s}-a1`, a2: `${s}-a2`, both: `${s}-both`, b1: `${s}-b1`, none: `${s}-none` };
  await createNode(cluster.client, nodes.a1, { [`${s}/a`]: 'yes' });
  await createNode(cluster.client, nodes.a2, { [`${s}/a`]: 'yes' });
  await createNode(cluster.client, nodes.both, { [`${s}/a`]: 'yes', [`${s}/b`]: 'yes' });
  await createNode(cluster.client, nodes.b1, { [`${s}/b`]: 'yes' });
  await createNode(cluster.client, nodes.none, { other: 'x' });
  const name = `${s}-llama`;
  await createCache(name, `s3://models/${s}/llama`, '10Gi', [ga, gb]);

  const placed = [nodes.a1, nodes.a2, nodes.both, nodes.b1].sort();
  await eventually(async () => {
    const c = await getCache(name);
    assert.deepEqual(Object.keys(c?.status?.nodeStatus ?? {}).sort(), placed);
    assert.ok(Object.values(c?.status?.nodeStatus ?? {}).every((v) => v === 'NodeDownloadPending'));
    assert.deepEqual(c?.status?.copies, { available: 0, failed: 0, total: 4 });
    assert.ok(c?.metadata.finalizers?.includes(CACHE_FINALIZER));
  });
  for (const n of placed) {
    const lmn = await getLmn(n);
    assert.deepEqual(
      lmn?.spec.localModels.map((m) => m.modelName),
      [name],
    );
    assert.equal(lmn?.spec.localModels[0]?.modelSize, 10 * 2 ** 30);
    assert.equal(lmn?.metadata.ownerReferences?.[0]?.name, n);
  }
  assert.equal(await getLmn(nodes.none), undefined);

  for (const n of placed) await reportModel(cluster.client, n, name, 'ModelDownloaded');
  await eventually(async () => {
    const c = await getCache(name);
    assert.deepEqual(c?.status?.copies, { available: 4, failed: 0, total: 4 });
    assert.equal(condition(c, 'Ready')?.status, 'True');
  });

  await setNodeReady(cluster.client, nodes.a1, false);
  await eventually(async () => {
    const c = await getCache(name);
    assert.equal(c?.status?.nodeStatus?.[nodes.a1], 'NodeNotReady');
    assert.deepEqual(c?.status?.copies, { available: 3, failed: 0, total: 4 });
  });
  assert.deepEqual(
    await modelsOn(nodes.a1),
    [name],
    'a NotReady node keeps its spec: a flapping node does not lose its cache',
  );

  // Node leaves every group: gone from nodeStatus, its files scheduled for removal.
  await cluster.client.mergePatch(NODES, nodes.b1, { metadata: { labels: { [`${s}/b`]: null } } });
  await eventually(async () => {
    const c = await getCache(name);
    assert.equal(c?.status?.nodeStatus?.[nodes.b1], undefined);
    assert.equal(c?.status?.copies?.total, 3);
    assert.deepEqual(await modelsOn(nodes.b1), []);
  });
  // Node deleted: pruned from nodeStatus, its LocalModelNode garbage-collected.
  await cluster.client.delete(NODES, nodes.a2);
  await eventually(async () => {
    const c = await getCache(name);
    assert.equal(c?.status?.nodeStatus?.[nodes.a2], undefined);
    assert.deepEqual(c?.status?.copies, { available: 1, failed: 0, total: 2 });
    assert.equal(await getLmn(nodes.a2), undefined);
  });
});

test('storageLimit: the cache that does not fit is refused with the numbers and an Event, and placed when room appears', async () => {
  const s = uniqueName('lim');
  const g = `${s}-g`;
  await createGroup(g, { [`${s}/pool`]: 'yes' }, '15Gi');
  const n = `${s}-n1`;
  await createNode(cluster.client, n, { [`${s}/pool`]: 'yes' });
  await createCache(`${s}-first`, `s3://models/${s}/first`, '10Gi', [g]);
  await eventually(async () => assert.deepEqual(await modelsOn(n), [`${s}-first`]));
  await createCache(`${s}-second`, `s3://models/${s}/second`, '10Gi', [g]);
  await eventually(async () => {
    const c = await getCache(`${s}-second`);
    const sched = condition(c, 'Scheduled');
    assert.equal(sched?.status, 'False');
    assert.equal(sched?.reason, 'StorageLimitExceeded');
    assert.match(sched?.message ?? '', /needs 10Gi but node group .* has 5Gi of its 15Gi storageLimit left/);
    assert.deepEqual(c?.status?.copies, { available: 0, failed: 0, total: 0 });
  });
  await eventually(async () => {
    const events = await cluster.client.list<KubeObject & { reason?: string; involvedObject?: { name?: string } }>(
      EVENTS,
      { namespace: 'default' },
    );
    assert.ok(
      events.items.some((e) => e.reason === 'StorageLimitExceeded' && e.involvedObject?.name === `${s}-second`),
    );
    const grp = await cluster.client.get<LocalModelNodeGroup>(LOCAL_MODEL_NODE_GROUPS, g);
    assert.equal(grp?.status?.usage, '10Gi/15Gi');
    assert.equal(grp?.status?.conditions?.find((c) => c.type === 'Ready')?.reason, 'StorageLimitExceeded');
  });
  assert.deepEqual(await modelsOn(n), [`${s}-first`]);

  await deleteCacheAsDaemonsWould(`${s}-first`, [n]);
  await eventually(async () => {
    assert.deepEqual(await modelsOn(n), [`${s}-second`]);
    assert.equal(condition(await getCache(`${s}-second`), 'Scheduled')?.status, 'True');
  });
});

test('two caches with the same sourceModelUri: the newer one is not placed', async () => {
  const s = uniqueName('dup');
  const g = `${s}-g`;
  await createGroup(g, { [`${s}/pool`]: 'yes' }, '100Gi');
  await createNode(cluster.client, `${s}-n1`, { [`${s}/pool`]: 'yes' });
  await createCache(`${s}-a-old`, `hf://org/${s}`, '1Gi', [g]);
  await eventually(async () => assert.equal(condition(await getCache(`${s}-a-old`), 'Scheduled')?.status, 'True'));
  await createCache(`${s}-b-new`, `hf://org/${s}`, '1Gi', [g]);
  await eventually(async () => {
    const sched = condition(await getCache(`${s}-b-new`), 'Scheduled');
    assert.equal(sched?.reason, 'DuplicateSourceModelUri');
    assert.match(sched?.message ?? '', new RegExp(`already cached by LocalModelCache ${s}-a-old`));
  });
  assert.deepEqual(await modelsOn(`${s}-n1`), [`${s}-a-old`]);
});

test('deletion is never stuck: group deleted first, node deleted first', async () => {
  const s = uniqueName('del');
  const g = `${s}-g`;
  await createGroup(g, { [`${s}/pool`]: 'yes' }, '100Gi');
  const [n1, n2] = [`${s}-n1`, `${s}-n2`];
  await createNode(cluster.client, n1, { [`${s}/pool`]: 'yes' });
  await createNode(cluster.client, n2, { [`${s}/pool`]: 'yes' });
  const name = `${s}-m`;
  await createCache(name, `gs://bucket/${s}`, '1Gi', [g]);
  await eventually(async () => assert.equal((await getCache(name))?.status?.copies?.total, 2));
  for (const n of [n1, n2]) await reportModel(cluster.client, n, name, 'ModelDownloaded');
  await eventually(async () => assert.equal((await getCache(name))?.status?.copies?.available, 2));

  await cluster.client.delete(LOCAL_MODEL_NODE_GROUPS, g);
  await cluster.client.delete(NODES, n2);
  await eventually(async () => {
    const sched = condition(await getCache(name), 'Scheduled');
    assert.equal(sched?.reason, 'NodeGroupNotFound');
    assert.deepEqual(await modelsOn(n1), []);
  });
  await cluster.client.delete(LOCAL_MODEL_CACHES, name);
  // n1 still reports the files: deletion waits for it (and says so), n2 is gone and does not count.
  await eventually(async () => {
    const c = await getCache(name);
    assert.equal(condition(c, 'Ready')?.reason, 'Deleting');
    assert.deepEqual(Object.keys(c?.status?.nodeStatus ?? {}), [n1]);
  });
  await reportModel(cluster.client, n1, name, null);
  await eventually(async () => assert.equal(await getCache(name), undefined));
});

test('InferenceServices using a cache are listed in its status; deleting a cache in use waits until they are gone', async () => {
  const s = uniqueName('use');
  const g = `${s}-g`;
  await createGroup(g, { [`${s}/pool`]: 'yes' }, '100Gi');
  const n1 = `${s}-n1`;
  await createNode(cluster.client, n1, { [`${s}/pool`]: 'yes' });
  const name = `${s}-m`;
  const uri = `s3://bucket/${s}`;
  await createCache(name, uri, '1Gi', [g]);
  await cluster.client.create(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: s } });
  await cluster.client.create(INFERENCE_SERVICES, {
    apiVersion: 'serving.kserve.io/v1beta1',
    kind: 'InferenceService',
    metadata: { name: 'direct', namespace: s },
    spec: { predictor: { model: { modelFormat: { name: 'sklearn' }, storageUri: `${uri}/v1` } } },
  } as KubeObject);
  await cluster.client.create(INFERENCE_SERVICES, {
    apiVersion: 'serving.kserve.io/v1beta1',
    kind: 'InferenceService',
    metadata: { name: 'shared', namespace: s },
    spec: { predictor: { model: { modelFormat: { name: 'sklearn' } } } },
  } as KubeObject);
  await cluster.client.create(INFERENCE_SERVICES, {
    apiVersion: 'serving.kserve.io/v1beta1',
    kind: 'InferenceService',
    metadata: { name: 'unrelated', namespace: s },
    spec: { predictor: { model: { modelFormat: { name: 'sklearn' }, storageUri: `${uri}-2` } } },
  } as KubeObject);
  await cluster.client.create(TRAINED_MODELS, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'TrainedModel',
    metadata: { name: 'tm', namespace: s },
    spec: { inferenceService: 'shared', model: { storageUri: uri, framework: 'sklearn', memory: '1Mi' } },
  } as KubeObject);
  await eventually(async () =>
    assert.deepEqual((await getCache(name))?.status?.inferenceServices, [
      { name: 'direct', namespace: s },
      { name: 'shared', namespace: s },
    ]),
  );

  await cluster.client.delete(LOCAL_MODEL_CACHES, name);
  await eventually(async () => {
    const held = condition(await getCache(name), 'DeletionHeld');
    assert.equal(held?.reason, 'InUse');
    assert.match(
      held?.message ?? '',
      new RegExp(
        `deletion waits until no InferenceService or LLMInferenceService uses this model: ${s}/direct, ${s}/shared`,
      ),
    );
  });
  assert.deepEqual(await modelsOn(n1), [name], 'still on its nodes while in use');
  await cluster.client.delete(INFERENCE_SERVICES, 'direct', { namespace: s });
  await cluster.client.delete(TRAINED_MODELS, 'tm', { namespace: s });
  await eventually(async () => assert.deepEqual(await modelsOn(n1), []));
  await eventually(async () => assert.equal(await getCache(name), undefined));
});

test('the apiserver rejects bad caches and groups with messages that name the field and the fix', async () => {
  const s = uniqueName('bad');
  const reject = async (obj: KubeObject, rt = LOCAL_MODEL_CACHES): Promise<string> => {
    try {
      await cluster.client.create(rt, obj);
    } catch (err) {
      assert.ok(err instanceof KubeApiError);
      assert.equal(err.status, 422);
      return err.message;
    }
    assert.fail('created');
  };
  // Groups this test names and never creates: it owns these names too.
  const [absent, other] = [`${s}-absent`, `${s}-other`];
  const base = cacheObj(`${s}-x`, 's3://b/m', '1Gi', [absent]);
  const mk = (spec: Record<string, unknown>) =>
    ({ ...base, metadata: { name: `${s}-x` }, spec: { ...base.spec, ...spec } }) as KubeObject;
  assert.match(
    await reject(mk({ sourceModelUri: 'ftp://host/m' })),
    /unsupported scheme: use one of http:\/\/, https:\/\/, s3:\/\//,
  );
  assert.match(await reject(mk({ sourceModelUri: 's3://bucket' })), /has no path/);
  assert.match(await reject(mk({ modelSize: '0' })), /modelSize must be a positive quantity such as 10Gi/);
  assert.match(await reject(mk({ modelSize: 'ten' })), /modelSize must be a positive quantity/);
  assert.match(await reject(mk({ nodeGroups: [] })), /nodeGroups/);
  const g = groupObj(`${s}-g`, {}, '10Gi', 'relative/path');
  assert.match(
    await reject({ ...g, metadata: { name: `${s}-g` } }, LOCAL_MODEL_NODE_GROUPS),
    /storagePath must be an absolute host path/,
  );
  const badSecret = {
    ...g,
    metadata: { name: `${s}-g2` },
    spec: { ...g.spec, storagePath: '/var/lib/m', credentials: { secretName: 'Not_A_Name' } },
  };
  assert.match(await reject(badSecret, LOCAL_MODEL_NODE_GROUPS), /credentials.secretName must be a Secret name/);

  await createCache(`${s}-ok`, `s3://b/${s}`, '1Gi', [absent]);
  try {
    await cluster.client.mergePatch(LOCAL_MODEL_CACHES, `${s}-ok`, { spec: { sourceModelUri: 's3://b/other' } });
    assert.fail('sourceModelUri changed');
  } catch (err) {
    assert.ok(err instanceof KubeApiError && err.status === 422, String(err));
    assert.match(err.message, /sourceModelUri is immutable/);
  }
  // As in KServe, modelSize and nodeGroups may be edited: placement follows.
  const edited = await cluster.client.mergePatch<LocalModelCache>(LOCAL_MODEL_CACHES, `${s}-ok`, {
    spec: { modelSize: '2Gi', nodeGroups: [other] },
  });
  assert.equal(edited.spec.modelSize, '2Gi');
  assert.deepEqual(edited.spec.nodeGroups, [other]);
  // The controller has acted on the edit before the next test looks for a steady state.
  await eventually(async () => {
    const c = await getCache(`${s}-ok`);
    assert.equal(c?.status?.observedGeneration, c?.metadata.generation);
  });
});

test('steady state makes no writes: a full resync leaves every resourceVersion as it was', async () => {
  await eventually(() => assert.equal(controller.pending, 0), { timeoutMs: 60_000 });
  const snapshot = async () => {
    const out: Record<string, string | undefined> = {};
    for (const rt of [LOCAL_MODEL_CACHES, LOCAL_MODEL_NODE_GROUPS, LOCAL_MODEL_NODES, NODES]) {
      for (const o of (await cluster.client.list(rt)).items)
        out[`${rt.plural}/${o.metadata.name}`] = o.metadata.resourceVersion;
    }
    return out;
  };
  const before = await snapshot();
  const writes = await controller.metrics.totalWrites();
  assert.ok(Object.keys(before).length > 5);
  controller.resync();
  await eventually(() => assert.equal(controller.pending, 0));
  assert.equal(await controller.metrics.totalWrites(), writes);
  assert.deepEqual(await snapshot(), before);
});

test('the controller identity can do its job (every test above ran with it) and nothing more', async () => {
  const denied = async (fn: () => Promise<unknown>): Promise<void> => {
    await assert.rejects(fn, (err: unknown) => err instanceof KubeApiError && err.status === 403);
  };
  await denied(() => controllerClient.list(SECRETS, { namespace: 'default' }));
  await denied(() => controllerClient.delete(NODES, 'any-node'));
  await denied(() =>
    controllerClient.create(LOCAL_MODEL_CACHES, {
      ...cacheObj('x', 's3://b/x', '1Gi', ['g']),
      metadata: { name: uniqueName('x') },
    }),
  );
  await denied(() => controllerClient.mergePatch(LOCAL_MODEL_NODE_GROUPS, 'any', { spec: { storageLimit: '1Ti' } }));
  await denied(() => controllerClient.delete(LOCAL_MODEL_CACHES, 'any'));
  await denied(() => controllerClient.patchStatus(LOCAL_MODEL_NODES, 'any', { modelStatus: {} }));
});
