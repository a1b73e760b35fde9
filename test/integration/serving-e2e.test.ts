// Serving from the cache end to end, every piece real: kube-scheduler and the PV binder, the controller as a
// process with its shipped RBAC, admission webhooks (shipped configuration, pointed at it) and node-label policy,
// two nodes of a group each with a real daemon, a third node outside the group, and an origin. Node B's daemon
// asks first and its one request stalls (a scripted fault, consumed by that request alone); node A's daemon,
// started later, gets the bytes at once. So which copy completes first is decided by the script, not by timing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INFERENCE_SERVICES } from '../../api/kserve.ts';
import { storageKeyFor } from '../../api/storage-key.ts';
import {
  LOCAL_MODEL_CACHES,
  LOCAL_MODEL_NODE_GROUPS,
  LOCAL_MODEL_NODES,
  type LocalModelNode,
} from '../../api/types.ts';
import type { KubeClient } from '../../kube/client.ts';
import {
  MUTATING_WEBHOOK_CONFIGURATIONS,
  NAMESPACES,
  NODES,
  PERSISTENT_VOLUME_CLAIMS,
  PERSISTENT_VOLUMES,
  PODS,
  SERVICE_ACCOUNTS,
  type PersistentVolume,
  type PersistentVolumeClaim,
  type Pod,
} from '../../kube/resources.ts';
import type { KubeObject, Node } from '../../kube/types.ts';
import { fromYamlAll } from '../../kube/yaml.ts';
import { makeTar } from '../../localcluster/archives.ts';
import { uniqueName, useControlPlane } from '../helpers/cluster.ts';
import { ControlPlane } from '../../localcluster/control-plane.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { cache as cacheObj, group as groupObj } from '../helpers/fixtures.ts';
import { installKserveCrds } from '../helpers/kserve-crds.ts';
import { createNode, grantControllerRbac, grantShippedRbac, installShippedCrds } from '../helpers/kube-fixtures.ts';
import { startModelcache, type ModelcacheProcess } from '../../localcluster/modelcache-process.ts';
import { Origin } from '../../localcluster/origin.ts';
import { freePort, Reaper } from '../../localcluster/processes.ts';

const S = uniqueName('e2e');
const POOL = `${S}/pool`;
const GROUP = `${S}-gpus`;
const CACHE = `${S}-llama`;
const PVC = `${CACHE}-${GROUP}`;
const [nodeA, nodeB, outside] = [`${S}-node-a`, `${S}-node-b`, `${S}-outside`];
const MODEL_PATH = `/models/${S}/llama.tar`;
/** Node B's one request gets this much of the archive, then nothing for longer than the test lasts. */
const STALL = { stallAfterBytes: 1_000_000, stallMs: 600_000 };

const POLICIES = {
  ValidatingAdmissionPolicy: '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies',
  ValidatingAdmissionPolicyBinding: '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings',
} as const;

const run = {
  dir: '',
  uri: '',
  key: '',
  daemonKubeconfig: '',
  reaper: new Reaper(),
  origin: undefined as Origin | undefined,
  processes: [] as ModelcacheProcess[],
};
const rootOf = (node: string): string => join(run.dir, 'nodes', node);
const label = (): string => `models.modelcache.io/${run.key}`;

/** The shipped MutatingWebhookConfiguration with each webhook pointed at the controller on 127.0.0.1. */
async function shippedWebhooks(port: number): Promise<KubeObject> {
  const text = await readFile(new URL('../../manifests/controller/webhooks.yaml', import.meta.url), 'utf8');
  type Hook = { clientConfig: { service?: { path?: string }; url?: string } };
  const config = (fromYamlAll(text) as Array<KubeObject & { webhooks?: Hook[] }>).find(
    (d) => d.kind === 'MutatingWebhookConfiguration',
  );
  assert.ok(config?.webhooks, 'manifests/controller/webhooks.yaml has a MutatingWebhookConfiguration');
  for (const w of config.webhooks)
    w.clientConfig = { url: `https://127.0.0.1:${port}${w.clientConfig.service?.path ?? '/'}` };
  return config;
}

/** The shipped node-label policy and its binding, as users apply them. */
async function installNodeLabelPolicy(client: KubeClient): Promise<void> {
  const text = await readFile(new URL('../../manifests/controller/admission-policy.yaml', import.meta.url), 'utf8');
  for (const doc of fromYamlAll(text) as KubeObject[])
    await client.request('POST', POLICIES[doc.kind as keyof typeof POLICIES], { body: doc });
}

async function startDaemon(node: string): Promise<void> {
  const args = ['daemon', '--kubeconfig', run.daemonKubeconfig, '--node-name', node, '--root', rootOf(node)];
  const tuning = ['--listen', '127.0.0.1:0', '--safety-margin', '0', '--progress-interval-ms', '200'];
  // One stream per download, and a stall is waited out rather than retried: B's one request stays B's.
  const stream = ['--parallel-parts', '1', '--stall-timeout-seconds', '86400'];
  run.processes.push(await startModelcache(`daemon-${node}`, [...args, ...tuning, ...stream], run.dir, run.reaper));
}

const cluster = useControlPlane({
  scheduler: true,
  setup: async (c) => {
    await installShippedCrds(c.client);
    await installKserveCrds(c.client);
    await grantControllerRbac(c.client, ControlPlane.username('tester-1'));
    await grantShippedRbac(c.client, 'daemon', ControlPlane.username('tester-2'));
    await installNodeLabelPolicy(c.client);
    run.dir = await mkdtemp(join(tmpdir(), 'modelcache-serving-e2e-'));
    run.daemonKubeconfig = await c.cp.kubeconfigFor('tester-2');

    const origin = await Origin.start();
    run.origin = origin;
    const archive = await makeTar([
      { name: 'config.json', content: '{"architectures":["LlamaForCausalLM"]}' },
      { name: 'tokenizer/tokenizer.json', content: '{"vocab":["a","b"]}' },
      { name: 'weights/shard-0.bin', content: randomBytes(4_000_000) },
    ]);
    origin.set(MODEL_PATH, archive);
    origin.fault(MODEL_PATH, STALL);
    run.uri = origin.url(MODEL_PATH);
    run.key = storageKeyFor(run.uri);

    const port = await freePort();
    await c.client.create(MUTATING_WEBHOOK_CONFIGURATIONS, await shippedWebhooks(port));
    const controllerArgs = ['--kubeconfig', await c.cp.kubeconfigFor('tester-1'), '--metrics-addr', '127.0.0.1:0'];
    run.processes.push(
      await startModelcache(
        'controller',
        ['controller', ...controllerArgs, '--webhook-listen', `127.0.0.1:${port}`],
        run.dir,
        run.reaper,
      ),
    );

    for (const n of [nodeA, nodeB]) await createNode(c.client, n, { [POOL]: 'yes' });
    await createNode(c.client, outside, {});
    await startDaemon(nodeB); // node A's daemon starts once B's request has met the stall
    await c.client.create(LOCAL_MODEL_NODE_GROUPS, {
      ...groupObj(GROUP, { [POOL]: 'yes' }, '1Gi'),
      metadata: { name: GROUP },
    });
    await c.client.create(LOCAL_MODEL_CACHES, {
      ...cacheObj(CACHE, run.uri, '16Mi', [GROUP]),
      metadata: { name: CACHE },
    });
  },
  teardown: async () => {
    await Promise.all(run.processes.map((p) => p.stop('SIGKILL')));
    run.reaper.close();
    await run.origin?.close();
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

function optedInPod(name: string): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { 'modelcache.io/cache': CACHE } },
    spec: { containers: [{ name: 'vllm', image: 'registry.invalid/vllm:1', args: ['--model', '/mnt/models'] }] },
  };
}

/** Creates the pod once the apiserver calls our webhook (it loads the configuration and caBundle asynchronously). */
async function createMutated(ns: string, pod: Pod): Promise<Pod> {
  await eventually(
    async () => {
      const probe = { ...pod, metadata: { ...pod.metadata, name: uniqueName('probe') } };
      const got = await cluster.client.request<Pod>('POST', cluster.client.path(PODS, { namespace: ns }), {
        body: probe,
        query: { dryRun: 'All' },
      });
      assert.ok(
        got.spec?.volumes?.some((v) => v.name === 'modelcache-model'),
        'webhook not called yet',
      );
    },
    { timeoutMs: 30_000, intervalMs: 200 },
  );
  return cluster.client.create<Pod>(PODS, pod, { namespace: ns });
}

type Condition = { type: string; status: string; reason?: string; message?: string };
const podScheduled = (p: Pod | undefined): Condition | undefined =>
  (p?.status?.conditions as Condition[] | undefined)?.find((c) => c.type === 'PodScheduled');

const labelsOf = async (node: string): Promise<Record<string, string>> =>
  (await cluster.client.get<Node>(NODES, node))?.metadata.labels ?? {};
const modelState = async (node: string): Promise<string | undefined> =>
  (await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, node))?.status?.modelStatus?.[CACHE];

/** Waits until the namespace's PV (`<cache>-<group>-<namespace>`) and PVC (`<cache>-<group>`) are bound together. */
async function boundVolumes(ns: string): Promise<{ pv: PersistentVolume; pvc: PersistentVolumeClaim }> {
  return eventually(
    async () => {
      const pvc = await cluster.client.get<PersistentVolumeClaim>(PERSISTENT_VOLUME_CLAIMS, PVC, { namespace: ns });
      const pv = await cluster.client.get<PersistentVolume>(PERSISTENT_VOLUMES, `${PVC}-${ns}`);
      assert.equal(pvc?.status?.phase, 'Bound', `claim ${ns}/${PVC}: ${JSON.stringify(pvc?.status)}`);
      assert.equal(pv?.status?.phase, 'Bound', `volume ${PVC}-${ns}: ${JSON.stringify(pv?.status)}`);
      assert.equal(pvc.spec?.volumeName, `${PVC}-${ns}`);
      assert.deepEqual([pv.spec?.claimRef?.namespace, pv.spec?.claimRef?.name], [ns, PVC]);
      return { pv, pvc };
    },
    { timeoutMs: 30_000 },
  );
}

test('an opted-in pod waits Pending for a complete copy, is bound where the copy completed first, and the label leaves with the copy', async () => {
  const c = cluster.client;
  // Node B is downloading: its one request has met the stall, part of the archive is on its disk.
  await eventually(async () => {
    assert.equal(await modelState(nodeB), 'ModelDownloading');
    assert.deepEqual(
      run.origin?.requestsFor(MODEL_PATH).map((r) => r.status),
      [200],
    );
  });

  const ns = await freshNamespace(`${S}-team`);
  const created = await createMutated(ns, optedInPod('chat'));
  assert.deepEqual(created.spec?.volumes?.find((v) => v.name === 'modelcache-model')?.persistentVolumeClaim, {
    claimName: PVC,
    readOnly: true,
  });
  const containers = created.spec?.containers as Array<{ volumeMounts?: Array<{ name: string }> }>;
  assert.deepEqual(
    containers[0]?.volumeMounts?.find((m) => m.name === 'modelcache-model'),
    { name: 'modelcache-model', mountPath: '/mnt/models', subPath: `models/${run.key}`, readOnly: true },
  );
  assert.deepEqual(created.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution, {
    nodeSelectorTerms: [{ matchExpressions: [{ key: label(), operator: 'In', values: ['true'] }] }],
  });

  // No copy is complete: the claim is Bound, yet the scheduler finds no node and the pod stays Pending.
  await boundVolumes(ns);
  const waiting = await eventually(
    async () => {
      const p = await c.get<Pod>(PODS, 'chat', { namespace: ns });
      assert.equal(podScheduled(p)?.reason, 'Unschedulable', JSON.stringify(p?.status));
      return p;
    },
    { timeoutMs: 30_000 },
  );
  assert.equal(podScheduled(waiting)?.status, 'False');
  assert.equal(waiting?.status?.phase, 'Pending');
  assert.equal(waiting?.spec?.nodeName, undefined);
  for (const n of [nodeA, nodeB, outside]) assert.equal((await labelsOf(n))[label()], undefined, n);

  // Node A's daemon starts; no fault is left, so its copy completes while B's request is still stalled.
  await startDaemon(nodeA);
  const bound = await eventually(
    async () => {
      const p = await c.get<Pod>(PODS, 'chat', { namespace: ns });
      assert.equal(podScheduled(p)?.status, 'True', JSON.stringify(p?.status));
      return p;
    },
    { timeoutMs: 30_000 },
  );
  assert.equal(bound?.spec?.nodeName, nodeA);
  assert.equal(await modelState(nodeA), 'ModelDownloaded');
  assert.equal(await modelState(nodeB), 'ModelDownloading', 'node B is still downloading');
  assert.equal((await labelsOf(nodeA))[label()], 'true');
  assert.equal((await labelsOf(nodeB))[label()], undefined, 'no label while the copy is partial');
  assert.equal((await labelsOf(outside))[label()], undefined, 'no label outside the group');
  const config = await readFile(join(rootOf(nodeA), 'models', run.key, 'config.json'), 'utf8');
  assert.match(config, /LlamaForCausalLM/, 'the bytes the pod mounts are on node A');

  // Node A leaves the group: its copy is no longer wanted, the daemon removes it, and the label goes.
  await c.mergePatch(NODES, nodeA, { metadata: { labels: { [POOL]: null } } });
  await eventually(
    async () => {
      assert.equal((await labelsOf(nodeA))[label()], undefined, 'label still on node A');
      await assert.rejects(stat(join(rootOf(nodeA), 'models', run.key)), { code: 'ENOENT' });
    },
    { timeoutMs: 30_000 },
  );
});

test("an InferenceService below the cache's URI gets KServe's labels, and its namespace KServe's PV and PVC", async () => {
  const c = cluster.client;
  const ns = await freshNamespace(`${S}-kserve`);
  const isvc = (name: string): KubeObject =>
    ({
      apiVersion: 'serving.kserve.io/v1beta1',
      kind: 'InferenceService',
      metadata: { name, namespace: ns },
      spec: { predictor: { model: { modelFormat: { name: 'huggingface' }, storageUri: `${run.uri}/tokenizer` } } },
    }) as KubeObject;
  const labelled = await eventually(
    async () => {
      const dry = await c.request<KubeObject>('POST', c.path(INFERENCE_SERVICES, { namespace: ns }), {
        body: isvc(uniqueName('probe')),
        query: { dryRun: 'All' },
      });
      assert.ok(dry.metadata.labels, 'defaulter not called yet');
      return c.create(INFERENCE_SERVICES, isvc('chat'));
    },
    { timeoutMs: 30_000, intervalMs: 200 },
  );
  assert.equal(labelled.metadata.labels?.['internal.serving.kserve.io/localmodel'], CACHE);
  assert.equal(labelled.metadata.annotations?.['internal.serving.kserve.io/localmodel-sourceuri'], run.uri);
  assert.equal(labelled.metadata.annotations?.['internal.serving.kserve.io/localmodel-pvc-name'], PVC);

  const { pv, pvc } = await boundVolumes(ns);
  for (const o of [pv, pvc])
    assert.deepEqual(
      o.metadata.ownerReferences?.map((r) => [r.kind, r.name]),
      [['LocalModelCache', CACHE]],
    );
});
