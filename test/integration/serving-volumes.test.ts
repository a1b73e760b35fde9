// Per-namespace serving volumes against a real control plane: the PV binder binds the claims the controller
// makes, kube-scheduler places the pods that mount them, and the controller runs as a real process with its
// shipped RBAC and a short --volume-grace-seconds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INFERENCE_SERVICES, LLM_INFERENCE_SERVICES } from '../../api/kserve.ts';
import { storageKeyFor } from '../../api/storage-key.ts';
import { LOCAL_MODEL_CACHES, LOCAL_MODEL_NODE_GROUPS, type LocalModelNodeGroup } from '../../api/types.ts';
import { KubeApiError, KubeClient } from '../../kube/client.ts';
import {
  NAMESPACES,
  NODES,
  PERSISTENT_VOLUME_CLAIMS,
  PERSISTENT_VOLUMES,
  PODS,
  SECRETS,
  SERVICE_ACCOUNTS,
  type PersistentVolume,
  type PersistentVolumeClaim,
  type Pod,
} from '../../kube/resources.ts';
import type { KubeObject } from '../../kube/types.ts';
import { uniqueName, useControlPlane } from '../helpers/cluster.ts';
import { ControlPlane } from '../../localcluster/control-plane.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { cache as cacheObj } from '../helpers/fixtures.ts';
import { installKserveCrds } from '../helpers/kserve-crds.ts';
import { createNode, grantControllerRbac, installShippedCrds } from '../helpers/kube-fixtures.ts';
import { startModelcache, type ModelcacheProcess } from '../../localcluster/modelcache-process.ts';
import { Reaper } from '../../localcluster/processes.ts';

const S = uniqueName('vol');
const CACHE = `${S}-llama`;
const GROUP = `${S}-workers`;
const URI = `s3://models/${S}/llama`;
const KEY = storageKeyFor(URI);
const PVC = `${CACHE}-${GROUP}`;
const [nodeA, nodeB, outside] = [`${S}-node-a`, `${S}-node-b`, `${S}-outside`];

const run = { dir: '', reaper: new Reaper(), controller: undefined as ModelcacheProcess | undefined };
let controllerClient: KubeClient;

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

const cluster = useControlPlane({
  scheduler: true,
  setup: async (c) => {
    await installShippedCrds(c.client);
    await installKserveCrds(c.client);
    await grantControllerRbac(c.client, ControlPlane.username('tester-1'));
    for (const n of [nodeA, nodeB, outside]) await createNode(c.client, n, {});
    await c.client.create(LOCAL_MODEL_NODE_GROUPS, kserveGroup(GROUP, [nodeA, nodeB]));
    await c.client.create(LOCAL_MODEL_CACHES, cacheObj(CACHE, URI, '1Gi', [GROUP]));
    run.dir = await mkdtemp(join(tmpdir(), 'modelcache-volumes-'));
    const kubeconfig = await c.cp.kubeconfigFor('tester-1');
    controllerClient = KubeClient.fromKubeconfig({ kubeconfig });
    run.controller = await startModelcache(
      'controller',
      ['controller', '--kubeconfig', kubeconfig, '--metrics-addr', '127.0.0.1:0', '--volume-grace-seconds', '3'],
      run.dir,
      run.reaper,
    );
  },
  teardown: async () => {
    await run.controller?.stop('SIGKILL');
    run.reaper.close();
    await controllerClient?.close();
    if (run.dir) await rm(run.dir, { recursive: true, force: true });
  },
});

/** A fresh namespace, returned once its `default` ServiceAccount exists (pods are refused before that). */
async function freshNamespace(prefix: string): Promise<string> {
  const name = uniqueName(prefix);
  await cluster.client.create(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  await eventually(async () => assert.ok(await cluster.client.get(SERVICE_ACCOUNTS, 'default', { namespace: name })));
  return name;
}

function isvc(name: string): KubeObject {
  return {
    apiVersion: 'serving.kserve.io/v1beta1',
    kind: 'InferenceService',
    metadata: { name },
    spec: { predictor: { model: { modelFormat: { name: 'pytorch' }, storageUri: URI } } },
  } as KubeObject;
}

/** A predictor pod as KServe's pod mutator emits it for a cached model (no storage initializer). */
function kservePredictorPod(name: string, isvcName: string): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      labels: { 'serving.kserve.io/inferenceservice': isvcName, 'internal.serving.kserve.io/localmodel': CACHE },
      annotations: {
        'internal.serving.kserve.io/localmodel-sourceuri': URI,
        'internal.serving.kserve.io/localmodel-pvc-name': PVC,
      },
    },
    spec: {
      containers: [
        {
          name: 'kserve-container',
          image: 'registry.invalid/server:1',
          resources: { requests: { cpu: '100m', memory: '64Mi' } },
          volumeMounts: [
            { name: 'kserve-pvc-source', mountPath: '/mnt/models', subPath: `models/${KEY}`, readOnly: true },
          ],
        },
      ],
      volumes: [{ name: 'kserve-pvc-source', persistentVolumeClaim: { claimName: PVC } }],
    },
  };
}

const pvName = (ns: string): string => `${PVC}-${ns}`;
const getPv = (ns: string) => cluster.client.get<PersistentVolume>(PERSISTENT_VOLUMES, pvName(ns));
const getPvc = (ns: string) =>
  cluster.client.get<PersistentVolumeClaim>(PERSISTENT_VOLUME_CLAIMS, PVC, { namespace: ns });

/** Waits until the namespace's PV and PVC exist and the binder has bound them to each other. */
async function boundVolumes(ns: string): Promise<{ pv: PersistentVolume; pvc: PersistentVolumeClaim }> {
  return eventually(
    async () => {
      const [pv, pvc] = [await getPv(ns), await getPvc(ns)];
      assert.equal(pvc?.status?.phase, 'Bound', `claim ${ns}/${PVC}: ${JSON.stringify(pvc?.status)}`);
      assert.equal(pv?.status?.phase, 'Bound');
      return { pv, pvc };
    },
    { timeoutMs: 60_000 },
  );
}

async function volumesGone(ns: string): Promise<void> {
  await eventually(
    async () => {
      assert.equal(await getPvc(ns), undefined, `claim ${ns}/${PVC} still there`);
      assert.equal(await getPv(ns), undefined, `volume ${pvName(ns)} still there`);
    },
    { timeoutMs: 60_000 },
  );
}

async function deleteNow(ns: string, pod: string): Promise<void> {
  // No kubelet finishes a graceful deletion of a pod bound to a simulated node.
  await cluster.client.request('DELETE', cluster.client.path(PODS, { namespace: ns, name: pod }), {
    body: { kind: 'DeleteOptions', apiVersion: 'v1', gracePeriodSeconds: 0 },
  });
}

test("an InferenceService's namespace gets KServe's PV and PVC, Bound; KServe's predictor pod lands on a group node", async () => {
  const ns = await freshNamespace(`${S}-a`);
  await cluster.client.create(INFERENCE_SERVICES, isvc('svc'), { namespace: ns });
  const { pv, pvc } = await boundVolumes(ns);
  assert.equal(pvc.spec?.volumeName, pvName(ns));
  assert.equal(pv.spec?.claimRef?.name, PVC);
  assert.equal(pv.spec?.claimRef?.namespace, ns);
  assert.deepEqual((pv.spec?.local as { path?: string }).path, '/models');
  for (const o of [pv, pvc])
    assert.deepEqual(
      o.metadata.ownerReferences?.map((r) => [r.kind, r.name]),
      [['LocalModelCache', CACHE]],
    );

  await cluster.client.create(PODS, kservePredictorPod('predictor', 'svc'), { namespace: ns });
  const node = await eventually(
    async () => {
      const p = await cluster.client.get<Pod>(PODS, 'predictor', { namespace: ns });
      assert.ok(p?.spec?.nodeName, `not scheduled yet: ${JSON.stringify(p?.status)}`);
      return p.spec.nodeName;
    },
    { timeoutMs: 60_000 },
  );
  assert.ok([nodeA, nodeB].includes(node), `scheduled to ${node}, not a node of the group`);
});

test('consumers gone: volumes go after the grace, never while a pod mounts them; LLMInferenceServices and opted-in pods count', async () => {
  const held = await freshNamespace(`${S}-held`);
  await cluster.client.create(INFERENCE_SERVICES, isvc('svc'), { namespace: held });
  await boundVolumes(held);
  await cluster.client.create(PODS, kservePredictorPod('predictor', 'svc'), { namespace: held });

  const llm = await freshNamespace(`${S}-llm`);
  await cluster.client.create(
    LLM_INFERENCE_SERVICES,
    {
      apiVersion: 'serving.kserve.io/v1alpha1',
      kind: 'LLMInferenceService',
      metadata: { name: 'chat' },
      spec: { model: { uri: URI } },
    } as KubeObject,
    { namespace: llm },
  );
  await boundVolumes(llm);

  const opted = await freshNamespace(`${S}-pod`);
  const pod: Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'vllm', labels: { 'modelcache.io/cache': CACHE } },
    spec: { containers: [{ name: 'vllm', image: 'registry.invalid/vllm:1' }] },
  };
  await cluster.client.create(PODS, pod, { namespace: opted });
  await boundVolumes(opted);

  // The held namespace's consumer leaves first; its pod stays. Then the others' consumers leave.
  await cluster.client.delete(INFERENCE_SERVICES, 'svc', { namespace: held });
  await cluster.client.delete(LLM_INFERENCE_SERVICES, 'chat', { namespace: llm });
  await deleteNow(opted, 'vllm');
  await volumesGone(llm);
  await volumesGone(opted);
  // Their grace began after the held namespace's and is over: only the mounting pod keeps these.
  const claim = await getPvc(held);
  assert.ok(claim && !claim.metadata.deletionTimestamp, 'a claim a pod mounts is not deleted');
  assert.ok(await getPv(held));

  await deleteNow(held, 'predictor');
  await volumesGone(held);
});

test("the controller's shipped RBAC: PVs and PVCs it may create and delete, pods it may not change, Secrets it may not read", async () => {
  const ns = await freshNamespace(`${S}-rbac`);
  const name = `${S}-probe`;
  await controllerClient.create(PERSISTENT_VOLUMES, {
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name },
    spec: { capacity: { storage: '1Gi' }, accessModes: ['ReadOnlyMany'], hostPath: { path: '/tmp/probe' } },
  } as KubeObject);
  await controllerClient.create(
    PERSISTENT_VOLUME_CLAIMS,
    {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name },
      spec: { accessModes: ['ReadOnlyMany'], resources: { requests: { storage: '1Gi' } }, storageClassName: '' },
    } as KubeObject,
    { namespace: ns },
  );
  assert.equal(await controllerClient.delete(PERSISTENT_VOLUME_CLAIMS, name, { namespace: ns }), true);
  assert.equal(await controllerClient.delete(PERSISTENT_VOLUMES, name), true);

  await cluster.client.create(
    PODS,
    {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'app' },
      spec: { containers: [{ name: 'a', image: 'x' }] },
    } as KubeObject,
    { namespace: ns },
  );
  const denied = async (what: () => Promise<unknown>): Promise<void> =>
    assert.rejects(what, (e: unknown) => e instanceof KubeApiError && e.status === 403);
  await denied(() => controllerClient.mergePatch(PODS, 'app', { metadata: { labels: { x: 'y' } } }, { namespace: ns }));
  await denied(() => controllerClient.delete(PODS, 'app', { namespace: ns }));
  await denied(() => controllerClient.list(SECRETS, { namespace: ns }));
  await denied(() => controllerClient.delete(NODES, nodeA));
  await denied(() =>
    controllerClient.mergePatch(
      PERSISTENT_VOLUME_CLAIMS,
      'any',
      { metadata: { labels: { x: 'y' } } },
      { namespace: ns },
    ),
  );
});
