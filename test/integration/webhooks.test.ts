// The admission webhooks as the real kube-apiserver calls them: over TLS with the CA the controller generated
// and wrote into caBundle, configured from the shipped manifests/controller/webhooks.yaml.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installCrds } from '../../api/install.ts';
import { INFERENCE_SERVICES } from '../../api/kserve.ts';
import { storageKeyFor } from '../../api/storage-key.ts';
import { LOCAL_MODEL_CACHES, LOCAL_MODEL_NODE_GROUPS } from '../../api/types.ts';
import type { WebhookConfiguration } from '../../controller/webhooks/ca-bundle.ts';
import type { KubeClient } from '../../kube/client.ts';
import { MUTATING_WEBHOOK_CONFIGURATIONS, NAMESPACES, SECRETS, SERVICE_ACCOUNTS } from '../../kube/resources.ts';
import type { KubeObject, Secret } from '../../kube/types.ts';
import { fromYamlAll } from '../../kube/yaml.ts';
import { uniqueName, useControlPlane } from '../helpers/cluster.ts';
import { ControlPlane } from '../../localcluster/control-plane.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { cache as cacheObj, group as groupObj } from '../helpers/fixtures.ts';
import { grantControllerRbac } from '../helpers/kube-fixtures.ts';
import { installKserveCrds } from '../helpers/kserve-crds.ts';
import { LLM_INFERENCE_SERVICES } from '../../api/kserve.ts';
import { startModelcache, type ModelcacheProcess } from '../../localcluster/modelcache-process.ts';
import { freePort, Reaper } from '../../localcluster/processes.ts';

const S = uniqueName('wh');
const NS = `${S}-team`;
const CACHE = `${S}-llama`;
const GROUP = `${S}-gpu`;
const URI = `s3://models/${S}/llama`;
const KEY = storageKeyFor(URI);
const SYSTEM = 'modelcache-system';

interface Pod extends KubeObject {
  spec: {
    containers: Array<{ name: string; image: string; volumeMounts?: Array<Record<string, unknown>> }>;
    volumes?: Array<{ name: string; persistentVolumeClaim?: { claimName: string; readOnly?: boolean } }>;
    affinity?: { nodeAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: { nodeSelectorTerms: unknown[] } } };
  };
}

const run = { dir: '', port: 0, reaper: new Reaper(), controller: undefined as ModelcacheProcess | undefined };

async function startController(c: ControlPlane): Promise<ModelcacheProcess> {
  const kubeconfig = await c.kubeconfigFor('tester-1');
  const args = ['controller', '--kubeconfig', kubeconfig, '--metrics-addr', '127.0.0.1:0'];
  return startModelcache('controller', [...args, '--webhook-listen', `127.0.0.1:${run.port}`], run.dir, run.reaper);
}

/** The shipped configuration, each webhook pointed at this test's controller on 127.0.0.1 instead of the Service. */
async function shippedConfiguration(): Promise<WebhookConfiguration> {
  const text = await readFile(new URL('../../manifests/controller/webhooks.yaml', import.meta.url), 'utf8');
  const config = (fromYamlAll(text) as KubeObject[]).find((d) => d.kind === 'MutatingWebhookConfiguration') as
    | (WebhookConfiguration & { webhooks: Array<{ clientConfig: { service?: { path?: string }; url?: string } }> })
    | undefined;
  assert.ok(config, 'manifests/controller/webhooks.yaml has a MutatingWebhookConfiguration');
  for (const w of config.webhooks) {
    w.clientConfig = { url: `https://127.0.0.1:${run.port}${w.clientConfig.service?.path ?? '/'}` };
  }
  return config;
}

const cluster = useControlPlane({
  controllerManager: false,
  setup: async (c) => {
    await installCrds(c.client);
    await installKserveCrds(c.client);
    await grantControllerRbac(c.client, ControlPlane.username('tester-1'));
    await c.client.create(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    // The ServiceAccount admission plugin needs the namespace's default account (no controller-manager here).
    await c.client.create(SERVICE_ACCOUNTS, {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'default', namespace: NS },
    });
    await c.client.create(LOCAL_MODEL_NODE_GROUPS, groupObj(GROUP, { [`${S}/pool`]: 'gpu' }, '100Gi'));
    await c.client.create(LOCAL_MODEL_CACHES, cacheObj(CACHE, URI, '1Gi', [GROUP]));
    run.dir = await mkdtemp(join(tmpdir(), 'modelcache-webhooks-'));
    run.port = await freePort();
    await c.client.create(MUTATING_WEBHOOK_CONFIGURATIONS, await shippedConfiguration());
    run.controller = await startController(c.cp);
  },
  teardown: async () => {
    await run.controller?.stop('SIGKILL');
    run.reaper.close();
    if (run.dir) await rm(run.dir, { recursive: true, force: true });
  },
});

function pod(name: string, labels: Record<string, string>, annotations: Record<string, string> = {}): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS, labels, annotations },
    spec: {
      containers: [
        { name: 'server', image: 'vllm:latest' },
        { name: 'metrics', image: 'exporter:latest' },
      ],
    },
  };
}

function createPod(client: KubeClient, p: Pod, dryRun = false): Promise<Pod> {
  return client.request<Pod>('POST', `/api/v1/namespaces/${NS}/pods`, {
    body: p,
    ...(dryRun ? { query: { dryRun: 'All' } } : {}),
  });
}

const mount = { name: 'modelcache-model', mountPath: '/mnt/models', subPath: `models/${KEY}`, readOnly: true };
const copyAffinity = {
  nodeSelectorTerms: [{ matchExpressions: [{ key: `models.modelcache.io/${KEY}`, operator: 'In', values: ['true'] }] }],
};

/** Waits until the apiserver calls the webhook (it loads configurations and caBundles asynchronously). */
async function webhookServing(client: KubeClient): Promise<void> {
  await eventually(
    async () => {
      const p = await createPod(client, pod(uniqueName('probe'), { 'modelcache.io/cache': CACHE }), true);
      assert.ok(
        p.spec.volumes?.some((v) => v.name === 'modelcache-model'),
        'not mutated yet',
      );
    },
    { timeoutMs: 30_000, intervalMs: 200 },
  );
}

test("the generated CA: kept in a Secret in cert-manager's layout, and written into every webhook's caBundle", async () => {
  const c = cluster.client;
  const secret = await eventually(async () => {
    const s = await c.get<Secret>(SECRETS, 'modelcache-webhook-tls', { namespace: SYSTEM });
    assert.ok(s?.data?.['tls.crt'] && s.data['tls.key'] && s.data['ca.crt'], 'Secret not written yet');
    return s;
  });
  await eventually(async () => {
    const config = await c.get<WebhookConfiguration>(MUTATING_WEBHOOK_CONFIGURATIONS, 'modelcache-webhooks');
    assert.deepEqual(
      config?.webhooks?.map((w) => w.clientConfig?.caBundle),
      config?.webhooks?.map(() => secret.data?.['ca.crt']),
    );
  });
  await webhookServing(c);
});

test('an opted-in pod created through the apiserver comes back with the read-only mount and the copy affinity', async () => {
  await webhookServing(cluster.client);
  const got = await createPod(cluster.client, pod(uniqueName('vllm'), { 'modelcache.io/cache': CACHE }));
  assert.deepEqual(got.spec.volumes?.find((v) => v.name === 'modelcache-model')?.persistentVolumeClaim, {
    claimName: `${CACHE}-${GROUP}`,
    readOnly: true,
  });
  const ours = (cont: Pod['spec']['containers'][number] | undefined) =>
    cont?.volumeMounts?.find((m) => m.name === 'modelcache-model');
  for (const container of got.spec.containers) assert.deepEqual(ours(container), mount, container.name);
  assert.deepEqual(got.spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution, copyAffinity);

  const some = await createPod(
    cluster.client,
    pod(
      uniqueName('vllm'),
      { 'modelcache.io/cache': CACHE },
      { 'modelcache.io/containers': 'server', 'modelcache.io/mount-path': '/models' },
    ),
  );
  assert.equal(ours(some.spec.containers[0])?.mountPath, '/models');
  assert.equal(
    ours(some.spec.containers[1]),
    undefined,
    'a container not named in modelcache.io/containers gets no mount',
  );
});

test('a pod that did not opt in is untouched; one naming a missing cache is denied with the fix', async () => {
  await webhookServing(cluster.client);
  const plain = await createPod(cluster.client, pod(uniqueName('web'), { app: 'web' }));
  assert.equal(plain.spec.affinity, undefined);
  assert.ok(!plain.spec.volumes?.some((v) => v.name === 'modelcache-model'));
  await assert.rejects(
    createPod(cluster.client, pod(uniqueName('typo'), { 'modelcache.io/cache': `${S}-lama` })),
    (err: Error) =>
      /pods\.modelcache\.io.*label modelcache\.io\/cache names LocalModelCache '.*-lama', which does not exist: create it/.test(
        err.message,
      ),
  );
  await assert.rejects(
    createPod(
      cluster.client,
      pod(uniqueName('nocontainer'), { 'modelcache.io/cache': CACHE }, { 'modelcache.io/containers': 'gpu' }),
    ),
    /annotation modelcache\.io\/containers names container 'gpu', which the pod does not have/,
  );
});

test("KServe's predictor pod reading a cache gets the copy affinity and no second mount", async () => {
  await webhookServing(cluster.client);
  const p = pod(uniqueName('predictor'), {
    'serving.kserve.io/inferenceservice': 'svc',
    'internal.serving.kserve.io/localmodel': CACHE,
  });
  const got = await eventually(async () => {
    const created = await createPod(
      cluster.client,
      { ...p, metadata: { ...p.metadata, name: uniqueName('predictor') } },
      true,
    );
    assert.ok(created.spec.affinity, 'kserve-pods webhook not called yet');
    return created;
  });
  assert.deepEqual(got.spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution, copyAffinity);
  assert.equal(got.spec.volumes?.some((v) => v.name === 'modelcache-model') ?? false, false);
});

test("an InferenceService below the cache's URI gets KServe's local-model labels; one with disable-localmodel does not", async () => {
  const c = cluster.client;
  const isvc = (name: string, annotations: Record<string, string> = {}): KubeObject =>
    ({
      apiVersion: 'serving.kserve.io/v1beta1',
      kind: 'InferenceService',
      metadata: { name, namespace: NS, annotations },
      spec: { predictor: { model: { modelFormat: { name: 'huggingface' }, storageUri: `${URI}/tokenizer` } } },
    }) as KubeObject;
  const labelled = await eventually(async () => {
    const got = await c.request<KubeObject>('POST', c.path(INFERENCE_SERVICES, { namespace: NS }), {
      body: isvc(uniqueName('svc')),
      query: { dryRun: 'All' },
    });
    assert.ok(got.metadata.labels, 'defaulter not called yet');
    return c.create(INFERENCE_SERVICES, isvc(`${S}-svc`));
  });
  assert.equal(labelled.metadata.labels?.['internal.serving.kserve.io/localmodel'], CACHE);
  assert.equal(labelled.metadata.annotations?.['internal.serving.kserve.io/localmodel-sourceuri'], URI);
  assert.equal(labelled.metadata.annotations?.['internal.serving.kserve.io/localmodel-pvc-name'], `${CACHE}-${GROUP}`);

  const off = await c.create(INFERENCE_SERVICES, isvc(`${S}-off`, { 'serving.kserve.io/disable-localmodel': 'true' }));
  assert.equal(off.metadata.labels?.['internal.serving.kserve.io/localmodel'], undefined);
  assert.equal(off.metadata.annotations?.['internal.serving.kserve.io/localmodel-pvc-name'], undefined);

  const llm = await c.create(LLM_INFERENCE_SERVICES, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LLMInferenceService',
    metadata: { name: `${S}-chat`, namespace: NS },
    spec: { model: { uri: URI } },
  } as KubeObject);
  assert.equal(llm.metadata.labels?.['internal.serving.kserve.io/localmodel'], CACHE);
  assert.equal(llm.metadata.annotations?.['internal.serving.kserve.io/localmodel-pvc-name'], `${CACHE}-${GROUP}`);
});

test('webhook server stopped: other pods and InferenceServices are still admitted, an opted-in pod is not; a restart serves the same CA', async () => {
  const c = cluster.client;
  const before = await c.get<Secret>(SECRETS, 'modelcache-webhook-tls', { namespace: SYSTEM });
  await run.controller?.stop();
  run.controller = undefined;

  const plain = await createPod(c, pod(uniqueName('web'), { app: 'web' }));
  assert.equal(plain.spec.affinity, undefined);
  const kservePod = await createPod(
    c,
    pod(uniqueName('predictor'), { 'internal.serving.kserve.io/localmodel': CACHE }),
  );
  assert.equal(kservePod.spec.affinity, undefined, "KServe's pod starts as KServe alone would start it");
  const isvc = await c.create(INFERENCE_SERVICES, {
    apiVersion: 'serving.kserve.io/v1beta1',
    kind: 'InferenceService',
    metadata: { name: `${S}-down`, namespace: NS },
    spec: { predictor: { model: { storageUri: URI } } },
  } as KubeObject);
  assert.equal(isvc.metadata.labels?.['internal.serving.kserve.io/localmodel'], undefined);
  await assert.rejects(
    createPod(c, pod(uniqueName('vllm'), { 'modelcache.io/cache': CACHE })),
    /failed calling webhook "pods\.modelcache\.io"/,
    'an opted-in pod is never admitted without its mount',
  );

  run.controller = await startController(cluster.cp);
  await webhookServing(c);
  const after = await c.get<Secret>(SECRETS, 'modelcache-webhook-tls', { namespace: SYSTEM });
  assert.equal(
    after?.data?.['ca.crt'],
    before?.data?.['ca.crt'],
    'the Secret is reused: replicas serve one certificate',
  );
  assert.equal(after?.metadata.resourceVersion, before?.metadata.resourceVersion);
});
