// The test control plane schedules and binds for real: kube-scheduler places pods by resources, node
// selectors and PersistentVolume node affinity; the PV binder binds claims; namespaces get their
// `default` ServiceAccount. No kubelet runs, so pods stay Pending once bound: the assertions are on
// spec.nodeName and the PodScheduled condition the scheduler writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  NAMESPACES,
  PERSISTENT_VOLUME_CLAIMS,
  PERSISTENT_VOLUMES,
  PODS,
  SERVICE_ACCOUNTS,
} from '../../kube/resources.ts';
import type { KubeObject } from '../../kube/types.ts';
import { useControlPlane, uniqueName } from '../helpers/cluster.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { createNode } from '../helpers/kube-fixtures.ts';

interface Pod extends KubeObject {
  spec: { nodeName?: string; serviceAccountName?: string; [field: string]: unknown };
  status?: { phase?: string; conditions?: Array<{ type: string; status: string; reason?: string; message?: string }> };
}
interface Claim extends KubeObject {
  spec: { volumeName?: string; [field: string]: unknown };
  status?: { phase?: string };
}
interface Volume extends KubeObject {
  status?: { phase?: string };
}

const s = uniqueName('sched');
const nodeA = `${s}-node-a`;
const nodeB = `${s}-node-b`;
const STORAGE_CLASS = 'modelcache-local';

const cluster = useControlPlane({
  scheduler: true,
  setup: async (c) => {
    await createNode(c.client, nodeA, { [`${s}/pool`]: 'a' });
    await createNode(c.client, nodeB, {});
  },
});

/** A fresh namespace, returned once its `default` ServiceAccount exists (pods are refused before that). */
async function freshNamespace(prefix: string): Promise<string> {
  const name = uniqueName(prefix);
  await cluster.client.create(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  await eventually(async () => assert.ok(await cluster.client.get(SERVICE_ACCOUNTS, 'default', { namespace: name })));
  return name;
}

/** A pod with one container; nothing runs it (no kubelet), so it only needs to be schedulable. */
function pod(name: string, spec: Record<string, unknown> = {}, container: Record<string, unknown> = {}): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name },
    spec: {
      containers: [
        {
          name: 'app',
          image: 'registry.invalid/app:1',
          resources: { requests: { cpu: '100m', memory: '64Mi' } },
          ...container,
        },
      ],
      ...spec,
    },
  };
}

/** The node the scheduler bound the pod to, once its PodScheduled condition is True. */
async function scheduledNode(namespace: string, name: string): Promise<string> {
  return eventually(
    async () => {
      const p = await cluster.client.get<Pod>(PODS, name, { namespace });
      const cond = p?.status?.conditions?.find((c) => c.type === 'PodScheduled');
      assert.equal(cond?.status, 'True', `pod ${name} not scheduled yet: ${JSON.stringify(cond)}`);
      assert.ok(p?.spec.nodeName);
      return p.spec.nodeName;
    },
    { timeoutMs: 60_000 },
  );
}

/** The scheduler's message on a pod it could not place (PodScheduled False, reason Unschedulable). */
async function unschedulableMessage(namespace: string, name: string): Promise<string> {
  return eventually(
    async () => {
      const p = await cluster.client.get<Pod>(PODS, name, { namespace });
      const cond = p?.status?.conditions?.find((c) => c.type === 'PodScheduled');
      assert.equal(cond?.reason, 'Unschedulable', `pod ${name}: ${JSON.stringify(cond)}`);
      assert.equal(cond.status, 'False');
      assert.equal(p?.spec.nodeName, undefined);
      return cond.message ?? '';
    },
    { timeoutMs: 60_000 },
  );
}

test("a new namespace gets its 'default' ServiceAccount by itself, and a pod in it is admitted", async () => {
  const ns = await freshNamespace(`${s}-sa`);
  const created = await cluster.client.create<Pod>(PODS, pod('admitted'), { namespace: ns });
  assert.equal(created.metadata.namespace, ns);
  assert.equal(created.spec.serviceAccountName, 'default');
});

/** A `local` PV at /models on one node and a claim `models` in `namespace` naming it; resolves once both are Bound. */
async function localVolume(namespace: string, pv: string, node: string): Promise<void> {
  const hostname = { key: 'kubernetes.io/hostname', operator: 'In', values: [node] };
  await cluster.client.create(PERSISTENT_VOLUMES, {
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name: pv },
    spec: {
      storageClassName: STORAGE_CLASS,
      capacity: { storage: '1Gi' },
      accessModes: ['ReadWriteOnce'],
      persistentVolumeReclaimPolicy: 'Retain',
      local: { path: '/models' },
      nodeAffinity: { required: { nodeSelectorTerms: [{ matchExpressions: [hostname] }] } },
    },
  });
  const claim: Claim = {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name: 'models' },
    spec: {
      storageClassName: STORAGE_CLASS,
      accessModes: ['ReadWriteOnce'],
      resources: { requests: { storage: '1Gi' } },
      volumeName: pv,
    },
  };
  await cluster.client.create(PERSISTENT_VOLUME_CLAIMS, claim, { namespace });
  await eventually(
    async () => {
      assert.equal(
        (await cluster.client.get<Claim>(PERSISTENT_VOLUME_CLAIMS, 'models', { namespace }))?.status?.phase,
        'Bound',
      );
      assert.equal((await cluster.client.get<Volume>(PERSISTENT_VOLUMES, pv))?.status?.phase, 'Bound');
    },
    { timeoutMs: 60_000 },
  );
}

/** Pod spec and container parts that mount claim `models` read-only at /mnt/models. */
const VOLUMES = { volumes: [{ name: 'models', persistentVolumeClaim: { claimName: 'models', readOnly: true } }] };
const MOUNTS = { volumeMounts: [{ name: 'models', mountPath: '/mnt/models', readOnly: true }] };

test('a local PV and a claim naming it are Bound by the binder; a pod using the claim goes to the PV node', async () => {
  const ns = await freshNamespace(`${s}-pv`);
  await localVolume(ns, `${s}-models`, nodeB);
  await cluster.client.create(PODS, pod('reader', VOLUMES, MOUNTS), { namespace: ns });
  assert.equal(await scheduledNode(ns, 'reader'), nodeB);

  // The PV's node affinity is what decides: asked onto the other node as well, the pod fits nowhere.
  const onA = { ...VOLUMES, nodeSelector: { [`${s}/pool`]: 'a' } };
  await cluster.client.create(PODS, pod('reader-on-a', onA, MOUNTS), { namespace: ns });
  assert.match(await unschedulableMessage(ns, 'reader-on-a'), /didn't match PersistentVolume's node affinity/);
});

test('a deleted claim stays (Terminating) while a scheduled pod uses it, and goes with the pod; its PV is Released', async () => {
  const ns = await freshNamespace(`${s}-del`);
  const pv = `${s}-held`;
  await localVolume(ns, pv, nodeA);
  await cluster.client.create(PODS, pod('user', VOLUMES, MOUNTS), { namespace: ns });
  assert.equal(await scheduledNode(ns, 'user'), nodeA);
  await cluster.client.delete(PERSISTENT_VOLUME_CLAIMS, 'models', { namespace: ns });
  const held = await cluster.client.get<Claim>(PERSISTENT_VOLUME_CLAIMS, 'models', { namespace: ns });
  assert.ok(held?.metadata.deletionTimestamp, 'the claim is being deleted');
  assert.ok(held.metadata.finalizers?.includes('kubernetes.io/pvc-protection'), 'and protected while in use');
  // No kubelet will finish a graceful deletion of a pod bound to a simulated node: delete it at once.
  await cluster.client.request('DELETE', cluster.client.path(PODS, { namespace: ns, name: 'user' }), {
    body: { kind: 'DeleteOptions', apiVersion: 'v1', gracePeriodSeconds: 0 },
  });
  await eventually(
    async () => {
      assert.equal(await cluster.client.get(PERSISTENT_VOLUME_CLAIMS, 'models', { namespace: ns }), undefined);
      assert.equal((await cluster.client.get<Volume>(PERSISTENT_VOLUMES, pv))?.status?.phase, 'Released');
    },
    { timeoutMs: 60_000 },
  );
});

test('a pod with a node selector goes to the only node carrying that label', async () => {
  const ns = await freshNamespace(`${s}-sel`);
  await cluster.client.create(PODS, pod('picky', { nodeSelector: { [`${s}/pool`]: 'a' } }), { namespace: ns });
  assert.equal(await scheduledNode(ns, 'picky'), nodeA);
});

test("the nodes' allocatable resources are what the scheduler fits pods into", async () => {
  const ns = await freshNamespace(`${s}-big`);
  await cluster.client.create(PODS, pod('huge', {}, { resources: { requests: { cpu: '64' } } }), { namespace: ns });
  assert.match(await unschedulableMessage(ns, 'huge'), /Insufficient cpu/);
});
