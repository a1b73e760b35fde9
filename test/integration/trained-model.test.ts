import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import {
  CLUSTER_SERVING_RUNTIMES,
  INFERENCE_SERVICES,
  TRAINED_MODELS,
  type InferenceService,
  type TrainedModel,
} from '../../api/kserve.ts';
import { RegistrationController } from '../../controller/trained-model/controller.ts';
import { KubeApiError, KubeClient } from '../../kube/client.ts';
import { CONFIGMAPS, NAMESPACES } from '../../kube/resources.ts';
import type { ConfigMap, KubeObject } from '../../kube/types.ts';
import { createLogger } from '../../ops/logger.ts';
import { ControlPlane } from '../../localcluster/control-plane.ts';
import { useControlPlane, uniqueName } from '../helpers/cluster.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { grantControllerRbac, installShippedCrds } from '../helpers/kube-fixtures.ts';
import { installKserveCrds } from '../helpers/kserve-crds.ts';

const stop = new AbortController();
let registration: RegistrationController;
let running: Promise<void>;
let ns: string;
const runtime = uniqueName('mms-sklearn');

const cluster = useControlPlane({
  controllerManager: true, // garbage collection: deleting an InferenceService deletes what it owns
  setup: async (c) => {
    await installShippedCrds(c.client);
    await grantControllerRbac(c.client, ControlPlane.username('tester-1'));
    const client = KubeClient.fromKubeconfig({ kubeconfig: await c.cp.kubeconfigFor('tester-1') });
    const quiet = new Writable({ write: (_c, _e, cb) => cb() });
    // Started before KServe's CRDs exist: registration waits for them.
    registration = new RegistrationController({
      client,
      log: createLogger('controller', 'info', quiet),
      crdPollMs: 200,
    });
    running = registration.run(stop.signal).catch(() => undefined);
    await installKserveCrds(c.client);
    ns = uniqueName('mms');
    await c.client.create(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    await c.client.create(CLUSTER_SERVING_RUNTIMES, {
      apiVersion: 'serving.kserve.io/v1alpha1',
      kind: 'ClusterServingRuntime',
      metadata: { name: runtime },
      spec: { multiModel: true, supportedModelFormats: [{ name: 'sklearn', autoSelect: true }] },
    } as KubeObject);
  },
  teardown: async () => {
    stop.abort();
    await running;
  },
});

async function createIsvc(name: string, predictor: Record<string, unknown>, ready: boolean): Promise<InferenceService> {
  const isvc = await cluster.client.create<InferenceService>(INFERENCE_SERVICES, {
    apiVersion: 'serving.kserve.io/v1beta1',
    kind: 'InferenceService',
    metadata: { name, namespace: ns },
    spec: { predictor },
  } as InferenceService);
  if (ready) await setReady(name, true);
  return isvc;
}

/** Sets the status KServe would write. */
async function setReady(name: string, ready: boolean): Promise<void> {
  await cluster.client.patchStatus(
    INFERENCE_SERVICES,
    name,
    {
      url: `http://${name}.${ns}.example.com`,
      conditions: [
        {
          type: 'Ready',
          status: ready ? 'True' : 'False',
          reason: 'Test',
          message: 'set by test',
          lastTransitionTime: '2026-01-01T00:00:00Z',
        },
      ],
    },
    { namespace: ns },
  );
}

async function createTm(
  name: string,
  isvc: string,
  memory: string,
  framework = 'sklearn',
  storageUri = `s3://models/${name}`,
): Promise<void> {
  await cluster.client.create(TRAINED_MODELS, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'TrainedModel',
    metadata: { name, namespace: ns },
    spec: { inferenceService: isvc, model: { storageUri, framework, memory } },
  } as TrainedModel);
}

const getTm = (name: string) => cluster.client.get<TrainedModel>(TRAINED_MODELS, name, { namespace: ns });
const cond = (tm: TrainedModel | undefined, type: string) => tm?.status?.conditions?.find((c) => c.type === type);
const modelsOf = async (isvc: string): Promise<Array<{ modelName: string }> | undefined> => {
  const cm = await cluster.client.get<ConfigMap>(CONFIGMAPS, `modelconfig-${isvc}-0`, { namespace: ns });
  return cm ? (JSON.parse(cm.data?.['models.json'] ?? 'null') as Array<{ modelName: string }>) : undefined;
};
const smallPredictor = { model: { modelFormat: { name: 'sklearn' }, resources: { limits: { memory: '1Gi' } } } };

test('the apiserver checks TrainedModel names, storage URIs and memory, with messages that say how to fix them', async () => {
  const reject = async (name: string, model: Record<string, unknown>): Promise<string> => {
    try {
      await cluster.client.create(TRAINED_MODELS, {
        apiVersion: 'serving.kserve.io/v1alpha1',
        kind: 'TrainedModel',
        metadata: { name, namespace: ns },
        spec: {
          inferenceService: 'x',
          model: { storageUri: 's3://b/m', framework: 'sklearn', memory: '1Gi', ...model },
        },
      } as TrainedModel);
    } catch (err) {
      assert.ok(err instanceof KubeApiError && err.status === 422, String(err));
      return err.message;
    }
    assert.fail('created');
  };
  assert.match(await reject('bad.name', {}), /TrainedModel names may hold only letters, digits, _ and -/);
  assert.match(
    await reject('ftp-model', { storageUri: 'ftp://host/m' }),
    /model.storageUri ftp:\/\/host\/m is not supported: use s3:\/\/, gs:\/\/, http:\/\/, https:\/\//,
  );
  assert.match(await reject('mem-model', { memory: 'lots' }), /model.memory must be a positive quantity such as 1Gi/);
  await createTm('immutable', 'x', '1Gi');
  await assert.rejects(
    cluster.client.mergePatch(TRAINED_MODELS, 'immutable', { spec: { model: { memory: '2Gi' } } }, { namespace: ns }),
    /model.memory is immutable/,
  );
});

test('a multi-model InferenceService gets models.json; TrainedModels are registered sorted by name, with conditions and URL; removal and memory limits apply', async () => {
  const isvc = uniqueName('shared');
  await createIsvc(isvc, smallPredictor, true);
  await eventually(async () => assert.deepEqual(await modelsOf(isvc), []), { timeoutMs: 20_000 });
  const cm = await cluster.client.get<ConfigMap>(CONFIGMAPS, `modelconfig-${isvc}-0`, { namespace: ns });
  assert.equal(cm?.metadata.ownerReferences?.[0]?.kind, 'InferenceService');
  await createTm('b-model', isvc, '300Mi');
  await createTm('a-model', isvc, '300Mi');
  await eventually(async () =>
    assert.deepEqual(
      (await modelsOf(isvc))?.map((m) => m.modelName),
      ['a-model', 'b-model'],
    ),
  );
  const text = (await cluster.client.get<ConfigMap>(CONFIGMAPS, `modelconfig-${isvc}-0`, { namespace: ns }))?.data?.[
    'models.json'
  ];
  assert.equal(
    text,
    JSON.stringify([
      { modelName: 'a-model', modelSpec: { storageUri: 's3://models/a-model', framework: 'sklearn', memory: '300Mi' } },
      { modelName: 'b-model', modelSpec: { storageUri: 's3://models/b-model', framework: 'sklearn', memory: '300Mi' } },
    ]),
  );
  await eventually(async () => {
    const tm = await getTm('a-model');
    assert.equal(tm?.status?.url, `http://${isvc}.${ns}.example.com/v1/models/a-model:predict`);
    for (const t of ['InferenceServiceReady', 'IsMMSPredictor', 'FrameworkSupported', 'MemoryResourceAvailable'])
      assert.equal(cond(tm, t)?.status, 'True', t);
    assert.equal(cond(tm, 'Ready')?.reason, 'ModelNotLoaded');
    assert.equal(tm?.metadata.ownerReferences?.[0]?.name, isvc);
  });

  // Converged: a resync rewrites nothing.
  const rv = (await cluster.client.get<ConfigMap>(CONFIGMAPS, `modelconfig-${isvc}-0`, { namespace: ns }))?.metadata
    .resourceVersion;
  const tmRv = (await getTm('a-model'))?.metadata.resourceVersion;
  registration.resync();
  await eventually(async () => assert.equal(registration.pending, 0));
  assert.equal(
    (await cluster.client.get<ConfigMap>(CONFIGMAPS, `modelconfig-${isvc}-0`, { namespace: ns }))?.metadata
      .resourceVersion,
    rv,
  );
  assert.equal((await getTm('a-model'))?.metadata.resourceVersion, tmRv);

  // 300Mi + 300Mi + 600Mi > 1Gi: the newest does not fit and is not written.
  await createTm('c-model', isvc, '600Mi');
  await createTm('x-model', isvc, '10Mi', 'xgboost');
  await eventually(async () => {
    const c = await getTm('c-model');
    assert.equal(cond(c, 'MemoryResourceAvailable')?.status, 'False');
    assert.match(
      cond(c, 'MemoryResourceAvailable')?.message ?? '',
      /600Mi does not fit: 629145600 of 1073741824 bytes/,
    );
    assert.equal(cond(c, 'Ready')?.reason, 'MemoryLimitExceeded');
    const x = await getTm('x-model');
    assert.equal(cond(x, 'FrameworkSupported')?.reason, 'FrameworkNotSupported');
    assert.match(
      cond(x, 'FrameworkSupported')?.message ?? '',
      new RegExp(`runtime ${runtime} of InferenceService ${ns}/${isvc} serves sklearn, not xgboost`),
    );
  });
  assert.deepEqual(
    (await modelsOf(isvc))?.map((m) => m.modelName),
    ['a-model', 'b-model'],
  );

  // Deleting a model frees its memory: the waiting one is registered.
  await cluster.client.delete(TRAINED_MODELS, 'b-model', { namespace: ns });
  await eventually(async () =>
    assert.deepEqual(
      (await modelsOf(isvc))?.map((m) => m.modelName),
      ['a-model', 'c-model'],
    ),
  );
});

test('rejections: missing parent, not multi-model, not Ready yet (registered once Ready)', async () => {
  await createTm('orphan', 'no-such-isvc', '1Mi');
  const single = uniqueName('single');
  await createIsvc(single, { model: { modelFormat: { name: 'sklearn' }, storageUri: 's3://b/one' } }, true);
  await createTm('on-single', single, '1Mi');
  const warming = uniqueName('warming');
  await createIsvc(warming, smallPredictor, false);
  await createTm('early', warming, '1Mi');
  await eventually(async () => {
    assert.equal(cond(await getTm('orphan'), 'InferenceServiceReady')?.reason, 'InferenceServiceNotFound');
    assert.match(
      cond(await getTm('orphan'), 'Ready')?.message ?? '',
      new RegExp(`InferenceService ${ns}/no-such-isvc does not exist: create it or fix spec.inferenceService`),
    );
    assert.match(cond(await getTm('on-single'), 'IsMMSPredictor')?.message ?? '', /predictor.model.storageUri is set/);
    assert.equal(cond(await getTm('early'), 'InferenceServiceReady')?.reason, 'InferenceServiceNotReady');
  });
  assert.equal(await modelsOf(single), undefined, 'no models.json for a single-model InferenceService');
  assert.deepEqual(await modelsOf(warming), []);
  await setReady(warming, true);
  await eventually(async () =>
    assert.deepEqual(
      (await modelsOf(warming))?.map((m) => m.modelName),
      ['early'],
    ),
  );
  // Once registered, a model stays while its InferenceService is briefly not Ready (no unload storm).
  await setReady(warming, false);
  await eventually(async () => assert.equal(cond(await getTm('early'), 'InferenceServiceReady')?.status, 'False'));
  assert.deepEqual(
    (await modelsOf(warming))?.map((m) => m.modelName),
    ['early'],
  );
});

test('deleting the InferenceService deletes its models.json and its TrainedModels', async () => {
  const isvc = uniqueName('gone');
  await createIsvc(isvc, smallPredictor, true);
  await createTm('doomed', isvc, '1Mi');
  await eventually(async () =>
    assert.deepEqual(
      (await modelsOf(isvc))?.map((m) => m.modelName),
      ['doomed'],
    ),
  );
  await eventually(async () => assert.equal((await getTm('doomed'))?.metadata.ownerReferences?.[0]?.name, isvc));
  await cluster.client.delete(INFERENCE_SERVICES, isvc, { namespace: ns, propagationPolicy: 'Background' });
  await eventually(
    async () => {
      assert.equal(await modelsOf(isvc), undefined);
      assert.equal(await getTm('doomed'), undefined);
    },
    { timeoutMs: 90_000 },
  ); // the garbage collector learns of CRDs installed after it started within 30 s
});
