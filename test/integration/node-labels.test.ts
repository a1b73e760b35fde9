// Never on a node without the bytes: the controller, with its shipped RBAC and admission policy, labels each node
// whose copy of a model is complete (models.modelcache.io/<storage key>: "true") and only then; the real
// kube-scheduler keeps a pod that requires the label Pending until one node has it, and binds it there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import {
  LOCAL_MODEL_CACHES,
  LOCAL_MODEL_NODE_GROUPS,
  LOCAL_MODEL_NODES,
  type LocalModelNode,
} from '../../api/types.ts';
import { storageKeyFor } from '../../api/storage-key.ts';
import { CacheController } from '../../controller/controller.ts';
import { affinityOps } from '../../controller/webhooks/pod-mutator.ts';
import { KubeClient } from '../../kube/client.ts';
import { NAMESPACES, NODES, PODS, SERVICE_ACCOUNTS } from '../../kube/resources.ts';
import type { KubeObject, Node } from '../../kube/types.ts';
import { fromYamlAll } from '../../kube/yaml.ts';
import { createLogger } from '../../ops/logger.ts';
import { modelNodeLabel } from '../../serving/cache-match.ts';
import { ControlPlane } from '../../localcluster/control-plane.ts';
import { useControlPlane, uniqueName } from '../helpers/cluster.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { cache as cacheObj, group as groupObj } from '../helpers/fixtures.ts';
import { installKserveCrds } from '../helpers/kserve-crds.ts';
import {
  createNode,
  grantControllerRbac,
  installShippedCrds,
  reportModel,
  setNodeReady,
} from '../helpers/kube-fixtures.ts';

const POLICIES = {
  ValidatingAdmissionPolicy: '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies',
  ValidatingAdmissionPolicyBinding: '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings',
} as const;

let controllerClient: KubeClient;
let controller: CacheController;
const stop = new AbortController();
let running: Promise<void>;

const cluster = useControlPlane({ scheduler: true, setup: startController, teardown: stopController });

/** The shipped policy, as users apply it: its parameter is the controller's ClusterRoleBinding. */
async function installShippedPolicy(client: KubeClient): Promise<void> {
  const text = await readFile(new URL('../../manifests/controller/admission-policy.yaml', import.meta.url), 'utf8');
  for (const doc of fromYamlAll(text) as KubeObject[])
    await client.request('POST', POLICIES[doc.kind as keyof typeof POLICIES], { body: doc });
}

/** The controller in-process, as static-token user tester-1 bound to the shipped role and confined by the policy. */
async function startController(): Promise<void> {
  await installShippedCrds(cluster.client);
  await installKserveCrds(cluster.client);
  await grantControllerRbac(cluster.client, ControlPlane.username('tester-1'));
  await installShippedPolicy(cluster.client);
  controllerClient = KubeClient.fromKubeconfig({ kubeconfig: await cluster.cp.kubeconfigFor('tester-1') });
  const quiet = new Writable({ write: (_c, _e, cb) => cb() });
  controller = new CacheController({ client: controllerClient, log: createLogger('controller', 'info', quiet) });
  controller.start(stop.signal);
  running = controller.run(stop.signal);
}

async function stopController(): Promise<void> {
  stop.abort();
  await running?.catch(() => undefined);
  await controllerClient?.close();
}

const labelsOf = async (node: string): Promise<Record<string, string>> =>
  (await cluster.client.get<Node>(NODES, node))?.metadata.labels ?? {};

async function createCache(name: string, uri: string, groups: string[]): Promise<void> {
  await cluster.client.create(LOCAL_MODEL_CACHES, { ...cacheObj(name, uri, '1Gi', groups), metadata: { name } });
}

async function createGroup(name: string, labels: Record<string, string>): Promise<void> {
  await cluster.client.create(LOCAL_MODEL_NODE_GROUPS, { ...groupObj(name, labels, '100Gi'), metadata: { name } });
}

/** Resolves once the controller has asked every one of `nodes` to hold the cache (their daemons may report it). */
async function placedOn(cache: string, nodes: string[]): Promise<void> {
  for (const n of nodes)
    await eventually(async () => {
      const lmn = await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, n);
      assert.ok(
        lmn?.spec.localModels.some((m) => m.modelName === cache),
        `${n} is not asked to hold ${cache}`,
      );
    });
}

/** Waits until the node carries the label (or not), then checks it again after the controller has settled. */
async function labelled(node: string, label: string, expected: boolean): Promise<void> {
  const check = async (): Promise<void> =>
    assert.equal((await labelsOf(node))[label], expected ? 'true' : undefined, `${node} ${label}`);
  await eventually(check);
  await eventually(() => assert.equal(controller.pending, 0));
  await check();
}

test('a node gets the label of a model once its copy is complete, and loses it when the copy goes, fails or is no longer wanted', async () => {
  const s = uniqueName('lbl');
  const pool = `${s}/pool`;
  await createGroup(`${s}-g`, { [pool]: 'yes' });
  const [done, busy, other] = [`${s}-done`, `${s}-busy`, `${s}-other`];
  for (const n of [done, busy, other]) await createNode(cluster.client, n, { [pool]: 'yes', [`${s}/keep`]: 'me' });
  const cache = `${s}-m`;
  const uri = `s3://models/${s}/m`;
  const label = modelNodeLabel(storageKeyFor(uri));
  await createCache(cache, uri, [`${s}-g`]);
  await placedOn(cache, [done, busy, other]);

  await reportModel(cluster.client, done, cache, 'ModelDownloaded', { storageKey: storageKeyFor(uri) });
  await reportModel(cluster.client, busy, cache, 'ModelDownloading', { bytesDone: 1, bytesTotal: 2 });
  await reportModel(cluster.client, other, cache, 'ModelDownloaded');
  await labelled(done, label, true);
  await labelled(other, label, true);
  await labelled(busy, label, false);
  assert.equal((await labelsOf(done))[`${s}/keep`], 'me', 'other labels are untouched');

  // The daemon reports an error, then the files gone: the label leaves; a new complete copy brings it back.
  await reportModel(cluster.client, other, cache, 'ModelDownloadError', { reason: 'SourceNotFound' });
  await labelled(other, label, false);
  await reportModel(cluster.client, other, cache, null);
  await reportModel(cluster.client, other, cache, 'ModelDownloaded');
  await labelled(other, label, true);
  await reportModel(cluster.client, other, cache, null);
  await labelled(other, label, false);

  // The copy finishes on the node that was downloading.
  await reportModel(cluster.client, busy, cache, 'ModelDownloaded');
  await labelled(busy, label, true);

  // No longer wanted (the node left the group): the label leaves while the daemon still reports the files.
  await cluster.client.mergePatch(NODES, busy, { metadata: { labels: { [pool]: null } } });
  await labelled(busy, label, false);
  assert.equal(
    (await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, busy))?.status?.modelStatus?.[cache],
    'ModelDownloaded',
  );

  // A model label nobody planned is removed; one someone removed is put back.
  await cluster.client.mergePatch(NODES, done, {
    metadata: { labels: { 'models.modelcache.io/0123456789abcdef': 'true', [label]: null } },
  });
  await eventually(async () => {
    const l = await labelsOf(done);
    assert.equal(l['models.modelcache.io/0123456789abcdef'], undefined);
    assert.equal(l[label], 'true');
  });

  // The cache is deleted: the label leaves before the daemon removes the files (its finalizer waits for that).
  await cluster.client.delete(LOCAL_MODEL_CACHES, cache);
  await labelled(done, label, false);
  for (const n of [done, busy]) await reportModel(cluster.client, n, cache, null);
  await eventually(async () => assert.equal(await cluster.client.get(LOCAL_MODEL_CACHES, cache), undefined));
});

test("the controller's identity may change node labels under models.modelcache.io/ and nothing else of a node; other users are not confined", async () => {
  const n = uniqueName('policy');
  await createNode(cluster.client, n, { zone: 'a' });
  const mine = 'models.modelcache.io/fedcba9876543210';
  const forbidden = (pattern: RegExp) => (err: { status?: number; message?: string }) =>
    (err.status === 403 || err.status === 422) && pattern.test(err.message ?? '');
  // The apiserver enforces the policy once it has loaded it and its parameter.
  // (Each probe is a real change: one let through before that must not make the next a no-op.)
  await eventually(async () => {
    await assert.rejects(
      controllerClient.mergePatch(NODES, n, { metadata: { labels: { probe: uniqueName('p') } } }),
      forbidden(/may change only node labels under models\.modelcache\.io\//),
    );
  });
  await assert.rejects(
    controllerClient.mergePatch(NODES, n, { metadata: { labels: { zone: 'b' } } }),
    forbidden(/may change only node labels under models\.modelcache\.io\//),
  );
  await assert.rejects(
    controllerClient.mergePatch(NODES, n, { metadata: { labels: { zone: null } } }),
    forbidden(/may change only node labels under models\.modelcache\.io\//),
  );
  await assert.rejects(
    controllerClient.mergePatch(NODES, n, { metadata: { labels: { 'node-role.kubernetes.io/gpu': '' } } }),
    forbidden(/may change only node labels under models\.modelcache\.io\//),
  );
  await assert.rejects(
    controllerClient.mergePatch(NODES, n, { spec: { taints: [{ key: 'x', effect: 'NoSchedule' }] } }),
    forbidden(/may not change a node's spec/),
  );
  await assert.rejects(
    controllerClient.mergePatch(NODES, n, { spec: { unschedulable: true } }),
    forbidden(/may not change a node's spec/),
  );
  await assert.rejects(
    controllerClient.mergePatch(NODES, n, { metadata: { annotations: { a: 'b' } } }),
    forbidden(/may not change a node's annotations/),
  );
  await assert.rejects(
    controllerClient.mergePatch(NODES, n, { metadata: { labels: { [mine]: 'yes' } } }),
    forbidden(/only to "true"/),
  );
  // Its own labels it may add and remove (the patch answers show the node as stored).
  const added = await controllerClient.mergePatch<Node>(NODES, n, { metadata: { labels: { [mine]: 'true' } } });
  assert.equal(added.metadata.labels?.[mine], 'true');
  const removed = await controllerClient.mergePatch<Node>(NODES, n, { metadata: { labels: { [mine]: null } } });
  assert.equal(removed.metadata.labels?.[mine], undefined);
  const node = (await cluster.client.get<Node>(NODES, n)) as Node;
  assert.equal(node.metadata.labels?.zone, 'a');
  assert.equal(node.spec?.unschedulable, undefined);
  assert.deepEqual(node.spec?.taints ?? [], []);
  // Another user (the admin) is not matched by the policy.
  const byAdmin = await cluster.client.mergePatch<Node>(NODES, n, {
    metadata: { labels: { zone: 'b' }, annotations: { a: 'b' } },
    spec: { unschedulable: true },
  });
  assert.equal(byAdmin.metadata.labels?.zone, 'b');
  assert.equal(byAdmin.spec?.unschedulable, true);
});

/** A fresh namespace, returned once its `default` ServiceAccount exists (pods are refused before that). */
async function freshNamespace(prefix: string): Promise<string> {
  const name = uniqueName(prefix);
  await cluster.client.create(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  await eventually(async () => assert.ok(await cluster.client.get(SERVICE_ACCOUNTS, 'default', { namespace: name })));
  return name;
}

interface Pod extends KubeObject {
  spec: { nodeName?: string; [field: string]: unknown };
  status?: { conditions?: Array<{ type: string; status: string; reason?: string; message?: string }> };
}

test('a pod requiring the label stays Pending while no copy is complete and is bound to the node whose copy completed first', async () => {
  const s = uniqueName('sched');
  const pool = `${s}/pool`;
  await createGroup(`${s}-g`, { [pool]: 'yes' });
  const [first, later] = [`${s}-first`, `${s}-later`];
  for (const n of [first, later]) await createNode(cluster.client, n, { [pool]: 'yes' });
  const cache = `${s}-m`;
  const uri = `s3://models/${s}/m`;
  await createCache(cache, uri, [`${s}-g`]);
  await placedOn(cache, [first, later]);
  for (const n of [first, later]) await reportModel(cluster.client, n, cache, 'ModelDownloading');

  // The pod as the pod mutator leaves it: its required node affinity on the label of a complete copy.
  const ns = await freshNamespace(`${s}-ns`);
  const [op] = affinityOps(undefined, storageKeyFor(uri));
  assert.ok(op && op.op === 'add' && op.path === '/spec/affinity');
  const pod: Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'server', labels: { 'modelcache.io/cache': cache } },
    spec: {
      affinity: op.value,
      containers: [
        { name: 'app', image: 'registry.invalid/app:1', resources: { requests: { cpu: '100m', memory: '64Mi' } } },
      ],
    },
  };
  await cluster.client.create(PODS, pod, { namespace: ns });
  const scheduled = async (): Promise<Pod> => (await cluster.client.get<Pod>(PODS, 'server', { namespace: ns })) as Pod;
  await eventually(
    async () => {
      const p = await scheduled();
      const cond = p.status?.conditions?.find((c) => c.type === 'PodScheduled');
      assert.equal(cond?.reason, 'Unschedulable', JSON.stringify(cond));
      assert.match(cond.message ?? '', /didn't match Pod's node affinity/);
      assert.equal(p.spec.nodeName, undefined);
    },
    { timeoutMs: 60_000 },
  );

  // The later node's copy is still downloading when the first one's completes.
  await reportModel(cluster.client, first, cache, 'ModelDownloaded');
  const node = await eventually(
    async () => {
      const p = await scheduled();
      assert.equal(p.status?.conditions?.find((c) => c.type === 'PodScheduled')?.status, 'True');
      assert.ok(p.spec.nodeName);
      return p.spec.nodeName;
    },
    { timeoutMs: 60_000 },
  );
  assert.equal(node, first);
  assert.equal((await labelsOf(later))[modelNodeLabel(storageKeyFor(uri))], undefined);

  // No kubelet finishes a graceful deletion on a simulated node: delete at once.
  await cluster.client.request('DELETE', cluster.client.path(PODS, { namespace: ns, name: 'server' }), {
    body: { kind: 'DeleteOptions', apiVersion: 'v1', gracePeriodSeconds: 0 },
  });
});

test('a NotReady node keeps the label of its complete copy (the not-ready taint keeps pods off), and steady state patches no node', async () => {
  const s = uniqueName('steady');
  const pool = `${s}/pool`;
  await createGroup(`${s}-g`, { [pool]: 'yes' });
  const n = `${s}-n`;
  await createNode(cluster.client, n, { [pool]: 'yes' });
  const cache = `${s}-m`;
  const uri = `s3://models/${s}/m`;
  await createCache(cache, uri, [`${s}-g`]);
  await placedOn(cache, [n]);
  await reportModel(cluster.client, n, cache, 'ModelDownloaded');
  await labelled(n, modelNodeLabel(storageKeyFor(uri)), true);
  await setNodeReady(cluster.client, n, false);
  await labelled(n, modelNodeLabel(storageKeyFor(uri)), true);

  const versions = async (): Promise<Record<string, string | undefined>> =>
    Object.fromEntries(
      (await cluster.client.list(NODES)).items.map((o) => [o.metadata.name, o.metadata.resourceVersion]),
    );
  await eventually(() => assert.equal(controller.pending, 0));
  const before = await versions();
  const writes = await controller.metrics.totalWrites();
  controller.resync();
  await eventually(() => assert.equal(controller.pending, 0));
  assert.equal(await controller.metrics.totalWrites(), writes);
  assert.deepEqual(await versions(), before);
});
