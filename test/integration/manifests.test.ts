import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LOCAL_MODEL_NODES, type LocalModelNode } from '../../api/types.ts';
import { controllerUsage } from '../../controller/main.ts';
import { daemonUsage } from '../../daemon/flags.ts';
import { KubeClient } from '../../kube/client.ts';
import { NODES } from '../../kube/resources.ts';
import type { KubeObject, Node } from '../../kube/types.ts';
import { fromYamlAll } from '../../kube/yaml.ts';
import { uniqueName, useControlPlane } from '../helpers/cluster.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { createNode } from '../helpers/kube-fixtures.ts';

const MANIFESTS = new URL('../../manifests/', import.meta.url);
const NS = 'modelcache-system';
const cluster = useControlPlane({ controllerManager: false });

type Doc = KubeObject & { spec?: { template?: { spec?: { containers?: Array<{ name: string; args?: string[] }> } } } };

async function kustomizationDocs(): Promise<Array<{ file: string; doc: Doc }>> {
  const k = fromYamlAll(await readFile(new URL('kustomization.yaml', MANIFESTS), 'utf8'))[0] as { resources: string[] };
  const out: Array<{ file: string; doc: Doc }> = [];
  for (const file of k.resources)
    for (const doc of fromYamlAll(await readFile(new URL(file, MANIFESTS), 'utf8')) as Doc[]) out.push({ file, doc });
  return out;
}

/** REST path of a kind, from the apiserver's discovery (as kubectl finds it). */
async function collectionPath(client: KubeClient, doc: Doc): Promise<string> {
  const base = (doc.apiVersion ?? '').includes('/') ? `/apis/${doc.apiVersion}` : `/api/${doc.apiVersion}`;
  const list = await client.request<{ resources: Array<{ name: string; kind: string; namespaced: boolean }> }>(
    'GET',
    base,
  );
  const r = list.resources.find((x) => x.kind === doc.kind && !x.name.includes('/'));
  assert.ok(r, `${doc.apiVersion} ${doc.kind} is not served by the apiserver`);
  return r.namespaced ? `${base}/namespaces/${doc.metadata.namespace ?? NS}/${r.name}` : `${base}/${r.name}`;
}

test("kustomization.yaml lists every manifest (the agent's, applied per namespace, aside)", async () => {
  const listed = new Set((await kustomizationDocs()).map((d) => d.file));
  const onDisk = (await readdir(MANIFESTS, { recursive: true })).filter(
    (f) => f.endsWith('.yaml') && f !== 'kustomization.yaml' && !f.startsWith('agent/'),
  );
  assert.deepEqual([...listed].sort(), onDisk.sort());
});

test('every shipped manifest is accepted by the apiserver with strict field validation (no unknown or misspelt field)', async () => {
  for (const { file, doc } of await kustomizationDocs()) {
    const path = await collectionPath(cluster.client, doc);
    await cluster.client
      .request('POST', path, { body: doc, query: { fieldValidation: 'Strict', fieldManager: 'modelcache-test' } })
      .catch((err: Error) => {
        throw new Error(
          `${relative(fileURLToPath(MANIFESTS), fileURLToPath(new URL(file, MANIFESTS)))}: ${doc.kind} ${doc.metadata.name}: ${err.message}`,
        );
      });
  }
});

test('the DaemonSet and Deployment pass only flags their commands know', async () => {
  const docs = await kustomizationDocs();
  const usage: Record<string, string> = { daemon: daemonUsage, controller: controllerUsage };
  for (const { doc } of docs.filter((d) => d.doc.kind === 'DaemonSet' || d.doc.kind === 'Deployment')) {
    const args = doc.spec?.template?.spec?.containers?.[0]?.args ?? [];
    const command = args[0] ?? '';
    assert.ok(usage[command], `${doc.kind} ${doc.metadata.name} runs '${command}', not a modelcache command`);
    for (const flag of args.slice(1).map((a) => a.split('=')[0] ?? a)) {
      assert.match(
        usage[command],
        new RegExp(`\\s${flag}[\\s\\[]`),
        `${doc.kind} ${doc.metadata.name}: ${flag} is not a flag of modelcache ${command}`,
      );
    }
  }
});

test("the admission policy: a daemon's pod-bound token may write its own node's LocalModelNode status, not another node's", async () => {
  const c = cluster.client;
  const s = uniqueName('policy');
  const [own, other, podName] = [`${s}-a`, `${s}-b`, `daemon-${s}-a`];
  for (const n of [own, other]) {
    await createNode(c, n, {});
    await c.create(LOCAL_MODEL_NODES, {
      apiVersion: 'serving.kserve.io/v1alpha1',
      kind: 'LocalModelNode',
      metadata: { name: n },
      spec: { localModels: [] },
    } as LocalModelNode);
  }
  // A daemon pod bound to node `own` (no kubelet runs it: its token is what matters).
  const pod = await c.request<KubeObject>('POST', `/api/v1/namespaces/${NS}/pods`, {
    body: {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: podName, namespace: NS },
      spec: {
        nodeName: own,
        serviceAccountName: 'modelcache-daemon',
        containers: [{ name: 'daemon', image: 'modelcache:latest' }],
      },
    },
  });
  const tr = await c.request<{ status: { token: string } }>(
    'POST',
    `/api/v1/namespaces/${NS}/serviceaccounts/modelcache-daemon/token`,
    {
      body: {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: {
          expirationSeconds: 3600,
          boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata.name, uid: pod.metadata.uid },
        },
      },
    },
  );
  const daemon = KubeClient.fromKubeconfig({
    kubeconfig: await cluster.cp.kubeconfigFor({ name: podName, token: tr.status.token }),
  });
  try {
    const review = await daemon.request<{
      status: { userInfo: { username: string; extra?: Record<string, string[]> } };
    }>('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', {
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
    });
    assert.equal(review.status.userInfo.username, `system:serviceaccount:${NS}:modelcache-daemon`);
    assert.deepEqual(
      review.status.userInfo.extra?.['authentication.kubernetes.io/node-name'],
      [own],
      "the token carries its pod's node",
    );
    // The policy is enforced once the apiserver has loaded it.
    await eventually(async () => {
      await assert.rejects(
        daemon.patchStatus(LOCAL_MODEL_NODES, other, { summary: { models: 0, downloaded: 0, failed: 0 } }),
        (e: { message?: string }) => /may only write the status of its own node's LocalModelNode/.test(e.message ?? ''),
      );
    });
    await daemon.patchStatus(LOCAL_MODEL_NODES, own, { summary: { models: 0, downloaded: 0, failed: 0 } });
    assert.deepEqual((await c.get<LocalModelNode>(LOCAL_MODEL_NODES, own))?.status?.summary, {
      models: 0,
      downloaded: 0,
      failed: 0,
    });
    assert.equal(
      (await c.get<LocalModelNode>(LOCAL_MODEL_NODES, other))?.status,
      undefined,
      "the other node's status is untouched",
    );
  } finally {
    await daemon.close();
  }
});

test("the admission policy: the controller's ServiceAccount may change a node's models.modelcache.io/ labels and nothing else of it", async () => {
  const c = cluster.client;
  const node = uniqueName('policy-labels');
  await createNode(c, node, { zone: 'a' });
  // The shipped ClusterRoleBinding (the policy's parameter) names the ServiceAccount: its token is the identity.
  const tr = await c.request<{ status: { token: string } }>(
    'POST',
    `/api/v1/namespaces/${NS}/serviceaccounts/modelcache-controller/token`,
    { body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 } } },
  );
  const controller = KubeClient.fromKubeconfig({
    kubeconfig: await cluster.cp.kubeconfigFor({ name: 'controller-sa', token: tr.status.token }),
  });
  const label = 'models.modelcache.io/0011223344556677';
  try {
    await eventually(async () => {
      await assert.rejects(
        controller.mergePatch(NODES, node, { metadata: { labels: { zone: `z${Date.now()}` } } }),
        (e: { message?: string }) => /may change only node labels under models\.modelcache\.io\//.test(e.message ?? ''),
      );
    });
    await assert.rejects(
      controller.mergePatch(NODES, node, { spec: { unschedulable: true } }),
      (e: { message?: string }) => /may not change a node's spec/.test(e.message ?? ''),
    );
    const added = await controller.mergePatch<Node>(NODES, node, { metadata: { labels: { [label]: 'true' } } });
    assert.equal(added.metadata.labels?.[label], 'true');
    const removed = await controller.mergePatch<Node>(NODES, node, { metadata: { labels: { [label]: null } } });
    assert.equal(removed.metadata.labels?.[label], undefined);
    const now = await c.get<Node>(NODES, node);
    assert.equal(now?.metadata.labels?.zone, 'a');
    assert.equal(now?.spec?.unschedulable, undefined);
  } finally {
    await controller.close();
  }
});
